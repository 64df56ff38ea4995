"""Reader for CIFAR-10-C (Hendrycks & Dietterich 2019) in its official layout.

A folder holds `<corruption>.npy`, uint8 [5·n, 32, 32, 3] with severities 1..5 stacked in order
(n = 10,000 in the official release), and `labels.npy`, integer [5·n] (the test labels repeated
once per severity). Files are memory-mapped with `allow_pickle=False`, so loading one severity
reads only its n rows. The per-severity count is taken from the file's length, which lets tests
(and subsets) use small folders in the same layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modescape.errors import ModescapeError, choice_error
from modescape.store.files import load_npy

CIFAR10C_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform",
    "pixelate", "jpeg_compression",
    # the four extras, not part of the 15-corruption benchmark average
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)  # fmt: skip
_SEVERITIES = 5
_NUM_CLASSES = 10


def available_corruptions(root: str | Path) -> tuple[str, ...]:
    """The corruptions whose `<name>.npy` exists in `root`, in CIFAR10C_CORRUPTIONS order."""
    root = Path(root)
    if not root.is_dir():
        raise ModescapeError(f"CIFAR-10-C folder {root} does not exist")
    return tuple(c for c in CIFAR10C_CORRUPTIONS if (root / f"{c}.npy").is_file())


def load_cifar10c(
    root: str | Path, corruption: str, severity: int
) -> tuple[np.ndarray, np.ndarray]:
    """One corruption at one severity (1..5): x uint8 [n, 32, 32, 3], y int64 [n] (n = 10,000)."""
    if corruption not in CIFAR10C_CORRUPTIONS:
        raise choice_error("CIFAR-10-C corruption", corruption, CIFAR10C_CORRUPTIONS)
    if not (isinstance(severity, int | np.integer) and 1 <= severity <= _SEVERITIES):
        raise ModescapeError(f"CIFAR-10-C severity must be an integer 1..5, got {severity!r}")
    root = Path(root)
    images_path, labels_path = root / f"{corruption}.npy", root / "labels.npy"
    images = load_npy(images_path, mmap=True)
    rows = images.shape[0] if images.ndim else 0
    if (
        images.ndim != 4
        or images.shape[1:] != (32, 32, 3)
        or images.dtype != np.uint8
        or rows == 0
        or rows % _SEVERITIES
    ):
        raise ModescapeError(
            f"{images_path}: expected uint8 images of shape (5·n, 32, 32, 3), n per severity "
            f"(official: (50000, 32, 32, 3)); got {images.dtype} {images.shape}"
        )
    labels = load_npy(labels_path, mmap=True)
    if labels.shape != (rows,) or labels.dtype.kind not in "iu":
        raise ModescapeError(
            f"{labels_path}: expected integer labels of shape ({rows},) to match {images_path}; "
            f"got {labels.dtype} {labels.shape}"
        )
    n = rows // _SEVERITIES
    blocks = np.asarray(labels).reshape(_SEVERITIES, n)  # 5·n small integers: cheap to check all
    if blocks.min() < 0 or blocks.max() >= _NUM_CLASSES:
        raise ModescapeError(
            f"{labels_path}: labels must lie in 0..{_NUM_CLASSES - 1}, "
            f"found {blocks.min()}..{blocks.max()}"
        )
    if not (blocks == blocks[0]).all():
        raise ModescapeError(
            f"{labels_path}: the {_SEVERITIES} severity blocks of {n} labels differ; "
            "CIFAR-10-C repeats the test labels once per severity"
        )
    sl = slice((severity - 1) * n, severity * n)
    return np.array(images[sl]), blocks[severity - 1].astype(np.int64)
