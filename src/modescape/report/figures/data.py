"""How a CSV rounds a metric (`rounded`): fractions to 4 decimals (`frac`), open-ended scores
such as losses to 4 significant digits (`sig`). The figure descriptions' `table()`s and the
sections' tables of metrics use it, so one metric reads the same in every CSV.
"""

from __future__ import annotations

from modescape.report.wording import frac, sig

# metric -> how a CSV rounds it: fractions to 4 decimals, open-ended scores to 4 digits
ROUND = {
    "accuracy": frac,
    "ece": frac,
    "error": frac,
    "nll": sig,
    "brier": sig,
    "loss": sig,
}


def rounded(metric: str, value: object) -> float | None:
    return ROUND.get(metric, sig)(value)
