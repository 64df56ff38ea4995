"""Study caches follow their settings: a rerun with other settings never reuses stale results.

One test per stale-cache case of the settings-keyed caches (landscape planes, subspace samples,
shift predictions, the weight averages subspace borrows from the analysis).
"""

import numpy as np
import pytest
import torch
from conftest import tiny_config

from modescape.analysis.metrics import evaluate
from modescape.analysis.subspace import SubspaceConfig
from modescape.store.files import load_npy, read_csv, read_json
from modescape.store.run import load_run
from modescape.store.schema import WeightAverageInfo
from modescape.studies.analysis import AnalysisConfig, analyze_run
from modescape.studies.cache import open_cache
from modescape.studies.context import RunContext
from modescape.studies.landscape import LandscapeConfig, run_landscape
from modescape.studies.shift import ShiftConfig, run_shift
from modescape.studies.subspace import run_subspace, subspace_samples


def test_open_cache_empties_a_folder_of_other_settings(tmp_path):
    folder = tmp_path / "cache"
    assert open_cache(folder, {"a": 1, "b": (1, 2)})[0] is False
    (folder / "x.npy").write_bytes(b"old")
    assert open_cache(folder, {"b": [1, 2], "a": 1})[0] is True  # same settings, any order
    assert (folder / "x.npy").exists()
    assert open_cache(folder, {"a": 2, "b": [1, 2]})[0] is False
    assert not (folder / "x.npy").exists()
    assert read_json(folder / "settings.json")["settings"] == {"a": 2, "b": [1, 2]}


def _plane(run_path, summary) -> dict[str, np.ndarray]:
    folder = run_path / "landscape" / summary.planes[0].dir
    return {k: load_npy(folder / f"{k}.npy") for k in ("a", "b", "loss")}


def test_landscape_plane_follows_margin_and_examples(tiny_run_copy, tmp_path):
    import shutil

    fresh = tmp_path / "fresh"
    shutil.copytree(tiny_run_copy, fresh)
    base = {"resolution": 3, "paths": (), "align": False}
    first = run_landscape(tiny_run_copy, LandscapeConfig(margin=0.2, max_examples=100, **base))
    folder = tiny_run_copy / "landscape" / first.planes[0].dir
    # A process killed after one row of the plane: the next call with another margin must not
    # resume from that row.
    for f in [*folder.glob("*.npy"), folder / "anchors.json", *sorted(folder.glob("rows/*"))[1:]]:
        f.unlink()
    cfg = LandscapeConfig(margin=0.5, max_examples=150, **base)
    second = run_landscape(tiny_run_copy, cfg)
    expected = _plane(fresh, run_landscape(fresh, cfg))
    got = _plane(tiny_run_copy, second)
    assert got["a"].max() > 1.2  # the wider margin (anchors at a = 0 and 1, plus 50%)
    for key in ("a", "b", "loss"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6)
    assert second.num_examples == 150
    settings = read_json(folder / "settings.json")["settings"]
    assert settings["margin"] == 0.5 and settings["n_examples"] == 150
    # Unchanged settings reuse the finished plane.
    before = (folder / "loss.npy").stat().st_mtime_ns
    run_landscape(tiny_run_copy, cfg)
    assert (folder / "loss.npy").stat().st_mtime_ns == before


def test_subspace_predictions_follow_the_sampler_settings(tiny_run_copy):
    run = load_run(tiny_run_copy)
    x = run.dataset().x_test
    base = {"methods": ("random",), "n_snapshots": 3, "rank": 2}
    run_subspace(tiny_run_copy, SubspaceConfig(n_samples=2, **base))
    f = tiny_run_copy / "subspace/preds/random/m001.npy"
    # "k samples around one trajectory" stops at the 2 samples drawn (3 members).
    rows = read_csv(tiny_run_copy / "subspace/curves.csv")
    assert {r["size"] for r in rows if r["family"] == "random"} == {"1", "2"}
    for cfg in (
        SubspaceConfig(n_samples=3, **base),
        SubspaceConfig(n_samples=3, random_scale=2.0, **base),
        SubspaceConfig(n_samples=3, random_scale=2.0, seed=5, **base),
        SubspaceConfig(n_samples=3, random_scale=2.0, seed=5, target_drop=0.2, **base),
        SubspaceConfig(n_samples=3, random_scale=2.0, seed=5, mode="paper", **base),
    ):
        summary = run_subspace(tiny_run_copy, cfg)
        # The calibrated scale (None in "paper" mode: the config's) the samples were drawn at.
        scale = summary.scale("random", 1)
        assert (scale is None) == (cfg.mode == "paper")
        samples = subspace_samples(run, cfg, "random", 1, scale=scale)
        model = run.build_model().eval()
        expected = []
        for theta in samples:
            torch.nn.utils.vector_to_parameters(theta, model.parameters())
            with torch.no_grad():
                expected.append(torch.softmax(model(x), 1).numpy())
        np.testing.assert_allclose(load_npy(f), np.stack(expected), atol=1e-5)
        assert summary.config["random_scale"] == cfg.random_scale


