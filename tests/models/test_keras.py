"""Keras → PyTorch: the imported models compute Keras' softmax (fixtures in fixtures/, made by
fixtures/make_keras_fixtures.py), and live Keras models when TensorFlow is installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modescape.errors import ModescapeError
from modescape.models.architectures import build_model
from modescape.models.keras import (
    KerasLayer,
    keras_layers_to_state_dict,
    keras_model_to_state_dict,
    load_keras_h5,
)

FIXTURES = Path(__file__).parent / "fixtures"
CASES = [
    ("smallcnn_seed", "smallcnn", "seed"),
    ("mediumcnn_seed", "mediumcnn", "seed"),
    ("resnet20", "resnet20", "paper"),
]


def _torch_probs(state, arch, variant, x_nhwc, padding="keras"):
    in_shape = (x_nhwc.shape[3], *x_nhwc.shape[1:3])
    model = build_model(arch, variant, in_shape, 10, padding=padding)
    model.load_state_dict(state)
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        return torch.softmax(model.eval()(x), dim=1).numpy()


@pytest.mark.parametrize(("name", "arch", "variant"), CASES)
def test_h5_fixture_gives_keras_softmax(name, arch, variant):
    pytest.importorskip("h5py")
    ref = np.load(FIXTURES / f"{name}.npz")
    state = load_keras_h5(FIXTURES / f"{name}.h5", arch, variant, (3, 32, 32), 10)
    probs = _torch_probs(state, arch, variant, ref["x"])
    np.testing.assert_allclose(probs, ref["probs"], atol=1e-5, rtol=0)
    assert probs.max(axis=1).mean() < 0.9  # unsaturated outputs: a sensitive comparison
    if arch == "resnet20":  # PyTorch's symmetric padding is a different function
        assert (
            np.abs(_torch_probs(state, arch, variant, ref["x"], "torch") - ref["probs"]).max()
            > 1e-3
        )


def test_mismatched_architecture_is_refused():
    pytest.importorskip("h5py")
    with pytest.raises(ModescapeError, match="do not match the architecture"):
        load_keras_h5(FIXTURES / "smallcnn_seed.h5", "resnet20", "paper")
    with pytest.raises(ModescapeError, match="does not fit"):
        load_keras_h5(FIXTURES / "smallcnn_seed.h5", "smallcnn", "seed", (1, 32, 32))
    with pytest.raises(ModescapeError, match="not an HDF5 file"):
        load_keras_h5(FIXTURES / "smallcnn_seed.npz", "smallcnn", "seed")


def test_missing_h5py_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ModescapeError, match=r"pip install 'modescape\[keras\]'"):
        load_keras_h5(FIXTURES / "smallcnn_seed.h5", "smallcnn", "seed")


def test_flatten_head_reorders_hwc_to_chw():
    """Paper SmallCNN: a dense layer after a flattened (H, W, C) map, built from a Keras layout."""
    torch.manual_seed(0)
    model = build_model("smallcnn", "paper", (3, 16, 16), 10)  # 2×2×32 flattened
    ref = model.state_dict()
    layers = []
    for i in (0, 3, 6):
        w, b = ref[f"features.{i}.weight"], ref[f"features.{i}.bias"]
        layers.append(
            KerasLayer(f"c{i}", {"kernel": w.permute(2, 3, 1, 0).numpy(), "bias": b.numpy()})
        )
    head = ref["head.weight"].reshape(10, 32, 2, 2).permute(2, 3, 1, 0).reshape(128, 10)
    layers.append(KerasLayer("d", {"kernel": head.numpy(), "bias": ref["head.bias"].numpy()}))
    state = keras_layers_to_state_dict(layers, model)
    for k in ref:
        torch.testing.assert_close(state[k], ref[k], atol=0, rtol=0)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow")
@pytest.mark.parametrize(("name", "arch", "variant"), CASES)
def test_live_keras_model(name, arch, variant):
    sys.path.insert(0, str(FIXTURES))
    try:
        import keras
        import make_keras_fixtures as mk
    finally:
        sys.path.remove(str(FIXTURES))
    model = mk.MODELS[name](keras)
    mk.randomise(model, 7)
    x = np.random.default_rng(1).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    expected = model(x, training=False).numpy()
    state = keras_model_to_state_dict(model, arch, variant, (3, 32, 32), 10)
    np.testing.assert_allclose(_torch_probs(state, arch, variant, x), expected, atol=1e-5, rtol=0)
