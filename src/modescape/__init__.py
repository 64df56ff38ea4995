"""modescape: why deep ensembles work, measured.

A reproduction of "Deep Ensembles: A Loss Landscape Perspective" (Fort, Hu & Lakshminarayanan,
2019). The public API is what `__all__` lists; everything is importable as `ms.<name>`:

    import modescape as ms

    run = ms.train(ms.preset(members=3, epochs=10), "runs/mine")  # a ms.Run
    summary = ms.analyze_run(run.path)
    D = ms.disagreement_matrix(run.final_predictions("test"))     # [members, members]

Names are resolved on first use (PEP 562), so `import modescape` stays cheap: it imports neither
torch nor any study until one of its names is touched.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Tensors of 2 MB and more (a CIFAR-10 convnet's activations) on transparent huge pages: a fresh
# allocation then faults in 512x fewer pages. Without it a MediumCNN (paper) bf16 training step
# spent about a fifth of its CPU time in page faults, zero-filling freshly mapped memory
# (benchmarks/README.md). PyTorch reads the variable at its first large allocation, so it takes
# effect when modescape is imported before any big tensor exists; a value already set is kept.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# name -> module that defines it. Grouped by layer, from configuration to the report.
_EXPORTS: dict[str, str] = {
    # configuration and errors
    "ModescapeError": "modescape.errors",
    "RunConfig": "modescape.config",
    "DataConfig": "modescape.config",
    "ModelConfig": "modescape.config",
    "TrainConfig": "modescape.config",
    "AugmentConfig": "modescape.config",
    "preset": "modescape.config",
    "recipe": "modescape.config",
    "load_config": "modescape.config",
    "derive_seed": "modescape.seeding",
    # training and run directories
    "train": "modescape.training.trainer",
    "train_run": "modescape.pipeline",
    "run_pipeline": "modescape.pipeline",
    "Run": "modescape.store.run",
    "load_run": "modescape.store.run",
    "verify_run": "modescape.store.summary",
    "build_model": "modescape.models.registry",
    # your own model and checkpoints
    "register_arch": "modescape.models.registry",
    "register_transform": "modescape.data.transforms",
    "import_checkpoints": "modescape.training.importer",
    # spawned children (instability analysis)
    "spawn": "modescape.training.spawn",
    "InstabilityConfig": "modescape.studies.spawn_measures",
    "run_instability": "modescape.studies.spawn_measures",
    "export_run": "modescape.training.tracking",
    # pure analyses of arrays and weights
    "accuracy": "modescape.analysis.metrics",
    "nll": "modescape.analysis.metrics",
    "brier": "modescape.analysis.metrics",
    "ece": "modescape.analysis.metrics",
    "evaluate": "modescape.analysis.metrics",
    "disagreement_matrix": "modescape.analysis.functionspace",
    "agreement_with": "modescape.analysis.functionspace",
    "js_diversity": "modescape.analysis.functionspace",
    "ensemble_curve": "modescape.analysis.ensembles",
    "EnsembleCurve": "modescape.analysis.ensembles",
    "select_parameter_names": "modescape.analysis.weightspace",
    "stack_flat": "modescape.analysis.weightspace",
    "cosine_matrix": "modescape.analysis.weightspace",
    "distance_matrix": "modescape.analysis.weightspace",
    "average_state_dicts": "modescape.analysis.weightspace",
    "embed_trajectories": "modescape.analysis.trajectories",
    "SubspaceConfig": "modescape.analysis.subspace",
    "SwagConfig": "modescape.analysis.swag",
    "evaluate_plane": "modescape.analysis.landscape",
    "PlaneResult": "modescape.analysis.landscape",
    "PlaneOptions": "modescape.analysis.landscape",
    "interpolate_path": "modescape.analysis.landscape",
    "PathResult": "modescape.analysis.landscape",
    "align": "modescape.models.alignment",
    # studies of a run directory, and the report
    "AnalysisConfig": "modescape.studies.analysis",
    "analyze_run": "modescape.studies.analysis",
    "run_subspace": "modescape.studies.subspace",
    "LandscapeConfig": "modescape.studies.landscape",
    "run_landscape": "modescape.studies.landscape",
    "ConnectConfig": "modescape.studies.connect",
    "fit_curve": "modescape.studies.connect",
    "ShiftConfig": "modescape.studies.shift",
    "run_shift": "modescape.studies.shift",
    "run_swag": "modescape.studies.swag",
    "write_report": "modescape.report.html",
    "compare_runs": "modescape.report.compare",
}

__all__ = [  # the public API; tests/test_api.py checks it matches _EXPORTS
    "AnalysisConfig",
    "AugmentConfig",
    "ConnectConfig",
    "DataConfig",
    "EnsembleCurve",
    "InstabilityConfig",
    "LandscapeConfig",
    "ModelConfig",
    "ModescapeError",
    "PathResult",
    "PlaneOptions",
    "PlaneResult",
    "Run",
    "RunConfig",
    "ShiftConfig",
    "SubspaceConfig",
    "SwagConfig",
    "TrainConfig",
    "__version__",
    "accuracy",
    "agreement_with",
    "align",
    "analyze_run",
    "average_state_dicts",
    "brier",
    "build_model",
    "compare_runs",
    "cosine_matrix",
    "derive_seed",
    "disagreement_matrix",
    "distance_matrix",
    "ece",
    "embed_trajectories",
    "ensemble_curve",
    "evaluate",
    "evaluate_plane",
    "export_run",
    "fit_curve",
    "import_checkpoints",
    "interpolate_path",
    "js_diversity",
    "load_config",
    "load_run",
    "nll",
    "preset",
    "recipe",
    "register_arch",
    "register_transform",
    "run_instability",
    "run_landscape",
    "run_pipeline",
    "run_shift",
    "run_subspace",
    "run_swag",
    "select_parameter_names",
    "spawn",
    "stack_flat",
    "train",
    "train_run",
    "verify_run",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'modescape' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what static checkers and IDEs see; never executed
    from modescape.analysis.ensembles import EnsembleCurve, ensemble_curve
    from modescape.analysis.functionspace import agreement_with, disagreement_matrix, js_diversity
    from modescape.analysis.landscape import (
        PathResult,
        PlaneOptions,
        PlaneResult,
        evaluate_plane,
        interpolate_path,
    )
    from modescape.analysis.metrics import accuracy, brier, ece, evaluate, nll
    from modescape.analysis.subspace import SubspaceConfig
    from modescape.analysis.swag import SwagConfig
    from modescape.analysis.trajectories import embed_trajectories
    from modescape.analysis.weightspace import (
        average_state_dicts,
        cosine_matrix,
        distance_matrix,
        select_parameter_names,
        stack_flat,
    )
    from modescape.config import (
        AugmentConfig,
        DataConfig,
        ModelConfig,
        RunConfig,
        TrainConfig,
        load_config,
        preset,
        recipe,
    )
    from modescape.data.transforms import register_transform
    from modescape.errors import ModescapeError
    from modescape.models.alignment import align
    from modescape.models.registry import build_model, register_arch
    from modescape.pipeline import run_pipeline, train_run
    from modescape.report.compare import compare_runs
    from modescape.report.html import write_report
    from modescape.seeding import derive_seed
    from modescape.store.run import Run, load_run
    from modescape.store.summary import verify_run
    from modescape.studies.analysis import AnalysisConfig, analyze_run
    from modescape.studies.connect import ConnectConfig, fit_curve
    from modescape.studies.landscape import LandscapeConfig, run_landscape
    from modescape.studies.shift import ShiftConfig, run_shift
    from modescape.studies.subspace import run_subspace
    from modescape.studies.swag import run_swag
    from modescape.training.importer import import_checkpoints
    from modescape.training.tracking import export_run
    from modescape.training.trainer import train
