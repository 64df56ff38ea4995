"""Every error path of every subcommand: one line on stderr, exit status 2, nothing written.

The table covers argparse's own errors (unknown choice, bad integer, missing argument, unknown
flag), empty names and paths, values out of their documented range and files that are not what
they claim, over all subcommands, run on a copy of a finished run and in an empty folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import cli

R = "{run}"  # a copy of a finished run
T = "{tmp}"  # an empty working folder
BAD_ARGS = [
    # train / run / import / export: the run config and how it is launched
    ["train", "--data", "imagenet"],
    ["train", "--members", "ten", "--out", "{tmp}/x"],
    ["train", "--members", "99999999999999999999", "--out", "{tmp}/x"],
    ["train", "--members", "1000000000", "--out", "{tmp}/x"],
    ["train", "--epochs", "1000000000000000", "--out", "{tmp}/x"],
    ["train", "--seed", "-1", "--out", "{tmp}/x"],
    ["train", "--set", "data.mnist1d_samples=10000000000", "--out", "{tmp}/x"],
    ["train", "--set", "train.batch_size=100000000", "--out", "{tmp}/x"],
    ["train", "--set", "train.lr=1e300", "--out", "{tmp}/x"],
    ["train", "--set", "train.recipe=bogus", "--out", "{tmp}/x"],
    ["train", "--set", "members=" + "9" * 5000, "--out", "{tmp}/x"],
    ["train", "--set", "train.lr_milestones=" + "[" * 100_000, "--out", "{tmp}/x"],
    ["train", "--arch", "", "--out", "{tmp}/x"],
    ["train", "--arch", "builtins:eval", "--out", "{tmp}/x"],
    ["train", "--arch", "os.path:join", "--out", "{tmp}/x"],
    ["train", "--out", ""],
    ["train", "--root", "", "--data", "cifar10", "--out", "{tmp}/x"],
    ["train", "--config", "{tmp}/deep.json", "--out", "{tmp}/x"],
    ["train", "--config", "{tmp}/digits.json", "--out", "{tmp}/x"],
    ["train", "--workers", "100000", "--out", "{tmp}/x"],
    ["train", "--executor", "slurm", "--time", "0", "--out", "{tmp}/x"],
    ["train", "--executor", "slurm", "--mem-gb", "nan", "--out", "{tmp}/x"],
    ["train", "--bogus-flag"],
    ["run", "--recipe", "nope", "--out", "{tmp}/x"],
    ["run", "--members", "0", "--out", "{tmp}/x"],
    ["run", "--out", ""],
    ["import", "{tmp}", "--out", ""],
    ["import", "{tmp}"],
    ["export", "{run}"],
    ["export", "{run}", "--to", "neptune"],
    # the studies
    ["analyze", "{run}", "--split", "nope"],
    ["analyze", "{run}", "--late", "x"],
    ["analyze", ""],
    ["subspace", "{run}", "--samples", "100000000"],
    ["subspace", "{run}", "--reference", "-1"],
    ["landscape", "{run}", "--anchors", "m0,m0,m0"],
    ["landscape", "{run}", "--grid", "100000"],
    ["landscape", "{run}", "--bn-policy", "nope"],
    ["shift", "{run}", "--corruptions", ""],
    ["shift", "{run}", "--severities", "1-1000000000"],
    ["shift", "{run}", "--cifar10c", "{tmp}"],
    ["spawn", "{run}", "--at", "1", "--children", "1000000000"],
    ["spawn", "{run}", "--at", "1", "--out", ""],
    # the readers
    ["report"],
    ["report", "{tmp}/norun"],
    ["compare", "{run}"],
    ["compare", "{run}", "{tmp}/norun", "--out", "{tmp}/cmp"],
    ["status", "{tmp}/norun"],
    ["verify", "{tmp}/norun"],
    ["verify", ""],
    ["info", "{tmp}/norun"],
    ["models", "--data", "nope"],
    ["nosuchcommand"],
    ["--bogus-global"],
]


def _tree(*roots: Path) -> dict[str, int]:
    return {
        str(p): p.stat().st_size for root in roots for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def error_table_dirs(tiny_run, tmp_path_factory):
    import shutil

    base = tmp_path_factory.mktemp("errors")
    run = base / "run"
    shutil.copytree(tiny_run, run)
    work = base / "work"
    work.mkdir()
    (work / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (work / "digits.json").write_text('{"members": ' + "9" * 5000 + "}")
    return run, work


@pytest.mark.parametrize("argv", BAD_ARGS, ids=[" ".join(a)[:60] or "''" for a in BAD_ARGS])
def test_every_error_is_one_line_on_stderr_and_writes_nothing(error_table_dirs, argv, monkeypatch):
    run, work = error_table_dirs
    monkeypatch.setenv("PATH", "/nonexistent")  # no sbatch: the SLURM cases must refuse early
    before = _tree(run, work)
    args = [a.replace(R, str(run)).replace(T, str(work)) for a in argv]
    monkeypatch.chdir(work)  # a default output folder would land here
    code, out, err = cli(*args)
    assert code == 2, (code, out, err)
    assert err.startswith("modescape: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == "", (out, err)
    assert _tree(run, work) == before
    assert sorted(os.listdir(work)) == ["deep.json", "digits.json"]


def test_bare_command_prints_help_on_stdout_and_one_line_on_stderr():
    code, out, err = cli()
    assert code == 2
    assert "usage: modescape" in out and "COMMAND" in out
    assert err == "modescape: error: no command given (see modescape --help)\n"
