"""The swag section's readings say what the numbers say, whichever way they fall."""

import numpy as np

from modescape.report.sections.swag import plane_reading, table_reading


def _rows(**nll):
    base = {"single model": 0.9, "deep ensemble": 0.7, "SWA": 0.85, "SWAG": 0.8, "MultiSWAG": 0.65}
    base |= nll
    return {
        k: {"method": k, "nll": v, "accuracy": 0.8, "forwards": 60 if k == "MultiSWAG" else 2}
        for k, v in base.items()
    }


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
    assert "SWAG 0.20" in text and "0.93" in text and "No single-mode method reaches" in text
    plane["norm_diversity"] = np.array([0.9, 1.0, 1.1, 0.9, 0.95])
    assert "At or above the lowest member: SWAG 1.00" in plane_reading(plane)[0]
