"""What a checkpoint file holds, beyond the tensors: PyTorch Lightning's layout, key prefixes,
and a readable account of keys that do not fit the model.

Pure functions of the loaded objects (`torch.load(weights_only=True)` output and state dicts):
the importer reads the files.

- A Lightning checkpoint is a dict with "state_dict" (the LightningModule's, so every key is
  prefixed by the attribute holding the network, e.g. "model.conv.weight"),
  "hyper_parameters" (what `save_hyperparameters()` stored), "pytorch-lightning_version",
  "epoch", "global_step", optimiser and loop states.
- `fit_to_model` finds the prefix under which the model's keys sit ("model.", "net.",
  "module." of DataParallel, or nested ones) and drops the module's other entries (a loss's or
  a metric's buffers), so any such wrapper imports without a key map.
- `mismatch_message` is one line naming both sides: how many keys are missing and unexpected,
  a few of each, and the first shape that differs.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import torch

log = logging.getLogger(__name__)

LIGHTNING_VERSION_KEYS = ("pytorch-lightning_version", "lightning_version")
SHOWN = 3  # keys named per side in a mismatch message


def lightning_meta(obj: Any) -> dict[str, Any] | None:
    """The Lightning record of a loaded checkpoint (version, epoch, global_step,
    hyper_parameters), or None when it is not a Lightning checkpoint."""
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        return None
    version = next((obj[k] for k in LIGHTNING_VERSION_KEYS if k in obj), None)
    if version is None:
        return None
    hparams = obj.get("hyper_parameters") or {}
    meta = {
        "version": str(version),
        "epoch": obj.get("epoch"),
        "global_step": obj.get("global_step"),
        "hyper_parameters": dict(hparams) if isinstance(hparams, Mapping) else {},
    }
    data_hparams = obj.get("datamodule_hyper_parameters")  # a LightningDataModule's own
    if isinstance(data_hparams, Mapping):
        meta["datamodule_hyper_parameters"] = dict(data_hparams)
    return meta


# Names under which pipelines save torchvision Normalize's mean / std as hyper-parameters.
_NORMALIZE_KEYS = (("mean", "std"), ("normalize_mean", "normalize_std"),
                   ("norm_mean", "norm_std"), ("data_mean", "data_std"))  # fmt: skip


def hparams_preprocessing(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The input scaling a Lightning record's hyper-parameters state (the module's, then the
    datamodule's): per-channel mean and std (a Normalize; values above 1 are read as 0-255
    pixel units and divided by 255) → {"scaling": "normalize", "mean", "std"}; a "scaling" value
    → {"scaling": value}. None when they state neither."""
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        hparams = meta.get(key) or {}
        nested = hparams.get("normalize")
        for h in (hparams, nested if isinstance(nested, Mapping) else {}):
            for mean_key, std_key in _NORMALIZE_KEYS:
                mean, std = _numbers(h.get(mean_key)), _numbers(h.get(std_key))
                if mean and std and len(mean) == len(std):
                    scale = 255.0 if max(mean) > 1 else 1.0
                    return {"scaling": "normalize", "mean": tuple(m / scale for m in mean),
                            "std": tuple(s / scale for s in std)}  # fmt: skip
        if isinstance(hparams.get("scaling"), str):
            return {"scaling": hparams["scaling"], "mean": (), "std": ()}
    return None


def _numbers(value: Any) -> list[float] | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if not isinstance(value, (list, tuple)) or not value:
        return None
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return [float(v) for v in value] if numeric else None


def factory_kwargs(hparams: Mapping[str, Any], factory: Callable[..., Any]) -> dict[str, Any]:
    """The hyper-parameters a model factory `factory(in_shape, num_classes, **kw)` names in its
    signature (a LightningModule's hparams also hold lr, batch size, ...: those are left out)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    named = {
        n
        for n, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in ("in_shape", "num_classes")
    }
    return {k: v for k, v in hparams.items() if k in named}


def fit_to_model(
    state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], str]:
    """`state` with its keys made the model's (`expected`: the model's state dict): returns
    (state, the prefix removed). Unchanged when no single prefix holds every expected key."""
    if set(expected) <= set(state):
        return {k: state[k] for k in expected}, ""
    votes: Counter[str] = Counter()
    for k in state:  # every split at a dot: O(keys x depth), not keys x keys
        parts = k.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[i:]) in expected:
                votes[".".join(parts[:i]) + "."] += 1
    for prefix, _ in votes.most_common():
        if all(prefix + e in state for e in expected):
            dropped = [k for k in state if not k.startswith(prefix)]
            if dropped:
                log.info("checkpoint entries outside %r not part of the model, left out: %s",
                         prefix, short_list(dropped))  # fmt: skip
            return {e: state[prefix + e] for e in expected}, prefix
    return state, ""


def short_list(keys: list[str], shown: int = SHOWN) -> str:
    """`a, b, c (+4 more)`: a few names of a long list."""
    head = ", ".join(keys[:shown])
    return head + (f" (+{len(keys) - shown} more)" if len(keys) > shown else "")


def mismatch_message(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> str | None:
    """None when `state` fits the model exactly, else one line naming both sides."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {list(state[k].shape)}, model {list(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) of the model missing: {short_list(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {short_list(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape(s) differ, first {shapes[0]}")
    return "; ".join(parts)


def near_chance_message(
    accuracies: Mapping[int, float], num_classes: int, scaling: str, margin: float = 0.5
) -> str | None:
    """A warning when every imported member scores within `margin` x chance of chance
    (1 / classes) on the test split: the usual sign of inputs preprocessed otherwise than in the
    checkpoint's own pipeline. None when one member does better."""
    if not accuracies or num_classes < 2:
        return None
    chance = 1.0 / num_classes
    if max(accuracies.values()) > chance * (1 + margin):
        return None
    shown = ", ".join(f"m{m} {a:.3f}" for m, a in sorted(accuracies.items())[:SHOWN])
    return (
        f"the imported snapshots score near chance on the test split ({shown}; chance "
        f"{chance:.3f}): are the inputs preprocessed as in the checkpoints' own pipeline? "
        f"data.scaling is {scaling!r}; torchvision's ToTensor + Normalize(mean, std) is "
        "--set data.scaling=normalize --set data.mean=[...] --set data.std=[...], ToTensor "
        "alone data.scaling=unit, raw 0-255 pixels data.scaling=raw"
    )
