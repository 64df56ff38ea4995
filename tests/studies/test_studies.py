"""The run-level shells of the subspace, landscape and shift studies, on the tiny run."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from modescape.analysis.subspace import SubspaceConfig
from modescape.data import corruptions
from modescape.data.corruptions import applicable_corruptions
from modescape.errors import ModescapeError
from modescape.store.files import load_npy, read_csv, read_json
from modescape.store.run import load_run
from modescape.studies.context import RunContext
from modescape.studies.landscape import LandscapeConfig, resolve_anchor, run_landscape
from modescape.studies.shift import (
    SEVERITIES,
    ShiftConfig,
    from_uint8_images,
    parse_severities,
    run_shift,
    shift_inputs,
    to_uint8_images,
)
from modescape.studies.subspace import run_subspace, subspace_samples

quiet: dict = {}  # progress goes to logging


def test_anchor_names(tiny_run):
    run = load_run(tiny_run)
    assert torch.equal(resolve_anchor(run, "m1")["head.weight"], run.state_dict(1)["head.weight"])
    assert torch.equal(resolve_anchor(run, "m2@e3")["head.bias"], run.state_dict(2, 3)["head.bias"])
    assert torch.equal(resolve_anchor(run, "init0")["head.bias"], run.state_dict(0, 0)["head.bias"])
    assert all(float(v.abs().sum()) == 0 for v in resolve_anchor(run, "origin").values())
    wa = resolve_anchor(run, "wa0")["head.bias"]
    # The default window (10) is cut to the later half of a 4-epoch trajectory: epochs 3 and 4.
    assert RunContext(run).weight_average_window(0, 10)[0] == [3, 4]
    mean = torch.stack([run.state_dict(0, e)["head.bias"] for e in (3, 4)]).mean(0)
    torch.testing.assert_close(wa, mean)
    wa = resolve_anchor(run, "wa0", weight_average=2)["head.bias"]
    torch.testing.assert_close(wa, mean)
    with pytest.raises(ModescapeError, match="allowed: origin, m<i>"):
        resolve_anchor(run, "member0")
    with pytest.raises(ModescapeError, match="no snapshot at epoch 9"):
        resolve_anchor(run, "m0@e9")


def test_landscape_anchor_values_equal_direct_metrics(tiny_run_copy):
    cfg = LandscapeConfig(resolution=5, n_path_points=5, align=False)
    summary = run_landscape(tiny_run_copy, cfg, **quiet)
    run = load_run(tiny_run_copy)
    anchors = read_json(tiny_run_copy / "landscape" / summary.planes[0].dir / "anchors.json")
    for name, loss, acc in zip(anchors["names"][1:], anchors["loss"][1:], anchors["accuracy"][1:]):
        member = int(name[1:])
        last = run.metrics(member)[-1]
        assert loss == pytest.approx(last.test_loss, rel=1e-4)
        assert acc == pytest.approx(last.test_acc, abs=1e-6)
    # Each anchor sits on a grid node (row = b index, column = a index), exactly.
    folder = tiny_run_copy / "landscape" / summary.planes[0].dir
    a, b = load_npy(folder / "a.npy"), load_npy(folder / "b.npy")
    assert len(anchors["nodes"]) == 3
    for (row, col), coords in zip(anchors["nodes"], anchors["coords"]):
        assert (a[col], b[row]) == tuple(coords)
    agree = load_npy(folder / "agreement_m1.npy")
    row, col = anchors["nodes"][2]
    assert agree[row, col] == agree.max() and agree[row, col] > 0.99
    rows = read_csv(tiny_run_copy / "landscape/paths.csv")
    start = next(r for r in rows if r["path"] == "m0->m1" and float(r["alpha"]) == 0.0)
    assert float(start["error"]) == pytest.approx(1 - run.metrics(0)[-1].test_acc, abs=1e-6)
    # A second call finds everything cached and computes no plane again.
    plane = tiny_run_copy / "landscape" / summary.planes[0].dir / "loss.npy"
    before = plane.stat().st_mtime_ns
    run_landscape(tiny_run_copy, cfg, **quiet)
    assert plane.stat().st_mtime_ns == before


def test_landscape_resumes_from_finished_rows(tiny_run_copy):
    cfg = LandscapeConfig(resolution=5, paths=(), align=False)
    run_landscape(tiny_run_copy, cfg, **quiet)
    folder = tiny_run_copy / "landscape/planes/origin-m0-m1-r5"
    full = load_npy(folder / "loss.npy")
    # Simulate a process killed after three rows: only their row files (and settings) remain.
    for f in folder.glob("*.npy"):
        f.unlink()
    (folder / "anchors.json").unlink()
    for f in sorted((folder / "rows").glob("r*.npy"))[3:]:
        f.unlink()
    run_landscape(tiny_run_copy, cfg, **quiet)
    np.testing.assert_allclose(load_npy(folder / "loss.npy"), full, rtol=1e-6)


def test_collinear_anchors_are_refused(tiny_run_copy):
    with pytest.raises(ModescapeError, match="three different names"):
        LandscapeConfig(planes=(("m0@e0", "m0@e0", "m1"),), resolution=3, align=False)
    # different names, one point: refused before any plane's folder is written
    cfg = LandscapeConfig(planes=(("m0@e4", "m0", "m1"),), resolution=3, align=False)
    with pytest.raises(ModescapeError, match=r"m0@e4,m0,m1: the plane is undefined.*coincides"):
        run_landscape(tiny_run_copy, cfg, **quiet)
    assert not (tiny_run_copy / "landscape").exists()


def test_subspace_samples_reproducible_and_cached(tiny_run_copy):
    cfg = SubspaceConfig(n_samples=4, n_snapshots=3, rank=2, mode="paper")
    summary = run_subspace(tiny_run_copy, cfg, **quiet)
    assert summary.mode == "paper" and summary.calibration == []
    run = load_run(tiny_run_copy)
    again = subspace_samples(run, cfg, "random", 1)
    assert torch.equal(again, subspace_samples(run, cfg, "random", 1))
    preds = load_npy(tiny_run_copy / "subspace/preds/random/m001.npy")
    assert preds.shape == (4, 200, 10)
    rows = read_csv(tiny_run_copy / "subspace/plane.csv")
    assert len([r for r in rows if r["kind"] == "sample"]) == 4 * 5
    assert len([r for r in rows if r["kind"] == "member"]) == 2
    assert set(summary.js_diversity) >= {"independent_members", "late_snapshots", "random"}
    before = (tiny_run_copy / "subspace/preds/random/m001.npy").stat().st_mtime_ns
    run_subspace(tiny_run_copy, cfg, **quiet)
    assert (tiny_run_copy / "subspace/preds/random/m001.npy").stat().st_mtime_ns == before


@pytest.mark.parametrize("scaling", ["raw", "unit", "standardize"])
def test_uint8_round_trip(scaling):
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(4, 5, 6, 3), dtype=np.uint8)
    source = {"scaling": scaling, "mean": [120.0, 110.0, 100.0], "std": [60.0, 50.0, 40.0]}
    x = from_uint8_images(u8, source)
    assert x.shape == (4, 3, 5, 6)
    assert np.array_equal(to_uint8_images(x, source), u8)


def test_severity_parsing():
    assert parse_severities("1-5") == (1, 2, 3, 4, 5)
    assert parse_severities("2,4") == (2, 4)
    with pytest.raises(ModescapeError, match="1-5"):
        parse_severities("high")
    with pytest.raises(ModescapeError, match=r"within 1\.\.5"):
        ShiftConfig(severities=(0, 6))


def _image_context(channels: int) -> RunContext:
    """A context over 4 random 8×8 test images, no run behind it (enough for `shift_inputs`)."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (4, channels, 8, 8))).float() / 255
    ctx = RunContext.__new__(RunContext)
    ctx.__dict__["dataset"] = SimpleNamespace(
        x_test=x, y_test=torch.zeros(4, dtype=torch.int64), source={"scaling": "unit"}
    )
    return ctx


