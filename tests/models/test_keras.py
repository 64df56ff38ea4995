"""Keras → PyTorch: the imported models compute Keras' softmax (fixtures in fixtures/, made by
fixtures/make_keras_fixtures.py), and live Keras models when TensorFlow is installed."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modescape.errors import ModescapeError
from modescape.models.architectures import build_model
from modescape.models.keras import (
    KerasLayer,
    keras_layers_to_state_dict,
    keras_model_to_state_dict,
    load_keras,
    load_keras_h5,
    read_keras,
)

FIXTURES = Path(__file__).parent / "fixtures"
CASES = [
    ("smallcnn_seed", "smallcnn", "seed"),
    ("mediumcnn_seed", "mediumcnn", "seed"),
    ("resnet20", "resnet20", "paper"),
    ("resnet20_seed", "resnet20", "seed"),
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
    with pytest.raises(ModescapeError, match="only in Keras: conv 3×3×3×16 ×1; only in the mo"):
        load_keras_h5(FIXTURES / "smallcnn_seed.h5", "smallcnn", "seed", (1, 32, 32))
    with pytest.raises(ModescapeError, match="not an HDF5 file"):
        load_keras_h5(FIXTURES / "make_keras_fixtures.py", "smallcnn", "seed")
    with pytest.raises(ModescapeError, match=r"not a Keras \.keras archive"):
        load_keras_h5(FIXTURES / "smallcnn_seed.npz", "smallcnn", "seed")  # a zip, not Keras'
    with pytest.raises(ModescapeError, match="holds no Keras model config"):
        load_keras(FIXTURES / "smallcnn_seed.weights.h5", build_model("smallcnn", "seed"),
                   (3, 32, 32), keras_config=FIXTURES / "smallcnn_seed.weights.h5")  # fmt: skip


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
    state = keras_layers_to_state_dict(layers, model, (3, 16, 16))
    for k in ref:
        torch.testing.assert_close(state[k], ref[k], atol=0, rtol=0)


def _cifar_probs(state, model_or_arch, variant, ref):
    """Softmax of the converted model on the fixture's CIFAR-10 images / 255 (as the notebooks)."""
    model = model_or_arch
    if isinstance(model_or_arch, str):
        model = build_model(model_or_arch, variant, (3, 32, 32), 10, padding="keras")
    model.load_state_dict(state)
    x = torch.from_numpy(ref["x"].astype(np.float32) / 255)
    with torch.no_grad():
        return torch.softmax(model.eval()(x), dim=1).numpy()


@pytest.mark.parametrize(
    ("file", "arch", "ref"),
    [
        ("resnet20_seed.keras", "resnet20", "resnet20_seed_cifar"),
        ("smallcnn_seed.keras", "smallcnn", "smallcnn_seed_cifar"),
        ("smallcnn_seed.weights.h5", "smallcnn", "smallcnn_seed_cifar"),
    ],
)
def test_keras3_formats_give_keras_predict(file, arch, ref):
    pytest.importorskip("h5py")
    ref = np.load(FIXTURES / f"{ref}.npz")
    state = load_keras_h5(FIXTURES / file, arch, "seed")
    np.testing.assert_allclose(_cifar_probs(state, arch, "seed", ref), ref["probs"], atol=1e-5)


