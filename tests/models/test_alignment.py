import pytest
import torch
import torch.nn.functional as F

from modescape.errors import ModescapeError
from modescape.models import alignment
from modescape.models.architectures import build_model

CASES = [
    ("smallcnn", "paper", (3, 8, 8)),
    ("smallcnn", "seed", (3, 8, 8)),
    ("mediumcnn", "paper", (3, 8, 8)),
    ("mediumcnn", "seed", (1, 40)),
    ("resnet20", "paper", (3, 8, 8)),
    ("smallcnn", "paper", (1, 40)),
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
    spec = alignment.permutation_spec(a, arch, variant)
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
    spec = alignment.permutation_spec(a, "resnet20")
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
