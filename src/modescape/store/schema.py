"""The results every study writes, as types: one dataclass per `<run>/<study>/summary.json`.

A study builds its summary dataclass and writes `to_dict()`; the report and `Run` accessors read
it back with `from_dict()`, so writer and reader share one definition. The file names of every
study and the analysis windows are defined here once.

Windows (the authors' notebooks, "Train Trajectory": the last 10 of 40 epochs):

    LATE_WINDOW            the late snapshots of one trajectory (analysis, subspace JS, shift)
    WEIGHT_AVERAGE_WINDOW  snapshots averaged into one weight-average model

A window covers at most the later half of a trajectory; longer requests are clamped and the study
summary records a warning (`warnings`), which the report prints next to the figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from modescape.codec import OMIT_NONE, Record
from modescape.results import CurveMeasures, PairLevel

LATE_WINDOW = 10
WEIGHT_AVERAGE_WINDOW = 10

SUMMARY = "summary.json"
SETTINGS = "settings.json"  # the resolved settings a cache folder was computed with

# <run>/<folder>/ of each study
# (Final: `Run.study(S.SUBSPACE)` is typed by the overload of its literal name)
ANALYSIS: Final = "analysis"
SUBSPACE: Final = "subspace"
LANDSCAPE: Final = "landscape"
SHIFT: Final = "shift"
SWAG: Final = "swag"
CONNECT: Final = "connect"
INSTABILITY: Final = "instability"  # the measures of a spawn run (`modescape spawn`)

# analysis/
INDEX_CSV = "index.csv"
COSINE = "weights/cosine.npy"
DISTANCE = "weights/distance.npy"
NORMS = "weights/norms.npy"
DISAGREEMENT = "functions/disagreement.npy"
AGREEMENT_WITH_FINAL = "functions/agreement_with_final.npy"
TRAJECTORY_CSV = "trajectories/{method}.csv"  # method: tsne | pca
ENSEMBLE_CURVES = "ensembles/curves.csv"
RELIABILITY = "ensembles/reliability.json"
WEIGHT_AVERAGE_PROBS = "ensembles/weight_average.npy"
TRAINING_CURVES = "training/curves.csv"

# subspace/
SUBSPACE_PREDS = "preds/{method}/m{member:03d}.npy"
SUBSPACE_PLANE = "plane.csv"
SUBSPACE_CURVES = "curves.csv"
SUBSPACE_TSNE = "tsne_{method}.csv"
SUBSPACE_CONFIG = "config.json"
# the calibrated scale of one sampler around one member (cached beside its predictions)
SUBSPACE_CALIBRATION = "preds/{method}/m{member:03d}.calibration.json"

# landscape/
LANDSCAPE_PATHS = "paths.csv"
PLANE_ANCHORS = "anchors.json"
PLANE_TRAJECTORIES = "trajectories.csv"

# shift/
SHIFT_PREDS = "preds/{key}/s{severity}/{family}.npy"
SHIFT_METRICS = "metrics.csv"
SHIFT_DIVERSITY = "diversity.csv"
SHIFT_EXAMPLES = "examples.npy"  # [corruptions, 1 + 5 severities, ...] the report's strip
SHIFT_LATE_FAMILY = "late_snapshots_member0"  # member 0's late snapshots (not the analysis')

Metrics = dict[str, float]  # accuracy, nll, brier, ece


# ---- shared by several studies -----------------------------------------------------------------
# A study's `config` stays the JSON of its settings dataclass: those live in `analysis/` or
# `studies/`, above this module (`codec.decode(SubspaceConfig, summary.config)` reads one back).
@dataclass
class WeightAverageInfo(Record):
    """The weight-average model: the snapshots averaged, how its BatchNorm statistics were
    recomputed (analysis; absent for a model without BatchNorm) and where a study's
    predictions of it came from (subspace: "computed", or the analysis file it reused)."""

    epochs_averaged: list[int] = field(default_factory=list)
    batchnorm: str | None = field(default=None, metadata=OMIT_NONE)
    source: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class ReferenceCurves(Record):
    """The diversity–accuracy plane's reference curves over an accuracy grid (Fort et al.
    2019, Fig. 5): `upper` for errors independent of the reference's, `lower` for the
    reference with a growing share of its predictions replaced by random classes."""

    accuracy: list[float]
    upper: list[float]
    lower: list[float]


# ---- analysis ---------------------------------------------------------------------------------
@dataclass
class ParameterSelection(Record):
    """The weights the weight-space measures compare (`AnalysisConfig.params`) and how many."""

    selection: str
    count: int


@dataclass
class Disagreement(Record):
    across_members_mean: float
    across_members_min: float
    late_within_mean: float
    late_within_per_member: list[float]
    late_window: int  # snapshots in the late window after clamping


@dataclass
class Cosine(Record):
    across_members_mean: float
    across_members_max: float
    consecutive_late_min_per_member: list[float]


@dataclass
class AnalysisJS(Record):
    members: float
    late_snapshots_mean: float  # mean over members of each trajectory's late window


@dataclass
class AnalysisSummary(Record):
    run: str
    split: str
    n_examples: int
    single: Metrics
    single_per_member: list[Metrics]
    ensemble: dict[str, Metrics]  # deep, deep_k, snapshot_k, weight_average
    ensemble_size_compared: int
    disagreement: Disagreement
    cosine: Cosine
    js_diversity: AnalysisJS
    config: dict[str, Any]
    members: list[int]
    epochs: list[int]
    parameters: ParameterSelection
    # method -> the embedding's settings as `analysis.trajectories` reports them (sklearn's
    # parameters and diagnostics, which differ between t-SNE and PCA) and the examples used
    embeddings: dict[str, dict[str, Any]]
    weight_average: WeightAverageInfo
    timings_s: dict[str, float]
    files: dict[str, str]
    warnings: list[str] = field(default_factory=list)


# ---- subspace ---------------------------------------------------------------------------------
@dataclass
class CalibrationRecord(Record):
    """`analysis.calibration.Calibration` of one sampler around one member."""

    method: str
    member: int
    scale: float  # the sampler's full scale: samples draw t·scale, t ~ U(0,1)
    reference_accuracy: float  # on the calibration examples (training data), not test
    centre_accuracy: float
    target_accuracy: float
    probe_accuracy: float
    n_evaluations: int
    reached: bool
    # fresh samples at `scale` (subspace.calibration_check): what the drop is beyond the probes
    check_accuracies: list[float] = field(default_factory=list)


@dataclass
class ReferenceSweepRecord(Record):
    """`analysis.plane.ReferenceSweep`: every member as reference, one normalisation."""

    normalisation: str  # "sample": D / own error (the notebook's); "reference": D / ref's error
    tol: float
    reference_acc: list[float]
    pairs: list[list[float]]  # [reference][member], NaN (null) on the diagonal
    per_reference: list[float]
    mean: float | None  # over references of each one's mean over the other members (None: NaN)
    std: float | None  # population std over references
    sample_best: list[float] = field(default_factory=list)
    sample_mean: float | None = None
    sample_std: float | None = None


@dataclass
class PlaneRecord(Record):
    """`analysis.plane.PlaneSummary` of one sampler: how far its samples get from the
    reference (accuracy `ref_acc`) next to the independent members. The best sample's values
    are None (NaN) when no sample is within `tol` of the reference's accuracy."""

    ref_acc: float
    tol: float
    n_samples: int
    n_within_tol: int
    best_sample_norm_div: float | None
    best_sample_acc: float | None
    member_acc: list[float]
    member_norm_div: list[float | None]
    normalisation: str = "sample"


