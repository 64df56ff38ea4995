"""Analysis results a study stores as they are: defined once, here, below both `analysis/`
(which computes them) and `store/` (whose summaries hold them), since neither may import the
other. Each is a `codec.Record`, so its JSON form is its fields."""

from __future__ import annotations

from dataclasses import dataclass

from modescape.codec import Record


@dataclass(frozen=True)
class PairLevel(Record):
    """Measures between the models of one group (the children of a spawn point, or a reference
    pair), each the mean over the group's pairs; `error_barrier_max` the largest pair's barrier
    (`analysis.instability.pair_level`; stored in instability/summary.json)."""

    error_barrier: float
    error_barrier_max: float
    loss_barrier: float
    disagreement: float
    js: float
    cosine: float
    l2: float
    accuracy: tuple[float, ...]  # each model's test accuracy
    pairs: int


@dataclass
class CurveMeasures(Record):
    """A curve between two modes against the straight line between the same ends
    (`analysis.connect.evaluate.summarize_curve`; the fields of connect/summary.json).

    Barriers as the landscape study's (Frankle et al. 2020): max over t minus the mean of the
    ends, of test error (`error_barrier`) and training loss (`loss_barrier`). `stats[column]`
    and `line_stats[column]`: min / max / mean over t of each profile column. `midpoint`: at
    t = 0.5, disagreement with each end, and the ends' disagreement with each other. Lengths in
    weight space (L2).
    """

    error_barrier: float
    loss_barrier: float
    line_error_barrier: float
    line_loss_barrier: float
    length: float
    line_length: float
    midpoint: dict[str, float]
    stats: dict[str, dict[str, float]]
    line_stats: dict[str, dict[str, float]]