def test_seed_resnet_keras_and_h5_hold_the_same_weights():
    pytest.importorskip("h5py")
    a = load_keras_h5(FIXTURES / "resnet20_seed.keras", "resnet20", "seed")
    b = load_keras_h5(FIXTURES / "resnet20_seed.h5", "resnet20", "seed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_weights_only_file_of_a_branching_model_needs_its_graph(tmp_path):
    """Keras 3 `.weights.h5` (here the one inside the `.keras` archive, byte for byte what
    `save_weights` writes) holds no graph: refused for the ResNet unless the config is given."""
    pytest.importorskip("h5py")
    with zipfile.ZipFile(FIXTURES / "resnet20_seed.keras") as z:
        (tmp_path / "r.weights.h5").write_bytes(z.read("model.weights.h5"))
        (tmp_path / "config.json").write_bytes(z.read("config.json"))
    with pytest.raises(ModescapeError, match="same shape and the model branches"):
        load_keras_h5(tmp_path / "r.weights.h5", "resnet20", "seed")
    ref = np.load(FIXTURES / "resnet20_seed_cifar.npz")
    model = build_model("resnet20", "seed", (3, 32, 32), 10, padding="keras")
    for config in (tmp_path / "config.json", FIXTURES / "resnet20_seed.keras"):
        state = load_keras(tmp_path / "r.weights.h5", model, (3, 32, 32), keras_config=config)
        np.testing.assert_allclose(_cifar_probs(state, model, "seed", ref), ref["probs"], atol=1e-5)


def _shortcuts_first(src: Path, dst: Path, h5py) -> list[str]:
    """A copy of a model.save .h5 of the seed ResNet that lists each projection shortcut (a
    1×1 conv fed by the block input, added to the block's output) right after the layer feeding
    it, both in its weights and in its config: the same network, declared in another order.
    Returns the names of the moved layers."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layers = config["config"]["layers"]
        graph = {entry["name"]: entry for entry in layers}
        adds = [e for e in layers if e["class_name"] == "Add"]
        moved = []
        for add in adds:
            names = [h["config"]["keras_history"][0] for h in add["inbound_nodes"][0]["args"][0]]
            moved += [n for n in names if graph[n]["class_name"] == "Conv2D"]
        for name in moved:
            entry = graph[name]
            parent = entry["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0]
            layers.remove(entry)
            layers.insert(layers.index(graph[parent]) + 1, entry)
        f.attrs["model_config"] = json.dumps(config)
        group = f["model_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
        order = [e["name"] for e in layers if e["name"] in names]
        group.attrs["layer_names"] = np.array([n.encode() for n in order])
    return moved


def test_equal_shape_layers_are_matched_by_topology_not_order(tmp_path):
    """Each projection block's last 1×1 conv and its 1×1 shortcut have the same shape; a file
    declaring the shortcuts first must still put each where it sits in the graph."""
    h5py = pytest.importorskip("h5py")
    moved = _shortcuts_first(FIXTURES / "resnet20_seed.h5", tmp_path / "r.h5", h5py)
    assert len(moved) == 3
    original = [la.name for la in read_keras(FIXTURES / "resnet20_seed.h5").layers]
    copy = read_keras(tmp_path / "r.h5")
    assert [la.name for la in copy.layers] != original
    # in the copy, each shortcut now comes before the same-shape conv it was listed after
    same = [la.name for la in copy.layers if la.key == copy.layers[original.index(moved[1])].key]
    assert same.index(moved[1]) < len(same) - 1
    ref = np.load(FIXTURES / "resnet20_seed.npz")
    state = load_keras_h5(tmp_path / "r.h5", "resnet20", "seed")
    probs = _torch_probs(state, "resnet20", "seed", ref["x"])
    np.testing.assert_allclose(probs, ref["probs"], atol=1e-5, rtol=0)
    expected = load_keras_h5(FIXTURES / "resnet20_seed.h5", "resnet20", "seed")
    assert all(torch.equal(state[k], expected[k]) for k in state)


class _Block(nn.Module):
    """A bottleneck declared shortcut first, with names of its own: a user's network."""

    def __init__(self, c_in: int, f: int, n: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(c_in, f * n, 1, stride) if stride > 1 or c_in != f * n else None
        self.reduce = nn.Sequential(nn.Conv2d(c_in, f, 1), nn.BatchNorm2d(f, eps=1e-3), nn.ReLU())
        pad = nn.ZeroPad2d((0, 1, 0, 1)) if stride > 1 else nn.ZeroPad2d(1)  # Keras "same"
        self.mid = nn.Sequential(pad, nn.Conv2d(f, f, 3, stride), nn.BatchNorm2d(f, eps=1e-3),
                                 nn.ReLU())  # fmt: skip
        self.expand = nn.Sequential(nn.Conv2d(f, f * n, 1), nn.BatchNorm2d(f * n, eps=1e-3))

    def forward(self, x):
        y = self.expand(self.mid(self.reduce(x)))
        return torch.relu(y + (self.proj(x) if self.proj is not None else x))


def seed_resnet_factory(in_shape, num_classes):
    """The seed ResNet written independently (a registered factory's network, CIFAR only)."""
    blocks, c = [], 16
    for f, stride, n in ((16, 1, 4), (64, 2, 2), (128, 2, 2)):
        blocks += [_Block(c, f, n, stride), _Block(f * n, f, n, 1)]
        c = f * n
    return nn.Sequential(
        nn.Conv2d(in_shape[0], 16, 3, padding=1), nn.BatchNorm2d(16, eps=1e-3), nn.ReLU(),
        *blocks, nn.BatchNorm2d(c, eps=1e-3), nn.ReLU(), nn.AvgPool2d(8), nn.Flatten(),
        nn.Linear(c, num_classes),
    )  # fmt: skip


def test_any_network_takes_keras_weights_by_topology():
    pytest.importorskip("h5py")
    ref = np.load(FIXTURES / "resnet20_seed_cifar.npz")
    for file in ("resnet20_seed.h5", "resnet20_seed.keras"):
        model = seed_resnet_factory((3, 32, 32), 10)
        state = load_keras(FIXTURES / file, model, (3, 32, 32))
        np.testing.assert_allclose(_cifar_probs(state, model, None, ref), ref["probs"], atol=1e-5)


def test_graph_that_differs_is_refused():
    """SmallCNN's weights into a model with the same layers in another graph: named, not loaded."""
    pytest.importorskip("h5py")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1),
        nn.Conv2d(32, 32, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 32), nn.Linear(32, 10),
    )  # fmt: skip
    state = load_keras(FIXTURES / "smallcnn_seed.h5", model, (3, 32, 32))  # a chain: accepted
    assert state["6.weight"].shape == (10, 32)
    with pytest.raises(ModescapeError, match="do not match the architecture"):
        load_keras(FIXTURES / "smallcnn_seed.h5", model[:-1], (3, 32, 32))


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow")
@pytest.mark.parametrize(("name", "arch", "variant"), CASES)
def test_live_keras_model(name, arch, variant):
    keras, mk = _keras_and_fixtures()
    model = mk.MODELS[name](keras)
    mk.randomise(model, 7)
    x = np.random.default_rng(1).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    expected = model(x, training=False).numpy()
    state = keras_model_to_state_dict(model, arch, variant, (3, 32, 32), 10)
    np.testing.assert_allclose(_torch_probs(state, arch, variant, x), expected, atol=1e-5, rtol=0)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow")
