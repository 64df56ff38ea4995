from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modescape.errors import ModescapeError
from modescape.models import alignment, specs
from modescape.models.architectures import build_model
from modescape.models.autospec import auto_spec
from modescape.models.registry import build_model as build_any

CASES = [
    ("smallcnn", "paper", (3, 8, 8)),
    ("smallcnn", "seed", (3, 8, 8)),
    ("mediumcnn", "paper", (3, 8, 8)),
    ("mediumcnn", "seed", (1, 40)),
    ("resnet20", "paper", (3, 8, 8)),
    ("smallcnn", "paper", (1, 40)),
    ("resnet20", "seed", (3, 32, 32)),
    ("resnet20", "seed", (1, 40)),
]


def _state(arch, variant, in_shape, seed):
    torch.manual_seed(seed)
    model = build_model(arch, variant, in_shape, 10)
    g = torch.Generator().manual_seed(seed)
    for name, buf in model.named_buffers():  # non-trivial running stats, so their order matters
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=g))
        elif name.endswith("running_var"):
            buf.copy_(0.5 + torch.rand(buf.shape, generator=g))
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def _logits(model, state, x):
    model.load_state_dict(state)
    with torch.no_grad():
        return model.eval()(x)


def _flat(state):
    return torch.cat(
        [v.reshape(-1) for k, v in state.items() if "running" not in k and "num_batches" not in k]
    )


@pytest.mark.parametrize("arch,variant,in_shape", CASES)
def test_alignment_keeps_function_and_moves_towards_a(arch, variant, in_shape):
    model, a = _state(arch, variant, in_shape, 0)
    _, b = _state(arch, variant, in_shape, 1)
    aligned = alignment.align(a, b, arch, variant)
    x = torch.randn(16, *in_shape)
    torch.testing.assert_close(
        _logits(model, aligned, x), _logits(model, b, x), atol=1e-5, rtol=1e-5
    )
    cos_before = F.cosine_similarity(_flat(a), _flat(b), dim=0)
    cos_after = F.cosine_similarity(_flat(a), _flat(aligned), dim=0)
    assert cos_after > cos_before + 1e-3
    assert set(aligned) == set(b)


@pytest.mark.parametrize("arch,variant,in_shape", CASES[:1] + CASES[4:5])
def test_alignment_undoes_a_random_permutation(arch, variant, in_shape):
    """B = A with its hidden units shuffled: weight matching must recover A exactly."""
    model, a = _state(arch, variant, in_shape, 0)
    spec = specs.permutation_spec(a, arch, variant)
    g = torch.Generator().manual_seed(3)
    perms = {p: torch.randperm(n, generator=g) for p, n in spec.sizes.items()}
    b = alignment.apply_permutation(a, spec, perms)
    x = torch.randn(8, *in_shape)
    torch.testing.assert_close(_logits(model, b, x), _logits(model, a, x), atol=1e-5, rtol=1e-5)
    assert not torch.equal(_flat(a), _flat(b))
    aligned = alignment.align(a, b, arch, variant)
    for k in a:
        torch.testing.assert_close(aligned[k], a[k], atol=0, rtol=0)


def test_resnet_stages_share_one_permutation():
    _, a = _state("resnet20", "paper", (3, 8, 8), 0)
    spec = specs.permutation_spec(a, "resnet20")
    streams = sorted(p for p in spec.sizes if p.startswith("res"))
    assert streams == ["res0", "res1", "res2"]  # one per stage: 16, 32, 64 channels
    assert [spec.sizes[p] for p in streams] == [16, 32, 64]
    assert spec.axes["blocks.2.conv2.weight"][0] == spec.axes["stem.0.weight"][0] == "res0"
    assert spec.axes["blocks.5.bn2.running_var"] == ("res1",)
    assert spec.axes["head.weight"] == (None, "res2")


def test_bad_inputs_raise():
    _, a = _state("smallcnn", "paper", (1, 40), 0)
    _, b = _state("smallcnn", "seed", (1, 40), 0)
    with pytest.raises(ModescapeError, match="architecture"):
        alignment.align(a, b, "smallcnn", "paper")
    with pytest.raises(ModescapeError, match="allowed: smallcnn, mediumcnn, resnet20"):
        alignment.align(a, a, "vgg", "paper")


# ---- any network: automatic specs, axes_to_perm, verification ------------------------------

TINY = "examples.tiny_factory:build"


def _partition(spec):
    groups = {}
    for key, axes in spec.axes.items():
        for axis, p in enumerate(axes):
            if p is not None:
                groups.setdefault(p, set()).add((key, axis))
    return sorted(sorted(g) for g in groups.values())


