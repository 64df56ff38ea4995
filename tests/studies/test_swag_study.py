"""`modescape swag` on a tiny MNIST-1D run trained with a collection phase: every method's
predictions, checked against the stored statistics and recomputed independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from modescape.analysis import metrics
from modescape.analysis.swag import SwagConfig
from modescape.errors import ModescapeError
from modescape.store.files import load_safetensors
from modescape.store.run import load_run
from modescape.store.summary import verify_run
from modescape.studies.swag import run_swag
from modescape.training.trainer import train

CONFIG = SwagConfig(n_samples=6, mc_passes=4)


def swag_run_config():
    # the seed variant has dropout (MC dropout); 5 steps per epoch, collected every epoch
    sets = {"data.mnist1d_samples": 400, "model.variant": "seed", "train.collect.epochs": 3}
    return tiny_config(members=3, epochs=3, **sets)


@pytest.fixture(scope="module")
def swag_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("swag") / "run"
    train(swag_run_config(), out, device="cpu")
    summary = run_swag(out, CONFIG)
    return out, summary


def test_every_method_has_predictions_and_a_row(swag_run):
    out, summary = swag_run
    assert verify_run(out) == []
    names = [r.method for r in summary.table]
    assert names == ["single model", "deep ensemble", "SWA", "SWAG", "SWAG-Diagonal",
                     "MultiSWAG", "MC dropout"]  # fmt: skip
    shapes = {
        "swa": (1, 80, 10), "swag": (6, 80, 10), "swag_diag": (6, 80, 10),
        "mc_dropout": (4, 80, 10),
    }  # fmt: skip
    for method, shape in shapes.items():
        for m in range(3):
            p = np.load(out / f"swag/preds/{method}/m{m:03d}/probs.npy")
            assert p.shape == shape and np.allclose(p.sum(-1), 1, atol=1e-5)
    assert summary.collection["iterates"] == [3, 3, 3]
    assert load_run(out).manifest.files.get("swag/summary.json")


def test_swa_row_is_the_mean_of_the_collected_iterates_evaluated(swag_run):
    """SWA's predictions recomputed from the stored statistics with a plain model."""
    out, _ = swag_run
    run = load_run(out)
    model = run.model(1)
    st = load_safetensors(out / "members/m001/swag.safetensors")
    torch.nn.utils.vector_to_parameters(st["mean"].float(), model.parameters())
    model.eval()
    x = run.dataset().x_test
    with torch.no_grad():
        probs = torch.softmax(model(x), 1).numpy()
    stored = np.load(out / "swag/preds/swa/m001/probs.npy")[0]
    np.testing.assert_allclose(stored, probs, atol=1e-5)


def test_multiswag_is_the_pooled_predictive_of_all_members(swag_run):
    out, summary = swag_run
    labels = load_run(out).labels("test")
    pooled = np.concatenate(
        [np.load(out / f"swag/preds/swag/m{m:03d}/probs.npy") for m in range(3)]
    )
    row = next(r for r in summary.table if r.method == "MultiSWAG")
    assert row.nll == pytest.approx(metrics.nll(pooled.mean(0), labels), rel=1e-5)
    assert row.forwards == 18 and row.members == 3
    finals = load_run(out).final_predictions("test")
    deep = next(r for r in summary.table if r.method == "deep ensemble")
    assert deep.accuracy == pytest.approx(metrics.accuracy(finals.mean(0), labels))


def test_second_call_reuses_every_cached_prediction(swag_run):
    out, _ = swag_run
    files = sorted(out.glob("swag/preds/*/*/probs.npy"))
    before = {p: p.stat().st_mtime_ns for p in files}
    run_swag(out, CONFIG)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    run_swag(out, SwagConfig(n_samples=6, mc_passes=3, methods=("mc_dropout",)))
    assert np.load(out / "swag/preds/mc_dropout/m000/probs.npy").shape[0] == 3


def test_missing_collection_phase_is_one_clear_error(tiny_run):
    with pytest.raises(ModescapeError, match="collection phase"):
        run_swag(tiny_run, SwagConfig(methods=("swa",)))
