import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from modescape.errors import ModescapeError
from modescape.store.files import (
    cached_sha256,
    load_npy,
    load_safetensors,
    read_json,
    read_safetensors_metadata,
    remove_stale_tmp,
    safetensors_bytes,
    save_npy,
    save_safetensors,
    sha256_file,
    verify_digest,
    write_json,
)


def test_cached_digest_follows_rewrites(tmp_path):
    f = tmp_path / "a.npy"
    d1 = save_npy(f, np.arange(3))
    assert cached_sha256(f) == d1 == sha256_file(f)
    d2 = save_npy(f, np.arange(4))  # atomic rewrite: a new inode, so the cache misses
    assert d2 != d1 and cached_sha256(f) == d2


def test_verify_digest_names_the_file(tmp_path):
    f = tmp_path / "x.json"
    digest = write_json(f, {"a": 1})
    verify_digest(f, digest)
    f.write_text('{"a": 2}\n')
    with pytest.raises(ModescapeError, match=r"checksum mismatch: .*x\.json.*--trust"):
        verify_digest(f, digest)
    f.unlink()
    with pytest.raises(ModescapeError, match=r"missing file .*x\.json"):
        verify_digest(f, digest)


def test_read_json_checks_the_top_level_type(tmp_path):
    f = tmp_path / "manifest.json"
    f.write_text("[]")
    with pytest.raises(ModescapeError, match=r"manifest\.json: expected a JSON object, got JSON"):
        read_json(f, expect=dict)
    f.write_bytes(b"\xff\xfe{")
    with pytest.raises(ModescapeError, match="corrupt JSON file"):
        read_json(f)


def test_safetensors_bytes_are_what_is_saved(tmp_path):
    t = {"w": torch.arange(6.0).view(2, 3)}
    data = safetensors_bytes(t, {"epoch": 3})
    save_safetensors(tmp_path / "a.safetensors", t, {"epoch": 3})
    assert (tmp_path / "a.safetensors").read_bytes() == data
    assert read_safetensors_metadata(tmp_path / "a.safetensors") == {"epoch": 3}


@pytest.mark.parametrize("cut", [0, 7, 40, -3])
def test_truncated_files_are_one_clear_error(tmp_path, cut):
    st, npy = tmp_path / "a.safetensors", tmp_path / "a.npy"
    save_safetensors(st, {"w": torch.ones(4, 4)})
    save_npy(npy, np.ones((4, 4), np.float32))
    for f, load in ((st, load_safetensors), (npy, load_npy)):
        f.write_bytes(f.read_bytes()[:cut])
        with pytest.raises(ModescapeError, match=str(f.name)):
            load(f)


def test_pickled_npy_is_refused(tmp_path):
    f = tmp_path / "obj.npy"
    np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModescapeError, match="unsafe"):
        load_npy(f)


def test_remove_stale_tmp(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".e0001.npy.abc.tmp").write_bytes(b"half")
    (tmp_path / "keep.npy").write_bytes(b"x")
    assert remove_stale_tmp(tmp_path) == 1
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["keep.npy"]


def test_killpoint_kills_only_at_the_named_occurrence(tmp_path):
    code = (
        "from modescape.store.files import killpoint\n"
        "for i in range(3):\n    killpoint('a'); killpoint('b'); print(i, flush=True)\n"
    )
    env = os.environ | {"MODESCAPE_KILL_AT": "b@2"}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL and p.stdout.split() == ["0"]
    env["MODESCAPE_KILL_AT"] = ""
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.split() == ["0", "1", "2"]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_streamed_npy_has_save_npys_bytes_and_is_read_back_checked(tmp_path, dtype):
    from modescape.store.files import load_npy_checked, save_npy_streamed

    x = np.random.default_rng(0).integers(0, 255, (7, 5, 3)).astype(dtype)
    digest = save_npy_streamed(tmp_path / "a.npy", x)
    assert digest == save_npy(tmp_path / "b.npy", x) == sha256_file(tmp_path / "a.npy")
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    y = load_npy_checked(tmp_path / "a.npy", digest)
    assert y.dtype == x.dtype and np.array_equal(y, x)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    with pytest.raises(ModescapeError, match="sha256"):
        load_npy_checked(tmp_path / "a.npy", "0" * 64)
    raw = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(raw[:-3])  # truncated
    with pytest.raises(ModescapeError, match="shorter"):
        load_npy_checked(tmp_path / "a.npy", digest)
    (tmp_path / "a.npy").write_bytes(raw + b"x")
    with pytest.raises(ModescapeError, match="longer"):
        load_npy_checked(tmp_path / "a.npy", digest)
