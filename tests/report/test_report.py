"""The HTML report of a real (tiny) analysed run: its files, its readings, its figure data (the
browser checks are in test_browser.py)."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from modescape.errors import ModescapeError
from modescape.report import html as report
from modescape.report.base import ReportContext, Section
from modescape.report.sections.analysis import (
    ensemble_section,
    function_section,
    trajectory_section,
    weight_section,
)
from modescape.report.sections.landscape import landscape_section
from modescape.report.sections.run import run_section
from modescape.report.sections.shift import shift_section
from modescape.report.sections.subspace import subspace_section
from modescape.store.files import read_json, save_npy, write_json
from modescape.store.run import load_run

ROOT = Path(__file__).resolve().parents[2]
IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def test_report_embeds_every_figure_and_writes_its_files(analysed, written):
    assert written == analysed / "report" / "index.html"
    page = written.read_text()
    pngs = sorted((written.parent / "figures").glob("*.png"))
    pdfs = sorted((written.parent / "figures").glob("*.pdf"))
    assert len(pngs) >= 10 and [p.stem for p in pngs] == [p.stem for p in pdfs]
    embedded = [base64.b64decode(m) for m in IMG.findall(page)]
    assert len(embedded) == page.count("<img ")
    # Each embedded image is byte-for-byte one of the PNG files; a PNG that is not embedded is
    # a figure its interactive charts show whole, every panel (and link to).
    files = {p.stem: p.read_bytes() for p in pngs}
    shown = {stem for stem, data in files.items() if data in embedded}
    assert sorted(embedded) == sorted(files[s] for s in shown)
    for stem in set(files) - shown:
        block = page[page.index(f'id="fig-{stem}"') :]
        block = block[: block.index("</figure>")]
        assert '<div class="chart"' in block and f'href="figures/{stem}.png"' in block, stem
    # charts for every panel (one or several) stand for the PNG; a heatmap is its PNG
    charted = {"trajectories_tsne", "distance_from_init", "ensemble_curves", "training_curves"}
    assert charted <= set(files) - shown
    assert "cosine_all" in shown
    for p in pdfs:
        assert p.read_bytes().startswith(b"%PDF")
    # Self-contained: nothing to fetch, one inline script, no external fonts or stylesheets.
    for needle in ("http://", "https://", "<link", "@import", "@font-face", 'src="http'):
        assert needle not in page, needle
    assert not re.search(r"url\((?!#)", page)  # only the charts' own clip paths: url(#clip-..)
    assert page.count("<script") == 1 and "<script>" in page  # inline, no src
    for name in ("summary", "members", "ensembles"):
        assert (written.parent / "tables" / f"{name}.csv").exists()
        assert f'href="tables/{name}.csv"' in page


def test_tables_hold_the_analysis_numbers(analysed, written):
    summary = json.loads((analysed / "analysis" / "summary.json").read_text())
    with open(written.parent / "tables" / "members.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["member"]) for r in rows] == summary["members"]
    for row, single in zip(rows, summary["single_per_member"]):
        assert float(row["accuracy"]) == pytest.approx(single["accuracy"], abs=5e-5)
        assert float(row["time_s"]) > 0
    with open(written.parent / "tables" / "ensembles.csv") as f:
        ens = list(csv.DictReader(f))
    deep = [r for r in ens if r["family"] == "deep"]
    assert [int(r["size"]) for r in deep] == list(range(1, len(summary["members"]) + 1))
    assert float(deep[-1]["accuracy_mean"]) == pytest.approx(
        summary["ensemble"]["deep"]["accuracy"], abs=5e-5
    )


def test_window_warnings_are_printed_next_to_their_figures(analysed, written):
    """The tiny run has 4 epochs: every late window and weight average is clamped, and each
    section that shows one says so."""
    ctx = ReportContext(load_run(analysed))
    assert ctx.summary.warnings  # late window and weight average
    page = written.read_text()
    for section in (run_section, function_section, ensemble_section):
        text = " ".join(section(ctx).reading)
        assert "Note: " in text and "a window covers at most the later half" in text
    for section in (subspace_section, shift_section):
        assert "Note: late window: --late 10 asked for the last 10 snapshots" in " ".join(
            section(ctx).reading
        )
    assert page.count("Note: ") >= 5


def test_report_reads_the_corruption_examples_the_shift_study_wrote(analysed, monkeypatch):
    import modescape.data.corruptions as corruptions

    def regenerate(*args, **kwargs):
        raise AssertionError("the report must not regenerate corruptions")

    monkeypatch.setattr(corruptions, "corruption_strip", regenerate)
    monkeypatch.setattr(corruptions, "corrupt", regenerate)
    section = shift_section(ReportContext(load_run(analysed)))
    assert "shift_examples" in [p.name for p in section.figures]
    strip = np.load(analysed / "shift" / "examples.npy")
    assert strip.shape[:2] == (1, 6)  # one corruption, clean + severities 1-5


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
        "Loss-landscape cross-sections",
        "Subspace sampling",
        "Dataset shift",
    ):
        assert f"<h2>{title}" in page
    d = s["disagreement"]
    assert f"disagree on {100 * d['across_members_mean']:.1f}% of test points" in page
    assert f"cosine similarity {s['cosine']['across_members_mean']:.2f} on average" in page
    assert f"reaches {100 * s['ensemble']['deep']['accuracy']:.1f}% accuracy" in page


def test_readings_follow_the_numbers_not_the_paper(analysed):
    """Made-up summaries where the paper's findings do not hold: the text must say so."""
    ctx = ReportContext(load_run(analysed))
    s = ctx.summary
    s.single["accuracy"], s.ensemble["deep"]["accuracy"] = 0.80, 0.78
    s.ensemble["snapshot_k"]["accuracy"] = 0.80
    s.disagreement.across_members_mean, s.disagreement.late_within_mean = 0.1, 0.2
    s.cosine.across_members_mean = 0.7
    s.cosine.consecutive_late_min_per_member = [0.5] * len(ctx.members)
    ens = " ".join(ensemble_section(ctx).reading)
    assert "(it loses 2.0 points)" in ens
    assert "changes accuracy by less than 0.1 points" in ens
    fun = " ".join(function_section(ctx).reading)
    assert "at least as much as independent members" in fun
    weights = " ".join(weight_section(ctx).reading)
    assert "far from orthogonal" in weights and "no more similar (0.500)" in weights
    s.ensemble["deep"]["accuracy"] = 0.832
    assert "(it gains 3.2 points)" in " ".join(ensemble_section(ctx).reading)


