"""The public API: `import modescape as ms` and everything in `ms.__all__`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import modescape as ms

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_cheap():
    """`import modescape` (and the config layer the CLI parses with) loads neither torch nor
    numpy: `modescape --help` and `ms.preset` answer at once."""
    code = (
        "import sys, modescape as ms; ms.preset(); ms.RunConfig; ms.ModescapeError;"
        "import modescape.cli;"
        "print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_all_is_the_export_table_and_every_name_resolves():
    assert set(ms.__all__) == {"__version__", *ms._EXPORTS}
    assert ms.__all__ == sorted(ms.__all__)
    for name in ms.__all__:
        value = getattr(ms, name)
        assert value is not None, name
        assert name in dir(ms)


def test_names_are_the_definitions_not_copies():
    from modescape.analysis.functionspace import disagreement_matrix
    from modescape.errors import ModescapeError
    from modescape.store.run import load_run

    assert ms.disagreement_matrix is disagreement_matrix
    assert ms.ModescapeError is ModescapeError
    assert ms.load_run is load_run


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        _ = ms.nosuch


def test_train_is_the_function_and_training_the_package(tmp_path):
    """`ms.train(config, out)` trains; the package is `modescape.training`, so importing one of
    its modules never rebinds `ms.train` (one name, one thing)."""
    import modescape.training.launch  # noqa: F401
    from modescape.training.trainer import train

    assert ms.train is train
    cfg = ms.preset(members=1, epochs=1).with_overrides(["data.mnist1d_samples=200"])
    run = ms.train(cfg, tmp_path / "run")
    assert isinstance(run, ms.Run)
    assert run.finished_members() == [0]
    # What "auto" precision resolved to is recorded (1-D signals: fp32); the rest as given.
    assert ms.load_run(tmp_path / "run").config == cfg.with_overrides(["train.precision=fp32"])


def test_errors_surface_as_modescape_error():
    with pytest.raises(ms.ModescapeError, match="unknown dataset 'imagenet'"):
        ms.preset("imagenet")


def test_py_typed_ships():
    assert (ROOT / "src/modescape/py.typed").is_file()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["modescape"]
    assert not any(d.startswith("requests") for d in pyproject["project"]["dependencies"])
