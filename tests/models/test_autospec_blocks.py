"""The automatic spec on the blocks of ConvNeXt, MobileNet (depthwise and grouped convs),
DenseNet (concatenation) and ViT (attention, token concatenation, position embedding), built
in plain torch as timm builds them: alignment keeps the function (max |Δp| <= 1e-4, checked by
`align_verified` on a probe batch) and permutes the units it can."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modescape.models.alignment import align_verified, apply_permutation


class ConvNeXtBlock(nn.Module):
    """timm's ConvNeXt block (conv_mlp=False): depthwise 7x7, channels-last LayerNorm, MLP,
    layer scale gamma, residual."""

    def __init__(self, c: int):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pwconv1, self.pwconv2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtish(nn.Module):
    def __init__(self, c: int = 8, classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 2, stride=2)
        self.blocks = nn.Sequential(ConvNeXtBlock(c), ConvNeXtBlock(c))
        self.norm, self.head = nn.LayerNorm(c), nn.Linear(c, classes)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.stem(x)).mean((2, 3))))


class InvertedResidual(nn.Module):
    """MobileNetV2: expand 1x1, depthwise 3x3, project 1x1, residual."""

    def __init__(self, c: int, expand: int = 4):
        super().__init__()
        h = c * expand
        self.expand, self.bn1 = nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h)
        self.dw, self.bn2 = nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h)
        self.project, self.bn3 = nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu6(self.bn1(self.expand(x)))
        y = F.relu6(self.bn2(self.dw(y)))
        return x + self.bn3(self.project(y))


class MobileNetish(nn.Module):
    def __init__(self, c: int = 8, classes: int = 5):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.blocks = nn.Sequential(InvertedResidual(c), InvertedResidual(c))
        self.grouped = nn.Conv2d(c, 2 * c, 3, padding=1, groups=2)  # RegNet-style group conv
        self.head = nn.Linear(2 * c, classes)

    def forward(self, x):
        y = self.blocks(F.relu6(self.bn(self.stem(x))))
        return self.head(F.relu(self.grouped(y)).mean((2, 3)))


class DepthwiseSeparable(nn.Module):
    """MobileNet (v1): depthwise 3x3 + BatchNorm + ReLU, then pointwise 1x1 + BatchNorm + ReLU."""

    def __init__(self, c: int, out: int, stride: int = 1):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, stride, padding=1, groups=c, bias=False)
        self.bn1, self.pw = nn.BatchNorm2d(c), nn.Conv2d(c, out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)

    def forward(self, x):
        return F.relu(self.bn2(self.pw(F.relu(self.bn1(self.dw(x))))))


class MobileNetV1ish(nn.Module):
    def __init__(self, classes: int = 5):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.blocks = nn.Sequential(DepthwiseSeparable(8, 16, 2), DepthwiseSeparable(16, 16))
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        return self.head(self.blocks(F.relu(self.bn(self.stem(x)))).mean((2, 3)))


def convnext(in_shape, num_classes):
    """Factories for `--arch tests.models.test_autospec_blocks:<name>`."""
    return ConvNeXtish(classes=num_classes)


def mobilenet_v1(in_shape, num_classes):
    return MobileNetV1ish(classes=num_classes)


def mobilenet_v2(in_shape, num_classes):
    return MobileNetish(classes=num_classes)


class DenseLayer(nn.Module):
    def __init__(self, c: int, growth: int = 4):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([x, y], 1)


class DenseNetish(nn.Module):
    def __init__(self, classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dense = nn.Sequential(DenseLayer(8), DenseLayer(12))
        self.bn, self.head = nn.BatchNorm2d(16), nn.Linear(16, classes)

    def forward(self, x):
        return self.head(F.relu(self.bn(self.dense(self.stem(x)))).mean((2, 3)))


def densenet(in_shape, num_classes):
    return DenseNetish(classes=num_classes)


def test_densenet_concatenation_splits_the_permutation():
    """Each dense layer's output is `cat([x, y])`: the stem's and every layer's units keep
    their own permutations, side by side on the next layer's input axis; a planted permutation
    of all of them is undone exactly."""
    torch.manual_seed(0)
    model, a, _ = _pair(DenseNetish)
    probe = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    spec = align_verified(a, a, model=model, probe=probe, spec="auto").spec
    outputs = ("stem.weight", "dense.0.conv2.weight", "dense.1.conv2.weight")
    stem, grow0, grow1 = (spec.axes[k][0] for k in outputs)
    cat1, cat2 = spec.axes["dense.1.conv1.weight"][1], spec.axes["bn.weight"][0]
    assert spec.concats[cat1] == ((stem, 8), (grow0, 4))
    assert spec.concats[cat2] == ((stem, 8), (grow0, 4), (grow1, 4))
    assert spec.axes["head.weight"] == (None, cat2)
    g = torch.Generator().manual_seed(5)
    planted = {p: torch.randperm(n, generator=g) for p, n in spec.sizes.items()}
    b = apply_permutation(a, spec, planted)
    assert not torch.equal(a["bn.running_mean"], b["bn.running_mean"])
    result = align_verified(a, b, model=model, probe=probe, spec=spec)
    assert result.max_abs_prob_diff <= 1e-4
    for key, value in a.items():
        torch.testing.assert_close(result.state_dict[key], value, rtol=0, atol=1e-6)


class ViTBlock(nn.Module):
    def __init__(self, e: int, heads: int = 2):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(e), nn.LayerNorm(e)
        self.attn = nn.MultiheadAttention(e, heads, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(e, 2 * e), nn.Linear(2 * e, e)

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViTish(nn.Module):
    def __init__(self, e: int = 16, classes: int = 5, patch: int = 4, size: int = 8):
        super().__init__()
        self.patch = nn.Conv2d(3, e, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, e) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, e) * 0.1)
        self.blocks = nn.Sequential(ViTBlock(e), ViTBlock(e))
        self.norm, self.head = nn.LayerNorm(e), nn.Linear(e, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def _pair(cls: type[nn.Module]) -> tuple[nn.Module, dict, dict]:
    """Two independently initialised members, BatchNorm statistics randomised so that a wrong
    permutation of them would change the function."""
    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = cls()
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 2)
        states.append({k: v.clone() for k, v in m.state_dict().items()})
    return m, states[0], states[1]


@pytest.mark.parametrize(
    ("cls", "permuted"),
    [
        (ConvNeXtish, ["blocks.0.pwconv1.weight", "blocks.0.dwconv.weight", "blocks.0.gamma"]),
        (MobileNetish, ["blocks.0.expand.weight", "blocks.0.dw.weight", "blocks.1.bn2.weight"]),
        (MobileNetV1ish, ["blocks.0.dw.weight", "blocks.0.bn1.running_var", "blocks.1.pw.weight"]),
        (
            DenseNetish,
            [
                "dense.0.conv1.weight",
                "dense.1.bn2.running_mean",
                "dense.1.bn1.weight",
                "stem.weight",
                "head.weight",
            ],
        ),
        (ViTish, ["blocks.0.fc1.weight", "blocks.1.fc2.weight"]),
    ],
)
def test_blocks_align_and_keep_the_function(cls, permuted):
    model, a, b = _pair(cls)
    probe = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    result = align_verified(a, b, model=model, probe=probe, spec="auto")
    assert result.max_abs_prob_diff <= 1e-4
    for key in permuted:  # the units the spec can permute are permuted ...
        assert any(p is not None for p in result.spec.axes[key]), key
    # ... and the matching moved something: member b's units were not already in a's order
    moved = [
        p for p, perm in result.perms.items() if not torch.equal(perm, torch.arange(len(perm)))
    ]
    assert moved


def test_attention_heads_are_permuted_as_blocks():
    """Member b is member a with its heads reordered (q, k, v rows and out_proj columns moved
    together, head by head): alignment finds the head permutation and gives a back."""
    torch.manual_seed(0)
    model = ViTish()
    for blk in model.blocks:
        blk.attn = nn.MultiheadAttention(16, 4, batch_first=True)
    a = {k: v.clone() for k, v in model.state_dict().items()}
    b = dict(a)
    order = torch.tensor([2, 0, 3, 1])
    w = a["blocks.0.attn.in_proj_weight"].reshape(3, 4, 4, 16)
    b["blocks.0.attn.in_proj_weight"] = w[:, order].reshape(48, 16)
    b["blocks.0.attn.in_proj_bias"] = a["blocks.0.attn.in_proj_bias"].reshape(3, 4, 4)[:, order]
    b["blocks.0.attn.in_proj_bias"] = b["blocks.0.attn.in_proj_bias"].reshape(48)
    out = a["blocks.0.attn.out_proj.weight"].reshape(16, 4, 4)
    b["blocks.0.attn.out_proj.weight"] = out[:, order].reshape(16, 16)
    probe = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    result = align_verified(a, b, model=model, probe=probe, spec="auto")
    assert result.max_abs_prob_diff <= 1e-4
    spec = result.spec
    heads = spec.axes["blocks.0.attn.in_proj_weight"][1]
    assert heads is not None and spec.sizes[heads] == 4
    assert spec.axes["blocks.0.attn.out_proj.weight"][1] == heads
    assert sorted(result.perms[heads].tolist()) == [0, 1, 2, 3]
    assert not torch.equal(result.perms[heads], torch.arange(4))
    for key, value in a.items():  # b's heads put back where a has them
        torch.testing.assert_close(result.state_dict[key], value, rtol=0, atol=1e-6)


class TimmAttention(nn.Module):
    """timm's ViT `Attention` (timm 1.0, fused path), written out: qkv -> heads -> scaled dot
    product -> proj. `interleaved` makes a look-alike whose heads are not contiguous blocks."""

    def __init__(self, dim: int, num_heads: int = 4, interleaved: bool = False):
        super().__init__()
        self.num_heads, self.head_dim, self.interleaved = num_heads, dim // num_heads, interleaved
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.q_norm, self.k_norm, self.norm = nn.Identity(), nn.Identity(), nn.Identity()

    def forward(self, x):
        B, N, C = x.shape
        if self.interleaved:  # head index last: a head is every num_heads-th feature
            qkv = self.qkv(x).reshape(B, N, 3, self.head_dim, self.num_heads)
            qkv = qkv.permute(2, 0, 4, 1, 3)
        else:
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
            qkv = qkv.permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(self.norm(x.transpose(1, 2).reshape(B, N, C)))


class TimmBlock(nn.Module):
    def __init__(self, e: int, interleaved: bool):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(e), nn.LayerNorm(e)
        self.attn = TimmAttention(e, 4, interleaved)
        self.fc1, self.fc2 = nn.Linear(e, 2 * e), nn.Linear(2 * e, e)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TimmViTish(ViTish):
    def __init__(self, interleaved: bool = False):
        super().__init__()
        self.blocks = nn.Sequential(TimmBlock(16, interleaved), TimmBlock(16, interleaved))


def test_timm_attention_heads_are_permuted_and_a_look_alike_is_left_in_place():
    torch.manual_seed(0)
    model = TimmViTish()
    a = {k: v.clone() for k, v in model.state_dict().items()}
    b = dict(a)
    order = torch.tensor([3, 1, 0, 2])
    b["blocks.1.attn.qkv.weight"] = a["blocks.1.attn.qkv.weight"].reshape(3, 4, 4, 16)[:, order]
    b["blocks.1.attn.qkv.weight"] = b["blocks.1.attn.qkv.weight"].reshape(48, 16)
    b["blocks.1.attn.qkv.bias"] = a["blocks.1.attn.qkv.bias"].reshape(3, 4, 4)[:, order]
    b["blocks.1.attn.qkv.bias"] = b["blocks.1.attn.qkv.bias"].reshape(48)
    proj = a["blocks.1.attn.proj.weight"].reshape(16, 4, 4)
    b["blocks.1.attn.proj.weight"] = proj[:, order].reshape(16, 16)
    probe = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    result = align_verified(a, b, model=model, probe=probe, spec="auto")
    heads = result.spec.axes["blocks.1.attn.qkv.weight"][1]
    assert heads is not None and result.spec.axes["blocks.1.attn.proj.weight"][1] == heads
    for key, value in a.items():
        torch.testing.assert_close(result.state_dict[key], value, rtol=0, atol=1e-6)

    # same attributes, another head layout: the head permutation would change the function,
    # so the alignment falls back to leaving the attention's units in place
    torch.manual_seed(0)
    look_alike = TimmViTish(interleaved=True)
    _, a2, b2 = _pair(lambda: TimmViTish(interleaved=True))
    result = align_verified(a2, b2, model=look_alike, probe=probe, spec="auto")
    assert result.max_abs_prob_diff <= 1e-4
    assert result.spec.axes["blocks.1.attn.qkv.weight"] == (None, None)
