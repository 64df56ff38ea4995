#!/usr/bin/env python3
"""Regenerate the report screenshots in docs/ (shown in the README).

    python scripts/screenshots.py                 # trains the MNIST-1D demo into a temp folder
    python scripts/screenshots.py --run runs/demo # or reuse an analysed run (report rewritten)

Writes docs/report-1400.png (a desktop window) and docs/report-400.png (a phone), each a few
screens of the page from its Ensembles section in headless Chromium (`.ci/browser_check.py`,
which also checks the page: no console error, no request, nothing wider than the viewport, the
ensemble curve's tooltip shows on hover); then downscaled and palette-quantised to stay small
(< 500 kB each). Needs chromium on PATH; the demo takes about a minute on two cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHOTS = {1400: 1600, 400: 2400}  # width -> CSS pixels of page height kept, from "Ensembles"


def browser_check():
    spec = importlib.util.spec_from_file_location("browser_check", ROOT / ".ci/browser_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shrink(raw: Path, out: Path, width: int, max_bytes: int = 500_000) -> int:
    """Save `raw` as a small palette PNG; return its size in bytes."""
    with Image.open(raw) as im:
        im = im.convert("RGB")
        scale = 1.0 if width <= 400 else 0.75
        while True:
            small = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            buf = io.BytesIO()
            small.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
                buf, "PNG", optimize=True
            )
            if buf.tell() <= max_bytes or scale < 0.4:
                out.write_bytes(buf.getvalue())
                return buf.tell()
            scale *= 0.85


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="an analysed run (default: train the demo)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    from modescape.report.html import write_report

    with tempfile.TemporaryDirectory(prefix="modescape-shots-") as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "demo"
            cmd = [sys.executable, "-m", "modescape", "run", "--out", str(run), "-q"]
            subprocess.run(cmd, check=True)
        index = write_report(run, Path(tmp) / "report")
        size = index.stat().st_size
        print(f"report page: {size / 2**20:.1f} MB ({index})")
        check = browser_check()
        args.out.mkdir(parents=True, exist_ok=True)
        for width, height in SHOTS.items():
            raw = Path(tmp) / f"raw-{width}.png"
            result = check.check_page(
                index, raw, 60, width, overflow=True, shot_height=height,
                hover="#fig-ensemble_curves .pt", shot_from="#ensembles",
            )  # fmt: skip
            if not result["ok"]:
                print(f"the page is not clean at {width} px: {result}", file=sys.stderr)
                return 1
            out = args.out / f"report-{width}.png"
            print(f"{out}: {shrink(raw, out, width) / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