def test_run_path_and_section_text_are_html_escaped(analysed, tmp_path, monkeypatch):
    evil = tmp_path / "<script>alert(1)<"
    shutil.copytree(analysed, evil)

    def custom(ctx):
        return Section("x<y", "A & B <i>", reading=["1 < 2 & <b>bold</b>"])

    monkeypatch.setattr(
        report, "section_functions", lambda: [run_section, custom, lambda ctx: None]
    )
    page = report.write_report(evil, tmp_path / "out").read_text()
    assert "<script>alert" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;" in page
    assert "1 &lt; 2 &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert 'id="x&lt;y"' in page and "A &amp; B &lt;i&gt;" in page
    assert page.count("<section") == 2  # the None section is left out


def test_missing_analysis_tells_the_user_what_to_run(tiny_run_copy):
    with pytest.raises(ModescapeError, match="modescape analyze"):
        report.write_report(tiny_run_copy)
    assert not (tiny_run_copy / "report").exists()


def _unrecord(run: Path, *folders: str) -> None:
    """Take `folders` out of the run's manifest, as if their study had never written them."""
    from modescape.store.manifest import replace_folder_files

    for folder in folders:
        replace_folder_files(run, folder, {})


def test_sections_without_results_are_skipped(analysed, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(analysed, run, ignore=shutil.ignore_patterns("report"))
    shutil.rmtree(run / "analysis" / "trajectories")
    (run / "analysis" / "ensembles" / "curves.csv").unlink()
    _unrecord(run, "analysis/trajectories", "analysis/ensembles")
    page = report.write_report(run).read_text()
    assert "<h2>Trajectories" not in page and "<h2>Ensembles" not in page
    assert "<h2>Weight space" in page


@pytest.mark.parametrize(
    "removed", ["analysis/trajectories", "analysis/ensembles/curves.csv", "shift/summary.json"]
)
def test_a_lost_study_output_is_refused_never_dropped(analysed, tmp_path, removed):
    run = tmp_path / "run"
    shutil.copytree(analysed, run, ignore=shutil.ignore_patterns("report"))
    target = run / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    missing = rf"{re.escape(str(target))}(/\S+)? is missing, but the"
    with pytest.raises(ModescapeError, match=missing):
        report.write_report(run)
    assert not (run / "report").exists()


def test_the_report_is_in_the_manifest_and_verified(analysed, tmp_path):
    from modescape.store.summary import verify_run

    run = tmp_path / "run"
    shutil.copytree(analysed, run, ignore=shutil.ignore_patterns("report"))
    report.write_report(run)
    recorded = json.loads((run / "manifest.json").read_text())["files"]
    on_disk = {str(p.relative_to(run)) for p in (run / "report").rglob("*") if p.is_file()}
    assert on_disk and {k for k in recorded if k.startswith("report/")} == on_disk
    assert verify_run(run) == []
    data = run / "report/data.json"
    data.write_bytes(data.read_bytes().replace(b'"figures"', b'"figurez"', 1))
    assert verify_run(run) == ["checksum mismatch report/data.json"]


STUDIES = {
    "subspace": subspace_section,
    "shift": shift_section,
    "landscape": landscape_section,
}


def test_study_sections_are_absent_without_their_results(analysed, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(analysed, run, ignore=shutil.ignore_patterns(*STUDIES))
    _unrecord(run, *STUDIES)  # never run, rather than lost
    ctx = ReportContext(load_run(run))
    assert all(fn(ctx) is None for fn in STUDIES.values())
    page = report.write_report(run).read_text()
    for title in ("Subspace sampling", "Dataset shift", "Loss-landscape"):
        assert f"<h2>{title}" not in page
    assert "<h2>Ensembles" in page


def test_study_sections_quote_their_results_and_are_escaped(analysed, written):
    page = written.read_text()
    tables = written.parent / "tables"
    sub = read_json(analysed / "subspace" / "summary.json")
    assert f"the reference is member 0 ({100 * sub['reference_accuracy']:.1f}% accuracy)" in page
    for name in ("subspace", "shift", "landscape_paths"):
        assert (tables / f"{name}.csv").exists()
    with open(tables / "subspace.csv") as f:
        rows = {r["sampler"]: r for r in csv.DictReader(f)}
    assert list(rows) == list(sub["config"]["methods"])
    for m, r in rows.items():
        assert float(r["js_diversity"]) == pytest.approx(sub["js_diversity"][m], rel=5e-4)
        assert int(r["within_2_points"]) == sub["plane"][m]["n_within_tol"]
    shift = read_json(analysed / "shift" / "summary.json")
    acc = shift["by_severity"]["metrics"]["single"]["accuracy"]
    assert (
        f"Mean single-member accuracy {'falls' if acc[-1] < acc[0] else 'rises'} from "
        f"{100 * acc[0]:.1f}% (clean) to {100 * acc[-1]:.1f}% at severity 3" in page
    )
    land = read_json(analysed / "landscape" / "summary.json")
    across = next(p for p in land["paths"] if p["kind"] == "across members")
    assert f"(error barrier {across['error_barrier']:.3f})" in page
    # Path names hold '->': escaped in the page's table, never raw markup.
    assert re.search(r"<td[^>]*>m0-&gt;m1</td>", page) and "m0->m1" not in page
    for name in (
        "subspace_plane",
        "subspace_tsne",
        "subspace_ensembles",
        "subspace_js",
        "shift_boxplots",
        "shift_diversity",
        "shift_examples",
        "landscape_paths",
        "landscape_origin-m0-m1",
    ):
        assert (written.parent / "figures" / f"{name}.png").exists(), name


@pytest.fixture
def contrived(analysed, tmp_path) -> Path:
    """A private copy of the analysed run, for tests that rewrite its study results."""
    run = tmp_path / "run"
    shutil.copytree(analysed, run, ignore=shutil.ignore_patterns("report", "preds", "rows"))
    return run


def section_text(run: Path, fn) -> str:
    # trust: these tests rewrite study results by hand (the manifest no longer vouches for them)
    return " ".join(fn(ReportContext(load_run(run, trust=True))).reading)


def test_shift_reading_says_where_the_ensemble_is_not_ahead(contrived):
    f = contrived / "shift" / "summary.json"
    s = read_json(f)
    m = s["by_severity"]["metrics"]
    K = max(int(k.split("_")[1]) for k in m if k.startswith("ensemble_"))
    m["single"]["accuracy"] = [0.90, 0.70, 0.40]
    m[f"ensemble_{K}"]["accuracy"] = [0.93, 0.69, 0.45]  # behind at severity 1 only
    s["by_severity"]["js"]["members"] = [0.3, 0.2, 0.1]
    s["by_severity"]["js"]["late_snapshots_member0"] = [0.01, 0.02, 0.05]
    write_json(f, s)
    text = section_text(contrived, shift_section)
    assert "falls from 90.0% (clean) to 40.0% at severity 3" in text
    assert f"the {K}-member ensemble is ahead at severities clean and 3 but not at 1." in text
    assert "at every severity (by" not in text
    assert "JS diversity falls from 0.300 to 0.100" in text
    assert "it is 2–30× that of member 0's late snapshots" in text
    m[f"ensemble_{K}"]["accuracy"] = [0.93, 0.72, 0.45]
    m["single"]["accuracy"][-1] = 0.95
    m[f"ensemble_{K}"]["accuracy"][-1] = 0.96
    write_json(f, s)
    text = section_text(contrived, shift_section)
    assert "rises from 90.0% (clean) to 95.0% at severity 3" in text
    assert "is ahead at every severity (by 1.0–3.0 points)" in text


def test_subspace_reading_with_no_sample_near_the_reference(contrived):
    f = contrived / "subspace" / "summary.json"
    s = read_json(f)
    for p in s["plane"].values():
        p.update(n_within_tol=0, best_sample_norm_div=None, best_sample_acc=None)
    write_json(f, s)
    text = section_text(contrived, subspace_section)
    assert "the most diverse sample of each sampler" not in text
    assert "No sample of the random subspace (" in text
    assert "with no sample at comparable accuracy to compare against" in text
    # One sampler now reaches more diversity than the least diverse member.
    members = s["plane"]["random"]["member_norm_div"]
    s["plane"]["random"].update(
        n_within_tol=2,
        best_sample_norm_div=max(members) + 0.1,
        best_sample_acc=s["reference_accuracy"],
    )
    write_json(f, s)
    text = section_text(contrived, subspace_section)
    assert f"random subspace {100 * (max(members) + 0.1):.0f}% (2 of 4 samples" in text
    assert f"is at least as diverse as {len(members)} member" in text
    assert "No sample of the random subspace" not in text


def test_subspace_section_states_mode_scales_and_every_reference(analysed):
    s = read_json(analysed / "subspace" / "summary.json")
    assert s["mode"] == "calibrated" and s["normalisation"] == "sample"
    section = subspace_section(ReportContext(load_run(analysed)))
    text = " ".join(section.reading)
    assert 'Sampler settings: "calibrated"' in text and "never the test set" in text
    assert "divided by the predictor's own error rate (the authors' notebook's" in text
    # The headline numbers are mean ± std over every member as reference, default normalisation.
    members = s["every_reference"]["sample"]["independent"]
    assert f"is {members['mean']:.2f} ± {members['std']:.2f} for independent members" in text
    tables = {t.name: t for t in section.tables}
    scales = tables["subspace_scales"]
    assert len(scales.rows) == len(s["config"]["methods"])
    random = [c["scale"] for c in s["calibration"] if c["method"] == "random"]
    assert f"{min(random):.3g}" in scales.rows[0][1] and f"{max(random):.3g}" in scales.rows[0][1]
    refs = tables["subspace_references"]
    assert refs.header[1:] == ["D / own error", "D / reference error"]
    other = s["every_reference"]["reference"]["independent"]
    assert refs.rows[0][2] == f"{other['mean']:.2f} ± {other['std']:.2f}"


def test_subspace_section_in_paper_mode_has_no_scales_table(contrived):
    f = contrived / "subspace" / "summary.json"
    s = read_json(f)
    s.update(mode="paper", calibration=[], normalisation="reference")
    s["config"].update(random_scale=70.0, diagonal_scale=10.0, lowrank_scale=6.0, n_samples=50)
    s["config"]["dropout_scale"] = 0.1
    write_json(f, s)
    section = subspace_section(ReportContext(load_run(contrived, trust=True)))
    text = " ".join(section.reading)
    assert 'Sampler settings: "paper"' in text and "random radius 70·U(0,1)" in text
    assert "divided by the reference's error rate" in text
    assert "subspace_scales" not in {t.name for t in section.tables}


def test_unreliable_tsne_is_said_and_pca_leads(contrived):
    f = contrived / "analysis" / "summary.json"
    s = read_json(f)
    s["embeddings"]["tsne"].update(warnings=["only 15 points (t-SNE needs about 50)"])
    s["embeddings"]["tsne"]["lead_with_pca"] = True
    write_json(f, s)
    section = trajectory_section(ReportContext(load_run(contrived, trust=True)))
    assert [p.name for p in section.figures] == ["trajectories_pca", "trajectories_tsne"]
    assert "says little here (only 15 points" in " ".join(section.reading)
    f = contrived / "subspace" / "summary.json"
    s = read_json(f)
    s["tsne"]["random"].update(warnings=["the points collapsed"], lead_with_pca=True)
    write_json(f, s)
    text = section_text(contrived, subspace_section)
    assert "random subspace: the points collapsed" in text


def test_landscape_reading_follows_barriers_and_agreement(contrived):
    f = contrived / "landscape" / "summary.json"
    s = read_json(f)
    for p in s["paths"]:
        p["error_barrier"] = {"across members": 0.05, "within trajectory": 0.2}.get(
            p["kind"], -0.01
        )
    s["alignment"].update(cosine_before=0.1, cosine_after=0.05)
    s["alignment"].update(error_barrier_before=0.2, error_barrier_after=0.1)
    s["alignment"].update(loss_barrier_before=0.5, loss_barrier_after=0.7)
    write_json(f, s)
    plane = contrived / "landscape" / s["planes"][0]["dir"]
    a, b = np.load(plane / "a.npy"), np.load(plane / "b.npy")
    info = read_json(plane / "anchors.json")
    (x0, y0), (x1, y1) = info["coords"][1], info["coords"][2]  # m0, m1
    agr = np.full((len(b), len(a)), 0.5, dtype=np.float32)
    agr[np.abs(b - y0).argmin(), np.abs(a - x0).argmin()] = 1.0  # high only at m0 itself
    agr[np.abs(b - y1).argmin(), np.abs(a - x1).argmin()] = 0.25
    save_npy(plane / "agreement_m0.npy", agr)
    text = section_text(contrived, landscape_section)
    assert "Some path within a trajectory has an error barrier at least as high" in text
    assert "rises by 5.0 points above the endpoints' mean error (error barrier 0.050)" in text
    assert "never rises above the mean of its endpoints' errors (error barrier -0.010)" in text
    assert "does not raise the cosine similarity of their weights (0.100 → 0.050)" in text
    # Both barriers are stated; when they disagree the reading says so.
    assert "lowers the error barrier (0.200 → 0.100) and raises the loss barrier (0.500 → " in text
    assert "The two barriers move in opposite directions: read both." in text
    share = 100 / agr.size
    assert (
        f"Agreement with m0's predictions is 90% or more on {share:.0f}% of the plane; at m1 it "
        "is 25%." in text
    )
    # The difference map's reading: at m1, agreement with m0 (25%) minus with m1 (100%).
    m1 = np.load(plane / "agreement_m1.npy")
    at_m1 = 100 * (0.25 - m1[np.abs(b - y1).argmin(), np.abs(a - x1).argmin()])
    closer = 100 * np.mean(agr > m1)
    assert "Agreement with m0 minus agreement with m1 is " in text
    assert f"{at_m1:+.0f} at m1; the plane agrees more with m0 on {closer:.0f}% of" in text


# ---- every figure's numbers ------------------------------------------------------------------
SNAKE = re.compile(r"^[a-z0-9_]+$")
CHARTED = {
    "ensemble_curves",
    "trajectories_tsne",
    "trajectories_pca",
    "distance_from_init",
    "agreement_with_final",
    "training_curves",
    "subspace_plane",
    "subspace_ensembles",
    "landscape_paths",
    "shift_diversity",
}


@pytest.fixture(scope="module")
def plots(analysed_plots) -> dict:
    return analysed_plots


def column(table, name: str) -> np.ndarray:
    i = table.header.index(name)
    return np.array([np.nan if r[i] is None else r[i] for r in table.rows], dtype=float)


def rows_where(table, **match) -> list[list]:
    idx = {k: table.header.index(k) for k in match}
    return [r for r in table.rows if all(r[i] == match[k] for k, i in idx.items())]


def test_every_figure_has_its_numbers_rounded_with_snake_case_headers(plots):
    assert len(plots) >= 20
    for name, plot in plots.items():
        table = plot.data
        assert table is not None, name
        assert table.rows, name
        assert all(SNAKE.match(h) for h in table.header), (name, table.header)
        for row in table.rows:
            assert len(row) == len(table.header), name
            for v in row:
                if isinstance(v, float):
                    # rounded to what it means: no float32 noise like 0.30000001192
                    assert math.isfinite(v) and float(f"{v:.6g}") == v, (name, v)
        if name in CHARTED:
            assert plot.charts and all(c.series for c in plot.charts), name
            for s in (s for c in plot.charts for s in c.series):
                assert len(s.x) == len(s.y), (name, s.name)
                for extra in (s.err, s.labels):
                    assert extra is None or len(extra) == len(s.x), (name, s.name)


def test_figure_numbers_equal_the_run_results(analysed, plots):
    """Each figure's table against the analysis and study files, read here independently."""
    A, summary = analysed / "analysis", read_json(analysed / "analysis" / "summary.json")
    M, E = len(summary["members"]), len(summary["epochs"])
    finals = np.arange(M) * E + E - 1
    for q, atol in (("cosine", 5e-7), ("disagreement", 5e-5)):
        mat = np.load(A / ("weights" if q == "cosine" else "functions") / f"{q}.npy")
        for name, expect in (
            (f"{q}_all", mat),
            (f"{q}_members", mat[np.ix_(finals, finals)]),
            (f"{q}_trajectory", mat[:E, :E]),
        ):
            t = plots[name].data
            skip = 2 if name.endswith("_all") else 1  # member, epoch / member / epoch
            got = np.array([r[skip:] for r in t.rows], dtype=float)
            np.testing.assert_allclose(got, expect, atol=atol, err_msg=name)
    dist = np.load(A / "weights" / "distance.npy")
    got = column(plots["distance_from_init"].data, "l2_distance_from_init").reshape(M, E)
    expect = np.array([dist[i * E, i * E : (i + 1) * E] for i in range(M)])
    np.testing.assert_allclose(got, expect, rtol=5e-4, atol=1e-12)
    agr = np.load(A / "functions" / "agreement_with_final.npy")
    got = column(plots["agreement_with_final"].data, "agreement_own_final").reshape(M, E)
    np.testing.assert_allclose(got, [agr[i * E : (i + 1) * E, i] for i in range(M)], atol=5e-5)
    for method in ("tsne", "pca"):
        with open(A / "trajectories" / f"{method}.csv") as f:
            pts = {(int(r["member"]), int(r["epoch"])): r for r in csv.DictReader(f)}
        for m, e, x, y in plots[f"trajectories_{method}"].data.rows:
            assert x == pytest.approx(float(pts[m, e]["x"]), rel=5e-4)
            assert y == pytest.approx(float(pts[m, e]["y"]), rel=5e-4)
    # ensembles: the headline deep-ensemble numbers of the summary
    t = plots["ensemble_curves"].data
    for metric, value in summary["ensemble"]["deep"].items():
        (row,) = rows_where(t, family="deep", ensemble_size=M, metric=metric)
        assert row[3] == pytest.approx(value, rel=5e-4, abs=5e-5), metric
    single = rows_where(t, family="deep", ensemble_size=1, metric="accuracy")[0][3]
    assert single == pytest.approx(summary["single"]["accuracy"], abs=5e-5)
    rel = read_json(A / "ensembles" / "reliability.json")
    t = plots["reliability"].data
    assert sum(column(t, "examples")) == sum(sum(d["counts"]) for d in rel.values())
    test_acc = column(plots["training_curves"].data, "test_acc").reshape(M, E)
    for i, m in enumerate(summary["members"]):
        last = json.loads((analysed / "members" / f"m{m:03d}" / "metrics.jsonl").read_text()
                          .splitlines()[-1])  # fmt: skip
        assert test_acc[i, -1] == pytest.approx(last["test_acc"], abs=5e-5)
        assert test_acc[i, -1] == pytest.approx(summary["single_per_member"][i]["accuracy"],
                                                abs=5e-5)  # fmt: skip


def test_study_figure_numbers_equal_the_study_summaries(analysed, plots):
    sub = read_json(analysed / "subspace" / "summary.json")
    t = plots["subspace_plane"].data
    for m, p in sub["plane"].items():
        rows = rows_where(t, kind="sample", method=m)
        assert len(rows) == p["n_samples"]
        near = [r for r in rows if abs(r[4] - p["ref_acc"]) <= p["tol"] + 1e-9]
        assert len(near) == p["n_within_tol"], m
        if near:
            assert max(r[5] for r in near) == pytest.approx(p["best_sample_norm_div"], abs=5e-5)
    members = rows_where(t, kind="member")
    first = next(iter(sub["plane"].values()))
    expect = [d for d in first["member_norm_div"] if d is not None]
    assert sorted(r[5] for r in members) == pytest.approx(sorted(expect), abs=5e-5)
    js = {r[0]: r[1] for r in plots["subspace_js"].data.rows}
    assert js["independent members"] == pytest.approx(sub["js_diversity"]["independent_members"],
                                                      rel=5e-4)  # fmt: skip
    analysis = read_json(analysed / "analysis" / "summary.json")
    M = len(analysis["members"])
    (deep,) = rows_where(
        plots["subspace_ensembles"].data, family="deep", ensemble_size=M, metric="accuracy"
    )
    assert deep[3] == pytest.approx(analysis["ensemble"]["deep"]["accuracy"], abs=5e-5)
    assert {r[0] for r in plots["subspace_tsne"].data.rows} == set(sub["config"]["methods"])
    # landscape: the barrier recomputed from the drawn path equals the summary's
    land = read_json(analysed / "landscape" / "summary.json")
    t = plots["landscape_paths"].data
    for p in land["paths"]:
        err = [r[3] for r in rows_where(t, path=p["name"])]
        barrier = max(err) - (err[0] + err[-1]) / 2
        assert barrier == pytest.approx(p["error_barrier"], abs=2e-4), p["name"]
    for plane in land["planes"]:
        t = plots[f"landscape_{plane['name']}"].data
        loss = np.load(analysed / "landscape" / plane["dir"] / "loss.npy")
        grid = column(t, "loss")[[r[0] == "grid" for r in t.rows]]
        np.testing.assert_allclose(grid, loss.ravel(), rtol=5e-4)
        anchors = read_json(analysed / "landscape" / plane["dir"] / "anchors.json")
        got = {r[1]: r[4] for r in rows_where(t, kind="anchor")}
        assert got == pytest.approx(dict(zip(anchors["names"], anchors["loss"])), rel=5e-4)
    # shift: the means over corruptions the summary reports, per severity
    shift = read_json(analysed / "shift" / "summary.json")
    by = shift["by_severity"]
    t = plots["shift_boxplots"].data
    for i, sev in enumerate(by["severities"]):
        values = [r[5] for r in rows_where(t, severity=sev, family="single", metric="accuracy")]
        assert np.mean(values) == pytest.approx(by["metrics"]["single"]["accuracy"][i], abs=5e-5)
    got = {r[0]: r[1:] for r in plots["shift_diversity"].data.rows}
    for fam, values in by["js"].items():
        assert got[fam] == pytest.approx(values, rel=5e-4), fam


def test_every_section_names_what_it_reproduces_and_compares_with_published_values(analysed):
    ctx = ReportContext(load_run(analysed))
    sections = [sec for fn in report.section_functions() if (sec := fn(ctx)) is not None]
    for sec in sections:
        assert "Fort et al. (2019)" in sec.reproduces or "seed notebooks" in sec.reproduces
    compared = {sec.id: t for sec in sections for t in sec.tables if t.name.endswith("_published")}
    assert set(compared) >= {"run", "weights", "functions", "ensembles", "subspace", "shift"}
    for t in compared.values():
        assert t.header == ["quantity", "this_run", "paper_or_seed_cifar10", "source"]
        # MNIST-1D: a proxy, so the comparison is said to be qualitative
        assert "MNIST-1D" in t.caption and "qualitative" in t.caption
    run = compared["run"]
    assert [run.rows[0][0], run.rows[0][2]] == ["single-member test accuracy", "64.36%"]
    s = ctx.summary
    fun = {r[0]: r for r in compared["functions"].rows}
    row = fun["disagreement between two members' test predictions"]
    assert row[1] == f"{s.disagreement.across_members_mean:.3f}" and row[2] == "≈0.27"
    text = " ".join(sections[0].reading)
    assert "Deep Ensembles: A Loss Landscape Perspective" in text and "proxy" in text


def test_run_section_shows_the_full_configuration_and_provenance(analysed):
    ctx = ReportContext(load_run(analysed))
    tables = {t.name: t for t in run_section(ctx).tables}
    config = {(r[0], r[1]): r[2] for r in tables["config"].rows}
    cfg = ctx.run.config
    for key, value in (
        ("train.lr", cfg.train.lr),
        ("train.schedule", cfg.train.schedule),
        ("model.dropout", cfg.model.dropout),
        ("train.batch_size", cfg.train.batch_size),
    ):
        assert config["run", key] == value, key
    sub = read_json(analysed / "subspace" / "summary.json")["config"]
    assert config["subspace", "rank"] == sub["rank"]
    assert config["subspace", "random_scale"] == sub["random_scale"]
    assert config["analysis", "tsne_perplexity"] == ctx.summary.config["tsne_perplexity"]
    assert ("shift", "severities") in config and ("landscape", "resolution") in config
    env = {r[0]: r[1] for r in tables["environment"].rows}
    assert env["modescape version"] and "package: torch" in env and "machine: cpu" in env
    assert env["git commit"]  # a commit hash, or "not recorded" outside a checkout
    timings = {(r[0], r[1]): r[2] for r in tables["timings"].rows}
    assert timings["training", "member 0"] > 0
    for study in ("subspace", "landscape", "shift"):
        assert timings[study, "total"] > 0, study