def _tiny(seed, in_shape=(3, 8, 8)):
    torch.manual_seed(seed)
    model = build_any(TINY, in_shape=in_shape, num_classes=5)
    g = torch.Generator().manual_seed(seed)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=g))
        elif name.endswith("running_var"):
            buf.copy_(0.5 + torch.rand(buf.shape, generator=g))
    with torch.no_grad():  # LayerNorm affine away from (1, 0), so that its permutation matters
        model.ln.weight.add_(0.3 * torch.randn(model.ln.weight.shape, generator=g))
        model.ln.bias.add_(0.3 * torch.randn(model.ln.bias.shape, generator=g))
    return model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch,variant,in_shape", CASES)
def test_auto_spec_equals_the_handwritten_spec_on_builtins(arch, variant, in_shape):
    model, a = _state(arch, variant, in_shape, 0)
    auto = auto_spec(model, torch.randn(2, *in_shape))
    hand = specs.permutation_spec(a, arch, variant)
    assert _partition(auto) == _partition(hand)
    assert auto.views == hand.views
    _, b = _state(arch, variant, in_shape, 1)
    x = torch.randn(8, *in_shape)
    result = alignment.align_verified(a, b, spec="auto", model=model, probe=x)
    torch.testing.assert_close(
        _logits(model, result.state_dict, x), _logits(model, b, x), atol=1e-5, rtol=1e-5
    )
    assert result.max_abs_prob_diff < 1e-5


def test_auto_spec_of_the_example_network():
    model, _ = _tiny(0)
    spec = auto_spec(model, torch.randn(2, 3, 8, 8))
    stream = spec.axes["conv1.weight"][0]
    # the residual addition ties conv2's output (and its BN) to conv1's
    assert spec.axes["conv2.weight"][:2] == (stream, stream) == spec.axes["bn2.running_var"] * 2
    assert spec.axes["ln.weight"] == (spec.axes["fc.weight"][0],)
    assert spec.axes["head.weight"] == (None, spec.axes["fc.weight"][0])
    assert spec.axes["conv1.weight"][1] is None  # the input channels are not permutable
    assert spec.sizes == {stream: 8, spec.axes["fc.weight"][0]: 16}


@pytest.mark.parametrize("in_shape", [(3, 8, 8), (2, 20)])
def test_align_custom_network_keeps_function_and_undoes_a_permutation(in_shape):
    model, a = _tiny(0, in_shape)
    _, b = _tiny(1, in_shape)
    x = torch.randn(16, *in_shape)
    aligned = alignment.align(a, b, model=model, probe=x)
    torch.testing.assert_close(_logits(model, aligned, x), _logits(model, b, x), atol=1e-5, rtol=0)
    assert F.cosine_similarity(_flat(a), _flat(aligned), dim=0) > F.cosine_similarity(
        _flat(a), _flat(b), dim=0
    )
    spec = auto_spec(model, x)
    g = torch.Generator().manual_seed(5)
    shuffled = alignment.apply_permutation(
        a, spec, {p: torch.randperm(n, generator=g) for p, n in spec.sizes.items()}
    )
    assert not torch.equal(_flat(a), _flat(shuffled))
    recovered = alignment.align(a, shuffled, model=model, probe=x)
    for k in a:
        torch.testing.assert_close(recovered[k], a[k], atol=0, rtol=0)


def _axes_to_perm(spec):
    return {k: axes for k, axes in spec.axes.items()}


def test_axes_to_perm_adapter_matches_the_builtin_spec():
    model, a = _state("resnet20", "paper", (3, 8, 8), 0)
    _, b = _state("resnet20", "paper", (3, 8, 8), 1)
    hand = specs.permutation_spec(a, "resnet20")
    reference = alignment.align(a, b, "resnet20")
    GitReBasinSpec = namedtuple("PermutationSpec", ["perm_to_axes", "axes_to_perm"])
    for spec in (_axes_to_perm(hand), GitReBasinSpec({}, _axes_to_perm(hand))):
        got = alignment.align(a, b, spec=spec, model=model, probe=torch.randn(8, 3, 8, 8))
        for k in a:
            torch.testing.assert_close(got[k], reference[k], atol=0, rtol=0)


def test_axes_to_perm_errors():
    _, a = _tiny(0)
    with pytest.raises(ModescapeError, match="does not hold"):
        specs.spec_from_axes_to_perm({"nope.weight": ("P",)}, a)
    with pytest.raises(ModescapeError, match="has 1 axes; the tensor has 4"):
        specs.spec_from_axes_to_perm({"conv1.weight": ("P",)}, a)
    with pytest.raises(ModescapeError, match=r"has 8 units but 'fc\.weight' axis 0 has 16"):
        specs.spec_from_axes_to_perm({"conv1.bias": ("P",), "fc.weight": ("P", None)}, a)


