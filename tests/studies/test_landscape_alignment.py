"""A network the alignment cannot handle is refused before any plane is computed, with the
flag that skips the alignment; with it, the study runs."""

from __future__ import annotations

import pytest
from torch import nn

from modescape.errors import ModescapeError
from modescape.models import registry
from modescape.studies.landscape import LandscapeConfig, run_landscape
from modescape.training.trainer import train
from tests.conftest import tiny_config


class _Branchy(nn.Module):
    """A data-dependent branch: torch.fx cannot trace it, so no automatic spec exists."""

    def __init__(self, in_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(in_shape[0] * in_shape[1], num_classes)

    def forward(self, x):
        y = self.fc(x.flatten(1))
        return y if x.sum() > -1e9 else -y


@pytest.fixture
def branchy_run(tmp_path):
    registry.register_arch("own-branchy", _Branchy, replace=True)
    try:
        cfg = tiny_config(members=2, epochs=1, **{"model.arch": "own-branchy",
                                                  "data.mnist1d_samples": 400})  # fmt: skip
        yield train(cfg, tmp_path / "run").path
    finally:
        registry.unregister_arch("own-branchy")


def test_unalignable_network_is_refused_before_any_plane(branchy_run, monkeypatch):
    from modescape.studies import landscape

    planes = []
    monkeypatch.setattr(landscape, "_plane", lambda *a: planes.append(a) or pytest.fail("plane"))
    small = dict(resolution=3, max_examples=40, n_path_points=3)
    with pytest.raises(ModescapeError, match=r"torch\.fx cannot trace .*--no-align.*--align-spec"):
        run_landscape(branchy_run, LandscapeConfig(**small))
    assert planes == [] and not (branchy_run / "landscape" / "summary.json").exists()
    monkeypatch.undo()
    summary = run_landscape(branchy_run, LandscapeConfig(align=False, **small))
    assert summary.alignment is None and len(summary.planes) >= 1
