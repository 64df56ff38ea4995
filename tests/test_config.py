import json
import re

import pytest

from modescape.config import (
    RANGES,
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


def test_seed_resnet_gets_the_seed_recipe_and_augmentation():
    cfg = preset("cifar10", "resnet20", root="/data/c10", variant="seed")
    assert cfg.train.recipe == "seed" and cfg.data.scaling == "unit"
    assert cfg.train.augment == AugmentConfig(pad_crop=4, flip=False, brightness=0.5)
    assert cfg.train.lr_milestones == (9, 19, 29) and cfg.train.epochs == 40
    assert preset("cifar10", "resnet20", root="/data/c10").train.recipe == "resnet"


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
        (lambda: ModelConfig(arch="resnet20", variant="keras"), "allowed: paper, seed"),
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


def _float_and_int_fields(cls, prefix=""):
    """(key, kind) of every numeric field of a config section, recursively."""
    import dataclasses

    out = []
    for f in dataclasses.fields(cls):
        value = getattr(cls(), f.name)
        if dataclasses.is_dataclass(value):
            out += _float_and_int_fields(type(value), f"{prefix}{f.name}.")
        elif isinstance(value, float):
            out.append((prefix + f.name, float))
        elif isinstance(value, int) and not isinstance(value, bool):
            out.append((prefix + f.name, int))
    return out


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
NUMERIC = [
    (f"{s}.{k}", kind) for s, cls in SECTIONS.items() for k, kind in _float_and_int_fields(cls)
] + [("members", int), ("seed", int)]


@pytest.mark.parametrize("key", [k for k, kind in NUMERIC if kind is float])
@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_floats_are_refused_everywhere(key, bad):
    with pytest.raises(
        ModescapeError, match=rf"{key} must be a finite number|{key.split('.')[-1]}"
    ):
        RunConfig().with_overrides([f"{key}={bad}"])


@pytest.mark.parametrize("key", [k for k, kind in NUMERIC if kind is int])
def test_negative_counts_are_refused_everywhere(key):
    with pytest.raises(ModescapeError, match=re.escape(f"{key} must be >= ")):
        RunConfig().with_overrides([f"{key}=-1"])


def test_every_numeric_field_is_covered():
    keys = {k for k, _ in NUMERIC}
    assert {"train.lr", "train.augment.brightness", "model.dropout", "data.val_size"} <= keys
    assert len([k for k, kind in NUMERIC if kind is float]) >= 5


def test_a_nan_never_reaches_config_json():
    cfg = RunConfig()
    with pytest.raises(ModescapeError, match=r"train\.lr must be a finite number, got nan"):
        TrainConfig(lr=float("nan"))
    assert "NaN" not in cfg.to_json() and "null" not in cfg.to_json().replace('"root": null', "")


def test_config_file_problems_are_one_clear_error(tmp_path):
    with pytest.raises(ModescapeError, match="is a directory"):
        load_config(tmp_path)
    big = tmp_path / "big.json"
    big.write_text(" " * (2 << 20) + "{}")
    with pytest.raises(ModescapeError, match="larger than"):
        load_config(big)
    f = tmp_path / "nan.json"
    f.write_text('{"train": {"lr": NaN}}')
    with pytest.raises(ModescapeError, match=r"train\.lr must be a finite number"):
        load_config(f)


def test_choices_come_from_the_option_enums():
    from modescape.data.datasets import DATASETS, SCALINGS
    from modescape.options import Arch, Dataset, Optimizer, Scaling, values

    assert values(Dataset) == DATASETS and values(Scaling) == SCALINGS
    with pytest.raises(ModescapeError, match=", ".join(values(Arch))):
        ModelConfig(arch="vgg")
    with pytest.raises(ModescapeError, match="batch sampler"):
        TrainConfig(sampler="bootstrap")
    # enum members are accepted and stored as the plain strings JSON keeps
    cfg = preset(Dataset.MNIST1D, Arch.SMALLCNN)
    assert type(cfg.model.arch) is str and type(cfg.data.name) is str
    assert json.loads(cfg.to_json())["model"]["arch"] == "smallcnn"
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert TrainConfig(optimizer=Optimizer.SGD).optimizer == "sgd"


@pytest.mark.parametrize("key", sorted(RANGES))
def test_every_range_is_enforced_at_both_ends(key):
    allowed = RANGES[key]
    is_int = isinstance(allowed.lo, int) and isinstance(allowed.hi, int)
    above = allowed.hi + 1 if is_int else allowed.hi * 2 + 1
    listed = key in ("train.lr_milestones", "data.mean", "data.std")
    value = f"[{above}]" if listed else str(above)
    with pytest.raises(ModescapeError, match=re.escape(key) + r" must be (in|>=|>)"):
        RunConfig().with_overrides([f"{key}={value}"])
    below = allowed.lo - 1 if is_int else allowed.lo - 0.5
    value = f"[{below}]" if listed else str(below)
    with pytest.raises(ModescapeError, match=re.escape(key)):
        RunConfig().with_overrides([f"{key}={value}"])


def test_ranges_cover_every_numeric_field_and_are_documented():
    from pathlib import Path

    numeric = {k for k, _ in NUMERIC} | {"train.lr_milestones", "data.mean", "data.std"}
    assert numeric == set(RANGES)
    doc = (Path(__file__).parents[1] / "docs/settings.md").read_text()
    for key, allowed in RANGES.items():
        assert f"| `{key}` | {allowed} |" in doc, key


@pytest.mark.parametrize(
    "text, message",
    [
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
        ('{"members": ' + "9" * 5000 + "}", "more digits than Python converts"),
        ('{"members": 99999999999999999999}', r"members must be in \[1, 10,000\]"),
        ('{"train": {"lr_milestones": ' + "[" * 500 + "]" * 500 + "}}", "list of integers"),
    ],
)
def test_hostile_config_files_are_one_short_error(tmp_path, text, message):
    f = tmp_path / "c.json"
    f.write_text(text)
    with pytest.raises(ModescapeError, match=message) as e:
        load_config(f)
    assert len(str(e.value)) < 400 and "\n" not in str(e.value)


def test_one_flattener_walks_sections_and_keeps_leaves():
    from modescape.config import flat_settings

    d = {"train": {"lr": 0.1, "augment": {"flip": True}}, "arch_kwargs": {}, "m": [1, 2]}
    assert flat_settings(d) == {
        "train.lr": 0.1,
        "train.augment.flip": True,
        "arch_kwargs": {},
        "m": [1, 2],
    }
    assert list(flat_settings(d, sort_keys=True)) == [
        "arch_kwargs",
        "m",
        "train.augment.flip",
        "train.lr",
    ]
