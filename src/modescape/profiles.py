"""Named profiles: the sizes of a whole `modescape run`, training and every study, in one word.

The paper's settings are the default (`paper`: nothing changed). `quick` makes a run on real
data finish in minutes on a laptop CPU: seeded, stratified subsets of the data (2,000 training
and 1,000 test examples; `data.subsets`), 3 members of 10 epochs, and smaller studies (fewer
t-SNE examples, subspace samples and calibration probes, plane points, corruption severities
and examples, a shorter connector with fewer points). Every
number it changes is listed in `PROFILES` and recorded where it takes effect (the run's
config.json, each study's summary.json), and the run records the profile's name
(`RunConfig.profile`), which the report states. Explicit settings (`--set`, `--members`,
`--epochs`) win over the profile's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from modescape.config import RunConfig
from modescape.errors import ModescapeError, check_choice
from modescape.options import Profile


@dataclass(frozen=True)
class ProfileSpec:
    """`config`: `--set`-style overrides of the run config; `studies`: per study name (its
    results folder), settings fields replaced in what `modescape run` would use."""

    description: str
    config: tuple[str, ...] = ()
    studies: dict[str, dict[str, Any]] = field(default_factory=dict)


PROFILES: dict[str, ProfileSpec] = {
    Profile.PAPER: ProfileSpec("the paper's settings"),
    Profile.QUICK: ProfileSpec(
        "minutes on a laptop CPU: stratified subsets of 2,000 training and 1,000 test "
        "examples, 3 members x 10 epochs, smaller studies (2 subspace samplers, a 9x9 plane, "
        "3 corruptions at 3 severities, a 6-epoch connector on 21 points)",
        config=(
            "data.train_size=2000",
            "data.test_size=1000",
            "members=3",
            "train.epochs=10",
        ),
        studies={
            # late windows of 5 snapshots: the later half of 10 epochs (no clamping warning)
            "analysis": {
                "tsne_examples": 256,
                "tsne_iter": 500,
                "max_subsets": 20,
                "late": 5,
                "weight_average": 5,
            },
            # calibration dominates the subspace study: two samplers, few probes and steps, as
            # many fresh check samples as samples
            "subspace": {
                "methods": ("random", "dropout"),
                "n_samples": 4,
                "calibration_probes": 1,
                "calibration_steps": 6,
                "calibration_check": 4,
            },
            "landscape": {
                "resolution": 9,
                "max_examples": 500,
                "n_path_points": 9,
                "weight_average": 5,
            },
            # three corruptions that exist for images and 1-D signals alike
            "shift": {
                "corruptions": ("gaussian_noise", "impulse_noise", "gaussian_blur"),
                "severities": (1, 3, 5),
                "max_examples": 500,
                "subspace_samples": 4,
                "late": 5,
                "weight_average": 5,
            },
            # a shorter curve, fewer points along it, a smaller plane, two one-epoch FGE cycles
            "connect": {
                "epochs": 6,
                "points": 21,
                "train_examples": 1000,
                "max_examples": 500,
                "plane_resolution": 9,
                "fge_cycles": 2,
                "fge_cycle_epochs": 1,
            },
        },
    ),
}


def apply_profile(config: RunConfig, name: str, overrides: list[str] | None = None) -> RunConfig:
    """`config` sized by profile `name`, then `overrides` (`--set` strings: they win), with the
    profile's name recorded."""
    name = check_choice("profile", name, Profile)
    sets = [*PROFILES[name].config, *(overrides or [])]
    out = config.with_overrides(sets) if sets else config
    return dataclasses.replace(out, profile="" if name == Profile.PAPER else name)


def study_settings(name: str, study: str, settings: Any) -> Any:
    """`settings` (a study's settings dataclass) with profile `name`'s fields for `study`."""
    if not name:
        return settings
    changes = PROFILES[check_choice("profile", name, Profile)].studies.get(study, {})
    known = {f.name for f in dataclasses.fields(settings)}
    unknown = sorted(set(changes) - known)
    if unknown:  # a profile naming a field its study lost: a bug, said plainly
        raise ModescapeError(f"profile {name!r} sets unknown {study} settings {unknown}")
    return dataclasses.replace(settings, **changes) if changes else settings


def describe(name: str) -> str:
    """One sentence for the report: the profile and what it changed."""
    if not name:
        return PROFILES[Profile.PAPER].description
    spec = PROFILES[check_choice("profile", name, Profile)]
    return f"profile {name!r}: {spec.description}"
