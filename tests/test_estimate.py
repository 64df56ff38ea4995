"""The cost estimate of `modescape run`: a timed probe, and work that scales with the config."""

import pytest
from conftest import cli, tiny_config

from modescape.estimate import Rates, estimate_run, probe_rates
from modescape.pipeline import study_stages
from modescape.registry import studies
from modescape.store.run import open_dataset

RATES = Rates(train_step=0.01, forward=1e-5, corrupt={})


@pytest.fixture(scope="module")
def data():
    return open_dataset(tiny_config())


def test_probe_measures_positive_rates(data):
    rates = probe_rates(tiny_config(), data)
    assert rates.train_step > 0 and rates.forward > 0
    assert rates.corrupt == {}  # signals: no image corruptions to time
    est = estimate_run(tiny_config(), rates=rates, data=data)
    expected = [s.name for s in studies() if s.applies_to(tiny_config())]
    assert [s.name for s in est.stages] == ["training", *expected]
    assert all(s.seconds > 0 for s in est.stages)
    assert est.total == pytest.approx(est.training + est.studies)
    text = "\n".join(est.lines())
    assert "shift" in text and "% of training" in text


def test_estimate_scales_with_members_and_epochs(data):
    def cost(**kw):
        return estimate_run(tiny_config(**kw), rates=RATES, data=data)

    base, members, epochs = cost(members=3, epochs=4), cost(members=6, epochs=4), cost(epochs=8)
    assert members.training == pytest.approx(2 * base.training)
    assert epochs.training > 1.9 * base.training  # twice the steps, plus one more test pass each
    for name in ("analysis", "subspace", "shift"):  # the landscape's planes: two members at most
        assert members.seconds(name) > base.seconds(name)
    assert members.seconds("landscape") == base.seconds("landscape")
    assert epochs.seconds("shift") >= base.seconds("shift")  # a longer late window, never less


def test_image_corruptions_add_to_the_shift_estimate(data):
    from modescape.estimate import DataShape, shift_cost
    from modescape.studies.shift import ShiftConfig
    from modescape.studies.subspace import pipeline_settings

    shape = DataShape(n_train=100, n_test=50, images=True, channels=3, batchnorm=False)
    slow = Rates(train_step=0.01, forward=1e-5, corrupt={"zoom_blur": 0.01})
    cfg = tiny_config()
    chosen = {"shift": ShiftConfig(), "subspace": pipeline_settings(cfg)}
    gained = shift_cost(cfg, shape, slow, chosen).seconds
    gained -= shift_cost(cfg, shape, RATES, chosen).seconds
    assert gained == pytest.approx(5 * 50 * 0.01)  # five severities of 50 images


def test_corrupted_sets_in_the_cache_are_not_priced():
    from dataclasses import replace

    from modescape.estimate import DataShape, shift_cost
    from modescape.studies.shift import ShiftConfig
    from modescape.studies.subspace import pipeline_settings

    shape = DataShape(n_train=100, n_test=50, images=True, channels=3, batchnorm=False)
    slow = Rates(train_step=0.01, forward=1e-5, corrupt={"zoom_blur": 0.01})
    held = frozenset({("zoom_blur", 1, 0, 50), ("zoom_blur", 2, 0, 50), ("zoom_blur", 3, 0, 20)})
    cached = replace(slow, cached_corruptions=held)
    cfg = tiny_config()
    chosen = {"shift": ShiftConfig(), "subspace": pipeline_settings(cfg)}
    saved = (
        shift_cost(cfg, shape, slow, chosen).seconds
        - shift_cost(cfg, shape, cached, chosen).seconds
    )
    assert saved == pytest.approx(2 * 50 * 0.01)  # severities 1 and 2 of all 50 are read back
    # another seed or the cache off: all generated; the first 20 examples: severity 3 held
    for other, held_s in ((ShiftConfig(seed=1), 0), (ShiftConfig(cache_corruptions=False), 0),
                          (ShiftConfig(max_examples=20), 20 * 0.01)):  # fmt: skip
        picked = chosen | {"shift": other}
        gap = shift_cost(cfg, shape, slow, picked).seconds
        gap -= shift_cost(cfg, shape, cached, picked).seconds
        assert gap == pytest.approx(held_s)