@dataclass
class SubspaceSummary(Record):
    config: dict[str, Any]  # the SubspaceConfig the cached samples were drawn with
    members: list[int]
    reference: int
    reference_accuracy: float
    batchnorm: str
    plane: dict[str, PlaneRecord]  # sampler -> its plane summary
    reference_curves: ReferenceCurves | None  # None: a reference no better than chance
    js_diversity: dict[str, float]  # independent_members, late_snapshots, <method>
    tsne: dict[str, dict[str, Any]]  # method -> the t-SNE's settings (see `embeddings`)
    files: dict[str, str]
    late_window: int = LATE_WINDOW
    weight_average: WeightAverageInfo = field(default_factory=WeightAverageInfo)
    warnings: list[str] = field(default_factory=list)
    mode: str = "calibrated"  # SubspaceConfig.mode: "paper" | "calibrated"
    # calibrated mode: one record per (method, member); empty in paper mode
    calibration: list[CalibrationRecord] = field(default_factory=list)
    calibration_data: str = ""  # which examples the calibration accuracies were measured on
    # the plane with every member as reference (mean ± std over references): normalisation
    # ("sample", "reference") -> "independent" (members only) or a method (with its samples)
    every_reference: dict[str, dict[str, ReferenceSweepRecord]] = field(default_factory=dict)
    normalisation: str = "sample"  # the one the report leads with (the notebook's)
    elapsed_s: float | None = None  # wall time of the call that wrote this summary

    def scale(self, method: str, member: int) -> float | None:
        """The calibrated scale of `method` around `member` (None: the config's scale)."""
        for c in self.calibration:
            if c.method == method and c.member == member:
                return c.scale
        return None


