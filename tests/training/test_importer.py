"""`modescape import`: PyTorch state dicts, safetensors files and Keras .h5 series become runs
that the studies and the report read like trained ones."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modescape.config import preset
from modescape.errors import ModescapeError
from modescape.models.registry import build_model
from modescape.report.html import write_report
from modescape.store.files import json_bytes
from modescape.store.run import load_run
from modescape.store.summary import run_summary
from modescape.studies.analysis import analyze_run
from modescape.training.importer import find_checkpoints, import_checkpoints
from tests.conftest import ROOT, cli

FIXTURES = ROOT / "tests" / "models" / "fixtures"
SETS = ["data.mnist1d_samples=200"]


def _config(arch: str = "smallcnn", **kw):
    return preset("mnist1d", arch, **kw).with_overrides(SETS)


def _trajectory(arch: str, in_shape, members: int, epochs: int, **kwargs):
    """Per member: an init and `epochs` noisy steps away from it (a stand-in for training)."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for m in range(members):
        torch.manual_seed(100 + m)
        sd = build_model(arch, "paper", in_shape, 10, **kwargs).state_dict()
        for e in range(epochs + 1):
            out[(m, e)] = {k: v.clone() for k, v in sd.items()}
            sd = {
                k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
                for k, v in sd.items()
            }
    return out


def test_folder_of_state_dicts_becomes_a_run_whose_report_builds(tmp_path):
    src = tmp_path / "ckpt"
    states = _trajectory("smallcnn", (1, 40), members=2, epochs=3)
    for (m, e), sd in states.items():
        (src / f"seed{10 + m}").mkdir(parents=True, exist_ok=True)
        # wrapped as many training scripts save it; epoch numbers need not be zero-padded
        torch.save({"model_state_dict": sd, "epoch": e}, src / f"seed{10 + m}" / f"ep{e}.pt")
    run = import_checkpoints(src, tmp_path / "run", _config())
    assert run.config.members == 2 and run.config.train.epochs == 3
    assert run.snapshot_epochs(1) == [0, 1, 2, 3]
    for key in states[(1, 2)]:
        assert torch.equal(run.state_dict(1, 2)[key], states[(1, 2)][key])
    model = run.model(0, 3)
    x = run.dataset().x_test
    with torch.no_grad():
        expected = torch.softmax(model(x), 1).numpy()
    np.testing.assert_allclose(run.predictions("test", 0, 3), expected, atol=1e-6)
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["imported"]["members"] == {"0": 10, "1": 11}
    assert len(manifest["imported"]["files"]) == 8
    assert run.manifest.imported is not None and run.manifest.imported.members == {"0": 10, "1": 11}
    assert json_bytes(run.manifest.to_dict()) == (run.path / "manifest.json").read_bytes()
    assert not run.verify()
    analyze_run(run.path)
    assert write_report(run.path).stat().st_size > 1000

    code, _, err = cli("train", "--out", str(run.path))
    assert code == 2 and "imported" in err


def test_safetensors_of_a_custom_network(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    arch = "examples.tiny_factory:build"
    src = tmp_path / "ckpt"
    src.mkdir()
    for (m, e), sd in _trajectory(arch, (1, 40), members=2, epochs=2).items():
        save_file(sd, str(src / f"run{m}_epoch{e:03d}.safetensors"))
    (src / "notes.txt").write_text("not a checkpoint")
    out = tmp_path / "run"
    code, stdout, err = cli(
        "import", str(src), "--out", str(out), "--pattern", "run{member}_epoch{epoch}.safetensors",
        "--arch", arch, "--set", SETS[0],
    )  # fmt: skip
    assert code == 0, err
    assert "2 member(s)" in stdout
    run = load_run(out)
    assert run.finished_members() == [0, 1] and run.snapshot_epochs(0) == [0, 1, 2]
    assert json.loads((out / "manifest.json").read_text())["imported"]["format"] == "safetensors"
    assert cli("-q", "analyze", str(out))[0] == 0
    assert write_report(out).is_file()


def test_keras_h5_series_from_the_fixture(tmp_path):
    h5py = pytest.importorskip("h5py")
    from tests.data.test_cifar import fake_images, write_python10

    root = write_python10(tmp_path / "cifar", *fake_images(n_train=20, n_test=12))
    src = tmp_path / "keras"
    rng = np.random.default_rng(0)
    for m in range(2):
        for e in range(3):  # the seed notebooks' small_cnn_checkpoint_{epoch}.h5, per seed
            f = src / f"seed{m}" / f"small_cnn_checkpoint_{e}.h5"
            f.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURES / "smallcnn_seed.h5", f)
            with h5py.File(f, "r+") as h5:
                h5.visititems(lambda _, d: _perturb(d, rng, h5py))
    cfg = preset("cifar10", "smallcnn", root=str(root), variant="seed")
    run = import_checkpoints(src, tmp_path / "run", cfg, pattern="seed{member}/small_cnn_"
                             "checkpoint_{epoch}.h5", origin="stated")  # fmt: skip
    assert run.config.model.arch_kwargs == {"padding": "keras"}
    assert run.snapshot_epochs(1) == [0, 1, 2]
    assert run.predictions("test", 1, 2).shape == (12, 10)
    analyze_run(run.path)
    assert write_report(run.path).is_file()


