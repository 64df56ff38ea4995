import json

import pytest
from conftest import cli

from modescape.store.run import load_run


def test_info_table_and_json(tiny_run):
    code, out, _ = cli("info", str(tiny_run))
    assert code == 0 and "finished" in out and "smallcnn" in out
    code, out, _ = cli("info", str(tiny_run), "--json")
    summary = json.loads(out)
    assert [m["state"] for m in summary["members"]] == ["finished"] * 3
    assert summary["members"][0]["seed"] == load_run(tiny_run).manifest["seeds"]["member_0"]
    assert summary["problems"] == []


def test_models_lists_spec_counts():
    code, out, _ = cli("models", "--data", "cifar10", "--json")
    counts = {(r["arch"], r["variant"]): r["params"] for r in json.loads(out)}
    assert counts[("smallcnn", "paper")] == 19_466
    assert counts[("mediumcnn", "seed")] == 245_290
    code, out, _ = cli("models")
    assert code == 0 and "input (1, 40)" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "imagenet"], "invalid choice"),
        (["train", "--members", "0", "--out", "{tmp}/x"], "members must be >= 1"),
        (["train", "--epochs", "-3", "--out", "{tmp}/x"], "epochs must be >= 0"),
        (["train", "--set", "train.nope=1", "--out", "{tmp}/x"], "unknown config key"),
        (["train", "--config", "{tmp}/missing.json"], "config file not found"),
        (["train", "--data", "cifar10", "--root", "{tmp}/nowhere", "--out", "{tmp}/x"], "nowhere"),
        (["train", "--member", "7", "--members", "2", "--out", "{tmp}/x"], "out of range"),
        (["info", "{tmp}/norun"], "not found"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = cli(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("*.safetensors"))


def test_corrupt_snapshot_is_reported_not_crashed(tiny_run_copy):
    snap = tiny_run_copy / "members/m000/snapshots/e0004.safetensors"
    snap.write_bytes(b"\x00" * 10)
    code, out, _ = cli("info", str(tiny_run_copy))
    assert code == 1 and "checksum mismatch members/m000/snapshots/e0004.safetensors" in out
    from modescape.errors import ModescapeError

    with pytest.raises(ModescapeError, match="corrupt safetensors"):
        load_run(tiny_run_copy, trust=True).state_dict(0)


def test_pickled_npy_is_refused(tiny_run_copy):
    import numpy as np

    from modescape.errors import ModescapeError

    f = tiny_run_copy / "members/m000/preds/test/e0004.npy"
    np.save(f, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModescapeError, match="unsafe"):
        load_run(tiny_run_copy, trust=True).predictions("test", 0)


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "modescape", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "train" in r.stdout and "examples:" in r.stdout


def test_shards_and_status_through_the_cli(tmp_path, tiny_run):
    from conftest import snapshot_bytes

    out = tmp_path / "sharded"
    common = ["--members", "3", "--epochs", "4", "--set", "data.mnist1d_samples=1000"]
    common += ["--set", "train.batch_size=64", "--out", str(out)]
    code, stdout, err = cli("train", *common, "--shard", "1/2")
    assert code == 0, err
    code, stdout, _ = cli("status", str(out))
    assert code == 0
    states = {line.split()[0]: line for line in stdout.splitlines() if line.strip()[:1].isdigit()}
    assert "finished" in states["1"] and "pending" in states["0"] and "pending" in states["2"]
    code, _, err = cli("analyze", str(out))
    assert code == 2 and "incomplete" in err and "--partial" in err
    assert cli("train", *common, "--shard", "0/2")[0] == 0
    assert snapshot_bytes(out) == snapshot_bytes(tiny_run)
    code, _, err = cli("train", *common, "--shard", "2/2")
    assert code == 2 and "0 <= i < n" in err


@pytest.mark.slow
@pytest.mark.parametrize("members, epochs", [(1, 3), (2, 1)])
def test_run_adapts_to_short_and_single_member_runs(tmp_path, members, epochs):
    out = tmp_path / "short"
    code, _, err = cli(
        "run", "--members", str(members), "--epochs", str(epochs),
        "--set", "data.mnist1d_samples=500", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert (out / "report/index.html").exists()
    assert load_run(out).verify() == []


def test_train_from_a_config_file_with_overrides(tmp_path, tiny_run):
    from conftest import snapshot_bytes, tiny_config

    from modescape.store.run import load_run

    f = tmp_path / "run.json"
    f.write_text(tiny_config(members=1).to_json())
    out = tmp_path / "fromfile"
    code, _, err = cli("train", "--config", str(f), "--set", "members=3", "--out", str(out))
    assert code == 0, err
    assert load_run(out).config == tiny_config()
    assert snapshot_bytes(out) == snapshot_bytes(tiny_run)
