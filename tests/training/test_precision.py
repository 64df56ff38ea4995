"""Training precision: "auto" resolves once, when the run is created, and is recorded; bf16
training on images is deterministic and resumes byte for byte after a SIGKILL."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from PIL import Image
from test_killpoints import outputs, run_killed

from modescape.config import preset
from modescape.errors import ModescapeError
from modescape.store.run import load_run
from modescape.store.summary import verify_run
from modescape.training.loop import cpu_has_bf16, resolve_precision
from modescape.training.trainer import train

CPU = torch.device("cpu")


def test_resolve_precision_rule():
    images, signals = (3, 32, 32), (1, 40)
    assert resolve_precision("auto", CPU, signals) == "fp32"
    assert resolve_precision("auto", CPU, images) == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("auto", torch.device("cuda"), images) == "fp32"
    for given in ("fp32", "bf16"):
        assert resolve_precision(given, CPU, signals) == given
        assert type(resolve_precision(given, CPU, images)) is str
    with pytest.raises(ModescapeError, match=r"precision.*auto.*fp32.*bf16"):
        resolve_precision("fp16", CPU, images)


def _image_folder(root, classes=("cat", "dog", "frog"), n_train=24, n_test=6, size=12):
    """PNG folder with a class-dependent mean colour, so a few steps learn something."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(classes):
            for i in range(n // len(classes)):
                img = rng.integers(0, 160, (size, size, 3)) + 40 * c
                path = root / split / name / f"{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)
    return root


def _config(root, precision="auto"):
    cfg = preset("folder", "smallcnn", "seed", root=str(root), members=1, epochs=3)
    return cfg.with_overrides(["train.batch_size=8", f"train.precision={precision}"])


def test_auto_is_recorded_resolved_and_reopens(tmp_path):
    root = _image_folder(tmp_path / "images")
    out = tmp_path / "run"
    train(_config(root), out, device="cpu")
    expected = "bf16" if cpu_has_bf16() else "fp32"
    assert json.loads((out / "config.json").read_text())["train"]["precision"] == expected
    run = load_run(out)
    assert run.config.train.precision == expected
    assert run.member_info(0).precision == expected
    train(_config(root), out, device="cpu")  # "auto" again: the same run, nothing retrained
    other = "fp32" if expected == "bf16" else "bf16"
    with pytest.raises(ModescapeError, match=f"train.precision: '{expected}' -> '{other}'"):
        train(_config(root, other), out, device="cpu")


@pytest.fixture
def one_thread():
    """The killed subprocess trains on one thread: so does everything it is compared with
    (results are byte-identical at the same thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions")
def test_bf16_training_resumes_byte_identical_after_sigkill(tmp_path, one_thread):
    root = _image_folder(tmp_path / "images")
    config = _config(root, "bf16")
    reference = tmp_path / "reference"
    train(config, reference, device="cpu")
    again = tmp_path / "again"
    train(config, again, device="cpu")
    assert outputs(again) == outputs(reference)  # deterministic
    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(json.dumps(config.to_dict()))
    killed = tmp_path / "killed"
    # Killed after epoch 2's snapshot was written, before that epoch was committed.
    assert run_killed(killed, "epoch.snapshot@3", cfg_file) == -signal.SIGKILL
    train(config, killed, device="cpu")
    assert verify_run(killed) == []
    assert outputs(killed) == outputs(reference)
