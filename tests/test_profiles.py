"""Named profiles: the run config and every study's settings, in one word."""

from __future__ import annotations

import pytest

from modescape.config import RunConfig, preset
from modescape.errors import ModescapeError
from modescape.profiles import PROFILES, apply_profile, describe, study_settings


def test_quick_sizes_the_run_and_explicit_settings_win():
    base = preset("cifar10", "smallcnn", root="x")
    quick = apply_profile(base, "quick", ["members=2"])
    assert (quick.data.train_size, quick.data.test_size) == (2000, 1000)
    assert quick.members == 2 and quick.train.epochs == 10 and quick.profile == "quick"
    assert quick.to_dict()["profile"] == "quick"
    assert RunConfig.from_dict(quick.to_dict()) == quick
    paper = apply_profile(base, "paper")
    assert paper == base and "profile" not in paper.to_dict()  # config.json as before
    assert "train_size" not in base.to_dict()["data"]
    with pytest.raises(ModescapeError, match=r"unknown profile 'fast' \(allowed: paper, quick"):
        apply_profile(base, "fast")
    assert "2,000 training" in describe("quick") and describe("") == "the paper's settings"


def test_every_study_setting_of_a_profile_exists():
    from modescape.analysis.subspace import SubspaceConfig
    from modescape.studies.landscape import LandscapeConfig
    from modescape.studies.shift import ShiftConfig

    try:
        from modescape.studies.analysis import AnalysisConfig
    except ImportError:  # the module's name before the study registry
        from modescape.studies.analysis import AnalysisConfig
    from modescape.studies.connect import ConnectConfig

    settings = {"analysis": AnalysisConfig(), "subspace": SubspaceConfig(),
                "landscape": LandscapeConfig(), "shift": ShiftConfig(),
                "connect": ConnectConfig()}  # fmt: skip
    assert set(PROFILES["quick"].studies) == set(settings)  # quick sizes every study of a run
    for name, spec in PROFILES.items():
        assert set(spec.studies) <= set(settings)
        for study, s in settings.items():
            out = study_settings(name, study, s)
            for k, v in spec.studies.get(study, {}).items():
                assert getattr(out, k) == v
            assert study_settings("", study, s) is s


def test_run_prices_and_runs_the_profile_with_explicit_flags_winning(tmp_path):
    import argparse

    from modescape.cli import _sized, resolve_config
    from modescape.pipeline import study_defaults
    from tests.conftest import cli

    ns = argparse.Namespace(data=None, root=None, arch=None, variant=None, recipe=None,
                            members=2, epochs=None, seed=None, config=None, profile="quick",
                            set=["train.epochs=4"])  # fmt: skip
    cfg = resolve_config(ns)
    assert (cfg.members, cfg.train.epochs, cfg.profile, cfg.data.train_size) == (
        2,
        4,
        "quick",
        2000,
    )
    assert _sized(preset(), argparse.Namespace(profile=None, set=[])) == preset()
    chosen = study_defaults(cfg)
    assert chosen["landscape"].resolution == 9 and chosen["shift"].severities == (1, 3, 5)
    assert study_defaults(preset())["landscape"].resolution == 21  # the paper's by default
    code, out, err = cli("run", "--profile", "quick", "--members", "2", "--budget")
    assert code == 0, err
    assert "2 members x 10 epochs" in out and "plane of 9x9" in out


def test_the_report_states_the_profile():
    from modescape.report.sections.run import _profile_note

    assert _profile_note("") == []
    (note,) = _profile_note("quick")
    assert "Sized by profile 'quick'" in note and "2,000 training" in note