@pytest.mark.parametrize("channels", [1, 3])
def test_shift_defaults_to_every_corruption_that_changes_the_images(channels):
    ctx = _image_context(channels)
    names, make = shift_inputs(ctx, ShiftConfig())
    assert names == list(applicable_corruptions(channels))
    assert ("saturate" in names) == (channels == 3)  # an identity on grayscale
    clean, _ = make(names[0], 0)
    for name in names:
        for severity in SEVERITIES:
            assert not torch.equal(make(name, severity)[0], clean), (name, severity)


def test_shift_reads_corrupted_sets_back_from_the_cache(monkeypatch):
    import modescape.data.corruption_cache as corruption_cache

    cfg = ShiftConfig(corruptions=("contrast",), severities=(2,), seed=12345)
    _, make = shift_inputs(_image_context(3), cfg)
    first = make("contrast", 2)[0]
    assert make.cache.misses == 1  # generated once, the whole test set at a time
    assert torch.equal(make("contrast", 2, 1, 3)[0], first[1:3])
    monkeypatch.setattr(corruption_cache, "corrupt", None)  # a second sweep must not generate
    _, again = shift_inputs(_image_context(3), cfg)
    assert torch.equal(again("contrast", 2)[0], first) and again.cache.hits == 1


def test_shift_leaves_no_op_corruptions_out_of_every_average(tiny_run_copy, monkeypatch):
    import modescape.data.corruption_cache as corruption_cache

    real = corruptions.corrupt

    def translation_idle_at_1(x, name, severity, seed, start=0):
        if (name, severity) == ("translation", 1):
            return x.copy()
        return real(x, name, severity, seed, start)

    monkeypatch.setattr(corruption_cache, "corrupt", translation_idle_at_1)
    # The cache off: the planted identity must not be kept for the tests after this one.
    cfg = ShiftConfig(
        corruptions=("gaussian_noise", "translation"), severities=(1, 5), cache_corruptions=False
    )
    summary = run_shift(tiny_run_copy, cfg, **quiet)
    assert summary.no_ops == [["translation", 1]]
    assert any("translation at severity 1" in w for w in summary.warnings)
    rows = read_csv(tiny_run_copy / "shift/metrics.csv")
    pairs = {(r["corruption"], r["severity"]) for r in rows}
    assert ("translation", "1") not in pairs and ("translation", "5") in pairs
    # Severity 1's mean is gaussian noise's alone.
    single = [
        float(r["mean"])
        for r in rows
        if (r["corruption"], r["severity"], r["family"], r["metric"])
        == ("gaussian_noise", "1", "single", "accuracy")
    ]
    assert summary.by_severity.metrics["single"]["accuracy"][1] == pytest.approx(single[0])