def test_run_budget_prints_the_estimate_and_runs_nothing(tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = cli(
        "run", "--out", str(out), "--members", "2", "--epochs", "2", "--set",
        "data.mnist1d_samples=200", "--budget",
    )  # fmt: skip
    assert code == 0
    assert "training" in stdout and "subspace" in stdout and "studies =" in stdout
    assert not out.exists()


def test_skipped_studies_are_neither_priced_nor_run(tmp_path, data):
    full = estimate_run(tiny_config(), rates=RATES, data=data)
    fewer = estimate_run(tiny_config(), rates=RATES, data=data, skip=("connect", "shift"))
    names = [s.name for s in fewer.stages]
    assert "connect" in [s.name for s in full.stages] and "shift" in [s.name for s in full.stages]
    assert "connect" not in names and "shift" not in names and "landscape" in names
    assert fewer.training == full.training
    assert [name for name, _ in study_stages(tiny_config(), skip=["shift"])] == [
        s.name for s in full.stages if s.name not in ("training", "shift")
    ]
    out = tmp_path / "run"
    for bad in ("nope", "analysis"):  # unknown, or the study the report is built on
        code, _, stderr = cli("run", "--out", str(out), "--skip", f"shift,{bad}", "--budget")
        assert code == 2 and f"unknown study to skip '{bad}'" in stderr
        assert len(stderr.strip().splitlines()) == 1 and "connect" in stderr
    assert not out.exists()


def test_other_study_settings_are_priced(data):
    from modescape.studies.shift import ShiftConfig

    full = estimate_run(tiny_config(), rates=RATES, data=data)
    fewer = ShiftConfig(corruptions=("gaussian_noise",), max_examples=100)
    cheap = estimate_run(tiny_config(), rates=RATES, data=data, studies={"shift": fewer})
    assert cheap.seconds("shift") < full.seconds("shift") / 2
    assert cheap.training == full.training


def test_study_budget_prints_an_estimate_and_runs_nothing(tiny_run_copy):
    code, stdout, _ = cli("shift", str(tiny_run_copy), "--budget")
    assert code == 0 and stdout.startswith("estimated shift: ")
    assert not (tiny_run_copy / "shift").exists()
    code, stdout, _ = cli("subspace", str(tiny_run_copy), "--samples", "4", "--budget")
    assert code == 0 and "x 4 samples" in stdout


def test_probe_times_training_at_the_members_thread_count(data, monkeypatch):
    """1-D members train on one thread (`member_threads`): the probe times them so, and leaves
    the caller's thread count as it was."""
    import torch

    from modescape import estimate
    from modescape.training.trainer import member_threads

    seen = {}

    def spy(config, data):
        seen["threads"] = torch.get_num_threads()
        return 0.01

    monkeypatch.setattr(estimate, "_time_training", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        probe_rates(tiny_config(), data)
        assert seen["threads"] == member_threads(tuple(data.x_train.shape[1:])) == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert member_threads((3, 32, 32)) == torch.get_num_threads()


@pytest.mark.parametrize("threads,onednn_ahead", [(1, False), (2, False), (1, True)])
def test_probe_evaluates_a_whole_grouped_chunk(data, monkeypatch, threads, onednn_ahead):
    """The "grouped" engine shares each call among a chunk of points: probing fewer points
    would price each point at several times its cost. "signals" (what "auto" picks where
    oneDNN is ahead of MKL) runs one point at a time: a few points price it."""
    import torch

    from modescape import estimate
    from modescape.analysis.engine import batched

    calls = []
    real = batched.evaluate_many

    def counting(model, points, x, **kw):
        calls.append(len(points))
        return real(model, points, x, **kw)

    monkeypatch.setattr(batched, "evaluate_many", counting)
    monkeypatch.setattr(batched, "onednn_ahead", lambda: onednn_ahead)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rate = estimate._time_forward(tiny_config(), data)
        model = estimate._model(tiny_config(), data)
        expected = batched.plan(model, data.x_test[:64].float(), 10**6)
    finally:
        torch.set_num_threads(before)
    assert rate > 0
    if onednn_ahead:  # (at one thread: at two "auto" keeps "grouped")
        assert expected.strategy == "signals"  # a 1-D SmallCNN
        assert max(calls) == estimate.PROBE_POINTS
    else:
        assert expected.strategy == "grouped"
        assert max(calls) == max(estimate.PROBE_POINTS, expected.chunk) > estimate.PROBE_POINTS


def test_landscape_cost_counts_the_configured_planes(data):
    """`LandscapeConfig.planes` is priced plane by plane (not as one plane whatever it holds)."""
    from modescape.studies.landscape import LandscapeConfig

    one = LandscapeConfig(planes=(("origin", "m0", "m1"),))
    two = LandscapeConfig(planes=(("origin", "m0", "m1"), ("m0", "m1", "init0")))
    est = {
        n: estimate_run(tiny_config(), rates=RATES, data=data, studies={"landscape": lc})
        for n, lc in ((1, one), (2, two))
    }
    grid = (one.resolution + 2) ** 2 * min(one.max_examples, len(data.y_test)) * RATES.forward
    extra = est[2].seconds("landscape") - est[1].seconds("landscape")
    assert extra == pytest.approx(grid)
    assert "2 planes of" in next(s.work for s in est[2].stages if s.name == "landscape")


def test_collection_phase_prices_its_epochs_and_the_swag_study(data):
    base = estimate_run(tiny_config(epochs=4), rates=RATES, data=data)
    on = estimate_run(tiny_config(epochs=4, **{"train.collect.epochs": 4}), rates=RATES, data=data)
    assert "swag" not in [s.name for s in base.stages]
    assert [s.name for s in on.stages] == ["training", "analysis", "subspace", "swag", "landscape",
                                           "connect", "shift"]  # fmt: skip
    # twice the epochs; fewer test passes (collection epochs keep no snapshot) than twice
    assert 1.8 * base.training < on.training < 2 * base.training
    assert on.studies == pytest.approx(base.studies + on.seconds("swag"))
    assert "8 epochs" in next(s.work for s in on.stages if s.name == "training")


def test_shift_prices_each_distinct_model_once():
    """The shift study evaluates a model in two families once (`ModelStack`): member 0's final
    snapshot among its late ones, and the weight averages when a one-snapshot window makes
    them the finals."""
    from modescape.estimate import DataShape, shift_cost
    from modescape.studies.shift import ShiftConfig
    from modescape.studies.subspace import pipeline_settings

    shape = DataShape(n_train=100, n_test=50, images=True, channels=3, batchnorm=False)
    per_model = Rates(train_step=0.01, forward=1.0, corrupt={}, frozen=1.0 / 50)
    cfg = tiny_config(members=3, epochs=20)
    sub = pipeline_settings(cfg)
    samples = len(sub.methods) * min(4, sub.n_samples)

    def models(**kw):
        chosen = {"shift": ShiftConfig(subspace_samples=4, **kw), "subspace": sub}
        return shift_cost(cfg, shape, per_model, chosen).seconds / (1 + 5 * len(kw["corruptions"]))

    # 3 members, late window 5 (4 besides the final), 3 weight averages of 5 snapshots
    assert models(corruptions=("gaussian_noise",), late=5, weight_average=5) == pytest.approx(
        3 + 4 + 3 + samples
    )
    # a one-snapshot window: the weight averages are the members' finals
    assert models(corruptions=("gaussian_noise",), late=5, weight_average=1) == pytest.approx(
        3 + 4 + samples
    )


@pytest.mark.parametrize("resolution", [9, 21])
def test_plane_points_match_anchored_grids(resolution):
    """The estimate's points per plane against `anchored_grid` on seeded anchors o, θ1, θ2 in
    the plane's own axes (o at 0, θ1 on the first axis): more than resolution², and within 15%
    of the grids' mean size."""
    import torch

    from modescape.analysis.geometry import anchored_grid
    from modescape.estimate import plane_points

    g = torch.Generator().manual_seed(0)
    sizes = []
    for _ in range(50):
        a, b, c = (torch.rand(3, generator=g) * 2 + 0.1).tolist()
        grid = anchored_grid(torch.tensor([[0.0, 0.0], [a, 0.0], [b, c]]), resolution)
        sizes.append(len(grid.a_values) * len(grid.b_values))
    assert min(sizes) > resolution**2
    assert sum(sizes) / len(sizes) == pytest.approx(plane_points(resolution), rel=0.15)
