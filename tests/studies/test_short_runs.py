"""Short trajectories (a 3-epoch import of the seed notebooks' Keras files, no initialisation
snapshot): every study fits its windows to the run before any work, with warnings that name the
flag, or refuses in one line before writing anything."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from modescape.analysis.subspace import SubspaceConfig
from modescape.config import preset
from modescape.errors import ModescapeError
from modescape.studies.analysis import AnalysisConfig, analyze_run
from modescape.studies.landscape import LandscapeConfig, run_landscape
from modescape.studies.shift import ShiftConfig, run_shift
from modescape.studies.subspace import run_subspace
from modescape.training.importer import import_checkpoints
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "models" / "fixtures"


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """Two members of 3 epochs (1..3, as the notebooks' files give them); member 1's weights
    perturbed, so the members differ."""
    h5py = pytest.importorskip("h5py")
    from tests.data.test_cifar import write_python10

    tmp = tmp_path_factory.mktemp("short")
    ref = np.load(FIXTURES / "series.npz")
    root = write_python10(tmp / "cifar", ref["x_train"], ref["y_train"], ref["x_test"],
                          ref["y_test"])  # fmt: skip
    rng = np.random.default_rng(0)
    for m in range(2):
        (tmp / "src" / f"s{m}").mkdir(parents=True)
        for k in range(3):
            f = tmp / "src" / f"s{m}" / f"small_cnn_checkpoint_{k}.h5"
            shutil.copy(FIXTURES / "series" / f.name, f)
            if m:
                with h5py.File(f, "r+") as h5:
                    h5.visititems(lambda _, d: _perturb(d, rng, h5py))
    cfg = preset("cifar10", "smallcnn", root=str(root), variant="seed")
    return import_checkpoints(tmp / "src", tmp / "run", cfg, origin="seed-notebooks",
                              pattern="s{member}/small_cnn_checkpoint_{epoch}.h5").path  # fmt: skip


def _perturb(dataset, rng, h5py) -> None:
    if isinstance(dataset, h5py.Dataset) and dataset.dtype.kind == "f" and dataset.ndim > 1:
        dataset[...] = dataset[...] + 0.05 * rng.standard_normal(dataset.shape)


def test_subspace_fits_snapshots_and_rank_before_sampling(short_run):
    cfg = SubspaceConfig(methods=("random", "lowrank"), mode="paper", n_samples=2)
    summary = run_subspace(short_run, cfg)
    assert summary.config["n_snapshots"] == 2 and summary.config["rank"] == 1
    text = " ".join(summary.warnings)
    assert "--snapshots 10 asked for the last 10 snapshots, but the run has 3" in text
    assert "--rank 5 asked for 5 principal directions, but 2 snapshots span at most 1" in text
    assert "--late 10" in text and "--weight-average 10" in text


def test_analyze_counts_the_snapshots_an_import_has(short_run):
    summary = analyze_run(short_run, AnalysisConfig(tsne_iter=250))
    late = [w for w in summary.warnings if w.startswith("late window")]
    assert late == [
        "late window: --late 10 asked for the last 10 snapshots, but the run has 3 after "
        "initialisation; used the last 2 (a window covers at most the later half)"
    ]


def test_shift_names_its_flags(short_run):
    summary = run_shift(short_run, ShiftConfig(corruptions=("gaussian_noise",), severities=(5,)))
    assert any(w.startswith("late window: --late 10") for w in summary.warnings)
    assert any(w.startswith("weight average: --weight-average 10") for w in summary.warnings)


def test_refusals_come_before_any_work(short_run, tmp_path):
    with pytest.raises(ModescapeError, match=r"init0.*no initialisation .*use m0@e1"):
        run_landscape(short_run, LandscapeConfig(planes=(("origin", "init0", "m1"),)))
    assert not (short_run / "landscape").exists()
    one = tmp_path / "one"  # one snapshot per member: no Gaussian can be fitted
    shutil.copytree(short_run.parent / "src", one / "src")
    for m in range(2):
        for k in (0, 1):
            (one / "src" / f"s{m}" / f"small_cnn_checkpoint_{k}.h5").unlink()
    cfg = preset("cifar10", "smallcnn", root=str(short_run.parent / "cifar"), variant="seed")
    run = import_checkpoints(one / "src", one / "run", cfg, origin="seed-notebooks",
                             pattern="s{member}/small_cnn_checkpoint_{epoch}.h5")  # fmt: skip
    with pytest.raises(ModescapeError, match=r"needs at least 2 snapshots .* has 1 .*--methods"):
        run_subspace(run.path, SubspaceConfig(mode="paper", n_samples=2))
    assert not (run.path / "subspace").exists()


def test_path_kinds_follow_the_members_the_anchors_belong_to():
    from modescape.studies.landscape import path_kind

    assert path_kind("init0", "m0") == "within trajectory"
    assert path_kind("m0@e5", "wa0") == "within trajectory"
    assert path_kind("m0", "m1") == "across members"
    assert path_kind("init0", "m1@e3") == "across members"
    assert path_kind("origin", "m1") == "other"


def test_an_imported_run_says_where_it_came_from(short_run):
    from modescape.report.html import write_report
    from tests.conftest import cli

    code, out, _ = cli("info", str(short_run))
    assert code == 0
    assert "origin    imported, not trained here: 6 keras file(s)" in out
    assert "seed notebooks' Keras files (pixels / 255" in out and "(as imported)" in out
    analyze_run(short_run, AnalysisConfig(tsne_iter=250))
    html = write_report(short_run).read_text()
    assert "imported, not trained here" not in html  # reworded in the prose:
    assert "were not trained here: 6 keras file(s)" in html
    assert "Training took" not in html and "trained for 3 epochs" not in html
