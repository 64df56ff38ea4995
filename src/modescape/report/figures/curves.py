"""The analysis study's chart figures as descriptions (`figures/described.py`, `Charted`): the
ensemble curves (also the subspace and SWAG ensembles), the distance from initialisation, the
agreement with the final predictions and the training curves. Each holds the arrays it shows
once; `charts()` (the page's panels, the objects `figure()` draws for the PNG/PDF) and `table()`
(its CSV) are both read from them.

CSV headers are snake_case; values are rounded to what they mean (`frac`: 4 decimals for
fractions, `sig`: 4 significant digits for losses and distances: `data.rounded`). Charts keep the
figure's units (accuracy in %), so a hovered value reads like the axis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from modescape.report.base import Chart, Table
from modescape.report.figures.analysis import (
    agreement_lines,
    agreement_lines_chart,
    chart_figure,
    curves_figure,
    distance_from_init,
    distance_lines_chart,
    ensemble_curves_charts,
    training_curves_charts,
    training_figure,
)
from modescape.report.figures.data import rounded
from modescape.report.figures.studies import subspace_curves_figure, subspace_ensembles_charts
from modescape.report.wording import frac, sig

ENSEMBLE_TITLE = "Ensembles: metrics against ensemble size (mean ± std over subsets)"


@dataclass(frozen=True, eq=False)
class EnsembleCurves:
    """Metrics against ensemble size: the columns of ensembles/curves.csv (or subspace/ and
    swag/ curves), one row per (family, size, metric). `subspace`: drawn with the compact
    legend of subspace models (`subspace_ensembles_charts`), else one entry per family."""

    family: np.ndarray  # str [rows]
    size: np.ndarray  # int [rows]
    metric: np.ndarray  # str [rows]
    mean: np.ndarray  # [rows]
    std: np.ndarray  # [rows]
    subspace: bool = False

    @classmethod
    def from_columns(cls, c: Mapping[str, Any], *, subspace: bool = False) -> EnsembleCurves:
        """From the columns family, size, metric, mean, std (arrays or lists)."""
        return cls(
            np.asarray(c["family"], dtype=str),
            np.asarray(c["size"]).astype(int),
            np.asarray(c["metric"], dtype=str),
            np.asarray(c["mean"], dtype=float),
            np.asarray(c["std"], dtype=float),
            subspace,
        )

    @cached_property
    def _charts(self) -> list[Chart]:
        build = subspace_ensembles_charts if self.subspace else ensemble_curves_charts
        return build(self.family, self.size, self.metric, self.mean, self.std)

    def charts(self) -> list[Chart]:
        """Accuracy, NLL, Brier and ECE (one panel each)."""
        return self._charts

    def figure(self) -> Figure:
        if self.subspace:
            return subspace_curves_figure(self.charts())
        return curves_figure(self.charts(), ENSEMBLE_TITLE)

    def table(self, name: str, caption: str = "") -> Table:
        """One row per (family, size, metric), long form, as the study wrote them."""
        rows = [
            [str(f), int(k), str(mt), rounded(str(mt), mu), rounded(str(mt), sd)]
            for f, k, mt, mu, sd in zip(self.family, self.size, self.metric, self.mean, self.std)
        ]
        return Table(name, ["family", "ensemble_size", "metric", "mean", "std"], rows, caption)


def member_rows(
    members: Sequence[int],
    epochs: Sequence[int],
    columns: Mapping[str, np.ndarray],
    round_fn: Callable[[object], float | None],
) -> list[list[object]]:
    """One row per (member, epoch) with the values of the named [M, E] columns."""
    return [
        [int(m), int(e), *(round_fn(c[i][j]) for c in columns.values())]
        for i, m in enumerate(members)
        for j, e in enumerate(epochs)
    ]


@dataclass(frozen=True, eq=False)
class DistanceFromInit:
    """The L2 distance [M, E] of every snapshot from its member's first snapshot."""

    members: list[int]
    epochs: list[int]
    distance: np.ndarray  # [M, E]

    @classmethod
    def from_matrix(
        cls, matrix: np.ndarray, members: Sequence[int], epochs: Sequence[int]
    ) -> DistanceFromInit:
        """From weights/distance.npy ([M·E, M·E], member-major)."""
        return cls(list(members), list(epochs), distance_from_init(matrix, members, epochs))

    @cached_property
    def _charts(self) -> list[Chart]:
        return [distance_lines_chart(self.distance, self.members, self.epochs)]

    def charts(self) -> list[Chart]:
        return self._charts

    def figure(self) -> Figure:
        cols = 2 if len(self.members) > 5 else 1
        return chart_figure(self.charts()[0], (7.0, 4.6), legend_cols=cols)

    def table(self, name: str, caption: str = "") -> Table:
        """(member, epoch, l2_distance_from_init), 4 significant digits."""
        columns = {"l2_distance_from_init": self.distance}
        rows = member_rows(self.members, self.epochs, columns, sig)
        return Table(name, ["member", "epoch", *columns], rows, caption)


