"""The swag section's readings say what the numbers say, whichever way they fall."""

import numpy as np

from modescape.report.sections.swag import plane_reading, setup_reading, table_reading
from modescape.store.schema import SwagRow, SwagSummary


def _row(method: str, nll: float = 0.9, forwards: int = 2) -> SwagRow:
    return SwagRow(method, 1, forwards, 0, accuracy=0.8, nll=nll, brier=0.2, ece=0.05)


def _rows(**nll):
    base = {"single model": 0.9, "deep ensemble": 0.7, "SWA": 0.85, "SWAG": 0.8, "MultiSWAG": 0.65}
    base |= nll
    return {k: _row(k, v, 60 if k == "MultiSWAG" else 2) for k, v in base.items()}


def test_orderings_hold_or_not_as_the_numbers_say():
    holds = " ".join(table_reading(_rows(), members=2))
    assert "(SWAG below both) holds" in holds and "at least as good as the deep" in holds
    assert "30× its test-time forward passes" in holds
    fails = " ".join(table_reading(_rows(SWAG=0.86, MultiSWAG=0.75), members=2))
    assert "(SWAG below both) does not hold" in fails and "worse than the deep" in fails


def test_plane_reading_compares_samples_with_the_independent_members():
    plane = {
        "kind": np.array(["sample"] * 3 + ["member"] * 2),
        "method": np.array(["swag"] * 3 + ["independent"] * 2),
        "norm_diversity": np.array([0.1, 0.2, 0.3, 0.9, 0.95]),
    }
    text = plane_reading(plane)[0]
    assert "SWAG 0.20" in text and "0.93" in text
    assert "No method's median reaches the lowest independent member" in text
    plane["norm_diversity"] = np.array([0.9, 1.0, 1.1, 0.9, 0.95])
    assert "At or above the lowest member: SWAG 1.00" in plane_reading(plane)[0]
    # compared before rounding: a median of 0.996 prints as 1.00 but is below a member at 0.998
    plane["norm_diversity"] = np.array([0.995, 0.996, 0.997, 0.998, 1.2])
    text = plane_reading(plane)[0]
    assert "No method's median reaches" in text and "lowest 1.00" in text


def test_setup_names_only_the_methods_that_ran():
    collection = {"epochs": 2, "schedule": "constant", "lr": 0.01, "every_steps": 0,
                  "iterates": [2, 2], "max_rank": 20}  # fmt: skip
    config = {"n_samples": 30, "scale": 0.5, "diag_scale": 1.0, "mc_passes": 10}
    rows = [_row(m) for m in ("single model", "deep ensemble", "SWA")]
    s = SwagSummary(config, [0, 1], rows, collection, "none in this architecture")
    text = " ".join(setup_reading(s))
    assert "SWAG draws" not in text and "MC dropout" not in text and "SWAG-Diagonal" not in text
    assert "up to the last 20 kept" in text
    s.table += [_row("SWAG"), _row("MC dropout")]
    text = " ".join(setup_reading(s))
    assert "SWAG draws 30 samples per member at scale 0.5" in text
    assert "MC dropout averages 10 passes" in text and "SWAG-Diagonal" not in text
