import json

import pytest
from conftest import cli

from modescape.config import RunConfig
from modescape.store.run import load_run


def test_info_table_and_json(tiny_run):
    code, out, _ = cli("info", str(tiny_run))
    assert code == 0 and "finished" in out and "smallcnn" in out
    code, out, _ = cli("info", str(tiny_run), "--json")
    summary = json.loads(out)
    assert [m["state"] for m in summary["members"]] == ["finished"] * 3
    assert summary["members"][0]["seed"] == load_run(tiny_run).manifest.seeds["member_0"]
    assert summary["problems"] == []


def test_models_lists_spec_counts():
    code, out, _ = cli("models", "--data", "cifar10", "--json")
    counts = {(r["arch"], r["variant"]): r["params"] for r in json.loads(out)}
    assert counts[("smallcnn", "paper")] == 19_466
    assert counts[("mediumcnn", "seed")] == 245_290
    code, out, _ = cli("models")
    assert code == 0 and "input (1, 40)" in out


def test_align_spec_of_an_architecture_is_the_spec_alignment_uses():
    from modescape.models.architectures import build_model
    from modescape.models.specs import permutation_spec, spec_from_json

    code, out, err = cli("align-spec", "--arch", "resnet20", "--data", "cifar10")
    assert code == 0, err
    state = build_model("resnet20", "paper", (3, 32, 32), 10).state_dict()
    assert spec_from_json(json.loads(out), state) == permutation_spec(state, "resnet20")
    code, _, err = cli("align-spec")
    assert code == 2 and "needs a run directory or --arch" in err


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
    # "auto" precision is recorded as what it resolved to (1-D signals: fp32)
    assert load_run(out).config == tiny_config(**{"train.precision": "fp32"})
    assert snapshot_bytes(out) == snapshot_bytes(tiny_run)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--config", "{tmp}", "--out", "{tmp}/x"], "is a directory"),
        (["train", "--config", "{tmp}/c.json", "--recipe", "seed", "--out", "{tmp}/x"], "--recipe"),
        (["train", "--set", "train.lr=NaN", "--out", "{tmp}/x"], "train.lr must be a finite"),
        (["train", "--set", "train.lr=Infinity", "--out", "{tmp}/x"], "train.lr must be a finite"),
        (["train", "--seed", "-1", "--out", "{tmp}/x"], "seed must be >= 0"),
        (["train", "--workers", "0", "--out", "{tmp}/x"], "--workers must be >= 1"),
        (["train", "--device", "tpu", "--out", "{tmp}/x"], "unknown device 'tpu'"),
        (["analyze", "{tmp}/norun", "--seed", "-1"], "--seed must be >= 0, got -1"),
        (["analyze", "{tmp}/norun", "--late", "-2"], "--late must be >= 0"),
        (["landscape", "{tmp}/norun", "--margin", "nan"], "--margin must be a finite number"),
        (["landscape", "{tmp}/norun", "--path", "m0"], "--path needs two anchors"),
        (["shift", "{tmp}/norun", "--max-examples", "-5"], "--max-examples must be >= 0"),
        (["subspace", "{tmp}/norun", "--reference", "-1"], "--reference must be >= 0"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(tmp_path, args, message):
    (tmp_path / "c.json").write_text(RunConfig().to_json())
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert err.startswith("modescape: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_recipe_applies_without_config(tmp_path):
    from modescape.cli import build_parser, resolve_config

    args = build_parser().parse_args(["train", "--recipe", "seed", "--epochs", "2"])
    cfg = resolve_config(args)
    assert cfg.train.recipe == "seed" and cfg.train.lr_milestones == (9, 19, 29)
    assert cfg.train.epochs == 2


def test_study_flags_default_to_the_study_configs():
    """Parsing a study command with no flag gives exactly the dataclass defaults, and every
    scalar field of every study config has a flag."""
    import dataclasses

    from modescape.cli import build_parser
    from modescape.cli_flags import config_from_args
    from modescape.registry import studies

    parser = build_parser()
    for command, cls, flags in [(s.cli, s.get("settings"), s.cli_flags()) for s in studies()]:
        args = parser.parse_args([command, "RUN"])
        assert config_from_args(cls, args, flags) == cls(), command
        exposed = {f.name for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        assert exposed == {f.name for f in dataclasses.fields(cls)}, command


def test_study_flags_reach_the_config():
    from modescape.cli import build_parser
    from modescape.cli_flags import config_from_args
    from modescape.studies.landscape import CLI_FLAGS as LANDSCAPE_FLAGS
    from modescape.studies.landscape import LandscapeConfig
    from modescape.studies.shift import CLI_FLAGS as SHIFT_FLAGS
    from modescape.studies.shift import ShiftConfig

    parser = build_parser()
    args = parser.parse_args(
        ["landscape", "R", "--grid", "5", "--no-align", "--bn-policy", "keep",
         "--anchors", "origin,m0,m2", "--path", "m0,m1", "--path", "m0@e2,m0"]
    )  # fmt: skip
    cfg = config_from_args(LandscapeConfig, args, LANDSCAPE_FLAGS)
    assert (cfg.resolution, cfg.align, cfg.bn_policy) == (5, False, "keep")
    assert cfg.planes == (("origin", "m0", "m2"),)
    assert cfg.paths == (("m0", "m1"), ("m0@e2", "m0"))
    args = parser.parse_args(["shift", "R", "--severities", "2-3", "--corruptions", "a,b"])
    cfg = config_from_args(ShiftConfig, args, SHIFT_FLAGS)
    assert cfg.severities == (2, 3) and cfg.corruptions == ("a", "b")


def test_quiet_and_verbose_set_the_one_handler():
    import io
    import logging

    from modescape.cli import build_parser, setup_logging

    parser = build_parser()
    assert parser.parse_args(["-q", "info", "R"]).verbosity == -1
    assert parser.parse_args(["info", "R", "--verbose"]).verbosity == 1
    assert parser.parse_args(["info", "R"]).verbosity == 0
    logger = logging.getLogger("modescape.pipeline")
    seen = {}
    for verbosity in (-1, 0, 1):
        stream = io.StringIO()
        setup_logging(verbosity, stream)
        logger.debug("debug line")
        logger.info("info line")
        logger.warning("warning line")
        seen[verbosity] = stream.getvalue().splitlines()
    assert seen[-1] == ["warning line"]
    assert seen[0] == ["info line", "warning line"]
    assert seen[1] == ["debug line", "info line", "warning line"]
    ours = [h for h in logging.getLogger("modescape").handlers if getattr(h, "_modescape_cli", 0)]
    assert len(ours) == 1  # replaced on every call, never stacked


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from modescape.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stderr.strip() == "False" and "analyze" in r.stdout


def test_os_errors_are_one_line_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    small = ["--epochs", "1", "--set", "data.mnist1d_samples=200"]
    code, _, err = cli("train", *small, "--out", str(blocker / "run"))
    assert code == 2 and "Traceback" not in err
    assert err.startswith("modescape: error: ") and str(blocker) in err
    assert err.count("\n") == 1


def test_a_flag_for_a_missing_field_is_a_bug_caught_at_build_time():
    import argparse
    from dataclasses import dataclass

    from modescape.cli_flags import add_dataclass_flags
    from modescape.registry import Flag

    @dataclass(frozen=True)
    class Settings:
        grid: int = 3

    with pytest.raises(TypeError, match="resolution"):
        add_dataclass_flags(argparse.ArgumentParser(), Settings, {"resolution": Flag("--grid")})


def test_status_says_when_a_members_record_is_lost(tiny_run_copy):
    code, out, _ = cli("status", str(tiny_run_copy))
    assert code == 0 and "missing" not in out
    (tiny_run_copy / "members/m001/member.json").unlink()
    code, out, err = cli("status", str(tiny_run_copy))
    assert code == 1, (out, err)
    assert "member.json of member(s) 1 is missing" in out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["1"])
    assert "interrupted" in row and "member.json was lost" in row
