"""`run_pipeline` (train → every study → report) and `train_run`, the library calls behind
`modescape run` and `modescape train`."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from conftest import cli, tiny_config

from modescape.errors import ModescapeError
from modescape.pipeline import run_pipeline, train_run
from modescape.store.run import load_run
from modescape.studies.subspace import pipeline_settings


@pytest.mark.slow  # every study and the report's figures: about half a minute on 2 cores
def test_run_pipeline_end_to_end(tmp_path, caplog, capsys):
    # with a collection phase and dropout layers (the seed variant): SWA, SWAG, MultiSWAG and
    # MC dropout run too (`modescape swag`) and appear in the report
    sets = ["data.mnist1d_samples=300", "model.variant=seed", "train.collect.epochs=2"]
    cfg = tiny_config(members=2, epochs=3).with_overrides(sets)
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="modescape"):
        index = run_pipeline(cfg, out)
    assert index == out / "report" / "index.html" and index.is_file()
    run = load_run(out)
    assert run.finished_members() == [0, 1] and run.verify() == []
    for study in ("analysis", "subspace", "swag", "landscape", "shift"):
        assert (out / study / "summary.json").is_file(), study
    methods = [r.method for r in run.study("swag").table]
    assert {"SWA", "SWAG", "MultiSWAG", "MC dropout"} <= set(methods)
    html = index.read_text()
    assert "SWA, SWAG, MultiSWAG and MC dropout" in html
    for fig in ("swag_ensembles", "swag_plane", "swag_tsne"):
        assert (out / "report" / "figures" / f"{fig}.png").is_file(), fig
    curves = (out / "report" / "figures" / "swag_ensembles.csv").read_text()
    for family in ("deep", "swa+ensemble", "swag+ensemble", "mc_dropout+ensemble", "lowrank"):
        assert family in curves, family  # beside the deep ensemble and the paper's samplers
    # under dataset shift too, with the very weights the swag study evaluated
    families = run.study("shift").families
    assert {"subspace_swa", "subspace_swag", "subspace_multiswag"} <= set(families)
    clean = np.load(out / "shift/preds/clean/s0/subspace_swa.npy")
    np.testing.assert_allclose(clean, np.load(out / "swag/preds/swa/m000/probs.npy"), atol=1e-5)
    # the pipeline reports its stages through logging (the CLI's handler), not on stdout
    stages = [r.getMessage() for r in caplog.records if r.name == "modescape.pipeline"]
    assert [s[:5] for s in stages[:3]] == ["[1/3]", "[2/3]", "[3/3]"]
    assert "[1/3]" not in capsys.readouterr().out


def test_subspace_defaults_shrink_to_short_runs():
    short = pipeline_settings(tiny_config(epochs=1))
    assert short.n_snapshots == 2 and short.rank == 1
    full = pipeline_settings(tiny_config(epochs=40))
    assert full.n_snapshots == 10 and full.rank == 5 and "lowrank" in full.methods


def test_empty_selection_trains_nothing_and_says_so(tmp_path, caplog):
    cfg = tiny_config(members=2, epochs=1)
    with caplog.at_level(logging.WARNING, logger="modescape"):
        path = train_run(cfg, tmp_path / "run", members=[])
    assert "no member to train" in caplog.text
    assert not list(path.glob("members/*/snapshots/*"))


def test_empty_shard_through_the_cli(tmp_path):
    out = tmp_path / "run"
    args = ["--members", "2", "--epochs", "1", "--set", "data.mnist1d_samples=200"]
    code, stdout, err = cli("train", *args, "--out", str(out), "--shard", "3/4")
    assert code == 0, err
    assert "trained no members" in stdout and "shard 3/4" in stdout
    assert "trained 2" not in stdout
    assert "no member to train" in err  # the library's warning, through the CLI's handler
    assert json.loads((out / "config.json").read_text())["members"] == 2
    code, stdout, err = cli("train", *args, "--out", str(out), "--shard", "1/4")
    assert code == 0 and "trained 1 member(s)" in stdout
    assert load_run(out).finished_members() == [1]


def test_bad_launch_settings_leave_nothing_behind(tmp_path):
    out = tmp_path / "run"
    for kwargs, message in [
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"executor": "cluster"}, "unknown executor 'cluster'"),
        ({"executor": "local", "workers": 0}, "workers must be >= 1"),
    ]:
        with pytest.raises(ModescapeError, match=message):
            train_run(tiny_config(members=1, epochs=1), out, **kwargs)
        assert not out.exists()
