"""Existing checkpoints as a modescape run (`modescape import`), so every study and the report
run on a trajectory trained elsewhere.

Sources, mapped to (member, epoch) by a pattern relative to the source folder, e.g.
`seed{member}/ep{epoch}.pt` (`{member}` may be left out: one member; `*` matches within a name):
- PyTorch state dicts, read with `torch.load(weights_only=True)` only: a pickle that needs more
  than tensors (a whole pickled model, custom classes) is refused, never executed. A dict that
  wraps the state dict under "state_dict", "model_state_dict" or "model" is unwrapped, and a
  DataParallel "module." prefix dropped;
- safetensors files;
- Keras files (`models.keras`, h5py needed): `model.save` `.h5` (the seed notebooks'
  checkpoints), Keras 3 `.keras` archives and `.weights.h5` files, for the built-ins (then built
  with Keras' asymmetric padding, `arch_kwargs={"padding": "keras"}`) and any registered factory.

A file does not record how its model's inputs were scaled or what the number in its name means,
so `origin` (options.ImportOrigin) says it: "seed-notebooks" (the authors' Keras notebooks: pixels
/ 255, the seed recipe, `..._checkpoint_{k}.h5` saved by `on_epoch_end(k)`, i.e. after epoch
k + 1: stored as epoch k + 1) or "stated" (epoch = {epoch} + `epoch_offset`, where 0 is the
initialisation; pixels as the config's data.scaling). Keras files need it said. Image
checkpoints of the other formats need their preprocessing stated too (a model fed other inputs
than in its own pipeline scores near chance without any error): `origin`, or a Lightning
checkpoint's hyper-parameters naming a Normalize's mean / std (`checkpoints.
hparams_preprocessing`); otherwise the import is refused, naming the options (`modescape
import` takes `--set data.scaling=...` as "stated"). MNIST-1D signals, which modescape does not
rescale, import with "stated" and offset 0. Origin, offset and the preprocessing (with who
stated it) are recorded in the manifest.

The run gets what a trained one has: snapshots in safetensors (the model's own state dict, so
keys and buffers are the run's), predictions and metrics on the run's evaluation splits, labels,
and a manifest with sha256 of every file. It is marked `"imported"` in the manifest (source,
format, pattern, original member ids and the sha256 of every source file); its training config
is only what rebuilds the model and the data (members, last epoch), and `modescape train`
refuses to resume it. The whole run is built in a hidden sibling folder and renamed into place,
so an interrupted import leaves nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import re
import shutil
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modescape.config import RunConfig, recipe_for
from modescape.errors import ModescapeError, check_choice
from modescape.options import Arch, Dataset, ImportOrigin, Scaling, values
from modescape.store.files import atomic_write_bytes, save_npy, save_safetensors, sha256_file
from modescape.store.manifest import ManifestExtra, create_run, record_files
from modescape.store.members import write_member_info
from modescape.store.records import ArchRecord, ImportRecord, MemberInfo
from modescape.store.run import Run, load_run, open_dataset

log = logging.getLogger(__name__)

DEFAULT_PATTERN = "seed{member}/ep{epoch}.pt"
_WRAPPERS = ("state_dict", "model_state_dict", "model")


class ImportFormat(StrEnum):
    AUTO = "auto"  # by file suffix: .h5/.keras → keras, .safetensors, anything else → torch
    TORCH = "torch"
    SAFETENSORS = "safetensors"
    KERAS = "keras"


@dataclass(frozen=True)
class Checkpoint:
    """One source file: `member` is the id in the file name (renumbered 0.. in the run)."""

    member: int
    epoch: int
    path: Path


def find_checkpoints(source: str | Path, pattern: str = DEFAULT_PATTERN) -> list[Checkpoint]:
    """Files under `source` whose relative path matches `pattern`, sorted by (member, epoch)."""
    source = Path(source)
    if not source.is_dir():
        raise ModescapeError(f"checkpoint folder not found: {source}")
    if "{epoch}" not in pattern:
        raise ModescapeError(f"--pattern {pattern!r} needs an {{epoch}} field")
    parts = re.split(r"(\{member\}|\{epoch\})", pattern)
    regex = "".join(
        f"(?P<{p[1:-1]}>\\d+)" if p in ("{member}", "{epoch}") else
        re.escape(p).replace(r"\*", "[^/]*")
        for p in parts
    )  # fmt: skip
    glob = "".join("*" if p in ("{member}", "{epoch}") else p for p in parts)
    found: dict[tuple[int, int], Path] = {}
    for path in sorted(source.glob(glob)):
        m = re.fullmatch(regex, path.relative_to(source).as_posix())
        if m is None or not path.is_file():
            continue
        key = (int(m.groupdict().get("member") or 0), int(m.group("epoch")))
        if key in found:
            raise ModescapeError(f"{found[key]} and {path} both give member {key[0]}, "
                                 f"epoch {key[1]}")  # fmt: skip
        found[key] = path
    if not found:
        raise ModescapeError(f"no file under {source} matches --pattern {pattern!r}")
    return [Checkpoint(m, e, p) for (m, e), p in sorted(found.items())]


def read_state_dict(path: Path, fmt: str = ImportFormat.AUTO) -> dict[str, torch.Tensor]:
    """Tensors of a PyTorch or safetensors checkpoint (no code is ever unpickled)."""
    fmt = _format_of(path, fmt)
    if fmt == ImportFormat.SAFETENSORS:
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own types for damaged headers
            raise ModescapeError(f"cannot read {path} as safetensors: {e}") from None
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split(". ")[0]  # torch's first sentence; the rest is about torch versions
        raise ModescapeError(
            f"refused {path}: it is a pickle that needs more than tensors to load ({first}); "
            "modescape reads only weights_only=True checkpoints. Save model.state_dict() "
            "instead of the model, or convert the file to safetensors"
        ) from None
    except Exception as e:  # any other file (a text file, a truncated zip) fails in its own way
        raise ModescapeError(
            f"cannot read {path} as a PyTorch checkpoint ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    return _unwrap(obj, path)


def lightning_record(path: Path) -> dict[str, Any] | None:
    """The Lightning record (version, epoch, hyper_parameters) of a PyTorch checkpoint, None
    for any other file (`training.checkpoints.lightning_meta`)."""
    from modescape.training.checkpoints import lightning_meta

    try:
        obj = _torch_load(path)
    except Exception:  # unreadable: `read_state_dict` says why when the weights are read
        return None
    meta = lightning_meta(obj)
    # JSON for the manifest: a hyper-parameter JSON cannot hold is recorded as its text
    return json.loads(json.dumps(meta, default=str)) if meta is not None else None


def _torch_load(path: Path) -> Any:
    """`torch.load(weights_only=True)` without torch's warnings: it warns about a raw pickle's
    protocol just before refusing it, a second message in front of modescape's one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is not None and not all(torch.is_tensor(v) for v in obj.values()):
            obj = inner
    if not (isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values())):
        raise ModescapeError(
            f"{path} holds no state dict (a dict of tensors, possibly under "
            f"{', '.join(repr(k) for k in _WRAPPERS)}); got {type(obj).__name__}"
        )
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def _format_of(path: Path, fmt: str) -> ImportFormat:
    check_choice("checkpoint format", fmt, ImportFormat)
    if fmt != ImportFormat.AUTO:
        return ImportFormat(fmt)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".keras", ".hdf5"):
        return ImportFormat.KERAS
    return ImportFormat.SAFETENSORS if suffix == ".safetensors" else ImportFormat.TORCH


