"""The study registry: one declaration per study, from which everything else is derived.

A `Study` names, in one place, what the rest of the package needs to know about a study: its
results folder (`<run>/<name>/`, also its one name everywhere: provenance scope, `Run.study`,
the estimate's stage), its CLI subcommand and flags, its settings dataclass and the settings
`modescape run` uses, the function that runs it, its typed summary, its cost model and its
report sections. The CLI (`modescape <command>`, `modescape run`), `pipeline.study_stages`, the
cost estimate, the provenance table, `modescape info`, `Run.study` and the report all iterate
over `studies()`; none of them lists the studies again.

This module sits at the bottom of the package (it imports nothing of modescape but `errors`),
so every layer may read it. The built-in declarations therefore name the objects that live above
it as "package.module:attribute" strings, resolved on first use (`Study.get`): building the CLI
parser or `modescape info` does not import torch. A study registered at run time (a plug-in,
a test fixture) may pass the objects themselves.

Adding a study: a module in `studies/` (settings dataclass, runner, summary dataclass, cost,
CLI flags and printed lines), a module in `report/sections/`, and one `Study(...)` in
`BUILTIN` below (or `register_study(...)` from your own package); CONTRIBUTING.md walks through
an example.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modescape.errors import ModescapeError, choice_error

Ref = Any  # an object, or "package.module:attribute" naming it (resolved by `Study.get`)


@dataclass(frozen=True)
class Flag:
    """How one settings field appears on the command line (`cli_flags.add_dataclass_flags`)."""

    name: str | None = None  # the flag, e.g. "--grid"; default "--" + field name with dashes
    help: str = ""
    parse: Callable[[Any], Any] | None = None  # the flag's text (list if append) → field value
    metavar: str | None = None
    append: bool = False  # repeatable; `parse` receives the list of values
    default: str | None = None  # words for a default that is None or a structure


def split_list(text: str) -> tuple[str, ...]:
    """A comma-separated flag value: 'a, b,c' → ('a', 'b', 'c')."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


@dataclass(frozen=True)
class Argument:
    """A keyword of the study's runner that is not a settings field (an int >= 0), e.g.
    subspace's `--reference`."""

    flag: str
    dest: str
    default: int
    help: str


@dataclass(frozen=True)
class Page:
    """One report section of a study: `build(ReportContext) -> Section | None` at position
    `order` of the page (the run's own overview is 0 and the training curves 90)."""

    order: int
    build: Ref


@dataclass(frozen=True)
class Study:
    """One study, declared once. `Ref` fields take the object or a "module:attribute" string.

    runner(path_or_context, settings, *, allow_partial=False, **arguments) -> summary
        writes `<run>/<name>/` and `<run>/<name>/summary.json`; returns the summary dataclass.
    settings: the settings dataclass (its fields become the subcommand's flags, see `flags`).
    defaults(run_config) -> settings: what `modescape run` uses (None: `settings()`).
    summary: the summary dataclass, a `modescape.codec.Record` (`from_dict` reads summary.json
        back; `Run.study` refuses any other type).
    cost(run_config, shape, rates, chosen) -> estimate.Stage: its cost here, where `chosen`
        maps every study's name to the settings being priced.
    outcome(summary, run_path) -> list[str]: the lines the subcommand prints when done.
    flags: {field: Flag} for the settings fields whose flag needs a name, help or parser.
    """

    name: str
    help: str
    runner: Ref
    settings: Ref
    summary: Ref
    cost: Ref
    outcome: Ref
    pages: tuple[Page, ...] = ()
    flags: Ref = None
    defaults: Ref = None
    applies: Ref = None  # applies(run_config) -> bool: does `modescape run` run it (None: always)
    arguments: tuple[Argument, ...] = ()
    command: str = ""  # the CLI subcommand when users type another word than `name`

    @property
    def cli(self) -> str:
        return self.command or self.name

    def get(self, what: str) -> Any:
        """The object behind field `what`, importing its module when it is a string. (`Any`:
        each field names its own kind of object, a runner, a settings dataclass, a `Record`
        type, defined in the modules above this one that the registry may not import.)"""
        return resolve(getattr(self, what))

    def default_settings(self, run_config: Any) -> Any:
        """The settings `modescape run` uses for a run of `run_config`: an instance of the
        study's settings dataclass (`Any`, as `get`)."""
        return self.get("settings")() if self.defaults is None else self.get("defaults")(run_config)

    def applies_to(self, run_config: Any) -> bool:
        """Whether `modescape run` runs (and `--budget` prices) the study for `run_config`."""
        return self.applies is None or bool(self.get("applies")(run_config))

    def cli_flags(self) -> Mapping[str, Flag]:
        return {} if self.flags is None else self.get("flags")


def resolve(ref: Ref) -> Any:
    """`ref` itself, or the attribute a "package.module:attribute" string names."""
    if not isinstance(ref, str):
        return ref
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


_S = "modescape.studies."
_E = "modescape.estimate:"
_R = "modescape.report.sections."
_SCHEMA = "modescape.store.schema:"