# ---- landscape --------------------------------------------------------------------------------
@dataclass
class PlaneEntry(Record):
    name: str
    anchors: list[str]
    dir: str
    resolution: int
    bn_policy: str


@dataclass
class PathEntry(Record):
    name: str
    from_: str = field(metadata={"key": "from"})
    to: str
    kind: str  # "across members" | "within trajectory" | "aligned"
    error_barrier: float
    loss_barrier: float
    endpoint_error: list[float]
    bn_policy: str


@dataclass
class AlignmentRecord(Record):
    """Member `members[1]` permuted onto `members[0]` by weight matching (Ainsworth et al.
    2023): the cosine of their weights and the linear path's barriers before and after, and
    how far the permutation moved its predictions (it should not: the same function).
    `method`: "weights" or "activations" matching; `spec`: the permutation spec used
    ("built-in", "automatic" or the spec file, then with its `spec_sha256`). Fields a run did
    not record are None."""

    members: list[int]
    cosine_before: float
    cosine_after: float
    error_barrier_after: float
    loss_barrier_after: float
    max_abs_prob_diff: float
    error_barrier_before: float | None = None
    loss_barrier_before: float | None = None
    method: str | None = None
    spec: str | None = None
    spec_sha256: str | None = None


@dataclass
class LandscapeSummary(Record):
    config: dict[str, Any]
    members: list[int]
    num_examples: int
    planes: list[PlaneEntry]
    paths: list[PathEntry]
    alignment: AlignmentRecord | None
    files: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float | None = None  # wall time of the call that wrote this summary


# ---- shift ------------------------------------------------------------------------------------
@dataclass
class BySeverity(Record):
    severities: list[int]
    metrics: dict[str, dict[str, list[float]]]  # family(_size) -> metric -> [per severity]
    js: dict[str, list[float]]  # family -> [per severity]


@dataclass
class ShiftSummary(Record):
    config: dict[str, Any]
    corruptions: list[str]
    members: list[int]
    families: dict[str, int]
    source: str
    by_severity: BySeverity
    files: dict[str, str]
    late_window: int = LATE_WINDOW
    example_corruptions: list[str] = field(default_factory=list)  # rows of SHIFT_EXAMPLES
    warnings: list[str] = field(default_factory=list)
    # [corruption, severity] pairs that left the inputs unchanged: in no average
    no_ops: list[list[Any]] = field(default_factory=list)
    elapsed_s: float | None = None  # wall time of the call that wrote this summary


# swag/ (`modescape swag`)
SWAG_PREDS = "preds/{method}/m{member:03d}/probs.npy"
SWAG_CURVES = "curves.csv"
SWAG_SAMPLES = "samples.csv"
SWAG_PLANE = "plane.csv"
SWAG_TSNE = "tsne.csv"


@dataclass
class SwagRow(Record):
    """One method of `modescape swag`'s table: `members` in the model, its cost in test-set
    forward passes and collection-phase epochs (all members), and its test metrics."""

    method: str
    members: int
    forwards: int
    collect_epochs: int
    accuracy: float
    nll: float
    brier: float
    ece: float


