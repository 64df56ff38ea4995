"""The layering rules of CONTRIBUTING.md, checked on the import graph of the source tree.

Every `import` and `from ... import` statement counts, at any depth (a function-level import is
still a dependency), resolved to a module of the package. Nothing is imported: the files are
parsed with `ast`, so the test is fast and cannot be fooled by lazy imports.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "modescape"

# Modules of `studies/` that are shared infrastructure, not studies: any study may import them.
STUDY_INFRASTRUCTURE = {
    "modescape.studies.cache",
    "modescape.studies.context",
    "modescape.studies.inference",
    "modescape.studies.limits",
    "modescape.studies.schema",
}


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = SRC) -> set[str]:
    """Every `modescape...` module that `path` imports, anywhere in the file."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from modescape.studies import landscape` imports the submodule `landscape`
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "modescape" or m.startswith("modescape.")}


@functools.cache
def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(p) if m in modules} for name, p in modules.items()}


def in_layer(module: str, *layers: str) -> bool:
    return any(module == f"modescape.{x}" or module.startswith(f"modescape.{x}.") for x in layers)


def violations(source_layers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{src} imports {dst}"
        for src, targets in graph().items()
        if in_layer(src, *source_layers)
        for dst in targets
        if in_layer(dst, *forbidden)
    )


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "modescape" / "studies"
    pkg.mkdir(parents=True)
    f = pkg / "demo.py"
    f.write_text(
        "def f():\n    from modescape.report import html\n"
        "from .landscape import run_landscape\n"
        "import modescape.store.run\n"
    )
    found = imports_of(f, root=tmp_path)
    assert {"modescape.report.html", "modescape.studies.landscape", "modescape.store.run"} <= found


def test_graph_covers_the_package():
    g = graph()
    assert "modescape.cli" in g and "modescape.analysis.metrics" in g
    assert "modescape.config" in g["modescape.cli"]


def test_analysis_is_pure():
    """analysis/ computes on arrays and models: no files, no studies, no report, no training."""
    bad = ("store", "studies", "report", "train", "pipeline", "cli")
    assert violations(("analysis",), bad) == []


def test_models_and_data_sit_at_the_bottom():
    bad = ("analysis", "studies", "report", "train", "pipeline", "cli")
    assert violations(("models", "data"), bad) == []


def test_data_uses_only_the_file_primitives_of_the_store():
    """data/ keeps its decoded-array cache with the store's atomic writers, nothing more."""
    bad = [v for v in violations(("models", "data"), ("store",)) if "store.files" not in v]
    assert bad == []


def test_studies_never_import_each_other():
    g = graph()
    bad = sorted(
        f"{src} imports {dst}"
        for src, targets in g.items()
        if in_layer(src, "studies") and src not in STUDY_INFRASTRUCTURE
        for dst in targets
        if in_layer(dst, "studies") and dst not in STUDY_INFRASTRUCTURE | {src, "modescape.studies"}
    )
    assert bad == []


def test_report_only_reads():
    """The report reads results (store, study schemas) and draws them: it generates no data and
    runs no study (corruption examples come from the shift study's files)."""
    assert violations(("report",), ("train", "pipeline", "cli", "data")) == []
    readable = ("modescape.studies", "modescape.studies.schema")  # the package, the result types
    studies = [v for v in violations(("report",), ("studies",)) if v.split()[-1] not in readable]
    assert studies == []


def test_the_base_modules_import_nothing_above_them():
    base = ("errors", "options", "seeding", "progress")
    allowed = {"modescape.errors", "modescape.options"}
    bad = [
        f"{src} imports {dst}"
        for src, targets in graph().items()
        if in_layer(src, *base)
        for dst in targets - allowed
    ]
    assert bad == []
    config_deps = graph()["modescape.config"]
    # config checks a custom architecture name against the registry (imported lazily)
    assert config_deps <= allowed | {"modescape.seeding", "modescape.models.registry"}


def test_only_the_cli_imports_the_cli():
    bad = [
        f"{src} imports {dst}"
        for src, targets in graph().items()
        if not in_layer(
            src, "cli", "cli_flags", "cli_studies", "cli_readers", "cli_spawn", "__main__"
        )
        for dst in targets
        if in_layer(dst, "cli", "cli_flags", "cli_studies", "cli_readers", "cli_spawn")
    ]
    assert bad == []