def _perturb(dataset, rng, h5py) -> None:
    if isinstance(dataset, h5py.Dataset) and dataset.dtype.kind == "f" and dataset.ndim > 1:
        dataset[...] = dataset[...] + 0.01 * rng.standard_normal(dataset.shape)


def test_pickled_model_is_refused_not_executed(tmp_path):
    src = tmp_path / "ckpt" / "seed0"
    src.mkdir(parents=True)
    torch.save(build_model("smallcnn", "paper", (1, 40), 10), src / "ep0.pt")  # a whole module
    with pytest.raises(ModescapeError, match=r"refused .*weights_only"):
        import_checkpoints(tmp_path / "ckpt", tmp_path / "run", _config())
    assert not (tmp_path / "run").exists()  # nothing half-made is left behind


@pytest.mark.parametrize("kind", ["raw pickle", "symlink to a text file", "empty"])
def test_foreign_checkpoint_files_are_one_error_without_warnings(tmp_path, kind):
    import collections
    import pickle
    import warnings

    src = tmp_path / "ckpt" / "seed0"
    src.mkdir(parents=True)
    if kind == "raw pickle":  # protocol 4: torch warns about it before refusing
        (src / "ep0.pt").write_bytes(pickle.dumps(collections.Counter(a=1), protocol=4))
    elif kind == "empty":
        (src / "ep0.pt").write_bytes(b"")
    else:  # like a checkpoint symlinked to /etc/passwd
        (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
        (src / "ep0.pt").symlink_to(tmp_path / "passwd")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ModescapeError, match=r"refused .*weights_only|cannot read .*ep0\.pt"):
            import_checkpoints(tmp_path / "ckpt", tmp_path / "run", _config())
    assert [str(w.message) for w in caught] == []
    assert not (tmp_path / "run").exists()


def test_wrong_architecture_and_bad_patterns_are_named(tmp_path):
    src = tmp_path / "ckpt" / "seed0"
    src.mkdir(parents=True)
    torch.save(build_model("mediumcnn", "paper", (1, 40), 10).state_dict(), src / "ep1.pt")
    with pytest.raises(ModescapeError, match="does not fit the architecture 'smallcnn'"):
        import_checkpoints(tmp_path / "ckpt", tmp_path / "run", _config())
    with pytest.raises(ModescapeError, match="needs an \\{epoch\\}"):
        find_checkpoints(tmp_path / "ckpt", "seed{member}/final.pt")
    with pytest.raises(ModescapeError, match="no file under"):
        find_checkpoints(tmp_path / "ckpt", "seed{member}/ep{epoch}.safetensors")
    assert [(c.member, c.epoch) for c in find_checkpoints(tmp_path / "ckpt")] == [(0, 1)]
    assert not Path(tmp_path / "run").exists()


