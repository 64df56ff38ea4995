import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modescape.analysis import weightspace
from modescape.analysis.engine import batched, grouped
from modescape.models import registry
from modescape.models.architectures import ARCHITECTURES, build_model, min_input_size
from tests.analysis.engine_refs import direct_forward, weight_points

CASES = [
    (arch, variant, ndim) for arch, vs in ARCHITECTURES.items() for variant in vs for ndim in (1, 2)
]


def _in_shape(arch, variant, ndim):
    # Odd sizes exercise floor / ceil pooling and stride-2 borders.
    n = max(min_input_size(arch, variant), 9) + 1
    return (2, 3 * n + 1) if ndim == 1 else (3, n, n + 1)


def _random_buffers(model, k, seed=2):
    """Per-point BN running stats near a trained network's: means in ±0.05, variances 0.9-1.1.

    (Wilder statistics blow ResNet-20's logits up to hundreds, where fp32 rounding in *any*
    implementation exceeds the 1e-5 tolerance.)
    """
    g = torch.Generator().manual_seed(seed)
    parts = []
    for name, shape in zip(
        weightspace.buffer_names(model),
        weightspace.shapes_of(model, weightspace.buffer_names(model)),
    ):
        r = 0.1 * torch.rand(k, shape.numel(), generator=g)
        parts.append(r + 0.9 if name.endswith("running_var") else r - 0.05)
    return torch.cat(parts, 1) if parts else torch.zeros(k, 0)


@pytest.mark.parametrize("arch,variant,ndim", CASES)
def test_grouped_matches_one_point_at_a_time(arch, variant, ndim):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    in_shape = _in_shape(arch, variant, ndim)
    model = build_model(arch, variant, in_shape, 7)
    assert grouped.compile_grouped(model) is not None
    x = torch.randn(11, *in_shape)
    flat = weight_points(model, 3)
    kw = dict(output="logits", strategy="grouped", batch_size=4, chunk=2)
    buffer_cases = [None]
    if registry.has_batchnorm(model):  # BN statistics given per point, too
        buffer_cases.append(_random_buffers(model, 3))
    for bufs in buffer_cases:
        got = batched.evaluate_many(model, flat, x, buffers=bufs, **kw)
        _assert_close_scaled(got, direct_forward(model, flat, x, bufs))


def _assert_close_scaled(got, ref):
    """allclose(1e-5), the absolute part scaled by the logits' size: an untrained ResNet-20's
    logits reach ~200, where one fp32 rounding of the loop itself is ~1e-5."""
    atol = 1e-5 * max(1.0, ref.abs().max().item())
    torch.testing.assert_close(got, ref, atol=atol, rtol=1e-5)


def test_auto_picks_grouped_for_small_signal_networks_and_loop_otherwise(monkeypatch):
    # where oneDNN is ahead of MKL (AVX-512) "auto" runs "signals" instead (test_signals.py)
    monkeypatch.setattr(batched, "onednn_ahead", lambda: False)
    rule = batched.GROUPED_MAX_ACTIVATION_BYTES
    x1, x8, x16 = torch.randn(8, 1, 40), torch.randn(8, 3, 8, 8), torch.randn(8, 3, 16, 16)
    small = build_model("smallcnn", "paper", (1, 40))  # ≈18 KiB of activations per signal
    wide = build_model("mediumcnn", "paper", (1, 40))  # ≈112 KiB
    assert batched.activation_bytes_per_example(small, x1) <= batched.GROUPED_MAX_ACTIVATION_BYTES
    assert batched.activation_bytes_per_example(wide, x1) > batched.GROUPED_MAX_ACTIVATION_BYTES
    assert batched.plan(small, x1, 100).strategy == "grouped"
    assert batched.plan(wide, x1, 100).strategy == "loop"
    # Images always "loop", however small (im2col loses to oneDNN's direct 2-D convolutions).
    assert batched.plan(build_model("smallcnn", "paper", (3, 8, 8)), x8, 100).strategy == "loop"
    assert batched.plan(build_model("smallcnn", "paper", (3, 16, 16)), x16, 100).strategy == "loop"
    # The rule is the threshold: moving it moves the choice.
    monkeypatch.setattr(batched, "GROUPED_MAX_ACTIVATION_BYTES", 10**9)
    assert batched.auto_strategy(wide, x1) == "grouped"
    monkeypatch.setattr(batched, "GROUPED_MAX_ACTIVATION_BYTES", 1)
    assert batched.auto_strategy(small, x1) == "loop"
    monkeypatch.setattr(batched, "GROUPED_MAX_ACTIVATION_BYTES", rule)
    p = batched.plan(small, torch.randn(4000, 1, 40), 96, batch_size=1000)
    assert p.chunk == batched.GROUPED_CHUNK
    assert p.chunk * p.batch_size <= batched.GROUPED_WORK
    assert batched.plan(small, x1, 84).chunk == 14  # equal chunks, not 5 × 16 + 4
    assert batched.plan(small, x1, 3).chunk == 3


