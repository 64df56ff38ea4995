"""`RunContext`: what every study reads a run through, loaded once per run.

A study receives a run directory or a `RunContext`; the context caches what several studies
need, so `modescape run` loads the dataset once (not once per member and study), builds the
architecture once, draws the BatchNorm-recompute subset once and averages each member's weights
once per window.

It also holds the helpers studies share (weight averages, BatchNorm recomputation, trajectory
matrices, regenerated subspace samples), so no study imports another.
"""

from __future__ import annotations

import copy
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import nn

from modescape.analysis.weightspace import average_state_dicts
from modescape.codec import Record
from modescape.errors import ModescapeError
from modescape.store.run import Run, load_run

if TYPE_CHECKING:
    from modescape.analysis.swag import SwagMoments
    from modescape.data.datasets import Dataset

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)

BN_TRAIN_EXAMPLES = 2048  # training examples per BatchNorm recomputation (a seeded subset)

_LAST_DATASET: tuple[Any, Dataset] | None = None  # (data settings, dataset): see `dataset`


def clamp_window(
    what: str, requested: int, available: int, minimum: int = 1, flag: str = ""
) -> tuple[int, str]:
    """A window of the last `requested` snapshots, clamped to the later half of `available`
    snapshots after initialisation (at least `minimum`); returns (size, warning or "").

    The notebooks' windows are the last 10 of 40 epochs: late in training. On a short run the
    same count would reach back to the first epochs, so it is shortened, and the summary says so,
    naming the setting (`flag`, e.g. "--late") that asked for more. Every study applies this one
    rule to its windows, before any work; a study that cannot work with what is left refuses
    (`require_snapshots`).
    """
    limit = max(minimum, available // 2)
    if requested <= limit:
        return requested, ""
    n = min(limit, available) if available >= minimum else available
    asked = f"{flag} {requested} asked" if flag else "asked"
    warning = (
        f"{what}: {asked} for the last {requested} snapshots, but the run has {available} after "
        f"initialisation; used the last {n} (a window covers at most the later half)"
    )
    return n, warning  # each study logs its warnings once, with its summary


def require_snapshots(what: str, needed: int, available: int, hint: str) -> None:
    """Refuse, in one line and before any work, a study part that needs `needed` snapshots after
    initialisation when the run has fewer; `hint` says how to leave that part out."""
    if available < needed:
        raise ModescapeError(
            f"{what} needs at least {needed} snapshots after initialisation; the run has "
            f"{available} ({hint})"
        )


SWAG_FILE = "swag.safetensors"  # a member's collection-phase statistics (train.collect)


class RunContext:
    """One run opened for the studies, with the dataset, model, BatchNorm subset, trajectories
    and weight averages cached on first use."""

    def __init__(self, run: Run | str | Path):
        self.run = run if isinstance(run, Run) else load_run(run)
        self._trajectories: dict[int, torch.Tensor] = {}
        self._averages: dict[tuple[int, tuple[int, ...]], dict[str, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"RunContext({str(self.run.path)!r})"

    @property
    def path(self) -> Path:
        return self.run.path

    @cached_property
    def dataset(self) -> Dataset:
        """The run's dataset, loaded once; the last one loaded is shared by every context of the
        same data settings, so studies called one after another on a run path (as `modescape
        run` does) do not reload and rehash it either."""
        global _LAST_DATASET
        key = self.run.config.data
        if _LAST_DATASET is None or _LAST_DATASET[0] != key:
            _LAST_DATASET = None  # the old one can go before the new one is loaded
            # Images stay uint8 pixels (a quarter of the float size): the studies scale the
            # test split (`inputs`) and the training subsets they use (`train_inputs`).
            _LAST_DATASET = (key, self.run.dataset(pixels="uint8"))
        return _LAST_DATASET[1]

    def inputs(self, split: str = "test") -> torch.Tensor:
        """The run's scaled inputs of one split: [N, ...] float32 (scaled once per context)."""
        if split not in self._scaled:
            from modescape.data.datasets import scale_pixels

            x = getattr(self.dataset, f"x_{split}")
            self._scaled[split] = scale_pixels(x, self.dataset.source)
        return self._scaled[split]

    @cached_property
    def _scaled(self) -> dict[str, torch.Tensor]:
        return {}

    def train_inputs(self, index: torch.Tensor) -> torch.Tensor:
        """Scaled training inputs `x_train[index]`: [len(index), ...] float32."""
        from modescape.data.datasets import scale_pixels

        return scale_pixels(self.dataset.x_train[index], self.dataset.source)

    @cached_property
    def _template(self) -> nn.Module:
        return self.run.build_model()

    def build_model(self) -> nn.Module:
        """A fresh copy of the run's (initialised) architecture, safe to load weights into."""
        return copy.deepcopy(self._template)

    @cached_property
    def has_batchnorm(self) -> bool:
        from modescape.models.registry import has_batchnorm

        return has_batchnorm(self._template)

    @cached_property
    def param_names(self) -> list[str]:
        from modescape.analysis.weightspace import param_names

        return param_names(self._template)

    @cached_property
    def bn_subset(self) -> torch.Tensor:
        """The fixed, shuffled training examples BatchNorm statistics are recomputed on."""
        n = len(self.dataset.y_train)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        return self.train_inputs(perm[:BN_TRAIN_EXAMPLES])

    def epochs_after_init(self, member: int) -> list[int]:
        return [e for e in self.run.snapshot_epochs(member) if e > 0]

    def late_epochs(
        self, member: int, requested: int, what: str, flag: str = "--late"
    ) -> tuple[list[int], str]:
        """The member's last snapshots in a late window (clamped; see `clamp_window`)."""
        epochs = self.epochs_after_init(member)
        n, warning = clamp_window(what, requested, len(epochs), minimum=2, flag=flag)
        if n < 2 or n > len(epochs):  # one epoch after initialisation: take the init too
            return self.run.snapshot_epochs(member)[-max(n, 2) :], warning
        return epochs[-n:], warning

    def trajectory_matrix(self, member: int) -> torch.Tensor:
        """Flat parameter vectors of every snapshot after initialisation: [S, P] (float32)."""
        if member not in self._trajectories:
            from modescape.analysis.weightspace import stack_flat

            sds = [self.run.state_dict(member, e) for e in self.epochs_after_init(member)]
            self._trajectories[member] = stack_flat(sds, self.param_names, torch.float32)
        return self._trajectories[member]

    def with_recomputed_bn(self, flat: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """State dicts for flat parameter vectors [K, P], BatchNorm statistics recomputed per
        point on `bn_subset` (networks without BatchNorm: the parameters only)."""
        from modescape.analysis.engine.bn import recompute_bn_buffers
        from modescape.analysis.weightspace import buffer_names

        model = self._template
        base = model.state_dict()
        sds = [base | unflatten_named(v, self.param_names, model) for v in flat]
        bnames = buffer_names(model)
        if bnames:
            buffers = recompute_bn_buffers(model, flat, self.bn_subset)
            sds = [sd | unflatten_named(b, bnames, model) for sd, b in zip(sds, buffers)]
        return sds

    def weight_average_window(
        self, member: int, requested: int, flag: str = "--weight-average"
    ) -> tuple[list[int], str]:
        """Epochs averaged into the member's weight average (clamped; see `clamp_window`)."""
        epochs = self.epochs_after_init(member)
        n, warning = clamp_window("weight average", requested, len(epochs), minimum=1, flag=flag)
        return epochs[-n:], warning

    def weight_average_state(self, member: int, requested: int) -> dict[str, torch.Tensor]:
        """Mean of the member's weights over its weight-average window; BatchNorm statistics are
        recomputed for the averaged weights (`BN_TRAIN_EXAMPLES` training examples)."""
        from modescape.analysis.weightspace import flatten_params

        window, _ = self.weight_average_window(member, requested)
        key = (member, tuple(window))
        if key not in self._averages:
            avg = average_state_dicts([self.run.state_dict(member, e) for e in window])
            if self.has_batchnorm:
                flat = flatten_params(avg, self.param_names)[None]
                avg = self.with_recomputed_bn(flat)[0]
            self._averages[key] = avg
        return self._averages[key]

    def evaluate(self, states: list[dict[str, torch.Tensor]], split: str = "test") -> np.ndarray:
        """probs[len(states), N, C] (float32) of state dicts on one split."""
        from modescape.analysis.engine.batched import evaluate_many

        x = self.inputs(split)
        return evaluate_many(self._template, states, x).numpy().astype(np.float32)

    def swag_moments(self, member: int) -> tuple[SwagMoments, dict[str, Any], str]:
        """Member `member`'s SWAG statistics from its collection phase (`train.collect`), checked
        against their recorded sha256: (`analysis.swag.SwagMoments`, the file's safetensors
        metadata as written by `training.collect`, its sha256). Shared by `modescape swag` and
        the shift study's SWAG families."""
        from modescape.analysis.swag import SwagMoments
        from modescape.errors import ModescapeError
        from modescape.store.files import load_safetensors, read_safetensors_metadata

        path = self.run.member_dir(member) / SWAG_FILE
        if not path.exists():
            raise ModescapeError(
                f"member {member} of {self.path} has no SWAG statistics ({path.name}): train "
                "the run with a collection phase (--set train.collect.epochs=N), or use the "
                "methods that need none (mc_dropout)"
            )
        self.run.verified(path)
        t, meta = load_safetensors(path), read_safetensors_metadata(path)
        if meta.get("param_names") != self.param_names:
            raise ModescapeError(f"{path} does not hold this architecture's parameters")
        moments = SwagMoments(t["mean"], t["sq_mean"], t["deviations"], meta["n"], meta["max_rank"])
        digest = self.run.expected_digest(str(path.relative_to(self.path))) or ""
        return moments, meta, digest


def open_context(run: RunContext | Run | str | Path) -> RunContext:
    """The context for a study's argument: a path, a `Run` or an existing context."""
    return run if isinstance(run, RunContext) else RunContext(run)


def unflatten_named(
    vector: torch.Tensor, names: list[str], model: nn.Module
) -> dict[str, torch.Tensor]:
    """A flat vector back to the named tensors of `model` it was flattened from."""
    from modescape.analysis.weightspace import shapes_of, unflatten

    return unflatten(vector, names, shapes_of(model, names))


class ResultWriter:
    """Writes a study's files under one folder and keeps the sha256 of each (`files`, paths
    relative to the folder), which the study summary lists and the manifest records.

    Kill point `"<study>.write"` comes before every file (`<study>` is the folder's name), so
    tests can SIGKILL a study at each of its writes (`store.files.killpoint`). Cached files
    reused from an earlier call go through `reuse_npy` / `reuse_folder`: verified against the
    manifest when it records them for the same cache settings, and listed in `files` again.
    """

    def __init__(self, root: Path, run: Run | None = None):
        self.root = Path(root)
        self.study = self.root.name
        self._run = run
        self._unpublished = False
        self.files: dict[str, str] = {}

    @property
    def run(self) -> Run:
        """The run the folder belongs to (opened on first use when none was given)."""
        if self._run is None:
            self._run = load_run(self.root.parent)
        return self._run

    def _before_write(self) -> None:
        from modescape.store.files import killpoint

        killpoint(f"{self.study}.write")
        if not self._unpublished:
            self._unpublish()
            self._unpublished = True

    def _unpublish(self) -> None:
        """Before the first write: take the folder's earlier results out of the manifest (all
        but the settings-keyed caches, which are verified when reused) and remove its summary.
        A call that then fails (a full disk) or is killed leaves the study "not run", never a
        summary and manifest describing files that have since changed."""
        from modescape.store.manifest import replace_folder_files

        prefix = f"{self.study}/"
        recorded = self.run.manifest.files
        mine = {k: v for k, v in recorded.items() if k.startswith(prefix)}
        kept = {k: v for k, v in mine.items() if self._in_cache(k[len(prefix) :])}
        if kept != mine:
            replace_folder_files(self.run.path, self.study, kept)
        (self.root / "summary.json").unlink(missing_ok=True)

    def _in_cache(self, rel: str) -> bool:
        """Whether `rel` lies in a settings-keyed cache folder (one holding settings.json)."""
        from modescape.store.schema import SETTINGS

        parts = rel.split("/")[:-1]
        return any(
            (self.root / "/".join(parts[: i + 1]) / SETTINGS).exists() for i in range(len(parts))
        )

    def npy(self, rel: str, array: np.ndarray) -> None:
        from modescape.store.files import save_npy

        self._before_write()
        self.files[rel] = save_npy(self.root / rel, array)

    def csv(self, rel: str, header: list[str], rows: list[list[Any]]) -> None:
        from modescape.store.files import write_csv

        self._before_write()
        self.files[rel] = write_csv(self.root / rel, header, rows)

    def json(self, rel: str, obj: Any) -> None:
        from modescape.store.files import write_json

        self._before_write()
        self.files[rel] = write_json(self.root / rel, obj)

    def safetensors(
        self, rel: str, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None
    ) -> None:
        from modescape.store.files import save_safetensors

        self._before_write()
        self.files[rel] = save_safetensors(self.root / rel, tensors, metadata)

    # ---- reusing cached results ------------------------------------------------------------
    def reuse_npy(self, rel: str) -> np.ndarray | None:
        """A cached array written by an earlier call ([...] as written), verified and listed in
        `files`; None when there is none."""
        from modescape.store.files import load_npy

        path = self.root / rel
        if not path.exists():
            return None
        if rel not in self.files:  # not written by this call: an earlier call's result
            self._reuse(rel)
        return load_npy(path)

    def written_npy(self, rel: str) -> np.ndarray:
        """`reuse_npy` of an array this call has just written or found cached (never None)."""
        array = self.reuse_npy(rel)
        if array is None:
            raise ModescapeError(f"missing file {self.root / rel}")
        return array

    def reuse_record(self, rel: str, record: type[R]) -> R:
        """A cached JSON record written by an earlier call, verified and listed in `files`."""
        from modescape.store.files import read_json

        if rel not in self.files:
            self._reuse(rel)
        return record.from_dict(read_json(self.root / rel, expect=dict))

    def reuse_folder(self, rel: str) -> None:
        """List (and verify) every finished file directly in the cached folder `rel`."""
        for path in sorted((self.root / rel).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                self._reuse(f"{rel}/{path.name}")

    def _reuse(self, rel: str) -> None:
        from modescape.store.files import cached_sha256

        path = self.root / rel
        if self._recorded_for_same_settings(rel):
            self.run.verified(path)
        self.files[rel] = cached_sha256(path)

    def _recorded_for_same_settings(self, rel: str) -> bool:
        """Whether the manifest's digest of `rel` belongs to the current cache: the nearest
        enclosing cache's settings.json (listed in `files` by `open_cache`'s caller) has the
        digest the manifest recorded with it. A cache emptied for new settings and refilled by
        a killed call holds files the manifest has not seen yet: those are not checked."""
        from modescape.store.schema import SETTINGS

        recorded = self.run.manifest.files
        if f"{self.study}/{rel}" not in recorded:
            return False
        parts = rel.split("/")[:-1]
        while parts:
            settings = "/".join([*parts, SETTINGS])
            if settings in self.files:
                return bool(recorded.get(f"{self.study}/{settings}") == self.files[settings])
            parts.pop()
        return True