def _cifar_from(tmp_path, npz):
    """A CIFAR-10 python archive holding the fixture's real CIFAR-10 images."""
    from tests.data.test_cifar import write_python10

    ref = np.load(npz)
    x_train = ref["x_train"] if "x_train" in ref else ref["x"]  # any train split will do
    y_train = ref["y_train"] if "y_train" in ref else ref["y"]
    x_test = ref["x_test"] if "x_test" in ref else ref["x"]
    y_test = ref["y_test"] if "y_test" in ref else ref["y"]
    return write_python10(tmp_path / "cifar", x_train, y_train, x_test, y_test), ref


def test_seed_notebook_series_imports_as_trained(tmp_path):
    """Files saved by the notebooks' `on_epoch_end(k)` as `small_cnn_checkpoint_{k}.h5` (a
    SmallCNN trained 3 epochs by Keras on real CIFAR-10 images / 255): epochs 1-3, the seed
    recipe, pixels / 255, and Keras' `predict` after every epoch."""
    pytest.importorskip("h5py")
    root, ref = _cifar_from(tmp_path, FIXTURES / "series.npz")
    cfg = preset("cifar10", "smallcnn", root=str(root), variant="seed")
    assert cfg.data.scaling == "raw"  # what the paper recipe would have used: overridden
    run = import_checkpoints(FIXTURES / "series", tmp_path / "run", cfg,
                             pattern="small_cnn_checkpoint_{epoch}.h5",
                             origin="seed-notebooks")  # fmt: skip
    assert run.snapshot_epochs(0) == [1, 2, 3] and run.config.train.epochs == 3
    assert run.config.data.scaling == "unit" and run.config.train.recipe == "seed"
    for k in range(3):
        np.testing.assert_allclose(run.predictions("test", 0, k + 1), ref["probs"][k], atol=1e-5)
    imported = json.loads((run.path / "manifest.json").read_text())["imported"]
    assert imported["origin"] == "seed-notebooks" and imported["epoch_offset"] == 1
    origin = run_summary(run).origin
    assert origin.startswith("imported, not trained here: 3 keras file(s)")
    assert "seed notebooks' Keras files (pixels / 255" in origin


