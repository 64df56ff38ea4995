"""The study registry: a study declared once appears in `modescape run`, `--budget`, its own
subcommand, `info`, the provenance table and the report, without any other module naming it.

The fixture study ("params", counting each member's parameters) lives in this file and is
registered only for the test that uses it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from conftest import cli, tiny_config

from modescape import registry
from modescape.codec import Record
from modescape.errors import ModescapeError
from modescape.registry import Flag, Page, Study, register_study, studies, study


# ---- the fixture study: everything a study declares, in one place -----------------------------
@dataclass(frozen=True)
class ParamsConfig:
    trainable_only: bool = True
    scale: int = 1  # counts are multiplied by this (a settings field the CLI must expose)


@dataclass
class ParamsSummary(Record):  # to_dict / from_dict through the one codec
    config: dict[str, Any]
    members: list[int]
    counts: list[int]
    elapsed_s: float | None = None
    files: dict[str, str] = field(default_factory=dict)


def run_params(path: Any, config: ParamsConfig | None = None, *, allow_partial: bool = False):
    from modescape.store.manifest import write_study_summary
    from modescape.store.run import load_run

    start = time.perf_counter()
    config = config or ParamsConfig()
    run = load_run(path)
    members = run.require_complete(allow_partial)
    counts = []
    for m in members:
        params = run.model(m).parameters()
        counts.append(config.scale * sum(p.numel() for p in params if p.requires_grad))
    summary = ParamsSummary(config.__dict__, members, counts, time.perf_counter() - start)
    write_study_summary(run, "params", summary.to_dict())
    return summary


def params_cost(config: Any, shape: Any, rates: Any, chosen: dict[str, Any]) -> Any:
    from modescape.estimate import Stage

    assert isinstance(chosen["params"], ParamsConfig)
    return Stage("params", 0.0, f"{config.members} members counted")


def params_section(ctx: Any) -> Any:
    from modescape.report.base import Section, Table

    res = ctx.study("params")
    if res is None:
        return None
    s: ParamsSummary = res.summary
    rows = [[m, n] for m, n in zip(s.members, s.counts)]
    table = Table("params", ["member", "parameters"], rows, "Parameters of each member.")
    return Section("params", "Parameter counts", [f"{s.counts[0]} parameters each."], [], [table])


PARAMS = Study(
    name="params",
    help="count each member's parameters",
    runner=run_params,
    settings=ParamsConfig,
    summary=ParamsSummary,
    cost=params_cost,
    outcome=lambda summary, run: [f"parameters per member: {summary.counts}"],
    flags={"scale": Flag(help="multiply the counts by this")},
    pages=(Page(85, params_section),),
)


@pytest.fixture
def params_study(monkeypatch):
    """The fixture study registered after the built-ins, removed afterwards."""
    monkeypatch.setattr(registry, "_REGISTERED", list(registry._REGISTERED))
    return register_study(PARAMS)


@pytest.fixture
def analysis_and_params(params_study, monkeypatch):
    """Only the analysis and the fixture study: `modescape run` in seconds."""
    monkeypatch.setattr(registry, "_REGISTERED", [study("analysis"), params_study])


# ---- the registry itself --------------------------------------------------------------------
def test_every_builtin_declaration_resolves():
    """Each string reference names an existing object (a renamed function fails here)."""
    names = [s.name for s in studies()]
    assert names == ["analysis", "subspace", "swag", "landscape", "connect", "shift", "instability"]
    for s in studies():
        for what in ("runner", "settings", "summary", "cost", "outcome"):
            assert callable(s.get(what)), (s.name, what)
        assert set(s.cli_flags()) <= {f for f in s.get("settings").__dataclass_fields__}
        assert s.pages and all(callable(registry.resolve(p.build)) for p in s.pages)
        assert issubclass(s.get("summary"), Record), s.name  # what Run.study reads back
        assert s.default_settings(tiny_config()) is not None


def test_one_name_per_study_and_the_analyze_command():
    assert study("analyze") is study("analysis")  # users type the verb; the folder is the name
    with pytest.raises(ModescapeError, match="unknown study 'nosuch' \\(allowed: analysis"):
        study("nosuch")


def test_registering_twice_or_removing_a_builtin_is_refused(params_study):
    with pytest.raises(ModescapeError, match="already registered"):
        register_study(PARAMS)
    with pytest.raises(ModescapeError, match="built-in"):
        registry.unregister_study("shift")
    registry.unregister_study("params")
    assert "params" not in [s.name for s in studies()]


def test_building_the_cli_imports_no_study():
    """`modescape info` and `--help` must not pay for torch: the built-ins are strings."""
    import subprocess
    import sys

    code = (
        "import sys; from modescape.cli import build_parser; build_parser('info'); "
        "print(sorted(m for m in sys.modules if m.startswith(('torch', 'modescape.studies'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- a registered study everywhere ------------------------------------------------------------
def test_fixture_study_appears_in_budget(params_study, tmp_path):
    code, stdout, _ = cli(
        "run", "--out", str(tmp_path / "r"), "--members", "2", "--epochs", "2",
        "--set", "data.mnist1d_samples=200", "--budget",
    )  # fmt: skip
    assert code == 0
    assert any(line.split()[:1] == ["params"] and "2 members counted" in line
               for line in stdout.splitlines())  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_fixture_study_in_run_command_info_provenance_and_report(analysis_and_params, tmp_path):
    out = tmp_path / "run"
    args = ["--members", "2", "--epochs", "2", "--set", "data.mnist1d_samples=300"]
    code, _, err = cli("-q", "run", "--out", str(out), *args)
    assert code == 0, err
    summary = json.loads((out / "params" / "summary.json").read_text())
    assert summary["config"] == {"trainable_only": True, "scale": 1}
    assert len(summary["counts"]) == 2 and summary["counts"][0] > 0

    # its own subcommand, with a flag read from its settings dataclass
    code, stdout, err = cli("params", str(out), "--scale", "3")
    assert code == 0, err
    assert stdout.strip() == f"parameters per member: {[3 * n for n in summary['counts']]}"
    code, _, err = cli("params", str(out), "--scale", "-1")
    assert code == 2 and "--scale must be >= 0, got -1" in err

    # info: which registered studies ran
    code, stdout, _ = cli("info", str(out), "--json")
    assert code == 0 and json.loads(stdout)["studies"] == {"analysis": True, "params": True}
    code, stdout, _ = cli("info", str(out))
    assert "studies   analysis, params" in stdout

    # the report: its section and table, and its settings and time in the provenance tables
    code, _, err = cli("report", str(out))
    assert code == 0, err
    page = (out / "report" / "index.html").read_text()
    assert "Parameter counts" in page and 'id="params"' in page
    tables = out / "report" / "tables"
    assert (tables / "params.csv").read_text().splitlines()[0] == "member,parameters"
    config_rows = (tables / "config.csv").read_text().splitlines()
    assert "params,scale,3" in config_rows and "params,trainable_only,true" in config_rows
    assert any(r.startswith("params,total,") for r in (tables / "timings.csv").read_text().split())


def test_run_accessor_reads_the_typed_summary(analysis_and_params, tmp_path):
    from modescape.pipeline import train_run
    from modescape.store.run import load_run

    path = train_run(tiny_config(members=1, epochs=1, **{"data.mnist1d_samples": 200}), tmp_path)
    run = load_run(path)
    with pytest.raises(ModescapeError, match=r"no params results; run `modescape params"):
        run.study("params")
    run_params(path, ParamsConfig(scale=2))
    got = load_run(path).study("params")
    assert isinstance(got, ParamsSummary) and got.config["scale"] == 2
    assert load_run(path).studies_run() == ["params"]


@dataclass
class PlainSummary:  # not a Record: no codec behind it
    counts: list[int]


def test_a_summary_type_other_than_a_record_is_one_clear_error(tiny_run_copy, monkeypatch):
    from modescape.store.run import load_run

    monkeypatch.setattr(registry, "_REGISTERED", list(registry._REGISTERED))
    register_study(replace(PARAMS, name="plain", summary=PlainSummary))
    (tiny_run_copy / "plain").mkdir()
    (tiny_run_copy / "plain" / "summary.json").write_text('{"counts": [1]}')
    with pytest.raises(ModescapeError, match="study 'plain': its summary type is not a Record"):
        load_run(tiny_run_copy).study("plain")


def test_cli_flags_of_every_builtin_study_name_real_fields():
    """A renamed settings field must not silently lose its flag (add_dataclass_flags raises)."""
    import argparse

    from modescape.cli_flags import add_dataclass_flags

    for s in studies():
        add_dataclass_flags(argparse.ArgumentParser(), s.get("settings"), s.cli_flags())


def test_the_pipeline_runs_every_registered_study_in_order(params_study):
    from modescape.pipeline import study_stages

    cfg = tiny_config()
    expected = [s.name for s in studies() if s.applies_to(cfg)]
    assert [name for name, _ in study_stages(cfg)] == expected
    assert "params" in expected and "swag" not in expected  # swag: runs with a collection phase
    with_swag = cfg.with_overrides(["train.collect.epochs=2"])
    assert "swag" in [name for name, _ in study_stages(with_swag)]