def test_shift_sweep_on_signals(tiny_run_copy):
    cfg = ShiftConfig(corruptions=("gaussian_noise", "translation"), severities=(1, 5))
    summary = run_shift(tiny_run_copy, cfg, **quiet)
    rows = read_csv(tiny_run_copy / "shift/metrics.csv")
    assert {(r["corruption"], r["severity"]) for r in rows} == {
        (c, s) for c in ("gaussian_noise", "translation") for s in ("0", "1", "5")
    }
    clean = load_npy(tiny_run_copy / "shift/preds/clean/s0/members.npy")
    np.testing.assert_allclose(clean, load_run(tiny_run_copy).final_predictions("test"), atol=1e-6)
    acc = summary.by_severity.metrics["single"]["accuracy"]
    assert acc[2] < acc[0]  # severity 5 hurts
    with pytest.raises(ModescapeError, match="allowed: gaussian_noise"):
        run_shift(tiny_run_copy, ShiftConfig(corruptions=("frost",)), **quiet)


def test_shift_reads_official_cifar10c_files(tmp_path):
    """A tiny CIFAR-10 (image-folder form) run evaluated on CIFAR-10-C files in the official
    layout: <corruption>.npy holding severities 1..5 stacked, and labels.npy."""
    from PIL import Image

    from modescape.config import preset
    from modescape.training.trainer import train

    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(10)]
    for split, n in (("train", 6), ("test", 2)):
        for c in classes:
            (tmp_path / "imgs" / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "imgs" / split / c / f"{i}.png")
    cfg = preset("cifar10", "smallcnn", "seed", root=str(tmp_path / "imgs"), members=2, epochs=1)
    train(cfg.with_overrides(["train.batch_size=16"]), tmp_path / "run")
    c10c = tmp_path / "CIFAR-10-C"
    c10c.mkdir()
    n = 20
    np.save(c10c / "labels.npy", np.tile(rng.integers(0, 10, n), 5).astype(np.uint8))
    with pytest.raises(ModescapeError, match=r"holds no <corruption>\.npy file"):  # labels alone
        run_shift(tmp_path / "run", ShiftConfig(cifar10c=str(c10c)), **quiet)
    assert not (tmp_path / "run/shift").exists()
    np.save(c10c / "fog.npy", rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8))
    summary = run_shift(tmp_path / "run", ShiftConfig(cifar10c=str(c10c)), **quiet)
    assert summary.corruptions == ["fog"]
    assert summary.source == "CIFAR-10-C files"
    preds = load_npy(tmp_path / "run/shift/preds/fog/s3/members.npy")
    assert preds.shape == (2, n, 10)
    # Back to generated corruptions: the CIFAR-10-C predictions of "fog" are not reused.
    summary = run_shift(tmp_path / "run", ShiftConfig(corruptions=("fog",), severities=(3,)))
    assert summary.source.startswith("generated")
    generated = load_npy(tmp_path / "run/shift/preds/fog/s3/members.npy")
    assert generated.shape == (2, 20, 10)  # same shape as the files: only the cache key differs
    assert not np.allclose(generated, preds)


