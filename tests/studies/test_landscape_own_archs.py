"""`modescape landscape` on small, faithful copies of timm's ConvNeXt and of MobileNet v1 / v2
(timm itself needs torchvision): two members imported from checkpoints, member 1 aligned onto
member 0 with its function kept (max |Δp| <= 1e-4), from the command line."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from tests.conftest import cli
from tests.training.test_import_pipelines import _two_class_folder

FACTORIES = "tests.models.test_autospec_blocks:"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    _two_class_folder(root)
    return root


def _imported(factory, images, tmp_path):
    """A two-member run of `factory` imported from checkpoints (epochs 0 and 1)."""
    from tests.models import test_autospec_blocks as blocks

    src = tmp_path / "ckpt"
    for member in (0, 1):  # independent initialisations; epoch 1 a small step away
        torch.manual_seed(member)
        model = getattr(blocks, factory)((3, 8, 8), 2)
        for epoch in (0, 1):
            (src / f"seed{member}").mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), src / f"seed{member}" / f"ep{epoch}.pt")
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.01 * torch.randn_like(p))
    run = tmp_path / "run"
    code, _, err = cli("import", str(src), "--out", str(run), "--arch", FACTORIES + factory,
                       "--data", "folder", "--root", str(images),
                       "--set", "data.scaling=unit")  # fmt: skip
    assert code == 0, err
    return run


SMALL = ("--grid", "3", "--path-points", "3", "--max-examples", "20")


@pytest.mark.parametrize("factory", ["convnext", "mobilenet_v1", "mobilenet_v2"])
def test_landscape_aligns_convnext_and_mobilenet(factory, images, tmp_path):
    run = _imported(factory, images, tmp_path)
    code, _, err = cli("landscape", str(run), *SMALL)
    assert code == 0, err
    alignment = json.loads((run / "landscape" / "summary.json").read_text())["alignment"]
    assert alignment["max_abs_prob_diff"] <= 1e-4
    assert alignment["spec"] == "automatic" and alignment["method"] == "weights"
    # units were matched: member 1 moved closer to member 0 (identity is the starting point)
    assert alignment["cosine_after"] > alignment["cosine_before"]


def test_spec_file_and_activation_matching_from_the_command_line(images, tmp_path):
    """`align-spec` writes the run's spec; a wrong edit of it is refused before anything is
    written; the file as written aligns a DenseNet-like run by activation matching, its sha256
    and the method recorded."""
    run = _imported("densenet", images, tmp_path)
    spec = tmp_path / "spec.json"
    code, _, err = cli("align-spec", str(run), "--out", str(spec))
    assert code == 0, err
    doc = json.loads(spec.read_text())
    assert doc["concatenations"]  # the dense layers' cat splits the permutation
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**doc, "permutations": {**doc["permutations"], "P0": 7}}))
    code, _, err = cli("landscape", str(run), *SMALL, "--align-spec", str(bad))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--align-spec {bad}: " in err and "'P0' has 7 units, not 8" in err
    assert not (run / "landscape").exists()
    code, _, err = cli("landscape", str(run), *SMALL, "--align-spec", str(spec),
                       "--align-method", "activations")  # fmt: skip
    assert code == 0, err
    alignment = json.loads((run / "landscape" / "summary.json").read_text())["alignment"]
    assert alignment["method"] == "activations" and alignment["spec"] == str(spec)
    assert alignment["spec_sha256"] == hashlib.sha256(spec.read_bytes()).hexdigest()
    assert alignment["max_abs_prob_diff"] <= 1e-4
    assert alignment["cosine_after"] > alignment["cosine_before"]
