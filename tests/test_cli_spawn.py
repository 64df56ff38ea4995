"""`modescape spawn`: one library call; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import pytest
from conftest import cli

from modescape.store.run import load_run


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--member", "9"], "--member 9 is not a member"),
        (["--at", "5"], "spawn point 5 is outside training"),
        (["--at", "one"], "--at takes epochs separated by commas"),
        (["--children", "0"], "--children must be >= 1"),
        (["--alphas", "1"], "alphas"),
    ],
)
def test_bad_input(spawn_parent, tmp_path, flags, message):
    out = tmp_path / "kids"
    code, _, err = cli("spawn", str(spawn_parent), "--out", str(out), *flags)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_budget_then_spawn_and_measure(spawn_parent, tmp_path):
    out = tmp_path / "kids"
    args = ("spawn", str(spawn_parent), "--at", "4", "--children", "2", "--out", str(out))
    code, stdout, _ = cli(*args, "--budget")
    assert code == 0 and not out.exists()
    assert [line.split()[0] for line in stdout.splitlines()[1:4]] == [
        "replay", "children", "instability",
    ]  # fmt: skip
    code, stdout, _ = cli(*args, "--examples", "200", "--device", "cpu")
    assert code == 0 and "spawned 2 children" in stdout and "error barrier" in stdout
    run = load_run(out)
    assert run.study("instability").settings["examples"] == 200
    page = (out / "report" / "index.html").read_text()
    assert 'id="instability"' in page and (out / "report/figures/instability.csv").exists()
    code, _, err = cli("compare", str(out), str(out), "--out", str(tmp_path / "cmp"))
    assert code == 0, err
    cmp = (tmp_path / "cmp" / "index.html").read_text()
    assert "Spawned children" in cmp and "spawn: onset of stability" in cmp
