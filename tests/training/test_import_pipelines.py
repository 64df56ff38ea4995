"""Checkpoints from a researcher's own pipeline: torchvision-style ToTensor + Normalize inputs
and PyTorch Lightning checkpoints (both made with plain torch here), imported with their
preprocessing stated; a near-chance import warns."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from modescape.config import preset
from modescape.errors import ModescapeError
from modescape.models import registry
from modescape.training.importer import import_checkpoints
from tests.training.test_checkpoints import lightning_checkpoint

MEAN, STD = (0.45, 0.5, 0.55), (0.25, 0.2, 0.3)


def _two_class_folder(root):
    """Dark and bright 8x8 images: a linear model separates them in any scaling."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 30)):
        for k in range(n):
            cls, level = ("bright", 190) if k % 2 else ("dark", 60)
            pixels = np.clip(rng.normal(level, 25, (8, 8, 3)), 0, 255).astype(np.uint8)
            p = root / split / cls / f"{k}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(p)


def _net(in_shape=(3, 8, 8), num_classes=2, hidden=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(in_shape)), hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))  # fmt: skip


def _torchvision(u8: torch.Tensor) -> torch.Tensor:
    """ToTensor() then Normalize(MEAN, STD), written out: [N, C, H, W] uint8-valued floats."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (u8 / 255.0 - mean) / std


@pytest.fixture
def own_pipeline(tmp_path):
    """A model trained in its own (torchvision-style) pipeline: the folder, the model, the raw
    test images in the order modescape loads them, and what the model scores on them."""
    registry.register_arch("own-mlp", _net, replace=True)
    root = tmp_path / "imgs"
    _two_class_folder(root)
    raw = preset("folder", "own-mlp", root=str(root)).with_overrides(["data.scaling=raw"])
    from modescape.store.run import open_dataset

    data = open_dataset(raw)
    torch.manual_seed(0)
    model = _net(hidden=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = _torchvision(data.x_train)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), data.y_train).backward()
        opt.step()
    with torch.no_grad():
        probs = torch.softmax(model(_torchvision(data.x_test)), 1)
    acc = float((probs.argmax(1) == data.y_test).float().mean())
    assert acc > 0.9  # it learned, in its own pipeline
    yield root, model, probs, acc
    registry.unregister_arch("own-mlp")


def _stated(root, **extra):
    sets = ["data.scaling=normalize", f"data.mean={list(MEAN)}", f"data.std={list(STD)}"]
    return preset("folder", "own-mlp", root=str(root)).with_overrides(
        [*sets, *(f"{k}={v}" for k, v in extra.items())]
    )


def test_torchvision_normalised_checkpoint_scores_what_it_scored(own_pipeline, tmp_path, caplog):
    root, model, probs, acc = own_pipeline
    src = tmp_path / "ckpt"
    src.mkdir()
    for e in (0, 1):
        torch.save(model.state_dict(), src / f"ep{e}.pt")
    cfg = _stated(root, **{"model.arch_kwargs": '{"hidden": 16}'})
    run = import_checkpoints(src, tmp_path / "run", cfg, pattern="ep{epoch}.pt", origin="stated")
    assert run.metrics(0)[-1].test_acc == pytest.approx(acc)
    assert run.manifest.imported is not None
    stated = run.manifest.imported.preprocessing
    assert stated.scaling == "normalize" and stated.stated_by == "--origin stated"
    assert stated.mean == pytest.approx(MEAN) and stated.std == pytest.approx(STD)
    np.testing.assert_allclose(run.predictions("test", 0), probs.numpy(), atol=1e-5)
    assert not [r for r in caplog.records if "near chance" in r.getMessage()]

    # the same checkpoint fed raw pixels (the paper's default): scores chance, and says so
    caplog.set_level(logging.WARNING)
    raw = preset("folder", "own-mlp", root=str(root)).with_overrides(
        ["data.scaling=raw", 'model.arch_kwargs={"hidden": 16}']
    )
    import_checkpoints(src, tmp_path / "raw", raw, pattern="ep{epoch}.pt", origin="stated")
    warned = [r.getMessage() for r in caplog.records if "near chance" in r.getMessage()]
    assert warned and "data.scaling=normalize" in warned[0] and "'raw'" in warned[0]


def test_lightning_checkpoint_imports_with_its_hyper_parameters(own_pipeline, tmp_path):
    root, model, _, acc = own_pipeline
    src = tmp_path / "lightning"
    src.mkdir()
    hparams = {"hidden": 16, "lr": 0.1, "batch_size": 32, "mean": MEAN, "std": STD}
    for e in (0, 1):  # what Trainer.save_checkpoint writes: prefixed keys, hparams, loops
        ckpt = lightning_checkpoint(model, hparams=hparams)
        torch.save(ckpt, src / f"epoch={e}-step={10 * e}.ckpt")
    # nothing stated: the preprocessing comes from the hyper-parameters' mean / std
    unstated = preset("folder", "own-mlp", root=str(root))
    assert unstated.data.scaling != "normalize"
    run = import_checkpoints(src, tmp_path / "run", unstated, pattern="epoch={epoch}-step=*.ckpt")
    assert run.config.model.arch_kwargs == {"hidden": 16}  # from hyper_parameters
    assert run.config.data.scaling == "normalize"
    assert run.config.data.mean == pytest.approx(MEAN)
    assert run.metrics(0)[-1].test_acc == pytest.approx(acc)
    imported = run.manifest.imported
    assert imported is not None and imported.lightning is not None
    assert imported.lightning["version"] == "2.4.0" and imported.key_prefix == "model."
    assert imported.preprocessing.stated_by == "Lightning hyper-parameters"


def test_an_image_import_that_does_not_state_its_preprocessing_is_refused(own_pipeline, tmp_path):
    root, model, _, _ = own_pipeline
    src = tmp_path / "ckpt"
    src.mkdir()
    torch.save(model.state_dict(), src / "ep0.pt")
    cfg = preset("folder", "own-mlp", root=str(root))
    with pytest.raises(ModescapeError) as err:
        import_checkpoints(src, tmp_path / "run", cfg, pattern="ep{epoch}.pt")
    msg = str(err.value)
    assert "\n" not in msg and "do not record how their inputs were preprocessed" in msg
    for option in ("data.scaling=normalize", "raw, unit, standardize, normalize",
                   "--origin stated", "--origin seed-notebooks"):  # fmt: skip
        assert option in msg
    assert not (tmp_path / "run").exists()


def test_the_cli_takes_set_data_scaling_as_the_statement(own_pipeline, tmp_path, capsys):
    from modescape.cli import main

    root, model, _, acc = own_pipeline
    src = tmp_path / "ckpt"
    src.mkdir()
    torch.save(model.state_dict(), src / "ep0.pt")
    base = ["import", str(src), "--pattern", "ep{epoch}.pt", "--data", "folder",
            "--root", str(root), "--arch", "own-mlp",
            "--set", 'model.arch_kwargs={"hidden": 16}']  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "no")]) == 2
    assert "do not record how their inputs" in capsys.readouterr().err
    sets = ["--set", "data.scaling=normalize", "--set", f"data.mean={list(MEAN)}",
            "--set", f"data.std={list(STD)}"]  # fmt: skip
    assert main([*base, *sets, "--out", str(tmp_path / "yes")]) == 0
    from modescape.store.run import load_run

    assert load_run(tmp_path / "yes").metrics(0)[-1].test_acc == pytest.approx(acc)


def test_keys_that_do_not_fit_are_one_line_naming_both_sides(own_pipeline, tmp_path):
    root, model, _, _ = own_pipeline
    src = tmp_path / "ckpt"
    src.mkdir()
    torch.save({f"backbone_{k}": v for k, v in model.state_dict().items()}, src / "ep0.pt")
    with pytest.raises(ModescapeError) as err:
        import_checkpoints(src, tmp_path / "run", _stated(root, **{
            "model.arch_kwargs": '{"hidden": 16}'}), pattern="ep{epoch}.pt",
            origin="stated")  # fmt: skip
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 600
    assert "4 key(s) of the model missing: 1.weight" in msg
    assert "4 unexpected key(s): backbone_1.weight" in msg
    assert not (tmp_path / "run").exists()
