"""Creating (or reopening) a run directory for training: the config, the dataset's summary and
fingerprint, the evaluation labels and where the network comes from, written atomically."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from modescape.config import RunConfig
from modescape.data.datasets import Dataset
from modescape.errors import ModescapeError
from modescape.store.files import save_npy
from modescape.store.manifest import record_files, update_manifest
from modescape.store.records import ArchRecord, DataSummary
from modescape.store.run import Run, init_run, open_dataset


def prepare_run(
    out: str | Path, config: RunConfig, dataset: Dataset | None = None, device: str = "auto"
) -> Run:
    """Create the run directory with the labels of its evaluation splits and the dataset's
    fingerprint, atomically; or reopen it (repairing labels a killed older version left out).

    A new run records its precision resolved for `device` and the data (`train.precision`
    "auto": `training.loop.resolve_precision`); an existing one keeps the precision it has."""
    out = Path(out)
    _refuse_imported(out)
    if (out / "config.json").exists() and dataset is None:
        return init_run(out, config)  # checks the config matches; members check the data
    data = open_dataset(config) if dataset is None else dataset
    from modescape.models.registry import build_model

    m = config.model  # an unbuildable model (import path, kwargs, shape) fails before any file
    with torch.random.fork_rng(devices=[]):
        build_model(m.arch, m.variant, data.in_shape, data.num_classes, m.dropout, **m.arch_kwargs)
    summary, labels = dataset_summary(data), eval_labels(data)
    if not (out / "config.json").exists():
        config = with_precision(config, data.in_shape, device)
    run = init_run(out, config, summary, labels)
    _repair_labels(run, labels)
    if run.manifest.arch is None:  # where the network came from (import path, version, sha256)
        from modescape.models.registry import describe_arch

        update_manifest(run.path, arch=ArchRecord.from_dict(describe_arch(m.arch)))
    return run


def with_precision(config: RunConfig, in_shape: tuple[int, ...], device: str) -> RunConfig:
    """`config` with "auto" precision resolved for `device` ("auto" | "cpu" | "cuda[:N]")."""
    from modescape.training.loop import resolve_device, resolve_precision

    if config.train.precision != "auto":
        return config
    try:
        dev = resolve_device(device)
    except ModescapeError:  # e.g. SLURM: "cuda" asked for on a login node without one
        dev = torch.device("cuda" if device.startswith("cuda") else "cpu")
    precision = resolve_precision(config.train.precision, dev, tuple(in_shape))
    return dataclasses.replace(config, train=dataclasses.replace(config.train, precision=precision))


def dataset_summary(data: Dataset) -> DataSummary:
    """The manifest's "data" record: name, shapes, split sizes, classes and fingerprint."""
    from modescape.data.datasets import fingerprint

    return DataSummary(
        name=data.name,
        in_shape=list(data.in_shape),
        num_classes=data.num_classes,
        classes=list(data.classes),
        n_train=len(data.y_train),
        n_val=len(data.y_val),
        n_test=len(data.y_test),
        source=data.source,
        fingerprint=fingerprint(data),
    )


def eval_labels(data: Dataset) -> dict[str, np.ndarray]:
    """int64 labels of the evaluation splits that have examples ("val", "test")."""
    return {
        s: getattr(data, f"y_{s}").numpy().astype(np.int64)
        for s in ("val", "test")
        if len(getattr(data, f"y_{s}"))
    }


def _refuse_imported(out: Path) -> None:
    """Imported checkpoints have no optimiser or RNG state: there is nothing to resume."""
    if not (out / "manifest.json").exists():
        return
    from modescape.store.manifest import read_manifest

    imported = read_manifest(out, trust=True).imported
    if imported is not None:
        raise ModescapeError(
            f"run {out} was imported from checkpoints ({imported.source}), not "
            "trained by modescape: it cannot be resumed or extended; train a new run with --out"
        )


def _repair_labels(run: Run, labels: dict[str, np.ndarray]) -> None:
    """Write and record labels a run lacks (one created by a version that could be killed
    between config.json and the labels)."""
    recorded = run.manifest.files
    files = {}
    for split, y in labels.items():
        rel = f"labels/{split}.npy"
        if rel not in recorded:
            files[rel] = save_npy(run.path / rel, y)
    if files:
        record_files(run.path, files)
