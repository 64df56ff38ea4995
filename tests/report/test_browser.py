"""The report and the compare page in a real browser (headless Chromium, `.ci/browser_check.py`):
at 1400 and 400 px, no console error, no request, every image and chart drawn, nothing wider than
the viewport, and hovering the first point of the ensemble curve shows its value. The check itself
must fail on what it is meant to catch."""

from __future__ import annotations

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

from modescape.report.compare import compare_runs
from modescape.report.render.interactive import value_text

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which("chromium") is None,
        reason="chromium is not on PATH (apt-get install chromium; .ci/run installs it)",
    ),
]


def browser_check(html: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "browser_check.py"), str(html), "--timeout", "30",
         *args],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout)


def first_point(page_dir: Path, figure: str) -> float:
    """The first y value of the figure's first chart, as data.json has it (`charts`, one per
    panel, on the report and the compare page alike)."""
    data = json.loads((page_dir / "data.json").read_text())
    entry = next(f for f in data["figures"] if f["name"] == figure)
    return entry["charts"][0]["series"][0]["y"][0]


SCREEN = 900  # CSS px: the height of a 1400 px wide browser window (a 1440 × 900 laptop)


@pytest.mark.parametrize("width", [1400, 400])
def test_report_opens_cleanly_at_wide_and_narrow_widths(written, tmp_path, width):
    shot = tmp_path / "page.png"
    page = written
    if width == 400:  # every folded table opened: its rows must fit and wrap cleanly too
        page = tmp_path / "opened.html"  # the images are inline: it shows the same from here
        page.write_text(written.read_text().replace("<details class=", "<details open class="))
    rc, result = browser_check(
        page, "--width", str(width), "--overflow", "--words", "--hover",
        "#fig-ensemble_curves .pt", "--screenshot", str(shot),
    )  # fmt: skip
    assert result["console_errors"] == [] and result["network"] == []
    assert result["console_messages"] == []  # no warning either (the ResizeObserver loop)
    # no word broken inside a token (identifiers wrap after . _ / only)
    assert result["words"]["count"] == 0, result["words"]
    if width == 1400:  # the long configuration tables are folded: a figure in two screens
        assert result["words"]["first_figure"] < 2 * SCREEN, result["words"]
    # every figure shows its charts or its PNG (charts of every panel stand for its PNG, which the
    # figure links to), and every image on the page decodes
    figures = re.findall(r'<figure class="fig".*?</figure>', written.read_text(), re.S)
    assert len(figures) == len(list((written.parent / "figures").glob("*.png")))
    assert all('<div class="chart"' in f or "<img " in f for f in figures)
    assert len(result["images"]) == sum("<img " in f for f in figures)
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in result["images"])
    assert result["charts"] >= 1 and result["bad_charts"] == []
    assert result["overflow"]["ok"], result["overflow"]
    hover = result["hover"]
    assert hover["ok"] and hover["visible"], hover
    # The tooltip shows the hovered point's value: the first point of the curve, which is the
    # first deep-ensemble accuracy of figures/ensemble_curves.csv (the chart may show it in %).
    y = first_point(written.parent, "ensemble_curves")
    assert value_text(y) in hover["text"]
    with open(written.parent / "figures" / "ensemble_curves.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["metric"] == "accuracy")
    mean = float(row["mean"])
    assert y == pytest.approx(100 * mean, abs=1e-6) or y == pytest.approx(mean, abs=1e-9)
    assert rc == 0 and result["ok"]
    with Image.open(shot) as im:
        assert im.size[0] == width and im.size[1] > 2000  # the whole long page
        # Not a blank page: the figures put plenty of non-white pixels on it.
        assert np.mean(np.asarray(im.convert("L")) < 200) > 0.02


@pytest.mark.parametrize("width", [1400, 400])
def test_compare_page_opens_cleanly_at_wide_and_narrow_widths(
    analysed, second_run, tmp_path_factory, width
):
    index = compare_runs([analysed, second_run], tmp_path_factory.mktemp("cmp") / "out")
    rc, result = browser_check(
        index, "--width", str(width), "--overflow", "--hover", "#fig-ensemble_accuracy .pt"
    )
    assert result["console_errors"] == [] and result["network"] == []
    assert result["charts"] >= 4 and result["bad_charts"] == []
    assert result["overflow"]["ok"], result["overflow"]
    assert result["hover"]["ok"], result["hover"]
    assert value_text(first_point(index.parent, "ensemble_accuracy")) in result["hover"]["text"]
    assert rc == 0 and result["ok"]


def test_browser_check_catches_a_broken_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img src="data:image/png;base64,AAAA" alt="broken">'
        "<script>console.error('boom')</script></body></html>"
    )
    rc, result = browser_check(bad)
    assert rc == 1 and not result["ok"]
    assert any("boom" in e for e in result["console_errors"])
    assert result["images"][0]["naturalWidth"] == 0


def test_browser_check_catches_an_overflowing_page(tmp_path):
    wide = tmp_path / "wide.html"
    wide.write_text(
        '<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width">'
        "<title>wide</title></head><body><p>fits</p>"
        '<div style="overflow-x:auto"><table><tr><td style="min-width:600px">x</td></tr></table>'
        "</div></body></html>"
    )
    rc, result = browser_check(wide, "--width", "400", "--overflow")
    assert rc == 1 and not result["ok"] and not result["overflow"]["ok"]
    assert {w["tag"] for w in result["overflow"]["wide"]} >= {"td", "table"}
    rc, result = browser_check(wide, "--width", "1400", "--overflow")
    assert rc == 0 and result["overflow"]["ok"]


def test_browser_check_catches_a_missing_tooltip(tmp_path):
    """A chart point that shows nothing on hover (no tooltip element, no script) fails, and so
    does a selector that matches nothing."""
    page = tmp_path / "silent.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>silent</title></head><body>"
        '<svg width="200" height="100"><circle class="pt" cx="50" cy="50" r="4" '
        'data-t="deep: size 1 · accuracy 0.81"/></svg><div id="tip" style="display:none"></div>'
        "</body></html>"
    )
    rc, result = browser_check(page, "--hover", ".pt")
    assert rc == 1 and not result["hover"]["ok"] and not result["hover"]["visible"]
    rc, result = browser_check(page, "--hover", "#nothing .pt")
    assert rc == 1 and result["hover"]["error"] == "no element matches"


def test_browser_check_catches_a_word_broken_mid_token_and_a_console_warning(tmp_path):
    """A cell that may break anywhere splits "configuration" across lines at 400 px; a split
    after "." (an allowed point) is not counted; a console.warn is a console message."""
    page = tmp_path / "words.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width">'
        "<title>words</title></head><body>"
        '<p style="width:60px;overflow-wrap:anywhere">configuration</p>'
        '<p style="width:90px">train.<wbr>augment.<wbr>brightness</p>'
        "<figure>f</figure><script>console.warn('careful')</script></body></html>"
    )
    rc, result = browser_check(page, "--width", "400", "--words")
    assert rc == 1 and not result["ok"]
    assert result["words"]["count"] == 1
    assert result["words"]["broken"][0]["word"] == "configuration"
    assert result["words"]["first_figure"] > 0
    assert any("careful" in m for m in result["console_messages"])
