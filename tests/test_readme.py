"""The README's examples run as written: every ```python block, in order, in one namespace, in a
fresh working directory; and every `modescape ...` line of its command blocks parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def test_the_readme_has_python_examples_using_the_public_api():
    code = blocks("python")
    assert len(code) >= 2
    assert code[0].startswith("import modescape as ms\n")
    # one import for everything: no example reaches into the package's modules
    assert not any(re.search(r"^\s*(from|import) modescape\.", c, flags=re.M) for c in code)


def test_python_blocks_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    try:
        for i, code in enumerate(blocks("python")):
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    finally:  # the own-model block registers an architecture; the next test registers it again
        from modescape.models import registry

        if "my_net" in registry.registered_archs():
            registry.unregister_arch("my_net")
    assert (tmp_path / "runs/mine/manifest.json").is_file()
    assert "error barrier between members 0 and 1" in capsys.readouterr().out
    D, cos = namespace["D"], namespace["cos"]
    assert D.shape == cos.shape == (3, 3)  # type: ignore[attr-defined]


def command_lines() -> list[str]:
    lines = []
    for block in blocks("bash"):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("modescape "):
                    lines.append(part)
    return lines


@pytest.mark.parametrize("line", command_lines())
def test_readme_commands_parse(line):
    from modescape.cli import build_parser

    argv = shlex.split(line)[1:]
    args = build_parser().parse_args(argv)  # argparse exits (code 2) on any unknown flag
    assert args.command == argv[0]


def test_the_own_model_block_runs_on_its_own(tmp_path, monkeypatch, capsys):
    """The "From Python, with a Dataset or DataLoader" block is copied alone by readers who
    skip the first ones: it imports and builds everything it uses."""
    (code,) = [c for c in blocks("python") if "ms.register_arch(" in c]
    assert code.startswith("from pathlib import Path\n")
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, "README.md own-model block", "exec"), {"__name__": "__readme__"})
    finally:
        from modescape.models import registry

        registry.unregister_arch("my_net")
    assert (tmp_path / "runs/imported/manifest.json").is_file()
    assert "imported 2 members, epochs [0, 1, 2]" in capsys.readouterr().out