@pytest.fixture(scope="module")
def tiny_image_folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for c in range(10):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / f"c{c}" / f"{i}.png")
    return root


def test_every_study_runs_on_a_batchnorm_network(tiny_image_folder, tmp_path):
    """ResNet20 (BatchNorm): weight averages, subspace samples and plane points all get their
    BatchNorm statistics recomputed, and each study records that policy."""
    from modescape.config import preset
    from modescape.studies.analysis import analyze_run
    from modescape.training.trainer import train

    cfg = preset("folder", "resnet20", "paper", root=str(tiny_image_folder), members=2, epochs=2)
    out = tmp_path / "resnet"
    train(cfg.with_overrides(["train.batch_size=20"]), out)
    summary = analyze_run(out, **quiet)
    assert "recomputed" in summary.weight_average.batchnorm
    # calibration kept minimal: what is checked here is the BatchNorm policy of every sample
    small = {"calibration_probes": 1, "calibration_steps": 2, "calibration_check": 1}
    sub = run_subspace(out, SubspaceConfig(n_samples=2, n_snapshots=2, rank=1, **small), **quiet)
    assert "recomputed" in sub.batchnorm
    land = run_landscape(out, LandscapeConfig(resolution=3, n_path_points=3), **quiet)
    assert land.planes[0].bn_policy == "recompute"
    assert all(p.bn_policy == "recompute" for p in land.paths)
    assert land.alignment is not None and land.alignment.max_abs_prob_diff < 1e-4
    shift = run_shift(out, ShiftConfig(corruptions=("contrast",), severities=(1,)), **quiet)
    assert shift.families["subspace_random"] == 2
    assert load_run(out).verify() == []


def test_studies_load_the_dataset_once(tiny_run_copy, monkeypatch):
    import modescape.studies.context as context
    from modescape.store.run import Run
    from modescape.studies.analysis import analyze_run

    calls = []
    load = Run.dataset
    monkeypatch.setattr(Run, "dataset", lambda self, **kw: calls.append(1) or load(self, **kw))
    monkeypatch.setattr(context, "_LAST_DATASET", None)
    ctx = RunContext(tiny_run_copy)
    analyze_run(ctx)
    run_landscape(ctx, LandscapeConfig(resolution=3, n_path_points=3, align=False))
    run_shift(tiny_run_copy, ShiftConfig(corruptions=("translation",), severities=(2,)))
    assert len(calls) == 1