def import_checkpoints(
    source: str | Path,
    out: str | Path,
    config: RunConfig,
    *,
    pattern: str = DEFAULT_PATTERN,
    fmt: str = ImportFormat.AUTO,
    origin: str | None = None,
    epoch_offset: int | None = None,
    keras_config: str | Path | None = None,
) -> Run:
    """Make the run `out` from the checkpoints under `source` (see the module docstring).

    `config` names the data and the model (arch, variant, arch_kwargs); its `members` and
    `train.epochs` are replaced by what the checkpoints hold. `origin` and `epoch_offset`: see
    the module docstring; `keras_config` gives a weights-only Keras file its graph
    (`models.keras.read_keras`). Returns the new run, opened.
    """
    from modescape.training.prepare import dataset_summary, eval_labels

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModescapeError(f"--out {out} exists and is not empty: import into a new folder")
    found = find_checkpoints(source, pattern)
    kinds = {_format_of(c.path, fmt) for c in found}
    if len(kinds) > 1:
        raise ModescapeError(f"mixed checkpoint formats under {source}: {sorted(kinds)}")
    kind = kinds.pop()
    lightning = lightning_record(found[0].path) if kind == ImportFormat.TORCH else None
    config, stated_by = _preprocessing(kind, origin, config, lightning, source)
    origin, offset, config = _resolve_origin(kind, origin, epoch_offset, config)
    checkpoints = _shift_epochs(found, offset)
    originals = sorted({c.member for c in checkpoints})
    config = _import_config(config, kind, len(originals), max(c.epoch for c in checkpoints))
    config = _with_hyper_parameters(config, lightning)
    data = open_dataset(config)
    imported = {
        "source": str(Path(source).resolve()),
        "format": kind.value,
        "pattern": pattern,
        "origin": origin,
        "epoch_offset": offset,
        "preprocessing": _preprocessing_record(config, stated_by),
        "members": {str(i): orig for i, orig in enumerate(originals)},
        "files": {str(c.path.relative_to(source)): sha256_file(c.path) for c in found},
    }
    if keras_config is not None:
        imported["keras_config"] = {"path": str(keras_config), "sha256": sha256_file(keras_config)}
    if lightning is not None:
        imported["lightning"] = lightning
    if kind != ImportFormat.KERAS:
        imported["key_prefix"] = _key_prefix(found[0].path, kind, config, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.importing-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        extra = ManifestExtra(
            arch=ArchRecord.from_dict(_describe(config)),
            imported=ImportRecord.from_dict(imported),
            seeds={},  # trained elsewhere: no member seeds
        )
        create_run(tmp, config, dataset_summary(data), eval_labels(data), extra)
        run = load_run(tmp)
        for new, orig in enumerate(originals):
            mine = [c for c in checkpoints if c.member == orig]
            _write_member(run, new, mine, _Source(kind, keras_config), data)
        os.rename(tmp, out)  # `out` is absent or empty: the run appears whole or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("imported %d checkpoints of %d member(s) into %s", len(checkpoints),
             len(originals), out)  # fmt: skip
    run = load_run(out)
    _warn_near_chance(run)
    return run


