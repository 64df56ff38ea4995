import numpy as np
import pytest
import torch

from modescape.errors import ModescapeError
from modescape.store.files import load_npy, read_csv, read_json, sha256_file
from modescape.store.run import load_run
from modescape.studies.weights_functions import AnalysisConfig, analyze_run


@pytest.fixture(scope="module")
def analysed(tiny_run, tmp_path_factory):
    import shutil

    dst = tmp_path_factory.mktemp("analysed") / "run"
    shutil.copytree(tiny_run, dst)
    summary = analyze_run(dst, log=lambda _: None)
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
    assert summary == read_json(path / "analysis/summary.json")
    for rel, digest in summary["files"].items():
        assert sha256_file(path / "analysis" / rel) == digest
    run = load_run(path)
    accs = [run.metrics(m)[-1]["test_acc"] for m in run.members]
    assert summary["single"]["accuracy"] == pytest.approx(np.mean(accs))
    assert summary["parameters"]["count"] == sum(p.numel() for p in run.build_model().parameters())


def test_ensemble_curve_csv_size_one_is_mean_single(analysed):
    path, summary = analysed
    rows = read_csv(path / "analysis/ensembles/curves.csv")
    deep1 = [r for r in rows if r["family"] == "deep" and r["size"] == "1"]
    acc = next(float(r["mean"]) for r in deep1 if r["metric"] == "accuracy")
    assert acc == pytest.approx(summary["single"]["accuracy"])
    families = {r["family"] for r in rows}
    assert families == {"deep", "snapshot", "weight_average"}


def test_weight_average_is_evaluated_average(analysed):
    path, summary = analysed
    run = load_run(path)
    window = summary["weight_average"]["epochs_averaged"]
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
    assert summary["embeddings"]["tsne"]["perplexity"] < 15  # clamped below the point count


def test_incomplete_run_is_named(tiny_run_copy):
    import json

    f = tiny_run_copy / "members/m002/member.json"
    info = json.loads(f.read_text())
    info["state"] = "running"
    f.write_text(json.dumps(info))
    from modescape.store.files import sha256_file
    from modescape.store.run import record_files

    record_files(tiny_run_copy, {"members/m002/member.json": sha256_file(f)})  # edits verify
    with pytest.raises(ModescapeError, match=r"incomplete.*m2: running.*--partial"):
        analyze_run(tiny_run_copy, log=lambda _: None)
    summary = analyze_run(tiny_run_copy, allow_partial=True, log=lambda _: None)
    assert summary["members"] == [0, 1]


def test_bad_analysis_settings():
    with pytest.raises(ModescapeError, match="allowed: all, kernels_bn, no_bn_bias"):
        AnalysisConfig(params="biases")


def test_analysis_files_are_recorded_in_the_manifest(analysed, tmp_path):
    import shutil

    path, summary = tmp_path / "run", analysed[1]
    shutil.copytree(analysed[0], path)
    manifest = load_run(path).manifest["files"]
    assert "analysis/summary.json" in manifest
    assert all(f"analysis/{rel}" in manifest for rel in summary["files"])
    assert load_run(path).verify() == []
    (path / "analysis/weights/cosine.npy").write_bytes(b"tampered")
    assert load_run(path).verify() == ["checksum mismatch analysis/weights/cosine.npy"]
