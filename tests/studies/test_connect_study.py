"""The connector study on MNIST-1D: connected in loss, apart in function (Fort et al. 2019 v1;
Garipov et al. 2018), resumable after a kill, verified, and bad input refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from torch import nn

import modescape as ms
from modescape.analysis.functionspace import disagreement_matrix
from modescape.errors import ModescapeError
from modescape.store.files import read_csv
from modescape.store.run import load_run
from modescape.store.summary import verify_run
from modescape.studies.connect import connect_config, fit_curve


def _late_disagreement(run_dir: Path, member: int, window: int) -> float:
    """Mean pairwise disagreement of the member's last `window` snapshots (the paper's
    'late snapshots of one trajectory')."""
    run = load_run(run_dir)
    epochs = run.snapshot_epochs(member)[-window:]
    d = disagreement_matrix(np.stack([run.predictions("test", member, e) for e in epochs]))
    return float(d[np.triu_indices(len(epochs), 1)].mean())


def bn_net(in_shape, num_classes, width=16):
    """Conv + BatchNorm, then Linear + LayerNorm (the README's own-model example)."""
    return nn.Sequential(
        nn.Conv1d(in_shape[0], width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU(),
        nn.Flatten(), nn.Linear(width * in_shape[1], 32), nn.LayerNorm(32), nn.ReLU(),
        nn.Linear(32, num_classes),
    )  # fmt: skip


# Members trained long enough to sit in their own modes (demo recipe, 12 epochs, 4,000 signals).
_MEMBERS = {"data.mnist1d_samples": 4000, "train.batch_size": 128}


def _check_connected_apart(run_dir: Path, summary, fixed_ends: bool = True) -> None:
    # connected in loss: the curve's test-error barrier is below a third of the straight line's
    assert summary.line_error_barrier > 0.15
    assert summary.error_barrier < summary.line_error_barrier / 3
    assert summary.loss_barrier < summary.line_loss_barrier / 3
    # apart in function: the midpoint disagrees with both ends more than late snapshots of one
    # trajectory disagree with each other
    late = max(_late_disagreement(run_dir, m, 6) for m in (0, 1))
    mid = summary.midpoint
    assert min(mid["disagreement_end0"], mid["disagreement_end1"]) > late + 0.03
    if fixed_ends:  # the curve passes through its ends exactly: the files say so
        rows = read_csv(run_dir / "connect" / "profile.csv")
        assert float(rows[0]["agreement_end0"]) == 1.0 and float(rows[-1]["agreement_end1"]) == 1.0
        assert len(rows) == 61


@pytest.mark.slow
def test_bezier_between_demo_members(tmp_path):
    run = ms.train(tiny_config(members=2, epochs=12, **_MEMBERS), tmp_path / "run")
    cfg = connect_config(
        epochs=8, recipe="run", train_examples=1000, plane_resolution=0, fge_cycles=0
    )
    summary = fit_curve(run.path, cfg)
    _check_connected_apart(run.path, summary)
    assert summary.bn_policy == "none"
    # the bends are stored and pass through the ends: bend files hold the free bend only
    bends = ms.load_run(run.path).path / summary.curve_folder / "bends" / "e0008.safetensors"
    from modescape.store.files import load_safetensors

    stored = load_safetensors(bends)
    assert all(k.startswith("bend1.") for k in stored)
    assert verify_run(run.path) == []


@pytest.mark.slow
def test_polychain_with_batchnorm_factory_model(tmp_path):
    ms.register_arch("connect_bn_net", bn_net, replace=True)
    config = tiny_config(members=2, epochs=12, **_MEMBERS).with_overrides(
        ["model.arch=connect_bn_net", 'model.arch_kwargs={"width": 8}']
    )
    run = ms.train(config, tmp_path / "run")
    # Garipov's recipe (SGD, annealed to 1%): a curve still at Adam's full rate ends noisy
    cfg = connect_config(
        epochs=8, recipe="garipov", lr=0.05, shape="polychain", bends=4, train_examples=1000,
        plane_resolution=7, **_FGE,
    )  # fmt: skip
    summary = fit_curve(run.path, cfg)
    assert summary.bn_policy == "recompute"
    _check_connected_apart(run.path, summary)
    # a polygonal chain is drawn in the plane through its ends and θ(0.5)
    assert summary.plane.third == "theta(0.5)"
    assert summary.plane.max_off_plane > 0
    kinds = {r["kind"] for r in read_csv(run.path / "connect" / "ensembles.csv")}
    assert kinds == {"curve", "fge"}
    assert verify_run(run.path) == []


_FGE = {"fge_cycles": 2, "fge_cycle_epochs": 1, "fge_lr1": 0.01, "fge_lr2": 0.001}


def test_quadratic_bezier_plane_and_verify(tiny_run_copy):
    cfg = connect_config(epochs=2, points=5, train_examples=200, max_examples=100,
                         plane_resolution=5, **_FGE)  # fmt: skip
    summary = fit_curve(tiny_run_copy, cfg)
    assert summary.plane.third.startswith("middle bend")
    assert summary.plane.max_off_plane < 1e-4 * summary.line_length
    assert verify_run(tiny_run_copy) == []
    # a changed byte in a bend file is found
    bend = tiny_run_copy / summary.curve_folder / "bends" / "e0002.safetensors"
    data = bytearray(bend.read_bytes())
    data[-1] ^= 1
    bend.write_bytes(bytes(data))
    problems = verify_run(tiny_run_copy)
    assert any("e0002.safetensors" in p for p in problems)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pair": ("m0", "m9")}, r"member 9 is not a finished member .*finished: \[0, 1, 2\]"),
        ({"pair": ("m0", "m0")}, "the two ends are the same snapshot"),
        ({"pair": ("m0@e4", "m0")}, "identical weight vectors"),
        ({"bends": 2}, "at least 3 bends"),
        ({"bends": 0}, "at least 3 bends"),
        ({"pair": ("m0", "x1")}, "unknown curve end 'x1'"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_run_copy, overrides, message):
    with pytest.raises(ModescapeError, match=message):
        fit_curve(tiny_run_copy, connect_config(epochs=1, **overrides))
    assert not (tiny_run_copy / "connect" / "summary.json").exists()


_KILL_CODE = (
    "import sys, torch; torch.set_num_threads(1);"
    "from modescape.studies.connect import connect_config, fit_curve;"
    "fit_curve(sys.argv[1], connect_config(**eval(sys.argv[2])))"
)
_SMALL = dict(
    epochs=3, points=3, train_examples=100, max_examples=50, plane_resolution=0, fge_cycles=0
)


@pytest.mark.parametrize(
    "kill_at",
    ["connect.epoch@2", pytest.param("connect.bends@3", marks=pytest.mark.slow),
     pytest.param("connect.manifest", marks=pytest.mark.slow)],
)  # fmt: skip
def test_killed_connect_resumes_to_the_same_bends(tiny_run, tmp_path, kill_at):
    """SIGKILL at a write point, then a rerun: the same bends, byte for byte, as one
    uninterrupted call (this process runs on one thread too, see conftest)."""
    import shutil

    runs = {}
    for name in ("whole", "killed"):
        runs[name] = tmp_path / name
        shutil.copytree(tiny_run, runs[name])
    fit_curve(runs["whole"], connect_config(**_SMALL))
    env = os.environ | {"OMP_NUM_THREADS": "1", "MODESCAPE_KILL_AT": kill_at}
    code = _KILL_CODE
    killed = subprocess.run(
        [sys.executable, "-c", code, str(runs["killed"]), repr(_SMALL)], env=env
    )
    assert killed.returncode == -9
    fit_curve(runs["killed"], connect_config(**_SMALL))
    folder = "connect/curves/m0-m1-bezier3"
    for rel in ("bends/e0003.safetensors", "state.safetensors"):
        assert (runs["whole"] / folder / rel).read_bytes() == (
            runs["killed"] / folder / rel
        ).read_bytes()
    assert verify_run(runs["killed"]) == []
    a = np.loadtxt(runs["whole"] / "connect" / "profile.csv", delimiter=",", skiprows=1)
    b = np.loadtxt(runs["killed"] / "connect" / "profile.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(a, b)


def test_cli_bad_input_is_one_line_exit_2(tiny_run_copy):
    from conftest import cli

    for args, message in (
        (["--pair", "m0,m7"], "member 7 is not a finished member"),
        (["--bends", "0"], "at least 3 bends"),
        (["--pair", "m2,m2"], "the two ends are the same snapshot"),
    ):
        code, _, err = cli("connect", str(tiny_run_copy), *args)
        assert code == 2
        assert err.strip().count("\n") == 0 and message in err and "Traceback" not in err
    assert not (tiny_run_copy / "connect").exists()


def test_cli_connects_a_bf16_batchnorm_factory_run(tmp_path, monkeypatch):
    """`modescape connect` on a run of a `module:factory` network with BatchNorm and LayerNorm
    (examples/tiny_factory.py), trained in bf16: BatchNorm recomputed at every t, the curve and
    FGE trained in the run's precision (recorded in the curve's cache key), files verified."""
    import json

    from conftest import ROOT, cli

    monkeypatch.syspath_prepend(str(ROOT))  # the factory lives beside the package
    config = tiny_config(members=2, epochs=1, **{"data.mnist1d_samples": 400}).with_overrides(
        ["model.arch=examples.tiny_factory:build", "train.precision=bf16"]
    )
    run = ms.train(config, tmp_path / "run").path
    code, out, err = cli(
        "-q", "connect", str(run), "--epochs", "1", "--points", "5", "--train-examples", "100",
        "--max-examples", "100", "--plane", "0", "--fge-cycles", "1", "--fge-cycle-epochs", "1",
    )  # fmt: skip
    assert code == 0, err
    assert "test-error barrier" in out
    summary = json.loads((run / "connect" / "summary.json").read_text())
    assert summary["bn_policy"] == "recompute"
    settings = json.loads((run / summary["curve_folder"] / "settings.json").read_text())
    assert settings["settings"]["precision"] == "bf16"
    rows = read_csv(run / "connect" / "profile.csv")
    assert len(rows) == 5
    assert float(rows[0]["agreement_end0"]) == 1.0 and float(rows[-1]["agreement_end1"]) == 1.0
    assert {r["kind"] for r in read_csv(run / "connect" / "ensembles.csv")} == {"curve", "fge"}
    assert verify_run(run) == []


def test_image_curve_trains_channels_last_like_its_members(tmp_path, monkeypatch):
    """On a run of images trained channels_last (the default), the curve's minibatches are laid
    out as the members' were (the convolutions' fast path on CPU), and the curve's cache key
    records the layout."""
    import json

    import torch
    from PIL import Image

    from modescape.analysis.connect.fit import CurveFit

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for c in range(10):
            (tmp_path / "imgs" / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "imgs" / split / f"c{c}" / f"{i}.png")
    cfg = ms.preset("folder", "smallcnn", "seed", root=str(tmp_path / "imgs"), members=2, epochs=1)
    run = ms.train(cfg.with_overrides(["train.batch_size=20"]), tmp_path / "run").path
    layouts = []
    train_epoch = CurveFit.train_epoch

    def spy(self, x, y):
        layouts.append(x.is_contiguous(memory_format=torch.channels_last))
        return train_epoch(self, x, y)

    monkeypatch.setattr(CurveFit, "train_epoch", spy)
    summary = fit_curve(run, connect_config(epochs=2, points=3, plane_resolution=0, fge_cycles=0))
    assert layouts == [True, True]
    settings = json.loads((run / summary.curve_folder / "settings.json").read_text())
    assert settings["settings"]["channels_last"] is True
    assert verify_run(run) == []


def test_one_member_run_names_the_snapshot_pair(tmp_path):
    """A run of one member cannot join m0 and m1, but can join two of m0's snapshots: the one
    line says so (and a run of several members gets no such hint)."""
    run = ms.train(tiny_config(members=1, epochs=1), tmp_path / "r")
    with pytest.raises(ModescapeError, match=r"finished: \[0\]\); or two snapshots of one member: "
                       r"--pair m0@e0,m0"):  # fmt: skip
        fit_curve(run.path, connect_config(epochs=1))
    assert not (run.path / "connect" / "summary.json").exists()
