"""`modescape import`: PyTorch state dicts, safetensors files and Keras .h5 series become runs
that the studies and the report read like trained ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modescape.config import preset
from modescape.errors import ModescapeError
from modescape.models.registry import build_model
from modescape.report.html import write_report
from modescape.store.run import load_run
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
                             "checkpoint_{epoch}.h5")  # fmt: skip
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
