"""Checkpoint layouts: Lightning's wrapper, key prefixes, one-line mismatch messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modescape.training.checkpoints import (
    factory_kwargs,
    fit_to_model,
    lightning_meta,
    mismatch_message,
)


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def lightning_checkpoint(
    model: nn.Module, attr: str = "model", hparams: dict | None = None
) -> dict:
    """What `Trainer.save_checkpoint` writes for a LightningModule holding `model` as `attr`
    (plus a loss module with a buffer of its own), made with plain torch."""
    state = {f"{attr}.{k}": v for k, v in model.state_dict().items()}
    state["criterion.weight"] = torch.ones(2)
    return {
        "epoch": 4,
        "global_step": 500,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state,
        "hyper_parameters": hparams or {"width": 4, "lr": 0.01},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01}]}],
        "lr_schedulers": [],
        "callbacks": {},
        "loops": {},
    }


def test_lightning_checkpoint_round_trips_through_weights_only(tmp_path):
    model = _net()
    path = tmp_path / "epoch=4-step=500.ckpt"
    torch.save(lightning_checkpoint(model), path)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    meta = lightning_meta(obj)
    assert meta["version"] == "2.4.0" and meta["epoch"] == 4
    assert meta["hyper_parameters"] == {"width": 4, "lr": 0.01}
    state, prefix = fit_to_model(obj["state_dict"], model.state_dict())
    assert prefix == "model."
    fresh = _net()
    fresh.load_state_dict(state)
    x = torch.randn(2, 3, 3, 3)
    model.eval(), fresh.eval()
    assert torch.equal(fresh(x), model(x))
    assert lightning_meta({"state_dict": {}}) is None and lightning_meta(state) is None


def test_nested_and_dataparallel_prefixes():
    model = _net()
    expected = model.state_dict()
    nested = {f"module.backbone.{k}": v for k, v in expected.items()}
    state, prefix = fit_to_model(nested, expected)
    assert prefix == "module.backbone." and set(state) == set(expected)
    plain, prefix = fit_to_model(dict(expected), expected)
    assert prefix == "" and set(plain) == set(expected)
    other = {"x.y": torch.zeros(1)}
    assert fit_to_model(other, expected) == (other, "")


def test_mismatch_is_one_line_naming_both_sides():
    expected = {f"layer{i}.weight": torch.zeros(3) for i in range(10)}
    state = {f"model.layer{i}.weight": torch.zeros(3) for i in range(10)}
    msg = mismatch_message(state, expected)
    assert "\n" not in msg and len(msg) < 300
    assert "10 key(s) of the model missing: layer0.weight" in msg and "(+7 more)" in msg
    assert "10 unexpected key(s): model.layer0.weight" in msg
    wrong = dict(expected, **{"layer3.weight": torch.zeros(5)})
    assert "layer3.weight: checkpoint [5], model [3]" in mismatch_message(wrong, expected)
    assert mismatch_message(expected, expected) is None


def test_factory_kwargs_are_the_ones_the_factory_names():
    def factory(in_shape, num_classes, width=8, depth=2):
        return None

    hp = {"width": 4, "lr": 0.1, "num_classes": 10}
    assert factory_kwargs(hp, factory) == {"width": 4}


def test_near_chance_is_flagged_only_when_every_member_is_there():
    from modescape.training.checkpoints import near_chance_message

    msg = near_chance_message({0: 0.10, 1: 0.11}, 10, "raw")
    assert "near chance" in msg and "m0 0.100, m1 0.110" in msg and "'raw'" in msg
    assert near_chance_message({0: 0.10, 1: 0.62}, 10, "raw") is None
    assert near_chance_message({0: 0.55}, 2, "unit") is not None
    assert near_chance_message({}, 10, "unit") is None


def test_hyper_parameters_name_the_preprocessing():
    from modescape.training.checkpoints import hparams_preprocessing

    unit = hparams_preprocessing({"hyper_parameters": {"mean": [0.5, 0.4], "std": [0.2, 0.25]}})
    assert unit == {"scaling": "normalize", "mean": (0.5, 0.4), "std": (0.2, 0.25)}
    # 0-255 pixel units (e.g. mean=[125.3, ...]) become torchvision's [0, 1] units
    pixels = {"datamodule_hyper_parameters": {"normalize": {"mean": [127.5], "std": [51.0]}}}
    got = hparams_preprocessing({"hyper_parameters": {"lr": 0.1}, **pixels})
    assert got["mean"] == pytest.approx((0.5,)) and got["std"] == pytest.approx((0.2,))
    assert hparams_preprocessing({"hyper_parameters": {"scaling": "unit"}})["scaling"] == "unit"
    for silent in ({"lr": 0.1}, {"mean": "imagenet", "std": [0.2]}, {"mean": [0.5], "std": []}):
        assert hparams_preprocessing({"hyper_parameters": silent}) is None
