"""Comparison sentences worded from the numbers they cite, tested on planted counter-examples
(issue #23: a member beating the ensemble under shift; Gaussian samplers centred on the
snapshots' mean; calibration probes against fresh samples)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from modescape.report.sections.landscape import alignment_how, paths_text
from modescape.report.sections.shift import (
    ensemble_best,
    shift_js_line,
    subspace_under_shift,
)
from modescape.report.sections.subspace_text import (
    fresh_samples_cell,
    mode_reading,
    where_drawn,
)
from modescape.store import schema as S


def _shift(member0: float, single: float, ensemble: float, subspace: float):
    by = SimpleNamespace(
        severities=[0, 5],
        metrics={
            "member_0": {"accuracy": [0.9, member0]},
            "member_1": {"accuracy": [0.9, 0.36]},
            "single": {"accuracy": [0.9, single]},
            "ensemble_5": {"accuracy": [0.93, ensemble]},
            "subspace_dropout": {"accuracy": [0.9, subspace]},
        },
    )
    return SimpleNamespace(by_severity=by, members=[0, 1, 2, 3, 4])


def test_member_beating_its_subspace_model_and_the_ensemble_is_said():
    s = _shift(member0=0.393, single=0.379, ensemble=0.387, subspace=0.390)
    line = subspace_under_shift(s, ["subspace_dropout"], 0, s.by_severity.metrics["ensemble_5"])
    assert (
        "reaches 39.0%, against 39.3% for member 0 alone, 37.9% for the mean single member" in line
    )
    assert "member 0 alone is ahead of it" in line
    assert "it is ahead of the mean single member and the 5-member ensemble" in line
    assert "member 0 alone beats the ensemble at this severity" in line
    assert "not evaluated" not in line


def test_ordinary_order_is_said_the_other_way():
    s = _shift(member0=0.30, single=0.29, ensemble=0.45, subspace=0.35)
    line = subspace_under_shift(s, ["subspace_dropout"], 0, s.by_severity.metrics["ensemble_5"])
    assert "the 5-member ensemble is ahead of it" in line
    assert "it is ahead of member 0 alone and the mean single member" in line
    assert "beats the ensemble" not in line


def test_samplers_are_said_to_be_drawn_where_they_are():
    s = SimpleNamespace(config={"n_samples": 30, "n_snapshots": 10})
    text = where_drawn(s, ["random", "diagonal", "lowrank"])
    assert text.startswith("30 weight vectors per sampler are drawn around each member's final")
    assert "around the mean of each member's last 10 snapshots" in text
    assert "final weights (random" in text.replace("Random", "random")


def test_fresh_samples_spread_beside_the_probes():
    rec = S.CalibrationRecord("random", 0, 1.0, 0.9, 0.9, 0.6, 0.6, 10, True, [0.45, 0.75])
    assert fresh_samples_cell([rec]) == "60.0 ± 15.0 [45.0, 75.0] (n = 2)"
    old = S.CalibrationRecord("random", 0, 1.0, 0.9, 0.9, 0.6, 0.6, 10, True)
    assert fresh_samples_cell([old]) == "not recorded"


def test_cosine_row_names_its_selection_when_it_is_not_the_seeds():
    from modescape.report.sections.analysis import cosine_members_cell
    from modescape.store.schema import ParameterSelection

    def summary(selection):
        return SimpleNamespace(
            cosine=SimpleNamespace(across_members_mean=0.0141),
            parameters=ParameterSelection(selection, 10),
        )

    assert cosine_members_cell(summary("kernels_bn"), [0, 1]) == "0.014"
    cell = cosine_members_cell(summary("all"), [0, 1])
    assert cell.startswith("0.014 (over all parameters") and "--params kernels_bn" in cell
    assert cosine_members_cell(summary("all"), [0]) == "n/a"


def test_weakest_reference_above_one_is_commented():
    from modescape.report.sections.subspace_text import weakest_reference_note

    sweep = SimpleNamespace(reference_acc=[0.80, 0.62, 0.78], per_reference=[0.95, 1.73, 0.97])
    s = SimpleNamespace(members=[0, 1, 2], normalisation="sample")
    (note,) = weakest_reference_note(s, sweep)
    assert "member 1, 62.0% test accuracy) independent members reach 1.73, above 1" in note
    assert "with the most accurate (member 0, 80.0%) they reach 0.95" in note
    fine = SimpleNamespace(reference_acc=[0.80, 0.79], per_reference=[0.95, 0.99])
    assert weakest_reference_note(SimpleNamespace(members=[0, 1], normalisation="x"), fine) == []


def test_ensemble_is_not_called_most_accurate_where_a_member_beats_it():
    s = _shift(member0=0.393, single=0.379, ensemble=0.387, subspace=0.380)
    assert ensemble_best(s.by_severity, 5) == [True, False]  # member 0 alone wins at severity 5
    s = _shift(member0=0.38, single=0.379, ensemble=0.387, subspace=0.380)
    assert ensemble_best(s.by_severity, 5) == [True, True]


def _path(kind: str, barrier: float) -> S.PathEntry:
    return S.PathEntry("p", "m0", "m1", kind, barrier, 0.1, [0.1, 0.1], "none")


def test_different_regions_only_with_a_barrier_that_counts():
    apart = " ".join(paths_text([_path("across members", 0.2), _path("within trajectory", 0.01)],
                                None))  # fmt: skip
    assert "the members sit in different low-loss regions" in apart
    low = " ".join(paths_text([_path("across members", 0.008),
                               _path("within trajectory", 0.001)], None))  # fmt: skip
    assert "different low-loss regions" not in low
    assert "the lowest between members (0.8 points) is below 2 points" in low
    mixed = " ".join(paths_text([_path("across members", 0.05),
                                 _path("within trajectory", 0.08)], None))  # fmt: skip
    assert "Some path within a trajectory has an error barrier at least as high" in mixed


def test_alignment_names_its_method_and_spec_file_where_not_the_default():
    alignment = S.AlignmentRecord(
        members=[0, 1],
        cosine_before=0.0,
        cosine_after=0.2,
        error_barrier_before=0.2,
        error_barrier_after=0.1,
        loss_barrier_after=0.5,
        max_abs_prob_diff=0,
    )
    default = " ".join(paths_text([_path("across members", 0.2)], alignment))
    assert "to match member 0's (its function is unchanged" in default
    for spec in ("automatic", "built-in"):
        assert alignment_how(replace(alignment, method="weights", spec=spec)) == ""
    mine = replace(alignment, method="activations", spec="/tmp/x/my.json")
    text = " ".join(paths_text([_path("across members", 0.2)], mine))
    assert (
        "match member 0's by activation matching (permutations from the spec file my.json)" in text
    )


def test_js_verb_follows_the_printed_values():
    by = SimpleNamespace(js={"members": [0.10002, 0.10004]})
    line = shift_js_line(SimpleNamespace(by_severity=by, members=[0, 1]), [])
    assert line == "Independent members' JS diversity stays at 0.100."
    by.js["members"] = [0.1, 0.2]
    assert "rises from 0.100 to 0.200" in shift_js_line(
        SimpleNamespace(by_severity=by, members=[0, 1]), []
    )


def test_a_sampler_that_missed_its_target_is_said_to_keep_its_scale():
    missed = S.CalibrationRecord("diagonal", 1, 10.0, 0.5, 0.3, 0.35, 0.3, 3, False)
    hit = S.CalibrationRecord("random", 1, 8.0, 0.5, 0.5, 0.35, 0.35, 9, True)
    config = {"n_samples": 8, "target_drop": 0.3}
    s = SimpleNamespace(mode="calibrated", config=config, calibration_data="2048 training "
                        "examples", calibration=[missed, hit])  # fmt: skip
    text = mode_reading(s, ["random", "diagonal"])[0]
    assert "No scale reached the target for Diagonal" in text.replace("diagonal", "Diagonal")
    assert "draw at their configured scale instead" in text
    s.calibration = [hit]
    assert "No scale reached" not in mode_reading(s, ["random"])[0]
