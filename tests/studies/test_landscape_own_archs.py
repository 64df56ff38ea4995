"""`modescape landscape` on small, faithful copies of timm's ConvNeXt and of MobileNet v1 / v2
(timm itself needs torchvision): two members imported from checkpoints, member 1 aligned onto
member 0 with its function kept (max |Δp| <= 1e-4), from the command line."""

from __future__ import annotations

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


@pytest.mark.parametrize("factory", ["convnext", "mobilenet_v1", "mobilenet_v2"])
def test_landscape_aligns_convnext_and_mobilenet(factory, images, tmp_path):
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
    code, _, err = cli("landscape", str(run), "--grid", "3", "--path-points", "3",
                         "--max-examples", "20")  # fmt: skip
    assert code == 0, err
    alignment = json.loads((run / "landscape" / "summary.json").read_text())["alignment"]
    assert alignment["max_abs_prob_diff"] <= 1e-4
    # units were matched: member 1 moved closer to member 0 (identity is the starting point)
    assert alignment["cosine_after"] > alignment["cosine_before"]
