"""Issue 13's done-when: a network defined outside the package gets the whole toolkit.

`examples/tiny_factory.py` (Conv + BatchNorm, a residual, Linear + LayerNorm) is trained as a
3-member run through `modescape run --arch examples.tiny_factory:build`; every study and the
report complete on it, and weight matching on two of its members keeps the function.
"""

from __future__ import annotations

import json

import pytest
import torch

from modescape.analysis.weightspace import select_parameter_names
from modescape.models.alignment import align_verified
from modescape.store.run import load_run
from tests.conftest import ROOT, cli

ARCH = "examples.tiny_factory:build"


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("own") / "run"
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(ROOT))  # the factory lives beside the package, not inside it
    try:
        code, _, err = cli(
            "-q", "run", "--arch", ARCH, "--members", "3", "--epochs", "3", "--out", str(out),
            "--set", "data.mnist1d_samples=400", "--set", "train.batch_size=64",
        )  # fmt: skip
    finally:
        mp.undo()
    assert code == 0, err
    return out


@pytest.mark.slow
def test_run_studies_and_report_complete(own_run):
    run = load_run(own_run)
    assert run.finished_members() == [0, 1, 2]
    for study in ("analysis", "subspace", "landscape", "shift"):
        assert (own_run / study / "summary.json").is_file(), study
    assert (own_run / "report" / "index.html").stat().st_size > 1000
    planes = run.landscape.planes
    assert planes and all(p.bn_policy not in ("none", "") for p in planes)  # BatchNorm detected


@pytest.mark.slow
def test_manifest_records_where_the_network_came_from(own_run):
    manifest = json.loads((own_run / "manifest.json").read_text())
    arch = manifest["arch"]
    assert arch["arch"] == ARCH and arch["source"] == "import"
    assert arch["factory"] == "examples.tiny_factory:build"
    assert len(arch["sha256"]) == 64
    assert not load_run(own_run).verify()


@pytest.mark.slow
def test_kernels_bn_selection_covers_layernorm(own_run):
    model = load_run(own_run).build_model()
    names = select_parameter_names(model, "kernels_bn")
    assert "ln.weight" in names and "bn1.weight" in names
    assert "ln.bias" not in names and "fc.bias" not in names
    assert "ln.weight" not in select_parameter_names(model, "no_bn_bias")


@pytest.mark.slow
def test_alignment_on_own_network_keeps_the_function(own_run):
    run = load_run(own_run)
    a, b = run.state_dict(0), run.state_dict(1)
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(16, *run.data_summary.in_shape, generator=gen)
    result = align_verified(a, b, spec="auto", model=run.build_model(), probe=probe)
    assert result.max_abs_prob_diff < 1e-4
    moved = sum(int((p != torch.arange(len(p))).any()) for p in result.perms.values())
    assert moved > 0  # independent members: weight matching permutes something