def test_grouped_blocks_are_deterministic_fresh_and_leave_inputs_alone():
    """Reused buffers: partial chunks and data blocks, repeated calls give the same bytes; every
    block yielded is a new tensor; the inputs are not written to."""
    torch.manual_seed(0)
    model = build_model("smallcnn", "paper", (1, 40), 10)
    x = torch.randn(23, 1, 40)
    x0 = x.clone()
    flat = weight_points(model, 5)
    kw = dict(strategy="grouped", batch_size=8, chunk=2)
    blocks = list(batched.iter_logits(model, flat, x, **kw))
    assert len({b.data_ptr() for _, _, b in blocks}) == len(blocks)
    got = torch.empty(5, 23, 10)
    for ks, ns, b in blocks:
        got[ks, ns] = b
    _assert_close_scaled(got, direct_forward(model, flat, x))
    again = batched.evaluate_many(model, flat, x, output="logits", **kw)
    assert torch.equal(got, again)
    assert torch.equal(x, x0)
    y = torch.randint(0, 10, (23,))
    s1, s2 = (batched.score_many(model, flat, x, y, **kw) for _ in range(2))
    assert torch.equal(s1.loss, s2.loss) and torch.equal(s1.accuracy, s2.accuracy)
    ref = torch.stack([F.cross_entropy(lg, y) for lg in direct_forward(model, flat, x)])
    torch.testing.assert_close(s1.loss, ref, rtol=1e-5, atol=0)


@pytest.mark.parametrize("ndim", [1, 2])
def test_keras_same_padding_resnet(ndim):
    """Keras' asymmetric "same" padding on strided convs (even sizes pad only after)."""
    torch.manual_seed(0)
    in_shape = (2, 12) if ndim == 1 else (3, 8, 6)
    model = build_model("resnet20", "paper", in_shape, 5, padding="keras")
    assert grouped.compile_grouped(model) is not None
    x = torch.randn(7, *in_shape)
    flat = weight_points(model, 3)
    bufs = _random_buffers(model, 3)
    got = batched.evaluate_many(
        model, flat, x, buffers=bufs, output="logits", strategy="grouped", batch_size=4, chunk=2
    )
    _assert_close_scaled(got, direct_forward(model, flat, x, bufs))


def test_unsupported_model_falls_back_to_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.GELU(), nn.Flatten(), nn.Linear(40, 3))
    assert grouped.compile_grouped(model) is None
    x = torch.randn(5, 1, 10)
    flat = weight_points(model, 2)
    assert batched.plan(model, x, 2, strategy="grouped").strategy == "loop"
    got = batched.evaluate_many(model, flat, x, output="logits", strategy="grouped")
    torch.testing.assert_close(got, direct_forward(model, flat, x), atol=1e-5, rtol=1e-5)


def test_linear_before_flatten_falls_back_to_loop():
    """torch applies a Linear to a map's last axis; the grouped layout has no such step, so the
    model takes the loop (it used to fail inside the grouped forward)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(1, 4, 3, padding=1), nn.Linear(10, 6), nn.Flatten(), nn.Linear(24, 3)
    )
    assert grouped.compile_grouped(model) is None
    x = torch.randn(5, 1, 10)
    flat = weight_points(model, 2)
    got = batched.evaluate_many(model, flat, x, output="logits", strategy="grouped")
    torch.testing.assert_close(got, direct_forward(model, flat, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "conv,pool",
    [
        (nn.Conv1d(2, 3, 5, stride=2, padding=2), nn.MaxPool1d(3, stride=2, padding=1)),
        (nn.Conv1d(2, 3, 3, stride=3, padding=0), nn.MaxPool1d(2, ceil_mode=True)),
        (
            nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0)),
            nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        ),
        (nn.Conv2d(2, 3, 1, stride=2), nn.MaxPool2d((2, 3), ceil_mode=True)),
    ],
)
def test_conv_and_pool_shapes_against_torch(conv, pool):
    """im2col borders, strides and PyTorch's ceil_mode rule, against the modules themselves."""
    torch.manual_seed(0)
    model = nn.Sequential(conv, nn.ReLU(), pool, nn.Flatten(), nn.LazyLinear(4))
    shape = (2, 17) if isinstance(conv, nn.Conv1d) else (2, 11, 9)
    model(torch.randn(1, *shape))
    x = torch.randn(6, *shape)
    flat = weight_points(model, 3, scale=0.3)
    got = batched.evaluate_many(model, flat, x, output="logits", strategy="grouped")
    torch.testing.assert_close(got, direct_forward(model, flat, x), atol=1e-5, rtol=1e-5)


def test_first_conv_without_bias_and_linear_without_bias():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32, 3, bias=False),
    )
    model.eval()
    x = torch.randn(5, 1, 8)
    flat = weight_points(model, 2, scale=0.3)
    bufs = _random_buffers(model, 2)
    got = batched.evaluate_many(model, flat, x, output="logits", strategy="grouped", buffers=bufs)
    torch.testing.assert_close(got, direct_forward(model, flat, x, bufs), atol=1e-5, rtol=1e-5)
    # A hand-computed point: conv (no bias) -> BN(eval) -> ReLU -> linear.
    p = weightspace.unflatten(
        flat[0],
        weightspace.param_names(model),
        weightspace.shapes_of(model, weightspace.param_names(model)),
    )
    mean, var = bufs[0, :4], bufs[0, 4:]
    h = F.conv1d(x, p["0.weight"], padding=1)
    h = (h - mean[:, None]) / torch.sqrt(var[:, None] + 1e-5) * p["1.weight"][:, None]
    h = F.relu(h + p["1.bias"][:, None]).flatten(1) @ p["4.weight"].T
    torch.testing.assert_close(got[0], h, atol=1e-5, rtol=1e-5)
