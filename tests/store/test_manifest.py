"""Run creation: a refused or failed creation leaves nothing behind."""

from __future__ import annotations

import pytest

from modescape.config import RunConfig
from modescape.errors import ModescapeError
from modescape.store import manifest


def test_a_failed_creation_removes_the_folders_it_made(tmp_path, monkeypatch):
    def fail(tmp, *args):
        (tmp / "labels").mkdir()
        (tmp / "labels" / "test.npy").write_bytes(b"x")
        raise ModescapeError("refused while writing")

    monkeypatch.setattr(manifest, "_write_new_run", fail)
    (tmp_path / "kept").mkdir()
    with pytest.raises(ModescapeError, match="refused while writing"):
        manifest.create_run(tmp_path / "kept" / "a" / "b" / "run", RunConfig())
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kept"]


def test_a_creation_that_succeeds_keeps_its_parents(tmp_path):
    path = manifest.create_run(tmp_path / "a" / "run", RunConfig())
    assert (path / "config.json").is_file() and (path / "manifest.json").is_file()
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["run"]
