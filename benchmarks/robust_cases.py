"""The bad-input cases of issue #24 for `fault_campaign.py`: one group per failure it listed.

1. sizes without an upper bound (hangs, leftover creation folders)
2. an archive read whole before its layout was checked (memory)
3. tracebacks instead of one line
4. the report of a tiny image-folder run (and markup in its class names)
5. integrity: report files, missing study outputs, a lost member.json, an older format
6. bad values accepted, or files written before refusing
7. one line on stderr, exit 2

Commands that could hang or allocate run as subprocesses with a time limit, their peak memory
read from `getrusage`; the rest run in-process. Each case asserts exit status 2 (or the status
the command documents), one `modescape: error:` line on stderr and nothing written.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

MAX_SECONDS = 10.0  # "a few seconds" before refusing, on a loaded 2-core machine
MAX_RSS_BYTES = 1 << 30  # the archive case: well below the 2 GiB bound modescape states
Case = tuple[str, Callable[[], None]]


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`modescape ARGS` in a subprocess, killed after 60 s; asserts it refused within
    MAX_SECONDS and returns (status, stdout, stderr)."""
    tick = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "modescape", *args], cwd=cwd, capture_output=True, text=True,
        timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip
    elapsed = time.perf_counter() - tick
    assert elapsed < MAX_SECONDS, f"{args}: took {elapsed:.1f} s"
    return r.returncode, r.stdout, r.stderr