def test_shift_predictions_follow_seed_and_examples(tiny_run_copy):
    base = {"corruptions": ("gaussian_noise",), "severities": (1,)}
    run_shift(tiny_run_copy, ShiftConfig(max_examples=50, **base))
    f = tiny_run_copy / "shift/preds/gaussian_noise/s1/members.npy"
    first = load_npy(f)
    assert first.shape == (3, 50, 10)
    run_shift(tiny_run_copy, ShiftConfig(max_examples=80, **base))
    assert load_npy(f).shape == (3, 80, 10)
    run_shift(tiny_run_copy, ShiftConfig(max_examples=50, seed=1, **base))
    other = load_npy(f)
    assert other.shape == (3, 50, 10) and not np.allclose(other, first)
    rows = read_csv(tiny_run_copy / "shift/metrics.csv")
    assert {r["corruption"] for r in rows} == {"gaussian_noise"}


def _weight_average_nll(run_path, epochs: list[int]) -> float:
    """Mean NLL on the test split of each member's average over `epochs` (no BatchNorm)."""
    run = load_run(run_path)
    x, y = run.dataset().x_test, run.labels("test")
    nll = []
    for m in run.members:
        sds = [run.state_dict(m, e) for e in epochs]
        model = run.build_model()
        model.load_state_dict({k: torch.stack([sd[k] for sd in sds]).mean(0) for k in sds[0]})
        with torch.no_grad():
            nll.append(evaluate(torch.softmax(model.eval()(x), 1).numpy(), y)["nll"])
    return float(np.mean(nll))


def _subspace_weight_average_nll(run_path) -> float:
    rows = read_csv(run_path / "subspace/curves.csv")
    return next(
        float(r["mean"])
        for r in rows
        if r["family"] == "weight_average+ensemble" and r["size"] == "1" and r["metric"] == "nll"
    )


def test_subspace_reuses_analysis_weight_averages_only_for_the_same_window(tiny_run_copy):
    cfg = SubspaceConfig(methods=("random",), n_samples=2, n_snapshots=3, rank=2)
    analyze_run(tiny_run_copy, AnalysisConfig(weight_average=1))  # averages epoch 4 only
    summary = run_subspace(tiny_run_copy, cfg)  # its window: epochs 3-4 (10, clamped)
    assert summary.weight_average == WeightAverageInfo([3, 4], source="computed")
    expected = _weight_average_nll(tiny_run_copy, [3, 4])
    assert _subspace_weight_average_nll(tiny_run_copy) == pytest.approx(expected, rel=1e-5)
    analyze_run(tiny_run_copy, AnalysisConfig(weight_average=2))  # the same window: reused
    summary = run_subspace(tiny_run_copy, cfg)
    assert summary.weight_average.source == "analysis/ensembles/weight_average.npy"
    assert _subspace_weight_average_nll(tiny_run_copy) == pytest.approx(expected, rel=1e-5)


def test_subspace_does_not_reuse_weight_averages_of_another_split(tmp_path):
    from modescape.training.trainer import train

    train(tiny_config(members=2, epochs=2, **{"data.val_size": 100}), tmp_path / "run")
    analyze_run(tmp_path / "run", AnalysisConfig(split="val"))
    cfg = SubspaceConfig(methods=("random",), n_samples=2, n_snapshots=2, rank=1)
    summary = run_subspace(tmp_path / "run", cfg)
    assert summary.weight_average.source == "computed"
    expected = _weight_average_nll(tmp_path / "run", summary.weight_average.epochs_averaged)
    assert _subspace_weight_average_nll(tmp_path / "run") == pytest.approx(expected, rel=1e-5)
    assert RunContext(tmp_path / "run").inputs("val").shape[0] == 100