def _preprocessing(
    kind: ImportFormat,
    origin: str | None,
    config: RunConfig,
    lightning: dict[str, Any] | None,
    source: str | Path,
) -> tuple[RunConfig, str]:
    """(config with the checkpoints' input scaling, who stated it). A file records no
    preprocessing, and a model fed other inputs than in its own pipeline scores near chance
    without any error, so an image import needs it stated: `origin` (seed-notebooks: pixels /
    255; stated: data.scaling as configured), or a Lightning checkpoint's hyper-parameters that
    name it (a Normalize's mean / std, or a scaling). MNIST-1D signals are not rescaled by
    modescape (the generator standardises them), so there is nothing to state."""
    if origin is not None or kind == ImportFormat.KERAS:  # Keras: `_resolve_origin` asks
        return config, f"--origin {origin}"
    if config.data.name == Dataset.MNIST1D:
        return config, "MNIST-1D (not rescaled)"
    from modescape.training.checkpoints import hparams_preprocessing

    found = hparams_preprocessing(lightning) if lightning is not None else None
    if found is not None:
        log.info("preprocessing from the Lightning hyper-parameters: %s", found)
        data = dataclasses.replace(config.data, **found)  # validated by DataConfig
        return dataclasses.replace(config, data=data), "Lightning hyper-parameters"
    raise ModescapeError(
        f"the checkpoints under {source} do not record how their inputs were preprocessed: "
        "state it, e.g. --set data.scaling=normalize --set data.mean=[...] --set "
        "data.std=[...] (torchvision's ToTensor + Normalize), data.scaling=unit (ToTensor "
        "alone, pixels / 255) or data.scaling=raw (0-255 pixels) (allowed: "
        f"{', '.join(values(Scaling))}); or --origin stated to keep data.scaling "
        f"{config.data.scaling!r}; or --origin seed-notebooks (the authors' Keras notebooks)"
    )


