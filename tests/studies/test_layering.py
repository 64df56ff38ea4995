"""The studies layer's import rules: no study imports another study, the analyze module
included (shared helpers live in studies.context), and the report imports no data generator."""

import ast
from pathlib import Path

import modescape

PKG = Path(modescape.__file__).parent
STUDIES = ("weights_functions", "subspace", "landscape", "shift")


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_no_study_imports_another():
    for study in STUDIES:
        others = {f"modescape.studies.{s}" for s in STUDIES if s != study}
        assert not imported(PKG / "studies" / f"{study}.py") & others, study


def test_report_reads_and_never_generates_data():
    for f in (PKG / "report").glob("*.py"):
        assert not any(n.startswith("modescape.data") for n in imported(f)), f.name
        assert not any(
            n.startswith("modescape.studies.") and n.split(".")[2] in STUDIES for n in imported(f)
        ), f.name