@pytest.mark.parametrize("shortcut_last", [False, True])
def test_live_seed_resnet_saved_in_every_format(tmp_path, shortcut_last):
    """The seed ResNet declared either way, saved as .h5, .keras and .weights.h5, in 2-D and
    1-D (MNIST-1D's (40, 1) signals)."""
    keras, mk = _keras_and_fixtures()
    for in_shape in ((32, 32, 3), (40, 1)):
        model = mk.resnet20_seed(keras, in_shape, shortcut_last=shortcut_last)
        mk.randomise(model, 5)
        x = np.random.default_rng(2).uniform(0, 1, (4, *in_shape)).astype(np.float32)
        expected = model(x, training=False).numpy()
        shape = (in_shape[-1], *in_shape[:-1])
        torch_model = build_model("resnet20", "seed", shape, 10, padding="keras")
        model.save(tmp_path / "m.h5")
        model.save(tmp_path / "m.keras")
        model.save_weights(tmp_path / "m.weights.h5")
        for file, config in (("m.h5", None), ("m.keras", None), ("m.weights.h5", "m.keras")):
            cfg = tmp_path / config if config else None
            state = load_keras(tmp_path / file, torch_model, shape, keras_config=cfg)
            torch_model.load_state_dict(state)
            xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
            with torch.no_grad():
                probs = torch.softmax(torch_model.eval()(xt), 1).numpy()
            np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)


def _keras_and_fixtures():
    sys.path.insert(0, str(FIXTURES))
    try:
        import keras
        import make_keras_fixtures as mk
    finally:
        sys.path.remove(str(FIXTURES))
    return keras, mk
