"""CIFAR readers against tiny fake datasets written exactly as the official files are laid out."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from conftest import CIFAR10_CLASSES
from PIL import Image

from modescape.data import cifar, sources
from modescape.data.cifar import read_source, safe_unpickle
from modescape.data.datasets import load_dataset
from modescape.data.sources import download_archive, find_source
from modescape.errors import ModescapeError

CLASSES10 = CIFAR10_CLASSES


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python-2 `str` opcodes (SHORT_BINSTRING/BINSTRING), as the official
    CIFAR pickles have them; Python 3's protocol 2 would route bytes through `_codecs.encode`."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes | str) -> None:
        if isinstance(obj, str):  # e.g. numpy's dtype arguments: Python 2 had only one str
            obj = obj.encode("latin1")
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = _save_py2_str


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def fake_images(n_train: int = 20, n_test: int = 8, n_classes: int = 10, seed: int = 0):
    """Random uint8 images [N, 3, 32, 32] (all distinct) and labels; every class in train."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n_train + n_test, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, n_classes, size=n_train + n_test)
    y[:n_classes] = np.arange(n_classes)  # each class present in train
    y[n_train : n_train + min(n_classes, n_test)] = np.arange(min(n_classes, n_test))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def write_python10(folder: Path, xtr, ytr, xte, yte, classes=CLASSES10) -> Path:
    d = folder / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i, (xb, yb) in enumerate(zip(np.array_split(xtr, 5), np.array_split(ytr, 5)), start=1):
        batch = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": [int(v) for v in yb],
            b"data": xb.reshape(len(xb), 3072),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(len(xb))],
        }
        (d / f"data_batch_{i}").write_bytes(py2_pickle(batch))
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in yte]}
    test[b"data"] = xte.reshape(len(xte), 3072)
    (d / "test_batch").write_bytes(py2_pickle(test))
    meta = {b"num_cases_per_batch": 10000, b"label_names": [c.encode() for c in classes]}
    (d / "batches.meta").write_bytes(py2_pickle(meta))
    return d


def write_binary10(folder: Path, xtr, ytr, xte, yte, classes=CLASSES10) -> Path:
    d = folder / "cifar-10-batches-bin"
    d.mkdir(parents=True)

    def records(x, y):
        return np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), 3072)], 1).tobytes()

    for i, (xb, yb) in enumerate(zip(np.array_split(xtr, 5), np.array_split(ytr, 5)), start=1):
        (d / f"data_batch_{i}.bin").write_bytes(records(xb, yb))
    (d / "test_batch.bin").write_bytes(records(xte, yte))
    (d / "batches.meta.txt").write_text("\n".join(classes) + "\n\n")
    return d


def write_folder(folder: Path, xtr, ytr, xte, yte, classes=CLASSES10) -> Path:
    """PNG (lossless) image folder; file names are the original indices."""
    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        for i, (img, label) in enumerate(zip(x, y)):
            p = folder / split / classes[label] / f"{i:05d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(p)
    return folder


