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
    from modescape.train.trainer import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(), out)
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
