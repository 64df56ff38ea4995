import numpy as np
import pytest
import torch

from modescape.analysis.subspace import SubspaceConfig
from modescape.errors import ModescapeError
from modescape.store.files import load_npy, read_csv, read_json, sha256_file
from modescape.store.run import load_run
from modescape.store.schema import LATE_WINDOW, AnalysisSummary
from modescape.studies.analysis import AnalysisConfig, analyze_run
from modescape.studies.shift import ShiftConfig, run_shift
from modescape.studies.subspace import run_subspace


@pytest.fixture(scope="module")
def analysed(tiny_run, tmp_path_factory):
    import shutil

    dst = tmp_path_factory.mktemp("analysed") / "run"
    shutil.copytree(tiny_run, dst)
    summary = analyze_run(dst)
    return dst, summary


def test_matrices_match_direct_computation(analysed):
    path, _ = analysed
    run = load_run(path)
    rows = read_csv(path / "analysis/index.csv")
    cos = load_npy(path / "analysis/weights/cosine.npy")
    dis = load_npy(path / "analysis/functions/disagreement.npy")
    assert cos.shape == dis.shape == (15, 15)
    i, j = 4, 7  # member 0 epoch 4 vs member 1 epoch 2
    (mi, ei), (mj, ej) = [(int(rows[k]["member"]), int(rows[k]["epoch"])) for k in (i, j)]
    assert (mi, ei, mj, ej) == (0, 4, 1, 2)
    a = torch.cat([v.flatten().double() for v in run.state_dict(mi, ei).values()])
    b = torch.cat([v.flatten().double() for v in run.state_dict(mj, ej).values()])
    assert cos[i, j] == pytest.approx(float(a @ b / (a.norm() * b.norm())), abs=1e-12)
    pa = run.predictions("test", mi, ei).argmax(1)
    pb = run.predictions("test", mj, ej).argmax(1)
    assert dis[i, j] == pytest.approx(np.mean(pa != pb))
    np.testing.assert_allclose(np.diag(cos), 1.0)
    np.testing.assert_allclose(dis, dis.T)


def test_summary_and_checksums(analysed):
    path, summary = analysed
    stored = read_json(path / "analysis/summary.json")
    assert summary.to_dict() == stored
    assert AnalysisSummary.from_dict(stored) == summary  # one type writes and reads it
    for rel, digest in summary.files.items():
        assert sha256_file(path / "analysis" / rel) == digest
    run = load_run(path)
    accs = [run.metrics(m)[-1].test_acc for m in run.members]
    assert summary.single["accuracy"] == pytest.approx(np.mean(accs))
    assert summary.parameters.count == sum(p.numel() for p in run.build_model().parameters())


def test_ensemble_curve_csv_size_one_is_mean_single(analysed):
    path, summary = analysed
    rows = read_csv(path / "analysis/ensembles/curves.csv")
    deep1 = [r for r in rows if r["family"] == "deep" and r["size"] == "1"]
    acc = next(float(r["mean"]) for r in deep1 if r["metric"] == "accuracy")
    assert acc == pytest.approx(summary.single["accuracy"])
    families = {r["family"] for r in rows}
    assert families == {"deep", "snapshot", "weight_average"}


def test_weight_average_is_evaluated_average(analysed):
    path, summary = analysed
    run = load_run(path)
    window = summary.weight_average.epochs_averaged
    sds = [run.state_dict(1, e) for e in window]
    model = run.build_model()
    model.load_state_dict({k: torch.stack([sd[k] for sd in sds]).mean(0) for k in sds[0]})
    with torch.no_grad():
        probs = torch.softmax(model.eval()(run.dataset().x_test), 1).numpy()
    wa = load_npy(path / "analysis/ensembles/weight_average.npy")
    np.testing.assert_allclose(wa[1], probs, atol=1e-5)


def test_trajectory_embeddings_cover_every_snapshot(analysed):
    path, summary = analysed
    for method in ("tsne", "pca"):
        rows = read_csv(path / f"analysis/trajectories/{method}.csv")
        assert len(rows) == 15
        assert {(int(r["member"]), int(r["epoch"])) for r in rows} == {
            (m, e) for m in range(3) for e in range(5)
        }
    assert summary.embeddings["tsne"]["perplexity"] < 15  # clamped below the point count


def test_incomplete_run_is_named(tiny_run_copy):
    import json

    f = tiny_run_copy / "members/m002/member.json"
    info = json.loads(f.read_text())
    info["state"] = "running"
    f.write_text(json.dumps(info))
    from modescape.store.files import sha256_file
    from modescape.store.manifest import record_files

    record_files(tiny_run_copy, {"members/m002/member.json": sha256_file(f)})  # edits verify
    with pytest.raises(ModescapeError, match=r"incomplete.*m2: running.*--partial"):
        analyze_run(tiny_run_copy)
    summary = analyze_run(tiny_run_copy, allow_partial=True)
    assert summary.members == [0, 1]


def test_bad_analysis_settings():
    with pytest.raises(ModescapeError, match="allowed: all, kernels_bn, no_bn_bias"):
        AnalysisConfig(params="biases")


def test_analysis_files_are_recorded_in_the_manifest(analysed, tmp_path):
    import shutil

    path, summary = tmp_path / "run", analysed[1]
    shutil.copytree(analysed[0], path)
    manifest = load_run(path).manifest.files
    assert "analysis/summary.json" in manifest
    assert all(f"analysis/{rel}" in manifest for rel in summary.files)
    assert load_run(path).verify() == []
    (path / "analysis/weights/cosine.npy").write_bytes(b"tampered")
    assert load_run(path).verify() == ["checksum mismatch analysis/weights/cosine.npy"]


def test_short_run_clamps_every_window_with_a_warning(tmp_path):
    """3 epochs: the late window (10) and the weight average (10) would reach back to the first
    epoch; both are cut to the later half of the trajectory and the summary says so."""
    from conftest import tiny_config

    from modescape.training.trainer import train

    train(tiny_config(members=2, epochs=3), tmp_path / "run")
    summary = analyze_run(tmp_path / "run")
    assert AnalysisConfig().late == LATE_WINDOW == 10
    assert summary.disagreement.late_window == 2
    assert summary.weight_average.epochs_averaged == [3]
    assert len(summary.warnings) == 2
    late, average = summary.warnings
    assert "late window" in late and "last 10 snapshots" in late and "last 2" in late
    assert "weight average" in average and "last 1" in average
    assert read_json(tmp_path / "run/analysis/summary.json")["warnings"] == summary.warnings

    cfg = SubspaceConfig(methods=("random",), n_samples=2, n_snapshots=2, rank=1)
    sub = run_subspace(tmp_path / "run", cfg)
    assert sub.late_window == 2 and sub.weight_average.epochs_averaged == [3]
    assert [w.split(":")[0] for w in sub.warnings] == ["late window", "weight average"]
    noise = ShiftConfig(corruptions=("gaussian_noise",), severities=(1,))
    shift = run_shift(tmp_path / "run", noise)
    assert shift.late_window == 2 and shift.families["late_snapshots_member0"] == 2
    assert [w.split(":")[0] for w in shift.warnings] == ["late window", "weight average"]


def test_run_accessors_return_the_typed_summaries(analysed):
    path, summary = analysed
    run = load_run(path)
    assert run.analysis == summary
    assert run.analysis.disagreement.late_window == summary.disagreement.late_window
    with pytest.raises(ModescapeError, match="modescape subspace"):
        _ = run.subspace
