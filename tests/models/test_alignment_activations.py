"""Activation matching: a planted permutation is recovered exactly (the aligned copy equals the
original), and on two independently trained MNIST-1D members it lowers the loss at the midpoint
of the linear path, as weight matching does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modescape.errors import ModescapeError
from modescape.models import alignment
from modescape.models.alignment_activations import unit_sites
from modescape.models.architectures import build_model
from modescape.models.autospec import auto_spec
from modescape.store.run import load_run
from tests.models import test_autospec_blocks as blocks


def _randomised(model):
    g = torch.Generator().manual_seed(1)
    for name, buf in model.named_buffers():  # running statistics whose order matters
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=g))
        elif name.endswith("running_var"):
            buf.copy_(0.5 + torch.rand(buf.shape, generator=g))
    return model


@pytest.mark.parametrize(
    "make",
    [
        lambda: build_model("smallcnn", "paper", (3, 8, 8), 10),
        lambda: build_model("resnet20", "paper", (3, 8, 8), 10),
        blocks.DenseNetish,  # a concatenation's segments
        blocks.TimmViTish,  # attention heads as blocks (qkv viewed [3, heads, head_dim, embed])
    ],
    ids=["smallcnn", "resnet20", "densenet", "vit"],
)
def test_activation_matching_recovers_a_planted_permutation(make):
    torch.manual_seed(0)
    model = _randomised(make()).eval()
    probe = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = {k: v.clone() for k, v in model.state_dict().items()}
    spec = auto_spec(model, probe)
    g = torch.Generator().manual_seed(3)
    planted = {p: torch.randperm(n, generator=g) for p, n in spec.sizes.items()}
    b = alignment.apply_permutation(a, spec, planted)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    result = alignment.align_verified(
        a, b, model=model, probe=probe, spec=spec, method="activations"
    )
    assert result.max_abs_prob_diff <= 1e-4
    for key, value in a.items():
        torch.testing.assert_close(result.state_dict[key], value, rtol=0, atol=1e-5)


def test_attention_heads_are_units_of_qkv_outputs():
    model = blocks.TimmViTish()
    spec = auto_spec(model, torch.randn(2, 3, 8, 8))
    heads = spec.axes["blocks.0.attn.qkv.weight"][1]
    (site,) = unit_sites(model, spec)[heads]
    assert site.module == "blocks.0.attn.qkv" and site.split == (3, 4, 4) and site.unit_axis == 1


def test_unknown_method_is_refused():
    model = build_model("smallcnn", "paper", (3, 8, 8), 10)
    a = model.state_dict()
    with pytest.raises(ModescapeError, match=r"alignment method 'bias'.*weights, activations"):
        alignment.align(a, a, "smallcnn", method="bias")


def _midpoint_loss(model, a, b, x, y):
    mid = {k: (a[k] + b[k]) / 2 for k in a}
    model.load_state_dict(mid)
    with torch.no_grad():
        return float(F.cross_entropy(model.eval()(x), y))


def test_activation_matching_lowers_the_midpoint_loss_of_trained_members(tiny_run):
    run = load_run(tiny_run)
    model = run.build_model()
    data = run.dataset()
    x, y = data.x_test[:500].float(), data.y_test[:500]
    train_x = data.x_train[
        torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(0))[:256]
    ]
    a, b = run.state_dict(0), run.state_dict(1)
    by_acts = alignment.align(a, b, "smallcnn", model=model, probe=x[:64],
                              method="activations", inputs=train_x.float())  # fmt: skip
    by_weights = alignment.align(a, b, "smallcnn", model=model, probe=x[:64])
    plain = _midpoint_loss(model, a, b, x, y)
    acts = _midpoint_loss(model, a, by_acts, x, y)
    weights = _midpoint_loss(model, a, by_weights, x, y)
    assert acts < plain - 0.05, (plain, acts, weights)
    assert weights < plain - 0.05, (plain, acts, weights)