def make_tgz(src_dir: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tf:
        tf.add(src_dir, arcname=src_dir.name)
    return out


def as_multiset(x: np.ndarray, y: np.ndarray) -> dict[bytes, int]:
    return {img.tobytes(): int(label) for img, label in zip(x, y)}


def test_python_binary_and_folder_formats_agree(tmp_path):
    xtr, ytr, xte, yte = fake_images()
    sources = {
        "python dir": write_python10(tmp_path / "py", xtr, ytr, xte, yte),
        "python parent dir": tmp_path / "py",
        "python tgz": make_tgz(tmp_path / "py" / "cifar-10-batches-py", tmp_path / "p.tar.gz"),
        "binary dir": write_binary10(tmp_path / "bin", xtr, ytr, xte, yte),
        "binary tgz": make_tgz(tmp_path / "bin" / "cifar-10-batches-bin", tmp_path / "b.tar.gz"),
    }
    for what, root in sources.items():
        a = read_source("cifar10", find_source("cifar10", root))
        assert a.classes == CLASSES10, what
        assert a.x_train.dtype == np.uint8 and a.x_train.shape == (20, 3, 32, 32), what
        # the official files keep their order: identical arrays, element for element
        np.testing.assert_array_equal(a.x_train, xtr, err_msg=what)
        np.testing.assert_array_equal(a.y_train, ytr, err_msg=what)
        np.testing.assert_array_equal(a.x_test, xte, err_msg=what)
        np.testing.assert_array_equal(a.y_test, yte, err_msg=what)
        assert a.format == what.split()[0]

    folder = write_folder(tmp_path / "img" / "cifar10-jpg", xtr, ytr, xte, yte)
    for root in (folder, make_tgz(folder, tmp_path / "img.tar.gz")):
        a = read_source("cifar10", find_source("cifar10", root))
        assert a.format == "image-folder" and a.classes == CLASSES10
        # same images and labels, in the folder reader's fixed shuffled order
        assert as_multiset(a.x_train, a.y_train) == as_multiset(xtr, ytr)
        assert as_multiset(a.x_test, a.y_test) == as_multiset(xte, yte)
        assert not np.array_equal(a.y_train, np.sort(a.y_train))  # not class by class


def test_cifar100_python_and_binary_use_fine_labels(tmp_path):
    fine = [f"fine{i:02d}" for i in range(100)]
    xtr, ytr, xte, yte = fake_images(n_train=120, n_test=10, n_classes=100, seed=1)
    coarse_tr, coarse_te = ytr // 5, yte // 5
    py = tmp_path / "cifar-100-python"
    py.mkdir()
    for split, x, y, c in (("train", xtr, ytr, coarse_tr), ("test", xte, yte, coarse_te)):
        d = {b"data": x.reshape(len(x), 3072), b"fine_labels": y.tolist()}
        d[b"coarse_labels"] = c.tolist()
        (py / split).write_bytes(py2_pickle(d))
    meta = {b"fine_label_names": [f.encode() for f in fine], b"coarse_label_names": [b"c"] * 20}
    (py / "meta").write_bytes(py2_pickle(meta))

    bn = tmp_path / "cifar-100-binary"
    bn.mkdir()
    for split, x, y, c in (("train", xtr, ytr, coarse_tr), ("test", xte, yte, coarse_te)):
        rec = np.concatenate([c[:, None], y[:, None], x.reshape(len(x), 3072)], 1)
        (bn / f"{split}.bin").write_bytes(rec.astype(np.uint8).tobytes())
    (bn / "fine_label_names.txt").write_text("\n".join(fine) + "\n")
    (bn / "coarse_label_names.txt").write_text("\n".join(["c"] * 20) + "\n")

    for root in (py, bn, make_tgz(py, tmp_path / "c100.tar.gz")):
        a = read_source("cifar100", find_source("cifar100", root))
        assert a.classes == tuple(fine)
        np.testing.assert_array_equal(a.x_train, xtr)
        np.testing.assert_array_equal(a.y_train, ytr)
        np.testing.assert_array_equal(a.y_test, yte)
    # a CIFAR-100 folder is not a CIFAR-10 one
    with pytest.raises(ModescapeError, match="no known format"):
        find_source("cifar10", py)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_safe_unpickle_refuses_code_and_reads_arrays(tmp_path):
    marker = tmp_path / "pwned"
    payload = py2_pickle({b"data": _Evil(marker)})
    pickle.loads(payload)  # the payload is real: plain pickle runs it
    assert marker.exists()
    marker.unlink()

    with pytest.raises(ModescapeError, match=r"refusing to unpickle .*system"):
        safe_unpickle(payload)
    assert not marker.exists()
    for evil in (pickle.dumps(eval), pickle.dumps(Path("x")), pickle.dumps(_Evil(marker))):
        with pytest.raises(ModescapeError, match="refusing"):
            safe_unpickle(evil)
    assert not marker.exists()

    # through the loader: a booby-trapped batch file is refused, nothing runs
    xtr, ytr, xte, yte = fake_images()
    d = write_python10(tmp_path / "py", xtr, ytr, xte, yte)
    (d / "data_batch_3").write_bytes(py2_pickle({b"data": _Evil(marker), b"labels": [0]}))
    with pytest.raises(ModescapeError, match="refusing"):
        load_dataset("cifar10", d, cache_dir=tmp_path / "cache")
    assert not marker.exists()

    # what the official files contain does load: py2 and py3 pickles of arrays, dicts, lists
    arr = np.arange(12, dtype=np.int32).reshape(3, 4)
    py2 = py2_pickle({b"a": arr, b"l": [1, 2]})
    # the official files were written by numpy 1.x, which names its array constructor so
    numpy1 = py2.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"cnumpy.core.multiarray\n_reconstruct" in numpy1
    for blob in (py2, numpy1, pickle.dumps({"a": arr}, protocol=4)):
        out = safe_unpickle(blob)
        key = b"a" if b"a" in out else "a"
        np.testing.assert_array_equal(out[key], arr)
        assert out[key].dtype == np.int32
    with pytest.raises(ModescapeError, match="not a readable"):
        safe_unpickle(b"garbage that is not a pickle")


def test_image_folder_grayscale_rgb_and_any_size(tmp_path):
    rng = np.random.default_rng(3)
    for mode, shape, c in (("L", (12, 20), 1), ("RGB", (7, 9, 3), 3)):
        root = tmp_path / mode
        imgs = {}
        for split, n in (("train", 6), ("test", 3)):
            for k in range(n):
                label = ("cat", "dog")[k % 2]
                img = rng.integers(0, 256, size=shape, dtype=np.uint8)
                p = root / split / label / f"{k}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img, mode).save(p)
                imgs[img.tobytes()] = (split, label)
        (root / "train" / "cat" / ".DS_Store").write_bytes(b"junk")  # hidden files are skipped
        (root / "train" / "cat" / "notes.txt").write_text("not an image")
        a = read_source("folder", find_source("folder", root))
        assert a.classes == ("cat", "dog")
        h, w = shape[:2]
        assert a.x_train.shape == (6, c, h, w) and a.x_test.shape == (3, c, h, w)
        for split, x, y in (("train", a.x_train, a.y_train), ("test", a.x_test, a.y_test)):
            for img, label in zip(x, y):
                hwc = img[0] if c == 1 else img.transpose(1, 2, 0)
                assert imgs[hwc.tobytes()] == (split, a.classes[label])


def test_image_folder_errors_name_the_file(tmp_path):
    root = tmp_path / "f"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            p = root / split / cls / "0.png"
            p.parent.mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(p)
    bad_size = root / "train" / "b" / "1.png"
    Image.new("RGB", (8, 9)).save(bad_size)
    with pytest.raises(ModescapeError, match=r"b/1\.png.*differs"):
        read_source("folder", find_source("folder", root))
    Image.new("L", (8, 8)).save(bad_size)
    with pytest.raises(ModescapeError, match=r"b/1\.png.*grayscale"):
        read_source("folder", find_source("folder", root))
    bad_size.write_bytes(b"not a png")
    with pytest.raises(ModescapeError, match=r"b/1\.png: unreadable"):
        read_source("folder", find_source("folder", root))
    bad_size.unlink()
    (root / "test" / "b").rename(root / "test" / "c")
    with pytest.raises(ModescapeError, match=r"test/ has classes \['c'\] that train/ lacks"):
        read_source("folder", find_source("folder", root))


def test_unknown_layouts_and_bad_files_are_named(tmp_path):
    with pytest.raises(ModescapeError, match="does not exist"):
        find_source("cifar10", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModescapeError, match=r"no known format.*cifar-10-python\.tar\.gz.*binary"):
        find_source("cifar10", tmp_path / "empty")
    (tmp_path / "x.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ModescapeError, match="not a tar archive"):
        find_source("cifar10", tmp_path / "x.tar.gz")
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(ModescapeError, match="holds no cifar10 layout"):
        read_source(
            "cifar10", find_source("cifar10", make_tgz(tmp_path / "empty", tmp_path / "e.tgz"))
        )

    xtr, ytr, xte, yte = fake_images()
    d = write_binary10(tmp_path / "bin", xtr, ytr, xte, yte)
    (d / "data_batch_2.bin").write_bytes((d / "data_batch_2.bin").read_bytes()[:-1])
    with pytest.raises(ModescapeError, match=r"data_batch_2\.bin.*3073-byte records"):
        read_source("cifar10", find_source("cifar10", d))

    d = write_python10(tmp_path / "py", xtr, ytr, xte, yte)
    batch = {b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}
    (d / "data_batch_1").write_bytes(py2_pickle(batch))
    with pytest.raises(ModescapeError, match=r"data_batch_1.*\(N, 3072\)"):
        read_source("cifar10", find_source("cifar10", d))
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}
    (d / "data_batch_1").write_bytes(py2_pickle(batch))
    with pytest.raises(ModescapeError, match=r"labels outside 0\.\.9"):
        read_source("cifar10", find_source("cifar10", d))


@pytest.fixture
def http_dir(tmp_path):
    """Serve a folder on 127.0.0.1 (an ephemeral port) from a thread; yields (folder, base url)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_download_verifies_checksum_and_loads(tmp_path, http_dir, monkeypatch):
    served, base = http_dir
    xtr, ytr, xte, yte = fake_images()
    archive = make_tgz(write_python10(tmp_path / "src", xtr, ytr, xte, yte), served / "c10.tgz")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()

    dest = tmp_path / "wrong"
    with pytest.raises(ModescapeError, match="md5"):
        download_archive("cifar10", dest, url=f"{base}/c10.tgz", md5="0" * 32)
    assert list(dest.iterdir()) == []  # nothing left behind, not even the partial file
    with pytest.raises(ModescapeError, match="cannot download"):
        download_archive("cifar10", dest, url=f"{base}/missing.tgz", md5=md5)
    assert list(dest.iterdir()) == []

    entry = {"url": f"{base}/c10.tgz", "md5": md5, "filename": "cifar-10-python.tar.gz"}
    monkeypatch.setitem(sources.DOWNLOADS, "cifar10", entry)
    data_root = tmp_path / "data"
    ds = load_dataset("cifar10", data_root, download=True, cache_dir=tmp_path / "cache")
    assert [p.name for p in data_root.iterdir()] == ["cifar-10-python.tar.gz"]
    np.testing.assert_array_equal(ds.x_train.numpy(), xtr / np.float32(255))
    np.testing.assert_array_equal(ds.y_test.numpy(), yte)
    assert ds.source["kind"] == "archive" and ds.source["format"] == "python"
    # without download=True an empty folder is an error, not a silent fetch
    (tmp_path / "other").mkdir()
    with pytest.raises(ModescapeError, match="download=True"):
        load_dataset("cifar10", tmp_path / "other", cache_dir=tmp_path / "cache")


def test_decompression_bomb_is_refused_naming_the_file(tmp_path, monkeypatch):
    root = tmp_path / "bomb"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(root / split / c / "0.png")
    # Pillow refuses images over 2 * MAX_IMAGE_PIXELS: make an 8x8 image "huge".
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(ModescapeError, match=r"0\.png: image too large to decode"):
        load_dataset("folder", root, cache_dir=tmp_path / "cache")


# ---- bounds: what a hostile archive or folder can make modescape hold ---------------------------


def _tgz_with_declared_member(out: Path, name: str, size: int) -> Path:
    """A .tar.gz whose index declares `name` with `size` bytes but carries only 1 KB of it: a
    reader that checks the header refuses at once; one that reads first would try `size`."""
    import gzip

    info = tarfile.TarInfo(name)
    info.size = size
    with gzip.open(out, "wb") as f:
        f.write(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024)
    return out


@pytest.mark.parametrize(
    "member, size",
    [
        ("cifar-10-batches-py/data_batch_1", 1_500_000_000),
        ("cifar-10-batches-py/batches.meta", 50_000_000),
        ("train/cat/0.png", 1 << 30),
        ("cifar-10-batches-py/readme.html", 3 << 30),
    ],
)
def test_an_oversized_member_is_refused_from_the_index(tmp_path, member, size):
    import time

    archive = _tgz_with_declared_member(tmp_path / "big.tar.gz", member, size)
    tick = time.perf_counter()
    with pytest.raises(ModescapeError, match=rf"{member.split('/')[-1]}.* {size:,} bytes|bytes:"):
        read_source("cifar10", find_source("cifar10", archive))
    assert time.perf_counter() - tick < 5  # refused at the header, not after reading


def test_a_batch_file_larger_than_a_batch_is_refused_unread(tmp_path):
    xtr, ytr, xte, yte = fake_images()
    d = write_python10(tmp_path / "py", xtr, ytr, xte, yte)
    with open(d / "data_batch_3", "r+b") as f:  # sparse: no disk used
        f.truncate(1_500_000_000)
    with pytest.raises(ModescapeError, match=r"data_batch_3 holds 1,500,000,000 bytes.*33,554,432"):
        read_source("cifar10", find_source("cifar10", d))


def test_an_archive_within_the_limits_still_reads(tmp_path):
    xtr, ytr, xte, yte = fake_images()
    archive = make_tgz(write_python10(tmp_path / "py", xtr, ytr, xte, yte), tmp_path / "c.tgz")
    got = read_source("cifar10", find_source("cifar10", archive))
    assert as_multiset(got.x_train, got.y_train) == as_multiset(xtr, ytr)
    assert got.classes == CLASSES10


def test_decoded_images_beyond_the_bound_are_refused_before_allocation(tmp_path, monkeypatch):
    xtr, ytr, xte, yte = fake_images()
    d = write_folder(tmp_path / "f", xtr, ytr, xte, yte)
    monkeypatch.setattr(cifar, "MAX_DECODED_BYTES", 3072 * 19)  # one image fewer than train has
    with pytest.raises(ModescapeError, match=r"train: 20 images of shape \(3, 32, 32\)"):
        read_source("folder", find_source("folder", d))


@pytest.mark.parametrize(
    "batch, meta, message",
    [
        ({b"labels": [b"x"] * 4}, None, "labels must be a list of integers"),
        ({b"labels": None}, None, "labels must be a list of integers, got None"),
        ({b"labels": [2**70] * 4}, None, "labels must be a list of integers|int64"),
        ({b"labels": [True] * 4}, None, "labels must be a list of integers"),
        (None, {b"label_names": 5}, "class names must be a list of strings, got 5"),
        (None, {b"label_names": [1, 2]}, "class names must be a list of strings"),
        (None, {b"label_names": [b"\xff\xfe"] * 10}, "not UTF-8"),
    ],
)
def test_malformed_python_batches_are_one_error(tmp_path, batch, meta, message):
    xtr, ytr, xte, yte = fake_images()
    d = write_python10(tmp_path / "py", xtr, ytr, xte, yte)
    if batch is not None:
        (d / "data_batch_1").write_bytes(
            py2_pickle({b"data": np.zeros((4, 3072), np.uint8), **batch})
        )
    if meta is not None:
        (d / "batches.meta").write_bytes(py2_pickle(meta))
    with pytest.raises(ModescapeError, match=message):
        read_source("cifar10", find_source("cifar10", d))