def test_a_wrong_spec_is_refused_with_the_change_it_caused():
    model, a = _tiny(0)
    _, b = _tiny(1)
    # conv1's outputs permuted, but not its BatchNorm nor conv2's inputs: a different function
    wrong = {"conv1.weight": ("P", None, None, None), "conv1.bias": ("P",)}
    with pytest.raises(ModescapeError, match=r"changed the network's function \(max \|Δp\| = "):
        alignment.align(a, b, spec=wrong, model=model, probe=torch.randn(16, 3, 8, 8))


class _GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 3)
        self.gn = nn.GroupNorm(2, 8)  # groups of 4 channels: units may not cross groups
        self.fc = nn.Linear(8 * 6, 3)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.gn(self.conv(x))), 1))


class _CatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


class _TwiceNet(nn.Module):
    """One tensor concatenated with itself: its permutation acts on both segments."""

    def __init__(self):
        super().__init__()
        self.a, self.head = nn.Linear(4, 5), nn.Linear(10, 3)

    def forward(self, x):
        h = F.relu(self.a(x))
        return self.head(torch.cat([h, h], dim=1))


def test_a_tensor_concatenated_with_itself_is_permuted_in_both_segments():
    torch.manual_seed(0)
    model = _TwiceNet()
    a = {k: v.clone() for k, v in model.state_dict().items()}
    probe = torch.randn(8, 4)
    spec = auto_spec(model, probe)
    assert spec.concats == {"C0": (("P0", 5), ("P0", 5))}
    b = alignment.apply_permutation(a, spec, {"P0": torch.tensor([3, 0, 4, 1, 2])})
    torch.testing.assert_close(_logits(model, b, probe), _logits(model, a, probe))
    result = alignment.align_verified(a, b, model=model, probe=probe, spec=spec)
    for k in a:
        torch.testing.assert_close(result.state_dict[k], a[k], atol=0, rtol=0)


class _BranchyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)  # data-dependent: fx cannot trace


def test_auto_spec_fixes_what_it_cannot_permute_and_refuses_what_it_cannot_trace():
    spec = auto_spec(_GroupNormNet(), torch.randn(2, 1, 8))
    assert spec.axes["conv.weight"] == (None, None, None) and spec.sizes == {}
    # a concatenation along the units splits the permutation: each branch keeps its own,
    # side by side on the head's input axis
    spec = auto_spec(_CatNet(), torch.randn(2, 4))
    assert spec.sizes == {"P0": 3, "P1": 3} and spec.axes["a.weight"] == ("P0", None)
    assert spec.concats == {"C0": (("P0", 3), ("P1", 3))}
    assert spec.axes["head.weight"] == (None, "C0")
    with pytest.raises(ModescapeError, match=r"torch\.fx cannot trace _BranchyNet"):
        auto_spec(_BranchyNet(), torch.randn(2, 4))


def test_other_networks_need_a_model_and_a_probe():
    model, a = _tiny(0)
    with pytest.raises(ModescapeError, match="pass model="):
        alignment.align(a, a, TINY)
    with pytest.raises(ModescapeError, match="needs probe="):
        alignment.align(a, a, model=model)
    with pytest.raises(ModescapeError, match="'auto'"):
        alignment.align(a, a, model=model, probe=torch.randn(2, 3, 8, 8), spec="fx")


def test_auto_spec_traces_keras_padded_convolutions_as_leaves():
    model = build_model("resnet20", "paper", (3, 8, 8), 10, padding="keras")
    auto = auto_spec(model, torch.randn(2, 3, 8, 8))
    hand = specs.permutation_spec(model.state_dict(), "resnet20")
    assert _partition(auto) == _partition(hand)


class _FunctionalNet(nn.Module):
    """Functional style: F.relu, x.mean over space, torch.flatten, x.view, a scaled residual."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(6 * 4 * 4, 5), nn.Linear(6, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        h = F.relu(self.c1(x))
        h = F.relu(h + 0.5 * self.c2(h))
        a = self.fc1(torch.flatten(F.max_pool2d(h, 2), 1))
        b = self.fc2(h.mean((2, 3)).view(x.size(0), -1))
        return self.head(torch.tanh(a + b))


def test_auto_spec_follows_functional_code_and_keeps_the_function():
    torch.manual_seed(0)
    model = _FunctionalNet()
    x = torch.randn(8, 2, 8, 8)
    spec = auto_spec(model, x)
    stream = spec.axes["c1.weight"][0]
    assert spec.axes["c2.weight"][:2] == (stream, stream)
    assert spec.axes["fc1.weight"] == (spec.axes["fc2.weight"][0], stream, None)
    assert spec.views["fc1.weight"] == (5, 6, 16)  # channel-major blocks of 4 × 4
    a = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    b = _FunctionalNet().state_dict()
    result = alignment.align_verified(a, b, model=model, probe=x)
    assert result.max_abs_prob_diff < 1e-5 and set(result.perms) == {"P0", "P1"}
