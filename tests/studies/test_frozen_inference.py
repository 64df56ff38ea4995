"""The studies' frozen, batched evaluation (shift: every family per chunk of corrupted examples;
subspace: each sample frozen) against the eager per-family evaluation it replaced."""

import numpy as np
import pytest
import torch

from modescape.analysis.engine.batched import evaluate_many
from modescape.store import schema as S
from modescape.store.files import load_npy
from modescape.studies.context import RunContext
from modescape.studies.inference import ModelStack
from modescape.studies.shift import (
    ShiftConfig,
    model_families,
    run_shift,
    shift_inputs,
)


@pytest.fixture(scope="module")
def tiny_image_run(tmp_path_factory):
    """Two SmallCNN (seed) members trained one epoch on 60 random 32×32 images, 30 test."""
    from PIL import Image

    from modescape.config import preset
    from modescape.training.trainer import train

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for c in range(10):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / f"c{c}" / f"{i}.png")
    cfg = preset("cifar10", "smallcnn", "seed", root=str(root), members=2, epochs=2)
    out = root.parent / "image_run"
    train(cfg.with_overrides(["train.batch_size=16"]), out)
    return out


@pytest.mark.parametrize("kind", ["signals", "images"])
def test_batched_sweep_equals_per_family_evaluation(kind, tiny_run, tiny_image_run, tmp_path):
    """The sweep's predictions (frozen models for images, several chunks) equal the eager
    engine's on each whole corrupted set, family by family, to 1e-5."""
    import shutil

    import modescape.studies.shift as shift

    run = tmp_path / "run"
    shutil.copytree(tiny_run if kind == "signals" else tiny_image_run, run)
    corruptions = ("gaussian_noise", "time_warp") if kind == "signals" else ("zoom_blur", "fog")
    cfg = ShiftConfig(corruptions=corruptions, severities=(2, 5))
    chunk = shift.SHIFT_CHUNK
    try:
        shift.SHIFT_CHUNK = 7  # several chunks, the last one short
        run_shift(run, cfg)
    finally:
        shift.SHIFT_CHUNK = chunk
    ctx = RunContext(run)
    members = ctx.run.finished_members()
    families = model_families(ctx, members, cfg)
    names, inputs = shift_inputs(ctx, cfg)
    model = ctx.build_model()
    for name, severity in [("clean", 0)] + [(n, s) for n in names for s in cfg.severities]:
        x, _ = inputs(name, severity)  # the whole corrupted test set at once, as before
        for family, weights in families.items():
            expected = evaluate_many(model, weights, x).numpy()
            rel = S.SHIFT_PREDS.format(key=name, severity=severity, family=family)
            got = load_npy(run / S.SHIFT / rel)
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, err_msg=rel)


def test_family_stack_evaluates_a_shared_model_once(tiny_run):
    ctx = RunContext(tiny_run)
    run = ctx.run
    last = run.snapshot_epochs(0)[-1]
    families = {
        "members": [run.state_dict(0), run.state_dict(1)],
        "late": [run.state_dict(0, last - 1), run.state_dict(0, last)],  # m0's final again
    }
    stack = ModelStack(ctx.build_model(), families)
    assert len(stack) == 3
    assert stack.rows == {"members": [0, 1], "late": [2, 0]}


@pytest.mark.parametrize("name", ["gaussian_noise", "zoom_blur", "jpeg_compression"])
def test_image_corruption_chunks_equal_the_whole_set(name):
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (9, 3, 8, 8))).float() / 255
    ctx = RunContext.__new__(RunContext)
    ctx.__dict__["dataset"] = SimpleNamespace(
        x_test=x, y_test=torch.zeros(9, dtype=torch.int64), source={"scaling": "unit"}
    )
    _, make = shift_inputs(ctx, ShiftConfig(corruptions=(name,)))
    whole, _ = make(name, 3)
    parts = torch.cat([make(name, 3, a, a + 4)[0] for a in range(0, 9, 4)])
    assert torch.equal(parts, whole)


def test_subspace_predictions_of_images_equal_the_eager_engine(tiny_image_run, tmp_path):
    import shutil

    from modescape.analysis.subspace import SubspaceConfig
    from modescape.studies.subspace import run_subspace, subspace_samples

    run = tmp_path / "run"
    shutil.copytree(tiny_image_run, run)
    # Calibrated scales (the default): samples that lose ~30 points, as `modescape run` draws.
    cfg = SubspaceConfig(methods=("random", "diagonal"), n_samples=3, n_snapshots=2, rank=1)
    summary = run_subspace(run, cfg, late=2, weight_average=1)
    ctx = RunContext(run)
    for method in cfg.methods:
        samples = subspace_samples(ctx, cfg, method, 1, scale=summary.scale(method, 1))
        expected = evaluate_many(ctx.build_model(), samples, ctx.inputs("test")).numpy()
        got = load_npy(run / S.SUBSPACE / S.SUBSPACE_PREDS.format(method=method, member=1))
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_custom_architectures_run_eagerly():
    """A trace keeps one branch of data-dependent code: only modescape's own architectures
    are frozen; a custom one gives the eager model's predictions on every input."""
    from torch import nn

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(12, 3)

        def forward(self, x):
            y = self.lin(x.flatten(1))
            return y if x.sum() > 0 else -y

    net = Branchy().eval()
    stack = ModelStack(net, {"f": [net.state_dict()]})
    x = torch.cat([torch.ones(8, 3, 2, 2), -torch.ones(8, 3, 2, 2)])
    for part in (x[:8], x[8:]):
        with torch.no_grad():
            expected = net(part).softmax(-1)
        assert torch.allclose(stack.probs([0], part)[0], expected, atol=1e-6)
    assert stack._frozen == {}


def test_frozen_batch_follows_activation_size_and_keeps_predictions(monkeypatch):
    """Examples per frozen forward: fewer for a network with larger activations, within the
    bounds; a stack cut into several frozen calls (the last one short) predicts what the eager
    per-model forward does, to 1e-5."""
    from modescape.models.registry import build_model
    from modescape.studies import inference

    torch.manual_seed(0)
    small = build_model("smallcnn", "seed", (3, 32, 32), 10).eval()
    medium = build_model("mediumcnn", "seed", (3, 32, 32), 10).eval()
    x = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sizes = [ModelStack(m, {"m": [m.state_dict()]}).batch_size(x) for m in (small, medium)]
    assert inference.FREEZE_BATCH_MIN <= sizes[1] < sizes[0] <= inference.FREEZE_BATCH_MAX
    monkeypatch.setattr(inference, "FREEZE_ACTIVATION_BYTES", 1)  # the smallest batch: 16
    states = [small.state_dict(), {k: v * 1.1 for k, v in small.state_dict().items()}]
    stack = ModelStack(small, {"m": states})
    assert stack.batch_size(x) == inference.FREEZE_BATCH_MIN < len(x)
    got = stack.probs(stack.rows["m"], x)
    torch.testing.assert_close(got, evaluate_many(small, states, x), atol=1e-5, rtol=0)