@dataclass(frozen=True, eq=False)
class AgreementWithFinal:
    """Along each trajectory, the agreement [M, E] with its own final predictions and the mean
    agreement [M, E] with the other members' (None with one member)."""

    members: list[int]
    epochs: list[int]
    own: np.ndarray
    others: np.ndarray | None

    @classmethod
    def from_matrix(
        cls, matrix: np.ndarray, members: Sequence[int], epochs: Sequence[int]
    ) -> AgreementWithFinal:
        """From functions/agreement_with_final.npy ([M·E, M], member-major)."""
        own, others = agreement_lines(matrix, members, epochs)
        return cls(list(members), list(epochs), own, others)

    @cached_property
    def _charts(self) -> list[Chart]:
        return [agreement_lines_chart(self.own, self.others, self.members, self.epochs)]

    def charts(self) -> list[Chart]:
        return self._charts

    def figure(self) -> Figure:
        cols = 2 if len(self.members) > 2 else 1
        return chart_figure(self.charts()[0], (7.0, 4.6), legend_cols=cols)

    def table(self, name: str, caption: str = "") -> Table:
        """(member, epoch, agreement_own_final[, agreement_other_finals_mean]), 4 decimals."""
        columns = {"agreement_own_final": self.own}
        if self.others is not None:
            columns["agreement_other_finals_mean"] = self.others
        rows = member_rows(self.members, self.epochs, columns, frac)
        return Table(name, ["member", "epoch", *columns], rows, caption)


@dataclass(frozen=True, eq=False)
class TrainingCurves:
    """Per-epoch training curves: member, epoch [rows] and the curves {"<split>_<loss|acc>":
    [rows]} (NaN where a value does not exist: epoch 0 has no training loss)."""

    member: np.ndarray
    epoch: np.ndarray
    curves: dict[str, np.ndarray]

    @classmethod
    def from_columns(cls, c: Mapping[str, np.ndarray]) -> TrainingCurves:
        """From training/curves.csv: the loss and accuracy columns with at least one value."""
        keys = [k for k in c if k.endswith(("_loss", "_acc")) and np.isfinite(c[k]).any()]
        member = np.asarray(c["member"], dtype=int)
        return cls(member, np.asarray(c["epoch"], dtype=int), {k: c[k] for k in keys})

    @cached_property
    def _charts(self) -> list[Chart]:
        return training_curves_charts(self.member, self.epoch, self.curves)

    def charts(self) -> list[Chart]:
        """Loss, then accuracy (%)."""
        return self._charts

    def figure(self) -> Figure:
        return training_figure(self.charts())

    def table(self, name: str, caption: str = "") -> Table:
        """(member, epoch, <split>_<loss|acc>...) in member, epoch order; accuracies 4
        decimals, losses 4 significant digits."""
        keys = list(self.curves)
        rows = [
            [int(self.member[i]), int(self.epoch[i]),
             *((frac if k.endswith("_acc") else sig)(self.curves[k][i]) for k in keys)]
            for i in np.lexsort((self.epoch, self.member))
        ]  # fmt: skip
        return Table(name, ["member", "epoch", *keys], rows, caption)
