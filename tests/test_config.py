import json

import pytest

from modescape.config import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    load_config,
    preset,
    recipe,
)
from modescape.errors import ModescapeError


def test_paper_schedule_halves_every_ten_epochs():
    t = recipe("paper")
    assert [t.lr_at(e) for e in (0, 9, 10, 19, 20, 39)] == pytest.approx(
        [1.6e-3, 1.6e-3, 0.8e-3, 0.8e-3, 0.4e-3, 0.2e-3]
    )
    # the paper: lr_e = 1.6e-3 / 2**floor(e/10) for every epoch
    assert all(t.lr_at(e) == pytest.approx(1.6e-3 / 2 ** (e // 10)) for e in range(40))


def test_seed_schedule_halves_first_after_epoch_nine():
    t = recipe("seed")
    assert t.lr_at(8) == pytest.approx(1.6e-3)
    assert t.lr_at(9) == pytest.approx(0.8e-3)
    assert t.lr_at(19) == pytest.approx(0.4e-3)
    # The notebooks' last stage, epochs 30-40 (1-based), all at 2e-4: no halving at epoch 40.
    assert [t.lr_at(e) for e in range(29, 40)] == pytest.approx([2e-4] * 11)
    assert t.lr_at(28) == pytest.approx(4e-4)


def test_resnet_milestones():
    t = recipe("resnet")
    assert t.lr_at(79) == pytest.approx(1e-3)
    assert t.lr_at(80) == pytest.approx(1e-4)
    assert t.lr_at(185) == pytest.approx(1e-7)
    assert t.augment == AugmentConfig(pad_crop=4, flip=True)


def test_json_round_trip(tmp_path):
    cfg = preset("cifar10", "resnet20", root="/data/c10")
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    f = tmp_path / "c.json"
    f.write_text(cfg.to_json())
    assert load_config(f) == cfg


def test_overrides_apply_and_validate():
    cfg = RunConfig().with_overrides(["train.lr=0.01", "members=3", "train.augment.flip=true"])
    assert cfg.train.lr == 0.01 and cfg.members == 3 and cfg.train.augment.flip is True
    with pytest.raises(ModescapeError, match=r"allowed: .*lr"):
        RunConfig().with_overrides(["train.lrr=0.01"])
    with pytest.raises(ModescapeError, match="section"):
        RunConfig().with_overrides(["nosuch.key=1"])
    with pytest.raises(ModescapeError, match="must be of type int"):
        RunConfig().with_overrides(["train.epochs=ten"])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: RunConfig(members=0), "members must be >= 1"),
        (lambda: TrainConfig(epochs=-1), "epochs"),
        (lambda: DataConfig(name="imagenet"), "allowed: mnist1d, cifar10"),
        (lambda: DataConfig(name="cifar10"), "needs data.root"),
        (lambda: ModelConfig(arch="vgg"), "allowed: smallcnn"),
        (lambda: ModelConfig(arch="resnet20", variant="seed"), "only the 'paper'"),
        (lambda: ModelConfig(dropout=1.0), "dropout"),
        (lambda: TrainConfig(optimizer="lion"), "allowed: adam, sgd"),
    ],
)
def test_impossible_settings_are_named(make, message):
    with pytest.raises(ModescapeError, match=message):
        make()


def test_unknown_key_in_file_is_named(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"members": 2, "colour": "red"}))
    with pytest.raises(ModescapeError, match="'colour'"):
        load_config(f)
    f.write_text("{not json")
    with pytest.raises(ModescapeError, match="not valid JSON"):
        load_config(f)