@pytest.mark.parametrize(
    "arch, stem",
    [("mediumcnn", "medium_cnn"), ("resnet20", "resnet")],
)
def test_seed_notebook_series_of_every_seed_model(tmp_path, arch, stem):
    """MediumCNN (seed) and the seed's bottleneck ResNet trained 2 epochs by Keras on real
    CIFAR-10 images, a notebook-style `{stem}_checkpoint_{k}.h5` after every epoch: epochs 1-2,
    the seed recipe (and for the ResNet its augmentation), Keras' `predict` after each epoch."""
    pytest.importorskip("h5py")
    root, ref = _cifar_from(tmp_path, FIXTURES / f"series_{arch}.npz")
    cfg = preset("cifar10", arch, root=str(root), variant="seed")
    run = import_checkpoints(FIXTURES / f"series_{arch}", tmp_path / "run", cfg,
                             pattern=f"{stem}_checkpoint_{{epoch}}.h5",
                             origin="seed-notebooks")  # fmt: skip
    assert run.snapshot_epochs(0) == [1, 2] and run.config.train.epochs == 2
    assert run.config.data.scaling == "unit" and run.config.train.recipe == "seed"
    assert run.config.model.variant == "seed"
    for k in range(2):
        got = run.predictions("test", 0, k + 1)
        np.testing.assert_allclose(got, ref["probs"][k], atol=1e-5)
    assert np.abs(ref["probs"][1] - ref["probs"][0]).max() > 1e-2  # the epochs differ
    aug = run.config.train.augment
    want = (4, False, 0.5) if arch == "resnet20" else (0, False, 0.0)
    assert (aug.pad_crop, aug.flip, aug.brightness) == want


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow")
@pytest.mark.parametrize("name", ["smallcnn_seed", "mediumcnn_seed", "resnet20_seed"])
def test_live_keras_series_imports_as_keras_predicts(tmp_path, name):
    """Each seed model trained 2 epochs by live Keras (pixels / 255), saved by `on_epoch_end`
    as the notebooks do, imported: Keras' `predict` after every epoch to 1e-5."""
    from tests.data.test_cifar import write_python10

    sys.path.insert(0, str(FIXTURES))
    try:
        import keras
        import make_keras_fixtures as mk
    finally:
        sys.path.remove(str(FIXTURES))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8)
    y = np.arange(16, dtype=np.int64) % 10
    unit = x.transpose(0, 2, 3, 1).astype(np.float32) / 255
    keras.utils.set_random_seed(0)
    model = mk.MODELS[name](keras)
    model.compile(keras.optimizers.Adam(1.6e-3), "sparse_categorical_crossentropy")
    src, probs = tmp_path / "src", []
    src.mkdir()

    class Save(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.save(src / f"checkpoint_{epoch}.h5")
            probs.append(self.model.predict(unit, verbose=0))

    model.fit(unit, y, batch_size=8, epochs=2, callbacks=[Save()], verbose=0)
    root = write_python10(tmp_path / "cifar", x, y, x, y)
    arch = name.removesuffix("_seed")
    cfg = preset("cifar10", arch, root=str(root), variant="seed")
    run = import_checkpoints(src, tmp_path / "run", cfg, pattern="checkpoint_{epoch}.h5",
                             origin="seed-notebooks")  # fmt: skip
    assert run.snapshot_epochs(0) == [1, 2]
    for k in range(2):
        np.testing.assert_allclose(run.predictions("test", 0, k + 1), probs[k], atol=1e-5)


def test_keras_files_need_their_origin(tmp_path):
    pytest.importorskip("h5py")
    root, _ = _cifar_from(tmp_path, FIXTURES / "series.npz")
    cfg = preset("cifar10", "smallcnn", root=str(root), variant="seed")
    args = (FIXTURES / "series", tmp_path / "run", cfg)
    with pytest.raises(ModescapeError, match="--origin seed-notebooks"):
        import_checkpoints(*args, pattern="small_cnn_checkpoint_{epoch}.h5")
    with pytest.raises(ModescapeError, match="--epoch-offset of 1"):
        import_checkpoints(*args, pattern="small_cnn_checkpoint_{epoch}.h5",
                           origin="seed-notebooks", epoch_offset=0)  # fmt: skip
    assert not (tmp_path / "run").exists()
    run = import_checkpoints(*args, pattern="small_cnn_checkpoint_{epoch}.h5", origin="stated",
                             epoch_offset=4)  # fmt: skip
    assert run.snapshot_epochs(0) == [4, 5, 6] and run.config.data.scaling == "raw"
    code, _, err = cli("import", str(FIXTURES / "series"), "--out", str(tmp_path / "r2"),
                       "--pattern", "small_cnn_checkpoint_{epoch}.h5", "--data", "cifar10",
                       "--root", str(root), "--variant", "seed")  # fmt: skip
    assert code == 2 and "--origin" in err and "Traceback" not in err


def test_seed_resnet_and_a_registered_factory_import_from_keras(tmp_path, monkeypatch):
    """The seed's bottleneck ResNet as `resnet20 --variant seed` (its recipe and augmentation),
    from a `.h5` and from a `.keras`, and the same files into a user's own network."""
    pytest.importorskip("h5py")
    monkeypatch.syspath_prepend(str(ROOT))
    root, ref = _cifar_from(tmp_path, FIXTURES / "resnet20_seed_cifar.npz")
    for i, suffix in enumerate(("h5", "keras")):
        src = tmp_path / f"src{i}"
        src.mkdir()
        shutil.copy(FIXTURES / f"resnet20_seed.{suffix}", src / f"resnet_checkpoint_0.{suffix}")
        for arch in ("resnet20", "tests.models.test_keras:seed_resnet_factory"):
            cfg = preset("cifar10", arch, root=str(root), variant="seed")
            out = tmp_path / f"run{i}-{arch.split(':')[-1]}"
            run = import_checkpoints(src, out, cfg, pattern=f"resnet_checkpoint_{{epoch}}.{suffix}",
                                     origin="seed-notebooks")  # fmt: skip
            np.testing.assert_allclose(run.predictions("test", 0, 1), ref["probs"], atol=1e-5)
            assert run.config.train.recipe == "seed"
    aug = load_run(tmp_path / "run0-resnet20").config.train.augment
    assert (aug.pad_crop, aug.flip, aug.brightness) == (4, False, 0.5)
