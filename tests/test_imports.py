"""The layering rules of CONTRIBUTING.md, checked on the import graph of the source tree.

Every `import` and `from ... import` statement counts, at any depth (a function-level import is
still a dependency), resolved to a module of the package. Nothing is imported: the files are
parsed with `ast`, so the test is fast and cannot be fooled by lazy imports.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "modescape"

# Modules of `studies/` that are shared infrastructure, not studies: any study may import them.
STUDY_INFRASTRUCTURE = {
    "modescape.studies.cache",
    "modescape.studies.context",
    "modescape.studies.inference",
    "modescape.studies.limits",
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
def graph(root: Path = SRC) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for p in (root / "modescape").rglob("*.py")}
    return {name: {m for m in imports_of(p, root) if m in modules} for name, p in modules.items()}


def in_layer(module: str, *layers: str) -> bool:
    return any(module == f"modescape.{x}" or module.startswith(f"modescape.{x}.") for x in layers)


def violations(
    source_layers: tuple[str, ...], forbidden: tuple[str, ...], root: Path = SRC
) -> list[str]:
    return sorted(
        f"{src} imports {dst}"
        for src, targets in graph(root).items()
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
    bad = ("store", "studies", "report", "training", "pipeline", "cli")
    assert violations(("analysis",), bad) == []


def test_models_and_data_sit_at_the_bottom():
    bad = ("analysis", "studies", "report", "training", "pipeline", "cli")
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
    """The report reads results (the store, its study schemas) and draws them: it generates no
    data and runs no study (corruption examples come from the shift study's files)."""
    assert violations(("report",), ("training", "pipeline", "cli", "data", "studies")) == []


def test_the_base_modules_import_nothing_above_them():
    base = ("errors", "options", "seeding", "progress", "registry", "codec", "results")
    allowed = {"modescape.errors", "modescape.options", "modescape.codec"}
    bad = [
        f"{src} imports {dst}"
        for src, targets in graph().items()
        if in_layer(src, *base)
        for dst in targets - allowed
    ]
    assert bad == []
    config_deps = graph()["modescape.config"]
    # config checks a custom architecture name against the registry (imported lazily)
    # (and reads its JSON through the one codec)
    assert config_deps <= allowed | {
        "modescape.seeding",
        "modescape.models.registry",
        "modescape.codec",
    }


def test_only_the_cli_imports_the_cli():
    bad = [
        f"{src} imports {dst}"
        for src, targets in graph().items()
        if not in_layer(
            src,
            "cli",
            "cli_flags",
            "cli_studies",
            "cli_readers",
            "cli_spawn",
            "__main__",
        )
        for dst in targets
        if in_layer(dst, "cli", "cli_flags", "cli_studies", "cli_readers", "cli_spawn")
    ]
    assert bad == []


def test_the_store_reads_and_writes_only():
    """store/ (run directories, manifests, the typed records) sits below the studies, the report
    and training: they import it, never the reverse (its typed records live in store/schema.py
    so that `Run` can return them)."""
    bad = ("analysis", "studies", "report", "training", "pipeline", "estimate", "cli")
    assert violations(("store",), bad) == []


# ---- whole-graph rules: cycles, private names, one import path per name -------------------------
def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def runtime_imports(path: Path, root: Path = SRC) -> set[str]:
    """`imports_of` without the imports under `if TYPE_CHECKING:` (annotations only: they never
    run, so they cannot close a cycle)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if _type_checking(node):
            node.body = []  # type: ignore[attr-defined]
    return _imports_in(tree, path, root)


def _imports_in(tree: ast.AST, path: Path, root: Path) -> set[str]:
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "modescape" or m.startswith("modescape.")}


def modules_of(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in (root / "modescape").rglob("*.py")}


def cycles(root: Path = SRC) -> list[list[str]]:
    """Every import cycle among the modules under `root` (strongly connected components of more
    than one module, or a module importing itself), each sorted."""
    mods = modules_of(root)
    edges = {
        n: {m for m in runtime_imports(p, root) if m in mods and m != n} for n, p in mods.items()
    }
    for n in mods:  # a package's parents run first: importing them is no cycle
        edges[n] = {m for m in edges[n] if not n.startswith(m + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(mods)))

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(mods):
        if v not in index:
            visit(v)
    return sorted(found)


def _module_aliases(tree: ast.AST, mods: dict[str, Path]) -> dict[str, str]:
    """Local names bound to modules of the package (`import a.b as c`, `from a import b`)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in mods and a.asname:
                    out[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if f"{node.module}.{a.name}" in mods:
                    out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def private_imports(root: Path = SRC) -> list[str]:
    """`from modescape.x import _name` and `x._name` (x a module of the package) outside the
    module that defines `_name`."""
    mods = modules_of(root)
    bad = []
    for name, path in sorted(mods.items()):
        tree = ast.parse(path.read_text(), str(path))
        aliases = _module_aliases(tree, mods)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modescape"):
                bad += [
                    f"{name} imports {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                bad.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    return sorted(set(bad))


def _imported_names(path: Path) -> dict[str, str]:
    """Top-level names a module binds by importing them from another module of the package."""
    out = {}
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modescape"):
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def borrowed_names(root: Path = SRC, scan: tuple[Path, ...] = ()) -> list[str]:
    """`module.name` where `module` only imported `name` from elsewhere: the name's one path is
    its defining module. Checks the package and the files in `scan` (tests, benchmarks)."""
    mods = modules_of(root)
    imported = {name: _imported_names(path) for name, path in mods.items()}
    bad = []
    for path in [*mods.values(), *scan]:
        tree = ast.parse(path.read_text(), str(path))
        aliases = _module_aliases(tree, mods)
        where = module_name(path, root) if path.is_relative_to(root) else path.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr in imported[aliases[node.value.id]]
            ):
                bad.append(f"{where} reads {aliases[node.value.id]}.{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module in imported:
                bad += [
                    f"{where} reads {node.module}.{a.name}"
                    for a in node.names
                    if a.name in imported[node.module]
                ]
    return sorted(set(bad))


def reexports(root: Path = SRC) -> list[str]:
    """Names a module imports at its top level from another module of the package and never
    uses itself (kept only so that others can import them from here), and names listed in an
    `__all__` that the module imported rather than defined. The public `modescape/__init__.py`
    is the one module allowed to re-export."""
    bad = []
    for name, path in sorted(modules_of(root).items()):
        if name == "modescape":
            continue
        tree = ast.parse(path.read_text(), str(path))
        imported: dict[str, str] = {}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modescape"):
                for a in node.names:
                    imported[a.asname or a.name] = f"{node.module}.{a.name}"
        loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        loads |= {
            n.value.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
        }
        listed: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                listed = {e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant)}
        annotations = _annotation_names(tree)
        for local, origin in sorted(imported.items()):
            if local in listed or (local not in loads and local not in annotations):
                bad.append(f"{name} re-exports {origin}")
    return bad


def _annotation_names(tree: ast.AST) -> set[str]:
    """Names used in string annotations (`from __future__ import annotations` keeps them as
    strings only for the checker: they still count as uses)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.update(w for w in _words(node.value))
    return out


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text) if len(text) < 200 else []


def test_no_import_cycles():
    assert cycles() == []


def test_no_private_names_across_modules():
    """A name starting with `_` is its module's own; what two modules share is public (e.g. the
    report's wording helpers are `report/wording.py`)."""
    assert private_imports() == []


def test_one_import_path_per_name():
    """Each name is imported from the module that defines it; only `modescape/__init__.py` (the
    public API, `import modescape as ms`) re-exports."""
    assert reexports() == []
    others = [*(SRC.parent / "tests").rglob("*.py"), *(SRC.parent / "benchmarks").rglob("*.py")]
    assert borrowed_names(SRC, tuple(others)) == []


# ---- each rule fails on a planted violation --------------------------------------------------
@pytest.fixture
def fake(tmp_path):
    """A throwaway `modescape` package under tmp_path: `fake({"store/run.py": "..."})`."""

    def make(files: dict[str, str]) -> Path:
        for rel, text in files.items():
            f = tmp_path / "modescape" / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            for parent in [f.parent, *f.parent.parents]:
                if parent == tmp_path:
                    break
                (parent / "__init__.py").touch()
            f.write_text(text)
        return tmp_path

    return make


def test_a_planted_cycle_is_found(fake):
    root = fake(
        {
            "store/a.py": "from modescape.store import b\n",
            "store/b.py": "def f():\n    from modescape.store.a import x\n",
            "store/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from modescape.store.a import y\n",
        }
    )
    assert cycles(root) == [["modescape.store.a", "modescape.store.b"]]


def test_a_planted_upward_import_is_found(fake):
    root = fake(
        {
            "store/run.py": "def f():\n    from modescape.studies.context import RunContext\n",
            "studies/context.py": "RunContext = 1\n",
        }
    )
    assert violations(("store",), ("studies",), root) == [
        "modescape.store.run imports modescape.studies.context"
    ]


def test_a_planted_private_import_is_found(fake):
    root = fake(
        {
            "report/base.py": "def _pct(x):\n    return x\n",
            "report/one.py": "from modescape.report.base import _pct\n",
            "report/two.py": "from modescape.report import base\nbase._pct(1)\n",
        }
    )
    assert private_imports(root) == [
        "modescape.report.one imports modescape.report.base._pct",
        "modescape.report.two uses modescape.report.base._pct",
    ]


def test_a_planted_reexport_is_found(fake):
    root = fake(
        {
            "report/base.py": "def pct(x):\n    return x\n",
            "report/html.py": "from modescape.report.base import pct  # noqa: F401\n",
            "report/listed.py": "from modescape.report.base import pct\n__all__ = ['pct']\n",
            "report/used.py": "from modescape.report.base import pct\n\nprint(pct(1))\n",
        }
    )
    assert reexports(root) == [
        "modescape.report.html re-exports modescape.report.base.pct",
        "modescape.report.listed re-exports modescape.report.base.pct",
    ]
    borrow = fake({"report/user.py": "from modescape.report import used\nused.pct(2)\n"})
    assert borrowed_names(borrow) == ["modescape.report.user reads modescape.report.used.pct"]