@dataclass
class ReferencePlane(Record):
    """Member 0's accuracy and the plane's reference curves around it (None: a reference no
    better than chance)."""

    reference_accuracy: float
    curves: ReferenceCurves | None


@dataclass
class SwagSummary(Record):
    """`modescape swag` (summary.json). `table`: one row per method; `collection`: iterates
    per member, the collection phase's settings as recorded with the statistics (the run's
    `train.collect`) and its learning rate: kept as that JSON, since the settings' fields are
    the config's; `plane`: member 0's reference plane; `tsne`: the t-SNE's settings."""

    config: dict[str, Any]
    members: list[int]
    table: list[SwagRow]
    collection: dict[str, Any]
    batchnorm: str
    skipped: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    tsne: dict[str, Any] = field(default_factory=dict)
    plane: ReferencePlane | None = None
    elapsed_s: float | None = None


# ---- connect ----------------------------------------------------------------------------------
@dataclass
class CurvePlane(Record):
    """The plane a curve is drawn in: through its ends and `third` (the middle bend, or the
    curve's point at t = 0.5), the anchors' (a, b) coordinates, the largest distance of a curve
    point from the plane (weight-space L2), the grid's resolution and BatchNorm policy."""

    third: str
    anchor_coords: list[list[float]]
    max_off_plane: float
    bn_policy: str
    resolution: int


@dataclass
class CurveEnsembleRecord(Record):
    t: list[list[float]]  # the curve points of each ensemble size (interior t = (2i+1)/2k)


@dataclass
class FGERecord(Record):
    """Fast geometric ensembling (Garipov et al. 2018): the snapshots taken and
    `analysis.connect.ensembles.FGEConfig` as JSON (it lives above this module)."""

    snapshots: int
    config: dict[str, Any]


@dataclass
class ConnectEnsembles(Record):
    curve: CurveEnsembleRecord | None = field(default=None, metadata=OMIT_NONE)
    fge: FGERecord | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class ConnectSummary(CurveMeasures):
    """`modescape connect` (summary.json): the curve between `pair` against the straight line
    (`CurveMeasures`: barriers, lengths, midpoint and per-column statistics, as
    `analysis.connect.evaluate.summarize_curve` computes them), and the study's settings.
    `plane`: the plane the curve is drawn in (None: not drawn); `ensembles`: the t values of the
    curve ensembles and FGE's settings."""

    config: dict[str, Any]
    pair: list[str]
    curve_folder: str  # relative to the run
    bn_policy: str
    num_examples: int
    plane: CurvePlane | None = None
    ensembles: ConnectEnsembles = field(default_factory=ConnectEnsembles)
    epochs_trained: list[dict[str, float]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0


# instability/ (`modescape spawn`, `modescape instability`)
INSTABILITY_TRAJECTORIES = "trajectories.npy"  # float64 [points, 2], one joint embedding
INSTABILITY_TRAJECTORY_INDEX = (
    "trajectory_index.npy"  # int64 [points, 3]: spawn point, child, epoch
)


@dataclass
class InstabilityPoint(Record):
    at: float  # the spawn point as asked, in epochs
    epoch: int  # whole epochs of the parent's training before it
    step: int  # and optimiser steps into the next epoch
    level: PairLevel


@dataclass
class InstabilitySummary(Record):
    """`modescape instability` (summary.json of a spawn run): per spawn point the children's
    level; `within` (the parent's final snapshot against `within_epochs[0]`) and `across` (the
    parent member against `across_members[1:]`) the references; `onset` the first spawn point
    with an error barrier below `settings["threshold"]` (None: none); `settings` is the
    `InstabilityConfig` as JSON (it lives in `studies/`, above this module) and the number of
    test examples used."""

    parent: str
    member: int
    children: int
    points: list[InstabilityPoint]
    within: PairLevel | None
    across: PairLevel | None
    within_epochs: list[int]
    across_members: list[int]
    onset: float | None
    reading: str
    bn_policy: str
    settings: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # windows clamped, references left out
