"""Study caches keyed by the settings that produced them.

A cache folder holds `settings.json`: the canonical JSON of the resolved settings its files were
computed with, and its sha256. A study opens the folder with `open_cache(folder, settings)`: when
the stored settings differ (or are missing: a cache from an older version), every file in the
folder is removed before the study recomputes, so a changed setting never reuses stale results
(a plane's half-finished rows included).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from modescape.store.files import read_json, write_json
from modescape.store.schema import SETTINGS

logger = logging.getLogger(__name__)


def canonical(settings: Any) -> str:
    """Sorted-key compact JSON: equal settings give equal text (tuples read back as lists)."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)


def settings_digest(settings: Any) -> str:
    return hashlib.sha256(canonical(settings).encode()).hexdigest()


def open_cache(folder: Path, settings: dict[str, Any]) -> tuple[bool, str]:
    """Make `folder` a cache of `settings`; return (whether existing files are reusable, the
    sha256 of settings.json). A folder written with other settings is emptied first."""
    folder = Path(folder)
    f = folder / SETTINGS
    digest = settings_digest(settings)
    if f.exists() and read_json(f).get("digest") == digest:
        from modescape.store.files import sha256_file

        return True, sha256_file(f)
    if folder.exists() and any(folder.iterdir()):
        old = read_json(f).get("settings") if f.exists() else None
        logger.info("%s: settings changed (%s), recomputing", folder, _diff(old, settings))
        shutil.rmtree(folder)
    return False, write_json(f, {"settings": json.loads(canonical(settings)), "digest": digest})


def _diff(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    if old is None:
        return "none recorded"
    new = json.loads(canonical(new))
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
