"""`modescape compare`: two analysed runs side by side, read through the typed readers."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import cli

from modescape.errors import ModescapeError
from modescape.report.compare import compare_runs, run_labels
from modescape.store.files import read_json


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def compared(analysed, second_run, tmp_path_factory) -> Path:
    return compare_runs([analysed, second_run], tmp_path_factory.mktemp("compare") / "out")


def test_labels_tell_runs_apart(tmp_path):
    assert run_labels([Path("/x/a"), Path("/x/b")]) == ["a", "b"]
    assert run_labels([Path("/x/a/run"), Path("/y/b/run")]) == ["a/run", "b/run"]
    assert run_labels([Path("/x/run"), Path("/x/run")]) == ["run", "run (2)"]


def test_page_has_the_config_diff_the_numbers_and_the_charts(analysed, second_run, compared):
    out = compared.parent
    labels = [f"{analysed.parent.name}/run", f"{second_run.parent.name}/run"]
    differ = {r["setting"]: r for r in rows(out / "tables" / "settings_differ.csv")}
    assert {"seed", "members", "train.epochs"} <= set(differ)
    assert (differ["members"][labels[0]], differ["members"][labels[1]]) == ("3", "2")
    every = rows(out / "tables" / "settings.csv")
    assert len(every) > len(differ) and "train.lr" in {r["setting"] for r in every}
    glance = {r["quantity"]: r for r in rows(out / "tables" / "at_a_glance.csv")}
    for run, label in zip((analysed, second_run), labels):
        s = read_json(run / "analysis" / "summary.json")
        row = {k: v[label] for k, v in glance.items()}
        assert float(row["mean single accuracy"]) == pytest.approx(s["single"]["accuracy"], 1e-3)
        assert float(row["deep ensemble accuracy (all members)"]) == pytest.approx(
            s["ensemble"]["deep"]["accuracy"], 1e-3
        )
        dis = s["disagreement"]["across_members_mean"]
        assert float(row["disagreement across members"]) == pytest.approx(dis, 1e-3)
        assert float(row["cosine across members"]) == pytest.approx(
            s["cosine"]["across_members_mean"], rel=1e-3, abs=1e-6
        )
    # Study numbers where the run has the study, blank where it has not.
    shift = read_json(analysed / "shift" / "summary.json")
    acc = shift["by_severity"]["metrics"]["single"]["accuracy"][-1]
    key = "shift: single accuracy at the highest severity"
    assert (
        float(glance[key][labels[0]]) == pytest.approx(acc, 1e-3) and glance[key][labels[1]] == ""
    )
    # Every chart's CSV holds the numbers the runs wrote; data.json holds the same series.
    ens = rows(out / "figures" / "ensemble_accuracy.csv")
    for run, label in zip((analysed, second_run), labels):
        curves = [
            r
            for r in rows(run / "analysis" / "ensembles" / "curves.csv")
            if r["family"] == "deep" and r["metric"] == "accuracy"
        ]
        mine = [r for r in ens if r["run"] == label]
        assert [int(r["size"]) for r in mine] == [int(r["size"]) for r in curves]
        for a, b in zip(mine, curves):
            assert float(a["accuracy_mean"]) == pytest.approx(float(b["mean"]), 1e-3)
    data = json.loads((out / "data.json").read_text())
    assert [r["label"] for r in data["runs"]] == labels
    names = [f["name"] for f in data["figures"]]
    for name in ("ensemble_accuracy", "ensemble_nll", "training_acc", "subspace_plane",
                 "shift_accuracy"):  # fmt: skip
        assert name in names and (out / "figures" / f"{name}.csv").exists()
    # the report's shape: every figure lists its panels' charts
    assert all(len(f["charts"]) == 1 and "chart" not in f for f in data["figures"])
    first = data["figures"][0]["charts"][0]["series"][0]
    assert first["y"] == pytest.approx([float(r["accuracy_mean"]) for r in ens[: len(first["y"])]])
    page = compared.read_text()
    for title in ("Settings", "At a glance", "Ensembles", "Training curves", "Dataset shift"):
        assert f"<h2>{title} " in page
    assert 'id="fig-ensemble_accuracy"' in page and "Figure 1</a>" in page
    assert page.count("<script") == 1 and "http://" not in page and "https://" not in page


def test_run_names_are_html_escaped(analysed, second_run, tmp_path):
    evil = tmp_path / "<b>x&y"
    shutil.copytree(second_run, evil)
    page = compare_runs([analysed, evil], tmp_path / "out").read_text()
    assert "<b>" not in page and "&lt;b&gt;x&amp;y" in page


def test_bad_input_is_one_clear_error(analysed, tiny_run, tmp_path):
    with pytest.raises(ModescapeError, match="at least two runs, got 1"):
        compare_runs([analysed], tmp_path / "out")
    with pytest.raises(ModescapeError, match="not found"):
        compare_runs([analysed, tmp_path / "nope"], tmp_path / "out")
    with pytest.raises(ModescapeError, match="modescape analyze"):
        compare_runs([analysed, tiny_run], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_compare(analysed, second_run, tiny_run, tmp_path):
    code, _, err = cli("compare", str(analysed), str(second_run), "--out", str(tmp_path / "c"))
    assert code == 0 and (tmp_path / "c" / "index.html").exists()
    code, _, err = cli("compare", str(analysed), "--out", str(tmp_path / "d"))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == ["modescape: error: compare needs at least two runs, got 1"]
    code, _, err = cli("compare", str(analysed), str(tiny_run), "--out", str(tmp_path / "d"))
    assert code == 2 and "has not been analysed yet" in err and len(err.strip().splitlines()) == 1


def test_settings_diff_includes_study_settings(analysed, compared):
    """The analysed run has a subspace, shift and landscape study, the second run none: their
    settings are in the diff, blank for the run without them."""
    differ = {r["setting"]: r for r in rows(compared.parent / "tables" / "settings_differ.csv")}
    n_samples = read_json(analysed / "subspace" / "summary.json")["config"]["n_samples"]
    row = differ["subspace.n_samples"]
    assert {v for k, v in row.items() if k != "setting"} == {"", str(n_samples)}
    assert any(k.startswith("shift.") for k in differ)
    assert any(k.startswith("landscape.") for k in differ)


def test_no_run_is_ranked_most_accurate_across_different_data(analysed, second_run, monkeypatch):
    from modescape.report import compare
    from modescape.report.base import ReportContext
    from modescape.store.run import load_run

    ctxs = [ReportContext(load_run(p)) for p in (analysed, second_run)]
    same = compare._glance_section(ctxs, ["a", "b"]).reading[0]
    assert "is the most accurate" in same
    real = compare.glance_rows

    def other_data(ctx):
        rows = real(ctx)
        return rows | ({"dataset": "cifar10"} if ctx is ctxs[1] else {})

    monkeypatch.setattr(compare, "glance_rows", other_data)
    text = compare._glance_section(ctxs, ["a", "b"]).reading[0]
    assert "most accurate" not in text and "not comparable" in text
    assert "a: mnist1d" in text and "b: cifar10" in text
