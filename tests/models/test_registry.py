"""Tests for modescape.models.registry: resolution order, errors, provenance, norm layers."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modescape.errors import ModescapeError
from modescape.models import registry
from modescape.models.registry import (
    build_model,
    describe_arch,
    has_batchnorm,
    norm_parameter_names,
    register_arch,
)

TINY = "examples.tiny_factory:build"


def _mlp(in_shape, num_classes, hidden=7):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_shape[0] * in_shape[1], hidden),
        nn.GroupNorm(1, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


@pytest.fixture
def mlp_registered():
    register_arch("mlp", _mlp)
    yield "mlp"
    registry.unregister_arch("mlp")


def test_builtins_resolve_first_and_take_padding():
    torch.manual_seed(0)
    a = build_model("resnet20", "paper", (3, 8, 8), 10)
    torch.manual_seed(0)
    b = build_model("resnet20", "paper", (3, 8, 8), 10, padding="keras")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)  # padding changes the function, not the weights
    x = torch.randn(2, 3, 8, 8)
    assert not torch.allclose(a.eval()(x), b.eval()(x))
    with pytest.raises(ModescapeError, match="only the keyword 'padding'"):
        build_model("smallcnn", "paper", (1, 40), 10, width=3)
    with pytest.raises(ModescapeError, match="unknown padding"):
        build_model("smallcnn", "paper", (1, 40), 10, padding="valid")


def test_registered_name_with_kwargs(mlp_registered):
    model = build_model(mlp_registered, in_shape=(1, 12), num_classes=4, hidden=5)
    assert model(torch.randn(3, 1, 12)).shape == (3, 4)
    assert model[1].out_features == 5
    with pytest.raises(ModescapeError, match="already registered"):
        register_arch("mlp", lambda s, n: nn.Linear(1, n))
    with pytest.raises(ModescapeError, match="cannot register"):
        register_arch("resnet20", _mlp)
    with pytest.raises(ModescapeError, match="cannot be called"):
        build_model(mlp_registered, in_shape=(1, 12), num_classes=4, depth=2)


def test_import_path_builds_and_passes_dropout():
    torch.manual_seed(1)
    model = build_model(TINY, in_shape=(2, 16), num_classes=3, dropout=0.3, width=6)
    assert model.drop.p == 0.3 and model.conv1.out_channels == 6
    torch.manual_seed(1)
    again = build_model(TINY, in_shape=(2, 16), num_classes=3, dropout=0.3, width=6)
    for v, w in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(v, w)  # the global RNG seeds a custom factory too
    assert model.eval()(torch.randn(4, 2, 16)).shape == (4, 3)


def test_import_path_found_from_cwd_without_it_on_sys_path(monkeypatch, tmp_path):
    (tmp_path / "byo_pkg_x").mkdir()
    (tmp_path / "byo_pkg_x" / "__init__.py").write_text(
        "from torch import nn\ndef make(in_shape, num_classes):\n"
        "    return nn.Linear(in_shape[0], num_classes)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert build_model("byo_pkg_x:make", in_shape=(5,), num_classes=2).in_features == 5
    finally:
        sys.modules.pop("byo_pkg_x", None)


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("tinynet", "unknown architecture 'tinynet'.*import path"),
        ("no_such_pkg_zz.mod:build", "cannot import 'no_such_pkg_zz.mod'"),
        ("examples.tiny_factory:nope", "has no attribute 'nope'"),
        ("examples.tiny_factory:TinyNet.forward.__name__", "is not callable"),
        ("torch.nn:Identity.__init__.__doc__", "is not callable"),
        ("builtins:len", "'len' is the builtin function .*builtins.len, not a model factory"),
        ("builtins:eval", "builtins.eval, not a model factory"),
        ("collections:OrderedDict", "the class collections.OrderedDict, not a model factory"),
        ("os.path:join", r"calling the function .*join\(in_shape=.* raised TypeError"),
    ],
)
def test_bad_architectures_give_one_clear_error(arch, message):
    with pytest.raises(ModescapeError, match=message):
        build_model(arch, in_shape=(1, 8), num_classes=2)


def test_factory_must_return_a_module(mlp_registered):
    register_arch("notamodule", lambda in_shape, num_classes: "oops")
    try:
        with pytest.raises(ModescapeError, match=r"returned str, not an nn\.Module"):
            build_model("notamodule", in_shape=(1, 8), num_classes=2)
    finally:
        registry.unregister_arch("notamodule")


def test_describe_arch_records_provenance(mlp_registered):
    builtin = describe_arch("smallcnn")
    assert builtin["source"] == "builtin"
    assert builtin["factory"] == "modescape.models.architectures:build_model"
    imported = describe_arch(TINY)
    assert imported["source"] == "import" and imported["factory"] == "examples.tiny_factory:build"
    assert imported["file"].endswith("tiny_factory.py") and len(imported["sha256"]) == 64
    assert describe_arch("mlp")["source"] == "registered"
    assert describe_arch("mlp")["factory"].endswith(":_mlp")


def test_norm_parameter_names_lists_every_kind(mlp_registered):
    tiny = build_model(TINY, in_shape=(3, 8, 8), num_classes=10)
    names = norm_parameter_names(tiny)
    assert names["batchnorm"] == ["bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias"]
    assert names["layernorm"] == ["ln.weight", "ln.bias"]
    assert names["groupnorm"] == []
    assert has_batchnorm(tiny)
    mlp = build_model("mlp", in_shape=(1, 8), num_classes=2)
    assert norm_parameter_names(mlp)["groupnorm"] == ["2.weight", "2.bias"]
    assert not has_batchnorm(mlp)
    assert set(norm_parameter_names(mlp)) == {"batchnorm", "layernorm", "groupnorm"}


def test_custom_model_trains_one_step():
    torch.manual_seed(0)
    model = build_model(TINY, in_shape=(3, 8, 8), num_classes=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = F.cross_entropy(model.train()(x), y)
    loss.backward()
    opt.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "conv1.weight" in changed and "ln.weight" in changed and "bn1.running_mean" in changed
    assert torch.isfinite(loss)


def test_a_run_of_a_custom_architecture_trains_reloads_and_aligns(tmp_path):
    """Config → trainer → run directory → Run.model → alignment, all on the example factory."""
    from conftest import tiny_config

    from modescape.models.alignment import align_verified
    from modescape.store.run import Run
    from modescape.training.trainer import train

    cfg = tiny_config(members=2, epochs=1)
    cfg = cfg.with_overrides([f"model.arch={TINY}", 'model.arch_kwargs={"width": 4}'])
    train(cfg, tmp_path / "run")
    run = Run(tmp_path / "run")
    assert run.config.model.arch_kwargs == {"width": 4}
    model = run.model(0)
    assert model.conv1.out_channels == 4 and has_batchnorm(model)
    x = run.dataset().x_test[:32]
    result = align_verified(run.state_dict(0), run.state_dict(1), model=model, probe=x)
    assert result.max_abs_prob_diff < 1e-5
    assert set(result.perms) == {"P0", "P1"}


def test_cli_trains_an_import_path_architecture_and_rejects_an_unknown_one(tmp_path):
    from conftest import cli

    from modescape.store.run import Run

    out = tmp_path / "run"
    code, _, err = cli(
        "train", "--data", "mnist1d", "--arch", TINY, "--members", "1", "--epochs", "1",
        "--set", "data.mnist1d_samples=200", "--set", 'model.arch_kwargs={"width": 3}',
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert Run(out).model(0).conv1.out_channels == 3
    code, _, err = cli("train", "--arch", "tinynet", "--out", str(tmp_path / "bad"))
    assert code == 2 and "unknown architecture 'tinynet'" in err
    code, _, err = cli("train", "--arch", "no_such_mod_q:build", "--out", str(tmp_path / "bad"))
    assert code == 2 and "cannot import 'no_such_mod_q'" in err
    assert not (tmp_path / "bad").exists()  # refused before any file was written