def _preprocessing_record(config: RunConfig, stated_by: str) -> dict[str, Any]:
    d = config.data
    record: dict[str, Any] = {"scaling": d.scaling, "stated_by": stated_by}
    if d.mean:
        record.update(mean=list(d.mean), std=list(d.std or ()))
    return record


def _with_hyper_parameters(config: RunConfig, lightning: dict[str, Any] | None) -> RunConfig:
    """A Lightning checkpoint's hyper-parameters that the model factory names become its
    arch_kwargs, unless the config gives arch_kwargs itself."""
    if lightning is None or config.model.arch_kwargs:
        return config
    from modescape.models.registry import is_builtin, resolve_factory
    from modescape.training.checkpoints import factory_kwargs

    if is_builtin(config.model.arch):
        return config
    kwargs = factory_kwargs(lightning["hyper_parameters"], resolve_factory(config.model.arch))
    if kwargs:
        log.info("arch_kwargs from the Lightning hyper_parameters: %s", kwargs)
        model = dataclasses.replace(config.model, arch_kwargs=kwargs)
        config = dataclasses.replace(config, model=model)
    return config


def _key_prefix(path: Path, kind: ImportFormat, config: RunConfig, data: Any) -> str:
    """The prefix the checkpoints' keys carry before the model's ("model." of a Lightning
    module, "module." of DataParallel, ""), read from the first file."""
    from modescape.models.registry import build_model
    from modescape.training.checkpoints import fit_to_model

    m = config.model
    with torch.random.fork_rng(devices=[]):
        model = build_model(m.arch, m.variant, data.in_shape, data.num_classes, m.dropout,
                            **m.arch_kwargs)  # fmt: skip
    return fit_to_model(read_state_dict(path, kind), model.state_dict())[1]


def _warn_near_chance(run: Run) -> None:
    """Warn when every member's last snapshot scores near chance on the test split."""
    from modescape.training.checkpoints import near_chance_message

    if "test" not in run.splits:
        return
    last = {m: run.metrics(m)[-1].test_acc for m in run.members}
    accuracies = {m: a for m, a in last.items() if isinstance(a, float)}
    classes = int(run.data_summary.num_classes or 0)
    message = near_chance_message(accuracies, classes, run.config.data.scaling)
    if message:
        log.warning("%s", message)


def _resolve_origin(
    kind: ImportFormat, origin: str | None, epoch_offset: int | None, config: RunConfig
) -> tuple[str, int, RunConfig]:
    """(origin, epoch offset, config with the origin's scaling and recipe); refuses to guess
    either for Keras files, which record neither."""
    if epoch_offset is not None and (isinstance(epoch_offset, bool) or epoch_offset < 0):
        raise ModescapeError(f"--epoch-offset must be an integer >= 0, got {epoch_offset!r}")
    if origin is None:
        if kind == ImportFormat.KERAS:
            raise ModescapeError(
                "Keras files record neither their pixel scaling nor what their epoch numbers "
                "mean: pass --origin seed-notebooks (the authors' notebooks: pixels / 255, "
                "file {k} saved after epoch k + 1) or --origin stated (epochs as named plus "
                f"--epoch-offset, 0 = initialisation; pixels as data.scaling, now "
                f"{config.data.scaling!r}; allowed: {', '.join(values(Scaling))})"
            )
        origin = ImportOrigin.STATED
    origin = check_choice("import origin", origin, ImportOrigin)
    if origin == ImportOrigin.SEED_NOTEBOOKS:
        if epoch_offset not in (None, 1):
            raise ModescapeError(
                "--origin seed-notebooks names the file saved after epoch k + 1 `{k}`, an "
                f"--epoch-offset of 1; got --epoch-offset {epoch_offset}"
            )
        train = recipe_for("seed", config.model.arch)
        data = dataclasses.replace(config.data, scaling=Scaling.UNIT.value)
        config = dataclasses.replace(config, data=data, train=train)
        return origin, 1, config
    return origin, epoch_offset or 0, config


