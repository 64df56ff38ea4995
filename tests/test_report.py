"""The HTML report of a real (tiny) analysed run, its files, its readings, and a real browser."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modescape import report
from modescape.analysis import analyze_run
from modescape.errors import ModescapeError
from modescape.store import load_run

ROOT = Path(__file__).resolve().parents[1]
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def analysed(tiny_run, tmp_path_factory) -> Path:
    """tiny_run copied and analysed once for this module (like tiny_run_copy, module-scoped)."""
    dst = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(tiny_run, dst)
    analyze_run(dst, log=lambda *a: None)
    return dst


@pytest.fixture(scope="module")
def written(analysed) -> Path:
    return report.write_report(analysed, log=lambda *a: None)


def test_report_embeds_every_figure_and_writes_its_files(analysed, written):
    assert written == analysed / "report" / "index.html"
    page = written.read_text()
    pngs = sorted((written.parent / "figures").glob("*.png"))
    pdfs = sorted((written.parent / "figures").glob("*.pdf"))
    assert len(pngs) >= 10 and [p.stem for p in pngs] == [p.stem for p in pdfs]
    embedded = [base64.b64decode(m) for m in IMG.findall(page)]
    assert len(embedded) == len(pngs) == page.count("<img ")
    # Each embedded image is byte-for-byte one of the PNG files.
    assert sorted(embedded) == sorted(p.read_bytes() for p in pngs)
    for p in pdfs:
        assert p.read_bytes().startswith(b"%PDF")
    # Self-contained: nothing to fetch, no scripts, no external fonts or stylesheets.
    for needle in ("http://", "https://", "<script", "<link", "@import", "url(", "@font-face"):
        assert needle not in page, needle
    for name in ("summary", "members", "ensembles"):
        assert (written.parent / "tables" / f"{name}.csv").exists()
        assert f'href="tables/{name}.csv"' in page


def test_tables_hold_the_analysis_numbers(analysed, written):
    summary = json.loads((analysed / "analysis" / "summary.json").read_text())
    with open(written.parent / "tables" / "members.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["member"]) for r in rows] == summary["members"]
    for row, single in zip(rows, summary["single_per_member"]):
        assert float(row["accuracy"]) == pytest.approx(single["accuracy"])
        assert float(row["time (s)"]) > 0
    with open(written.parent / "tables" / "ensembles.csv") as f:
        ens = list(csv.DictReader(f))
    deep = [r for r in ens if r["family"] == "deep"]
    assert [int(r["size"]) for r in deep] == list(range(1, len(summary["members"]) + 1))
    assert float(deep[-1]["accuracy mean"]) == pytest.approx(
        summary["ensemble"]["deep"]["accuracy"]
    )


def test_sections_and_readings_quote_the_summary(analysed, written):
    page = written.read_text()
    s = json.loads((analysed / "analysis" / "summary.json").read_text())
    for title in (
        "Run summary",
        "Weight space",
        "Function space",
        "Trajectories",
        "Ensembles",
        "Training curves",
    ):
        assert f"<h2>{title}" in page
    d = s["disagreement"]
    assert f"disagree on {100 * d['across_members_mean']:.1f}% of test points" in page
    assert f"cosine similarity {s['cosine']['across_members_mean']:.2f} on average" in page
    assert f"reaches {100 * s['ensemble']['deep']['accuracy']:.1f}% accuracy" in page


def test_readings_follow_the_numbers_not_the_paper(analysed):
    """Made-up summaries where the paper's findings do not hold: the text must say so."""
    ctx = report.ReportContext(load_run(analysed))
    s = ctx.summary
    s["single"]["accuracy"], s["ensemble"]["deep"]["accuracy"] = 0.80, 0.78
    s["ensemble"]["snapshot_k"]["accuracy"] = 0.80
    s["disagreement"]["across_members_mean"], s["disagreement"]["late_within_mean"] = 0.1, 0.2
    s["cosine"]["across_members_mean"] = 0.7
    s["cosine"]["consecutive_late_min_per_member"] = [0.5] * len(ctx.members)
    ens = " ".join(report.ensemble_section(ctx).reading)
    assert "(it loses 2.0 points)" in ens
    assert "changes accuracy by less than 0.1 points" in ens
    fun = " ".join(report.function_section(ctx).reading)
    assert "at least as much as independent members" in fun
    weights = " ".join(report.weight_section(ctx).reading)
    assert "far from orthogonal" in weights and "no more similar (0.500)" in weights
    s["ensemble"]["deep"]["accuracy"] = 0.832
    assert "(it gains 3.2 points)" in " ".join(report.ensemble_section(ctx).reading)


def test_run_path_and_section_text_are_html_escaped(analysed, tmp_path, monkeypatch):
    evil = tmp_path / "<script>alert(1)<"
    shutil.copytree(analysed, evil)

    def custom(ctx):
        return report.Section("x<y", "A & B <i>", reading=["1 < 2 & <b>bold</b>"])

    monkeypatch.setattr(report, "SECTIONS", [report.run_section, custom, lambda ctx: None])
    page = report.write_report(evil, tmp_path / "out", log=lambda *a: None).read_text()
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;" in page
    assert "1 &lt; 2 &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert 'id="x&lt;y"' in page and "A &amp; B &lt;i&gt;" in page
    assert page.count("<section") == 2  # the None section is left out


def test_missing_analysis_tells_the_user_what_to_run(tiny_run_copy):
    with pytest.raises(ModescapeError, match="modescape analyze"):
        report.write_report(tiny_run_copy)
    assert not (tiny_run_copy / "report").exists()


def test_sections_without_results_are_skipped(analysed, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(analysed, run)
    shutil.rmtree(run / "analysis" / "trajectories")
    (run / "analysis" / "ensembles" / "curves.csv").unlink()
    page = report.write_report(run, log=lambda *a: None).read_text()
    assert "<h2>Trajectories" not in page and "<h2>Ensembles" not in page
    assert "<h2>Weight space" in page


def browser_check(html: Path, screenshot: Path) -> tuple[int, dict]:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / ".ci" / "browser_check.py"),
            str(html),
            "--screenshot",
            str(screenshot),
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout)


needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not on PATH (apt-get install chromium; .ci/run installs it)",
)


@pytest.mark.browser
@needs_chromium
def test_report_opens_cleanly_in_headless_chromium(written, tmp_path):
    shot = tmp_path / "page.png"
    rc, result = browser_check(written, shot)
    assert result["console_errors"] == [] and result["network"] == []
    n_png = len(list((written.parent / "figures").glob("*.png")))
    assert len(result["images"]) == n_png
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in result["images"])
    assert rc == 0 and result["ok"]
    with Image.open(shot) as im:
        assert im.size[0] == 1280 and im.size[1] > 2000  # the whole long page
        # Not a blank page: the figures put plenty of non-white pixels on it.
        assert np.mean(np.asarray(im.convert("L")) < 200) > 0.02


@pytest.mark.browser
@needs_chromium
def test_browser_check_catches_a_broken_page(tmp_path):
    """The check itself must fail on what it is meant to catch."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img src="data:image/png;base64,AAAA" alt="broken">'
        "<script>console.error('boom')</script></body></html>"
    )
    rc, result = browser_check(bad, tmp_path / "bad.png")
    assert rc == 1 and not result["ok"]
    assert any("boom" in e for e in result["console_errors"])
    assert result["images"][0]["naturalWidth"] == 0