BUILTIN: tuple[Study, ...] = (
    Study(
        # The folder (and so the name) is "analysis"; users type the verb, `modescape analyze`.
        name="analysis",
        command="analyze",
        help="weight- and function-space analyses of a run",
        runner=_S + "analysis:analyze_run",
        settings=_S + "analysis:AnalysisConfig",
        summary=_SCHEMA + "AnalysisSummary",
        cost=_E + "analysis_cost",
        outcome=_S + "analysis:outcome",
        flags=_S + "analysis:CLI_FLAGS",
        pages=(
            Page(20, _R + "analysis:weight_section"),
            Page(30, _R + "analysis:function_section"),
            Page(40, _R + "analysis:trajectory_section"),
            Page(60, _R + "analysis:ensemble_section"),
            Page(90, _R + "analysis:training_section"),
        ),
    ),
    Study(
        name="subspace",
        help="subspace samples, diversity-accuracy plane, ensembles",
        runner=_S + "subspace:run_subspace",
        settings="modescape.analysis.subspace:SubspaceConfig",
        defaults=_S + "subspace:pipeline_settings",
        summary=_SCHEMA + "SubspaceSummary",
        cost=_E + "subspace_cost",
        outcome=_S + "subspace:outcome",
        flags=_S + "subspace:CLI_FLAGS",
        arguments=(Argument("--reference", "reference", 0, "member of the diversity plane"),),
        pages=(Page(70, _R + "subspace:subspace_section"),),
    ),
    Study(
        name="swag",
        help="SWA, SWAG, SWAG-Diagonal, MultiSWAG and MC dropout around every member",
        runner=_S + "swag:run_swag",
        settings="modescape.analysis.swag:SwagConfig",
        summary=_SCHEMA + "SwagSummary",
        cost=_E + "swag_cost",
        outcome=_S + "swag:outcome",
        flags=_S + "swag:CLI_FLAGS",
        applies=_S + "swag:applies",
        pages=(Page(75, _R + "swag:swag_section"),),
    ),
    Study(
        name="landscape",
        help="loss/accuracy/agreement planes, paths and barriers",
        runner=_S + "landscape:run_landscape",
        settings=_S + "landscape:LandscapeConfig",
        summary=_SCHEMA + "LandscapeSummary",
        cost=_E + "landscape_cost",
        outcome=_S + "landscape:outcome",
        flags=_S + "landscape:CLI_FLAGS",
        pages=(Page(50, _R + "landscape:landscape_section"),),
    ),
    Study(
        name="connect",
        help="a low-loss curve between two members, the functions along it, FGE",
        runner=_S + "connect:fit_curve",
        settings=_S + "connect:ConnectConfig",
        defaults=_S + "connect:pipeline_settings",
        summary=_SCHEMA + "ConnectSummary",
        cost=_E + "connect_cost",
        outcome=_S + "connect:outcome",
        flags=_S + "connect:CLI_FLAGS",
        applies=_S + "connect:applies",
        pages=(Page(55, _R + "connect:connect_section"),),
    ),
    Study(
        name="shift",
        help="robustness under corruptions at five severities",
        runner=_S + "shift:run_shift",
        settings=_S + "shift:ShiftConfig",
        summary=_SCHEMA + "ShiftSummary",
        cost=_E + "shift_cost",
        outcome=_S + "shift:outcome",
        flags=_S + "shift:CLI_FLAGS",
        pages=(Page(80, _R + "shift:shift_section"),),
    ),
    Study(
        name="instability",
        help="instability of spawned children (a run made by `modescape spawn`)",
        runner=_S + "spawn_measures:run_instability",
        settings=_S + "spawn_measures:InstabilityConfig",
        summary=_SCHEMA + "InstabilitySummary",
        cost=_E + "instability_cost",
        outcome=_S + "spawn_measures:outcome",
        flags=_S + "spawn_measures:CLI_FLAGS",
        applies=_S + "spawn_measures:applies",
        pages=(Page(85, _R + "spawn:instability_section"),),
    ),
)

_REGISTERED: list[Study] = list(BUILTIN)


def studies() -> tuple[Study, ...]:
    """Every study, in the order `modescape run` runs them (built-ins first)."""
    return tuple(_REGISTERED)


def study(name: str) -> Study:
    """The study called `name` (its folder name or its CLI subcommand)."""
    for s in _REGISTERED:
        if name in (s.name, s.cli):
            return s
    raise choice_error("study", name, [s.name for s in _REGISTERED])


def register_study(new: Study) -> Study:
    """Add a study after the registered ones; its name and subcommand must be new."""
    taken = {w for s in _REGISTERED for w in (s.name, s.cli)}
    if new.name in taken or new.cli in taken:
        raise ModescapeError(f"a study named {new.name!r} ({new.cli!r}) is already registered")
    _REGISTERED.append(new)
    return new


def unregister_study(name: str) -> None:
    """Remove a study registered with `register_study` (the built-ins stay)."""
    if any(s.name == name for s in BUILTIN):
        raise ModescapeError(f"{name!r} is a built-in study")
    _REGISTERED[:] = [s for s in _REGISTERED if s.name != name]


__all__ = [
    "BUILTIN",
    "Argument",
    "Flag",
    "Page",
    "Study",
    "register_study",
    "resolve",
    "split_list",
    "studies",
    "study",
    "unregister_study",
]
