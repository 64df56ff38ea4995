"""Compare two run directories file by file: did a refactor change any output?

    python scripts/same_outputs.py RUN_A RUN_B

Every file present in either run is compared byte for byte, except where a difference is
legitimate between two executions of the same code:

- every file is read with the run's own path replaced by `<run>` (a summary records where the
  run was);
- JSON files are compared after dropping the fields that record when, how long, where and with
  which versions (`IGNORED_KEYS`, and every key ending in `_s`: wall times in seconds;
  timestamps, process ids, hosts, package versions) and the checksums that cover such fields
  (the manifest's own seal, the sha256 of the files that hold a wall time: member.json,
  summary.json, metrics.jsonl, resume.safetensors);
- a member's resume.safetensors is compared tensor by tensor, and its metadata as JSON (it
  repeats the epochs' records, wall times included);
- the report's index.html is compared with its "report written <time>" line removed;
- the report's tables/timings.csv (wall times) is compared on its first two columns only.

Everything else (every .npy, .safetensors, .csv, the report's data.json, its figures' .png,
.pdf and .csv) must be identical. Prints one line per differing file and exits 1 if any differ.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

IGNORED_KEYS = {
    "created",  # manifest: when the run was created
    "time_s",  # member.json: training wall time
    "elapsed_s",  # study summaries: wall time of the call
    "timings_s",  # analysis summary: wall time per stage
    "versions",  # manifest: package versions (and the git commit)
    "modescape_version",
    "pid",
    "host",
    "started",
    "finished",
    "updated",
    "sha256",  # the manifest's own seal (covers the fields above)
    "resume_previous",  # member.json: sha256 of the previous resume.safetensors
}
# Files whose sha256 (recorded in the manifest or member.json) covers an ignored field.
TIMED_JSON = re.compile(r"(^|/)(member\.json|summary\.json|metrics\.jsonl|resume\.safetensors)$")


def _clean(value: Any, path: str = "") -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in IGNORED_KEYS or k.endswith("_s"):
                continue
            if k == "files" and isinstance(v, dict):  # rel path -> sha256
                v = {r: ("<timed json>" if TIMED_JSON.search(r) else d) for r, d in v.items()}
            out[k] = _clean(v, f"{path}.{k}")
        return out
    if isinstance(value, list):
        return [_clean(v, path) for v in value]
    return value


def _same_tensors(a: Path, b: Path) -> bool:
    from safetensors import safe_open

    fa, fb = safe_open(str(a), "pt"), safe_open(str(b), "pt")
    keys = set(fa.keys())
    if keys != set(fb.keys()):
        return False
    if any(not fa.get_tensor(k).equal(fb.get_tensor(k)) for k in keys):
        return False
    ma, mb = fa.metadata() or {}, fb.metadata() or {}
    if set(ma) != set(mb):
        return False
    return all(_same(f"{k}.json", ma[k].encode(), mb[k].encode()) for k in ma)


def _same(rel: str, a: bytes, b: bytes) -> bool:
    if a == b:
        return True
    if rel.endswith(".json") or rel.endswith(".jsonl"):
        try:
            if rel.endswith(".jsonl"):
                la = [_clean(json.loads(x)) for x in a.decode().splitlines() if x.strip()]
                lb = [_clean(json.loads(x)) for x in b.decode().splitlines() if x.strip()]
                return la == lb
            return _clean(json.loads(a)) == _clean(json.loads(b))
        except ValueError:
            return False
    if rel.endswith("report/index.html"):
        stamp = re.compile(rb"report written \d{4}-\d\d-\d\d \d\d:\d\d")
        timings = re.compile(rb'<table[^>]*data-name="timings".*?</table>', re.S)
        strip = lambda x: timings.sub(b"", stamp.sub(b"", x))  # noqa: E731
        return strip(a) == strip(b)
    if rel.endswith("report/tables/timings.csv"):
        cols = lambda x: [r.split(",")[:2] for r in x.decode().splitlines()]  # noqa: E731
        return cols(a) == cols(b)
    return False


def compare(a: Path, b: Path) -> list[str]:
    """One line per file that differs, is missing from one run or was added."""
    files_a = {str(p.relative_to(a)) for p in a.rglob("*") if p.is_file()}
    files_b = {str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()}
    out = [f"only in {a}: {r}" for r in sorted(files_a - files_b)]
    out += [f"only in {b}: {r}" for r in sorted(files_b - files_a)]
    for rel in sorted(files_a & files_b):
        if rel.endswith("resume.safetensors"):
            same = _same_tensors(a / rel, b / rel)
        else:
            here = (a / rel).read_bytes().replace(str(a).encode(), b"<run>")
            there = (b / rel).read_bytes().replace(str(b).encode(), b"<run>")
            same = _same(rel, here, there)
        if not same:
            out.append(f"differs: {rel}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = p.parse_args()
    problems = compare(args.a, args.b)
    print("\n".join(problems) if problems else f"same outputs: {args.a} and {args.b}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
