"""The real W&B (offline) and MLflow (SQLite) packages: configured by their own environment
variables and --track-option, exports idempotent, library errors one line."""

from __future__ import annotations

import pytest

from modescape.store.run import load_run
from modescape.training.tracker_backends import scalars
from tests.conftest import cli


def test_wandb_offline_follows_its_environment_and_exports_once(tiny_run_copy, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    pytest.importorskip("wandb")
    wdir = tmp_path / "wb"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wdir))
    monkeypatch.setenv("WANDB_PROJECT", "proj-from-env")
    monkeypatch.setenv("WANDB_SILENT", "true")
    code, _, err = cli("-q", "export", str(tiny_run_copy), "--to", "wandb")
    assert code == 0, err
    runs = sorted((wdir / "wandb").glob("offline-run-*"))
    members = load_run(tiny_run_copy).members
    assert len(runs) == len(members)
    assert all(any(f"m{m:03d}" in r.name for r in runs) for m in members)
    # the project named by WANDB_PROJECT is in each run's record
    assert all(b"proj-from-env" in next(r.glob("*.wandb")).read_bytes() for r in runs)
    code, _, err = cli("-q", "export", str(tiny_run_copy), "--to", "wandb")
    assert code == 0, err
    assert sorted((wdir / "wandb").glob("offline-run-*")) == runs  # nothing exported twice
    assert not (tiny_run_copy / "tracking" / "wandb").exists()  # WANDB_DIR was honoured


def _mlflow_runs(uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([exp.experiment_id]) if exp else [])


def test_mlflow_sqlite_follows_its_environment_and_exports_once(tiny_run_copy, tmp_path,
                                                                monkeypatch):  # fmt: skip
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "exp-from-env")
    for _ in range(2):  # the second export finds every member there and adds nothing
        code, _, err = cli("-q", "export", str(tiny_run_copy), "--to", "mlflow")
        assert code == 0, err
        client, runs = _mlflow_runs(uri, "exp-from-env")
        run = load_run(tiny_run_copy)
        assert sorted(r.info.run_name for r in runs) == [f"m{m:03d}" for m in run.members]
        for r in runs:
            records = run.metrics(int(r.data.tags["modescape.member"]))
            history = client.get_metric_history(r.info.run_id, "test_acc")
            assert [h.step for h in history] == [rec.epoch for rec in records]
            assert [h.value for h in history] == pytest.approx(
                [scalars(rec.to_dict())["test_acc"] for rec in records], rel=1e-6
            )
            assert r.data.params["seed"] == str(run.config.seed)
    # --track-option wins over the environment
    code, _, err = cli("-q", "export", str(tiny_run_copy), "--to", "mlflow",
                       "--track-option", "experiment=exp-option")  # fmt: skip
    assert code == 0, err
    assert len(_mlflow_runs(uri, "exp-option")[1]) == len(run.members)


def test_a_tracker_library_error_is_one_line(tiny_run_copy, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    code, _, err = cli("export", str(tiny_run_copy), "--to", "mlflow")
    assert code == 2 and "mlflow tracker failed" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_training_tracked_by_mlflow_keeps_everything_in_the_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from tests.conftest import tiny_config

    for env in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(env, raising=False)
    cfg = tiny_config(members=1, epochs=2, **{"data.mnist1d_samples": 400})
    (tmp_path / "c.json").write_text(cfg.to_json())
    out = tmp_path / "tracked"
    code, _, err = cli("-q", "train", "--config", str(tmp_path / "c.json"), "--out", str(out),
                       "--track", "mlflow")  # fmt: skip
    assert code == 0, err
    client, runs = _mlflow_runs(f"sqlite:///{out / 'tracking' / 'mlflow.db'}", "tracked")
    assert [r.info.status for r in runs] == ["FINISHED"]
    history = client.get_metric_history(runs[0].info.run_id, "test_acc")
    assert [h.step for h in history] == [r.epoch for r in load_run(out).metrics(0)] == [0, 1, 2]
    assert not load_run(out).verify()
    assert not list(tmp_path.glob("mlruns")) and not list(tmp_path.parent.glob("mlruns"))