def one_line(code: int, out: str, err: str, what: str = "") -> None:
    assert code == 2, (code, out, err)
    assert err.startswith("modescape: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and what in err, (what, err)


def _empty(work: Path) -> Path:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def _nothing_written(work: Path, before: set[str]) -> None:
    after = {str(p.relative_to(work)) for p in work.rglob("*")}
    assert after == before, sorted(after - before)


def refused_in(work: Path, args: list[str], what: str, env: dict[str, str] | None = None) -> None:
    """In an empty-but-for-inputs folder: exit 2, one line naming `what`, nothing written."""
    before = {str(p.relative_to(work)) for p in work.rglob("*")}
    one_line(*run_cli(args, work, env), what)
    _nothing_written(work, before)


# ---- 1: sizes ---------------------------------------------------------------------------------


def size_cases(tmp: Path) -> list[Case]:
    w = tmp / "sizes"
    bad = [
        (["--members", "1000000000", "--epochs", "1"], "members must be in"),
        (["--members", "99999999999999999999"], "members must be in"),
        (["--set", "data.mnist1d_samples=10000000000"], "data.mnist1d_samples must be in"),
        (["--epochs", "1000000000000000"], "train.epochs must be in"),
        (["--set", "train.batch_size=10000000000"], "train.batch_size must be in"),
        (["--workers", "100000000", "--executor", "local"], "--workers must be in"),
    ]
    return [
        (f"1 size: train {' '.join(a)}",
         lambda a=a, m=m: refused_in(_empty(w), ["train", *a, "--out", "o"], m))
        for a, m in bad
    ]  # fmt: skip


# ---- 2: archives ------------------------------------------------------------------------------


def zero_member_archive(out: Path, name: str, size: int) -> Path:
    """A .tar.gz holding `name`: `size` zero bytes, streamed (a few MB on disk)."""
    info = tarfile.TarInfo(name)
    info.size = size
    block = b"\0" * (1 << 20)
    with gzip.open(out, "wb", compresslevel=1) as f:
        f.write(info.tobuf(format=tarfile.GNU_FORMAT))
        for _ in range(size // len(block)):
            f.write(block)
        f.write(b"\0" * (size % len(block) + (-size) % 512 + 1024))
    return out


def archive_case(tmp: Path) -> None:
    """A 1.5 GB zero-filled data_batch_1 in a .tar.gz: refused in seconds, peak RSS measured."""
    work = _empty(tmp / "archive")
    archive = zero_member_archive(
        work / "cifar-10-python.tar.gz", "cifar-10-batches-py/data_batch_1", 1_500_000_000
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    refused_in(work, ["train", "--data", "cifar10", "--root", str(archive), "--out", "o"],
               "data_batch_1 holds 1,500,000,000 bytes")  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    assert peak < MAX_RSS_BYTES or before * 1024 >= peak, f"peak RSS {peak:,} bytes"


# ---- 3: tracebacks ----------------------------------------------------------------------------


KEEP = object()  # a field left as written


def _cifar_python_folder(root: Path, label_names: object, labels: object) -> Path:
    """A CIFAR-10 python layout with one damaged field (tests/data/test_cifar.py's writer)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))
    import numpy as np
    from test_cifar import fake_images, py2_pickle, write_python10

    d = write_python10(root, *fake_images())
    if labels is not KEEP:
        batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": labels}
        (d / "data_batch_1").write_bytes(py2_pickle(batch))
    if label_names is not KEEP:
        (d / "batches.meta").write_bytes(py2_pickle({b"label_names": label_names}))
    return d


def traceback_cases(tmp: Path, cifar_run: Callable[[], Path]) -> list[Case]:
    w = tmp / "tracebacks"

    def cifar(label_names: object, labels: object, what: str) -> None:
        d = _cifar_python_folder(_empty(w) / "c10", label_names, labels)
        refused_in(w, ["train", "--data", "cifar10", "--root", str(d), "--out", "o"], what)

    def config(text: str, what: str) -> None:
        (_empty(w) / "c.json").write_text(text)
        refused_in(w, ["train", "--config", "c.json", "--out", "o"], what)

    def cifar10c_labels_only() -> None:
        import numpy as np

        run = cifar_run()
        c10c = _empty(w) / "c10c"
        c10c.mkdir()
        np.save(c10c / "labels.npy", np.zeros(50, np.int64))
        before = sorted(p.name for p in run.iterdir())
        one_line(*run_cli(["shift", str(run), "--cifar10c", str(c10c)], w), "holds no")
        assert sorted(p.name for p in run.iterdir()) == before

    def import_symlink() -> None:
        src = _empty(w) / "ckpt" / "seed0"
        src.mkdir(parents=True)
        (src / "ep0.pt").symlink_to("/etc/passwd")
        refused_in(w, ["import", "ckpt", "--out", "o"], "cannot read")

    return [
        ("3 cifar labels [b'x']", lambda: cifar(KEEP, [b"x"] * 4, "labels must be a list")),
        ("3 cifar labels None", lambda: cifar(KEEP, None, "labels must be a list")),
        ("3 cifar label_names=5", lambda: cifar(5, KEEP, "class names must be a list")),
        ("3 config 200,000 brackets", lambda: config("[" * 200_000 + "]" * 200_000, "nested")),
        ("3 config 5,000 digits", lambda: config('{"members": ' + "9" * 5000 + "}", "digits")),
        ("3 shift --cifar10c labels only", cifar10c_labels_only),
        ("3 import symlink to /etc/passwd", import_symlink),
        ("3 --arch builtins:eval",
         lambda: refused_in(_empty(w), ["train", "--arch", "builtins:eval", "--out", "o"],
                            "not a model factory")),
        ("3 --arch os.path:join",
         lambda: refused_in(_empty(w), ["train", "--arch", "os.path:join", "--out", "o"],
                            "raised TypeError")),
    ]  # fmt: skip


# ---- 5: integrity -----------------------------------------------------------------------------


def integrity_cases(tmp: Path, reported: Path, finished: Path) -> list[Case]:
    """`reported`: a run with every study and its report; `finished`: a trained run."""
    w = tmp / "integrity"

    def copy(src: Path) -> Path:
        dst = _empty(w) / "run"
        shutil.copytree(src, dst)
        return dst

    def report_file_damaged() -> None:
        run = copy(reported)
        with open(run / "report/data.json", "r+b") as f:
            f.seek(10)
            f.write(b"#")
        code, out, _ = run_cli(["verify", str(run)], w)
        assert code == 1 and "report/data.json" in out, out

    def study_output_missing() -> None:
        run = copy(reported)
        (run / "shift/summary.json").unlink()
        before = (run / "report/index.html").read_bytes()
        one_line(*run_cli(["report", str(run)], w), "shift/summary.json")
        assert (run / "report/index.html").read_bytes() == before  # the old page is kept

    def member_json_lost() -> None:
        run = copy(finished)
        (run / "members/m001/member.json").unlink()
        code, out, _ = run_cli(["status", str(run)], w)
        assert code == 1 and "member.json of member(s) 1 is missing" in out, out

    def older_format() -> None:
        from modescape.store.manifest import seal

        run = copy(finished)
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["format"] = "modescape-run/0"
        (run / "manifest.json").write_text(json.dumps(seal(manifest)))
        one_line(*run_cli(["info", str(run)], w), "modescape-run/0, older than")

    return [
        ("5 verify: report/data.json damaged", report_file_damaged),
        ("5 report: shift/summary.json deleted", study_output_missing),
        ("5 status: member.json deleted", member_json_lost),
        ("5 manifest format modescape-run/0", older_format),
    ]


# ---- 6 and 7: bad values, one line ------------------------------------------------------------


def value_cases(tmp: Path, finished: Path) -> list[Case]:
    w = tmp / "values"

    def on_run(args: list[str], what: str, env: dict[str, str] | None = None) -> None:
        run = _empty(w) / "run"
        shutil.copytree(finished, run)
        refused_in(w, [args[0], str(run), *args[1:]], what, env)

    def slurm_without_sbatch() -> None:
        env = {"PATH": str(Path(sys.executable).parent)}  # python, but no sbatch
        refused_in(_empty(w), ["train", "--executor", "slurm", "--out", "o"], "slurm", env)

    return [
        ("6 --arch ''", lambda: refused_in(_empty(w), ["train", "--arch", "", "--out", "o"],
                                           "must not be empty")),
        ("6 --set train.recipe=bogus",
         lambda: refused_in(_empty(w), ["train", "--set", "train.recipe=bogus", "--out", "o"],
                            "unknown recipe 'bogus'")),
        ("6 --out ''", lambda: refused_in(_empty(w), ["train", "--out", ""], "must not be empty")),
        ("6 shift --corruptions ''", lambda: on_run(["shift", "--corruptions", ""], "names no")),
        ("6 --executor slurm without sbatch", slurm_without_sbatch),
        ("6 landscape --anchors m0,m0,m0",
         lambda: on_run(["landscape", "--anchors", "m0,m0,m0"], "three different")),
        ("7 invalid choice: no usage block",
         lambda: refused_in(_empty(w), ["train", "--data", "imagenet"], "invalid choice")),
        ("7 verify nope", lambda: refused_in(_empty(w), ["verify", "nope"], "not found: nope")),
        ("7 bare modescape", lambda: bare_command(_empty(w))),
        ("7 raw-pickle .pt: no torch warning", lambda: raw_pickle(_empty(w))),
    ]  # fmt: skip


def bare_command(work: Path) -> None:
    code, out, err = run_cli([], work)
    assert code == 2 and "usage: modescape" in out, (code, out)
    assert err == "modescape: error: no command given (see modescape --help)\n", err


def raw_pickle(work: Path) -> None:
    import collections
    import pickle

    src = work / "ckpt" / "seed0"
    src.mkdir(parents=True)
    (src / "ep0.pt").write_bytes(pickle.dumps(collections.Counter(a=1), protocol=4))
    refused_in(work, ["import", "ckpt", "--out", "o"], "refused")


def tiny_folder(
    root: Path, classes: tuple[str, ...], n: int = 3, size: int = 8, flat: bool = False
) -> Path:
    """`n` PNGs of size×size per class and split: random pixels, or one colour per class (a
    task learnt perfectly: accuracies of 1, undefined normalised diversities)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                if flat:
                    pixels[:] = np.eye(3, dtype=np.uint8)[k % 3] * (255 - 60 * (k // 3))
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    return root


def tiny_folder_report_case(tmp: Path) -> None:
    """4: `run` on 3 classes × 3 one-colour PNGs of 8×8 (class names with markup) ends in a
    report; no class name reaches the page as markup."""
    work = _empty(tmp / "tiny-folder")
    root = tiny_folder(work / "imgs", ("cat", "<b>dog</b>", "bird&co"), flat=True)
    r = subprocess.run(
        [sys.executable, "-m", "modescape", "-q", "run", "--data", "folder", "--root", str(root),
         "--members", "2", "--epochs", "2", "--set", "train.batch_size=4", "--out", "run"],
        cwd=work, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    page = (work / "run/report/index.html").read_text()
    assert "<b>dog</b>" not in page and "bird&co" not in page


def cases(tmp: Path, finished: Path, reported: Path) -> list[Case]:
    """Every case of #24; `finished` a trained run, `reported` one with every study + report."""
    made: dict[str, Path] = {}

    def cifar_run() -> Path:  # a CIFAR-10 run (image-folder form), trained once on first use
        if "c10" not in made:
            root = tiny_folder(_empty(tmp / "c10"), tuple(f"c{i}" for i in range(10)), 2, 32)
            args = ["-q", "train", "--data", "cifar10", "--root", str(root), "--members", "1"]
            args += ["--epochs", "1", "--set", "train.batch_size=8", "--out", "run"]
            code, _, err = run_cli_slow(args, tmp / "c10")
            assert code == 0, err
            made["c10"] = tmp / "c10" / "run"
        return made["c10"]

    return [
        *size_cases(tmp),
        ("2 archive: 1.5 GB zero-filled data_batch_1", lambda: archive_case(tmp)),
        *traceback_cases(tmp, cifar_run),
        ("4 tiny image-folder run and its report", lambda: tiny_folder_report_case(tmp)),
        *integrity_cases(tmp, reported, finished),
        *value_cases(tmp, finished),
    ]


def run_cli_slow(args: list[str], cwd: Path) -> tuple[int, str, str]:
    r = subprocess.run(
        [sys.executable, "-m", "modescape", *args], cwd=cwd, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    return r.returncode, r.stdout, r.stderr
