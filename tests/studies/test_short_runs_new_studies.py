"""Short trajectories for the studies added after the first ones (connect, swag, instability):
a 1-epoch single-member run and a 2-epoch run of two members. Each study fits its references to
the run before any work, with warnings that name the flag, or refuses in one line before
writing anything."""

from __future__ import annotations

import pytest
from conftest import cli, tiny_config

from modescape.analysis.swag import SwagConfig
from modescape.errors import ModescapeError
from modescape.store.run import load_run
from modescape.studies.connect import ConnectConfig, fit_curve
from modescape.studies.spawn_measures import InstabilityConfig, reference_groups, run_instability
from modescape.studies.swag import run_swag
from modescape.training.spawn import spawn
from modescape.training.trainer import train

_SETS = {"data.mnist1d_samples": 400, "model.variant": "seed", "train.collect.epochs": 1}
_CONNECT = {"epochs": 1, "points": 5, "plane_resolution": 0, "fge_cycles": 0, "max_examples": 100}


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    """(one member of 1 epoch, one collected iterate; two members of 2 epochs, an iterate every
    2 steps of their collection epoch)."""
    tmp = tmp_path_factory.mktemp("short_new")
    train(tiny_config(members=1, epochs=1, **_SETS), tmp / "one", device="cpu")
    sets = _SETS | {"train.collect.every_steps": 2}
    train(tiny_config(members=2, epochs=2, **sets), tmp / "two", device="cpu")
    return tmp / "one", tmp / "two"


def test_swag_refuses_a_gaussian_of_one_iterate_before_any_work(short_runs):
    one, two = short_runs
    with pytest.raises(ModescapeError, match=r"member 0 has 1 \(rank 1\).*--methods swa,mc_drop"):
        run_swag(one, SwagConfig(n_samples=2, mc_passes=2))
    assert not (one / "swag").exists()
    code, _, err = cli("swag", str(one), "--samples", "2")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (one / "swag").exists()
    s = run_swag(one, SwagConfig(methods=("swa", "mc_dropout"), mc_passes=2))
    assert [r.method for r in s.table] == ["single model", "deep ensemble", "SWA", "MC dropout"]
    s = run_swag(two, SwagConfig(n_samples=2, mc_passes=2))
    assert s.collection["iterates"] == [2, 2]
    assert "MultiSWAG" in [r.method for r in s.table]


def test_connect_on_one_member_names_the_pair_it_can_join(short_runs, tmp_path):
    one, two = short_runs
    with pytest.raises(ModescapeError, match=r"finished: \[0\]\); or .*--pair m0@e0,m0$"):
        fit_curve(one, ConnectConfig(**_CONNECT))
    assert not (one / "connect").exists()
    with pytest.raises(ModescapeError, match=r"no snapshot at epoch 5 \(--pair: it has 0..1\)"):
        fit_curve(one, ConnectConfig(pair=("m0@e5", "m0"), **_CONNECT))
    s = fit_curve(one, ConnectConfig(pair=("m0@e0", "m0"), **_CONNECT))
    assert s.pair == ["m0@e0", "m0"] and len(s.epochs_trained) == 1
    assert fit_curve(two, ConnectConfig(**_CONNECT)).pair == ["m0", "m1"]


def test_instability_fits_its_references_to_the_parent(short_runs, tmp_path):
    one, two = short_runs
    pick, group, warnings = reference_groups(load_run(two), 1, InstabilityConfig())
    assert pick == [1, 2] and group == [1, 0]
    assert warnings[0].startswith("instability late window: --late 10 asked for the last 10")
    assert warnings[1].startswith("across-initialisation group: --across 2 asked for 2 other")
    spawn(one, tmp_path / "kids", member=0, at=[0], children=2, device="cpu")
    s = run_instability(tmp_path / "kids", InstabilityConfig(examples=100, alphas=5))
    assert s.within_epochs == [0, 1] and s.across is None and s.across_members == []
    assert any(w.startswith("across-initialisation reference left out") for w in s.warnings)
    assert "; spawned at epoch" not in s.reading  # one spawn point: said once
    assert "References: two snapshots of one trajectory" in s.reading
    assert "independent members" not in s.reading


def test_one_member_of_one_epoch_is_analysed_and_reported_without_an_embedding(short_runs):
    from modescape.report.html import write_report
    from modescape.studies.analysis import AnalysisConfig, analyze_run

    one, _ = short_runs
    run_swag(one, SwagConfig(methods=("swa", "mc_dropout"), mc_passes=2))  # cached if run
    s = analyze_run(one, AnalysisConfig(tsne_iter=250))
    assert any(w.startswith("trajectories: the run has 2 snapshots in all") for w in s.warnings)
    assert s.embeddings == {} and not (one / "analysis" / "trajectories").exists()
    html = write_report(one).read_text()
    assert "an embedding needs at least 3; none drawn" in html
    assert "Each of the 1 member continued 1 epoch past" in html  # the swag section, singular