def _shift_epochs(checkpoints: list[Checkpoint], offset: int) -> list[Checkpoint]:
    return [Checkpoint(c.member, c.epoch + offset, c.path) for c in checkpoints]


def _import_config(config: RunConfig, kind: ImportFormat, members: int, epochs: int) -> RunConfig:
    model = config.model
    builtin = model.arch in values(Arch)
    if kind == ImportFormat.KERAS and builtin and "padding" not in model.arch_kwargs:
        # Keras pads stride-2 "same" convolutions asymmetrically; the model must do the same.
        model = dataclasses.replace(model, arch_kwargs={**model.arch_kwargs, "padding": "keras"})
    train = dataclasses.replace(config.train, epochs=epochs)
    return dataclasses.replace(config, members=members, model=model, train=train)


def _describe(config: RunConfig) -> dict[str, Any]:
    from modescape.models.registry import describe_arch

    return describe_arch(config.model.arch)


@dataclass(frozen=True)
class _Source:
    kind: ImportFormat
    keras_config: str | Path | None = None


def _load_into(model: nn.Module, c: Checkpoint, source: _Source, run: Run) -> None:
    if source.kind == ImportFormat.KERAS:
        from modescape.models.keras import load_keras

        in_shape = tuple(run.data_summary.in_shape)
        state = load_keras(c.path, model, in_shape, source.keras_config)
    else:
        from modescape.training.checkpoints import fit_to_model, mismatch_message

        expected = model.state_dict()
        state, _ = fit_to_model(read_state_dict(c.path, source.kind), expected)
        problem = mismatch_message(state, expected)
        if problem:  # one line naming both sides, before load_state_dict's long listing
            raise ModescapeError(
                f"{c.path} does not fit the architecture {run.config.model.arch!r}: {problem}"
            )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:400]
        raise ModescapeError(
            f"{c.path} does not fit the architecture {run.config.model.arch!r}: {detail}"
        ) from None


def _write_member(
    run: Run, member: int, checkpoints: list[Checkpoint], source: _Source, data: Any
) -> None:
    """Snapshot, predictions and metrics of every checkpoint, then member.json (finished)."""
    from modescape.training.loop import evaluate_split

    model = run.build_model()
    files: dict[str, str] = {}
    records: list[dict[str, Any]] = []
    for c in checkpoints:
        _load_into(model, c, source, run)
        record: dict[str, Any] = {"epoch": c.epoch, "lr": None}
        for split in run.splits:
            x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
            with torch.no_grad():
                probs, record[f"{split}_loss"], record[f"{split}_acc"] = evaluate_split(model, x, y)
            path = run.prediction_path(split, member, c.epoch)
            files[_rel(run, path)] = save_npy(path, probs.numpy().astype("float32"))
        path = run.snapshot_path(member, c.epoch)
        meta = {"epoch": c.epoch, "member": member, "imported_from": c.path.name}
        files[_rel(run, path)] = save_safetensors(path, model.state_dict(), meta)
        records.append(record)
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    path = run.member_dir(member) / "metrics.jsonl"
    files[_rel(run, path)] = atomic_write_bytes(path, text.encode())
    info = MemberInfo(
        member,
        "finished",
        epoch=checkpoints[-1].epoch,
        snapshots=[c.epoch for c in checkpoints],
        files=files,
        seed=None,
        time_s=None,  # not trained here
        imported=True,
    )
    digest = write_member_info(run.path, info)
    record_files(run.path, files | {_rel(run, run.member_dir(member) / "member.json"): digest})


def _rel(run: Run, path: Path) -> str:
    return str(path.relative_to(run.path))