def test_subspace_calibrated_scales_recorded_cached_and_keyed(tiny_run_copy):
    cfg = SubspaceConfig(methods=("random", "diagonal"), n_samples=6, n_snapshots=3, rank=2)
    assert cfg.mode == "calibrated"
    summary = run_subspace(tiny_run_copy, cfg, **quiet)
    assert summary.mode == "calibrated" and "training examples" in summary.calibration_data
    assert [(c.method, c.member) for c in summary.calibration] == [
        (m, i) for m in ("random", "diagonal") for i in (0, 1, 2)
    ]
    run = load_run(tiny_run_copy)
    labels = run.labels("test")
    for c in summary.calibration:
        # The configured starting scale is the notebook's ensembling one; calibration moves it.
        assert c.scale > 0 and c.scale != cfg.scale(c.method) and c.reached
        assert c.probe_accuracy <= c.target_accuracy < c.reference_accuracy
        # The samples on disk are those drawn at the recorded scale.
        again = subspace_samples(
            run, cfg, c.method, c.member, scale=summary.scale(c.method, c.member)
        )
        plain = subspace_samples(run, cfg, c.method, c.member)
        assert not torch.equal(again, plain)
    # Samples at t·scale with t ~ U(0,1) stratified: some near the reference, some far below.
    for c in summary.calibration:
        probs = load_npy(tiny_run_copy / f"subspace/preds/{c.method}/m{c.member:03d}.npy")
        acc = (probs.argmax(-1) == labels).mean(1)
        ref = run.metrics(c.member)[-1].test_acc
        assert acc.max() > acc.min() + 0.05, (c.method, c.member, acc)
        assert acc.max() >= ref - 0.1
    read_back = read_json(tiny_run_copy / "subspace/summary.json")
    assert read_back["calibration"][0]["scale"] == summary.calibration[0].scale
    assert read_back["mode"] == "calibrated"
    # Unchanged settings: nothing is calibrated or drawn again.
    cal = tiny_run_copy / "subspace/preds/random/m000.calibration.json"
    before = cal.stat().st_mtime_ns
    assert run_subspace(tiny_run_copy, cfg, **quiet).calibration == summary.calibration
    assert cal.stat().st_mtime_ns == before
    # A changed target drop calibrates again, to a smaller scale (a smaller drop).
    smaller = run_subspace(tiny_run_copy, replace(cfg, target_drop=0.1), **quiet)
    assert cal.stat().st_mtime_ns != before
    for c_big, c_small in zip(summary.calibration, smaller.calibration):
        assert c_small.scale < c_big.scale, (c_big.method, c_big.member)


def test_subspace_plane_every_member_as_reference(tiny_run_copy):
    cfg = SubspaceConfig(methods=("random",), n_samples=4, n_snapshots=3, rank=2, mode="paper")
    summary = run_subspace(tiny_run_copy, cfg, **quiet)
    assert set(summary.every_reference) == {"sample", "reference"}
    run = load_run(tiny_run_copy)
    labels = run.labels("test")
    finals = run.final_predictions("test", [0, 1, 2])
    acc = (finals.argmax(-1) == labels).mean(1)
    for norm, sweeps in summary.every_reference.items():
        assert set(sweeps) == {"independent", "random"} and sweeps["random"].sample_best
        s = sweeps["independent"]
        assert s.normalisation == norm and s.reference_acc == pytest.approx(acc.tolist())
        # Recompute one pair by hand: member 2 against reference 0.
        d = float((finals[2].argmax(-1) != finals[0].argmax(-1)).mean())
        err = 1 - acc[2] if norm == "sample" else 1 - acc[0]
        assert s.pairs[0][2] == pytest.approx(d / err)
        assert s.pairs[0][0] is None  # the diagonal: no pair
        per_ref = [np.mean([x for x in row if x is not None]) for row in s.pairs]
        assert s.mean == pytest.approx(np.mean(per_ref)) and s.std == pytest.approx(np.std(per_ref))
    # Member 0's plane (the figure's cloud) is kept beside the sweep.
    assert summary.reference == 0 and summary.plane["random"].normalisation == "sample"
    read_back = read_json(tiny_run_copy / "subspace/summary.json")
    assert read_back["every_reference"]["reference"]["independent"]["mean"] == pytest.approx(
        summary.every_reference["reference"]["independent"].mean
    )
