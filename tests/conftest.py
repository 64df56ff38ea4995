"""Shared fixtures: small, fast MNIST-1D runs trained once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from modescape.config import preset

# Tiny models on 2 shared cores: one intra-op thread is faster and keeps runs comparable.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session decodes into its own cache; nothing touches ~/.cache."""
    if "MODESCAPE_CACHE" not in os.environ:
        os.environ["MODESCAPE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


def tiny_config(members: int = 3, epochs: int = 4, seed: int = 0, **sets: object):
    """MNIST-1D, SmallCNN, a small generated dataset: a few seconds per member."""
    cfg = preset("mnist1d", "smallcnn", members=members, epochs=epochs, seed=seed)
    overrides = ["data.mnist1d_samples=1000", "train.batch_size=64"]
    overrides += [f"{k}={v}" for k, v in sets.items()]
    return cfg.with_overrides(overrides)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 3-member, 4-epoch run shared (read-only) by the tests that only read it."""
    from modescape.training.trainer import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(), out)
    return out


def spawn_parent_config():
    """MNIST-1D, 2 members, 5 epochs, lr halved every epoch from epoch 2: children spawned late
    stay in one mode within seconds of training (tests/training/test_spawn.py, instability)."""
    sets = {"data.mnist1d_samples": 2000, "train.lr": 0.004, "train.lr_start": 2}
    return tiny_config(members=2, epochs=5, **sets, **{"train.lr_every": 1})


@pytest.fixture(scope="session")
def spawn_parent(tmp_path_factory) -> Path:
    """A finished run to spawn children from (read-only)."""
    from modescape.training.trainer import train

    out = tmp_path_factory.mktemp("runs") / "spawn_parent"
    train(spawn_parent_config(), out, device="cpu")
    return out


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the tiny run, for tests that damage or extend it."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst)
    return dst


def cli(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    import contextlib
    import io

    from modescape.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own usage errors (exit 2, one line on stderr)
            code = e.code
    return code, out.getvalue(), err.getvalue()


def snapshot_bytes(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(Path(run).glob("members/*/snapshots/*.safetensors"))
    }


@pytest.fixture(scope="session")
def analysed(tiny_run, tmp_path_factory) -> Path:
    """tiny_run copied, analysed and put through every follow-up study (small settings) once
    (the report, page, compare and browser tests share it)."""
    from modescape.analysis.subspace import SubspaceConfig
    from modescape.studies.analysis import analyze_run
    from modescape.studies.landscape import LandscapeConfig, run_landscape
    from modescape.studies.shift import ShiftConfig, run_shift
    from modescape.studies.subspace import run_subspace

    dst = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(tiny_run, dst)
    analyze_run(dst)
    run_subspace(dst, SubspaceConfig(n_samples=4, n_snapshots=3, rank=2))
    run_shift(dst, ShiftConfig(corruptions=("gaussian_noise",), severities=(1, 3)))
    config = LandscapeConfig(resolution=5, max_examples=200, n_path_points=5)
    run_landscape(dst, config)
    return dst


@pytest.fixture(scope="session")
def written(analysed) -> Path:
    """The report of `analysed`, written once a session."""
    from modescape.report.html import write_report

    return write_report(analysed)


@pytest.fixture(scope="session")
def analysed_plots(analysed) -> dict:
    """Every figure of `analysed`'s report (its `Plot`s by name), built once a session: read
    only (the report and chart tests share it)."""
    from modescape.report.base import ReportContext
    from modescape.report.html import section_functions
    from modescape.store.run import load_run

    ctx = ReportContext(load_run(analysed))
    sections = [sec for fn in section_functions() if (sec := fn(ctx)) is not None]
    out = {p.name: p for sec in sections for p in sec.figures}
    assert len(out) == sum(len(sec.figures) for sec in sections)  # names are unique
    return out


@pytest.fixture(scope="session")
def second_run(tmp_path_factory) -> Path:
    """Another analysed run to compare with `analysed`: 2 members, 3 epochs, seed 1, no
    follow-up study; its folder is also called "run" (labels must tell the two apart)."""
    from modescape.studies.analysis import analyze_run
    from modescape.training.trainer import train

    out = tmp_path_factory.mktemp("second") / "run"
    train(tiny_config(members=2, epochs=3, seed=1), out)
    analyze_run(out)
    return out


ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"  # CI and developers have ../shared beside the checkout
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
