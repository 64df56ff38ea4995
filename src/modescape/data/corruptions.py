"""Dataset-shift corruptions: the CIFAR-10-C image corruptions and 1-D analogues for MNIST-1D.

Images follow Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations": the maths and the five CIFAR severity parameters of their
`make_cifar_c.py`, re-implemented with NumPy/SciPy/Pillow only (their skimage, OpenCV and
ImageMagick calls are replaced by the same formulas). Deliberate details of the original kept:

- results are clipped to [0, 255] and truncated to uint8 (the original's `np.uint8(...)` cast),
  with a 1e-6 guard so that a value equal to an integer up to float rounding keeps its level;
- glass blur's pixel "swap" copies rather than swaps (a tuple swap of NumPy views), which is what
  the published CIFAR-10-C data contain;
- wibble² in fog's plasma fractal, the one-sided Gaussian kernel of ImageMagick's motion blur.

Left out: frost (needs the authors' frost photographs) and spatter (built on OpenCV's Canny edge
detector, distance transform and histogram equalisation).

Image size: spatial parameters are in pixels for 32×32 images and are multiplied by
max(1, min(H, W) / 32) (blur sigmas and radii, motion-blur lengths); zoom, pixelate, fog and the
elastic displacements are relative to the image size already. At 32×32 every parameter is the
published one. Smaller images keep the published pixel values: shrinking them made Gaussian and
defocus blur exact no-ops on 8×8 images (a sigma of 0.1 px has no weight on a neighbour), and a
no-op must not enter a per-severity average. Every corruption changes an 8×8 colour image at
every severity (tested).
Grayscale (C = 1): brightness adds to the value directly (what HSV does to a gray pixel), snow uses
the image as its own luminance, and saturate is the identity (a gray image has no saturation):
`applicable_corruptions(channels)` leaves it out, and that is the list a sweep should use.

Randomness: example i of a call gets its own generator, `derive_seed(seed, "corruption", name,
start + i)`, so an example's result depends on its index in the whole data set (pass `start` for
a chunk) and not on the chunk it was processed in. The same draws are reused at every severity
(common random numbers): severities differ by their parameters only, not by their noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from modescape.data.image_corruptions import IMAGE_FNS, IMAGE_PARAMS, Rngs, draw
from modescape.errors import ModescapeError, choice_error
from modescape.seeding import derive_seed, numpy_rng

IMAGE_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression", "speckle_noise", "gaussian_blur", "saturate",
)  # fmt: skip
SIGNAL_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "impulse_noise", "gaussian_blur", "scaling", "translation", "time_warp",
    "segment_dropout",
)  # fmt: skip

# 1-D parameters, for standardised signals (unit variance); lengths are fractions of L.
SIGNAL_PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.1, 0.2, 0.35, 0.5, 0.75),  # noise std
    "impulse_noise": (0.025, 0.05, 0.1, 0.15, 0.2),  # fraction of samples hit by a ±3 spike
    "gaussian_blur": (0.0125, 0.025, 0.0375, 0.05, 0.075),  # sigma / L (0.5..3 samples at 40)
    "scaling": (0.8, 0.6, 0.45, 0.3, 0.15),  # amplitude gain
    "translation": (0.05, 0.1, 0.15, 0.2, 0.25),  # shift / L, zero-filled (2..10 at 40)
    "time_warp": (0.025, 0.05, 0.075, 0.1, 0.15),  # max time displacement / L (1..6 at 40)
    "segment_dropout": (0.1, 0.2, 0.3, 0.4, 0.5),  # zeroed segment length / L (4..20 at 40)
}
_SPIKE = 3.0
_CHUNK = 512  # images per internal chunk: bounds float64 temporaries to a few tens of MB


def corrupt(x: np.ndarray, name: str, severity: int, seed: int, start: int = 0) -> np.ndarray:
    """Corrupt a batch at one severity (1..5).

    x: uint8 images [N, H, W, C] (C = 1 or 3), or float 1-D signals [N, L] or [N, 1, L].
    Returns an array of the same shape and dtype. `start` is the index of x[0] in the whole data
    set: `corrupt(x[a:b], ..., start=a)` equals `corrupt(x, ...)[a:b]`.
    """
    if not (isinstance(severity, int | np.integer) and 1 <= severity <= 5):
        raise ModescapeError(f"corruption severity must be an integer 1..5, got {severity!r}")
    x = np.asarray(x)
    if x.dtype == np.uint8 and x.ndim == 4 and x.shape[3] in (1, 3):
        if name not in IMAGE_CORRUPTIONS:
            raise choice_error("image corruption", name, IMAGE_CORRUPTIONS)
        fn, c = IMAGE_FNS[name], IMAGE_PARAMS[name][severity - 1]
        out = np.empty_like(x)
        for a in range(0, len(x), _CHUNK):
            part = x[a : a + _CHUNK]
            y = fn(part, c, _rngs(seed, name, start + a, len(part)))
            if y.dtype != np.uint8:  # clip, then truncate like the original's np.uint8 cast
                y = np.floor(np.clip(y, 0, 255) + 1e-6)
            out[a : a + _CHUNK] = y
        return out
    if x.dtype.kind == "f" and (x.ndim == 2 or (x.ndim == 3 and x.shape[1] == 1)):
        if name not in SIGNAL_CORRUPTIONS:
            raise choice_error("signal corruption", name, SIGNAL_CORRUPTIONS)
        flat = x.reshape(len(x), -1).astype(np.float64)
        c = SIGNAL_PARAMS[name][severity - 1]
        y = _SIGNAL_FNS[name](flat, c, _rngs(seed, name, start, len(x)))
        return y.astype(x.dtype).reshape(x.shape)
    raise ModescapeError(
        "corrupt() takes uint8 images [N, H, W, C] with C = 1 or 3, or float signals [N, L] or "
        f"[N, 1, L]; got {x.dtype} {x.shape}"
    )


def applicable_corruptions(channels: int) -> tuple[str, ...]:
    """The image corruptions that change an image with `channels` channels (1 or 3): all of
    IMAGE_CORRUPTIONS, less saturate for grayscale (an identity there)."""
    if channels not in (1, 3):
        raise ModescapeError(f"images have 1 or 3 channels, got {channels}")
    return tuple(n for n in IMAGE_CORRUPTIONS if channels == 3 or n != "saturate")


def corruption_strip(x_one_example: np.ndarray, names: Sequence[str], seed: int) -> np.ndarray:
    """Clean example and its five severities for each name: [len(names), 6, *x.shape]."""
    x = np.asarray(x_one_example)[None]
    rows = [[x[0]] + [corrupt(x, n, s, seed)[0] for s in range(1, 6)] for n in names]
    return np.stack([np.stack(r) for r in rows])


def _rngs(seed: int, name: str, start: int, n: int) -> Rngs:
    return [numpy_rng(derive_seed(seed, "corruption", name, start + i)) for i in range(n)]


# ---- 1-D signals [n, L], float64 inside ----------------------------------------------------------


def _sig_gaussian_noise(s, c, rngs):
    return s + c * draw(rngs, lambda g: g.standard_normal(s.shape[1]))


def _sig_impulse_noise(s, c, rngs):
    # Hits where a uniform draw is below c: the spikes at one severity are a subset of the next.
    r = draw(rngs, lambda g: g.random((2, s.shape[1])))
    return s + np.where(r[:, 0] < c, np.where(r[:, 1] < 0.5, -_SPIKE, _SPIKE), 0.0)


def _sig_gaussian_blur(s, c, rngs):
    return ndimage.gaussian_filter1d(s, c * s.shape[1], axis=1, mode="nearest")


def _sig_scaling(s, c, rngs):
    return s * c


def _sig_translation(s, c, rngs):
    L = s.shape[1]
    k = round(c * L)
    sign = draw(rngs, lambda g: g.choice([-1, 1]))
    src = np.arange(L)[None, :] - sign[:, None] * k
    return np.where((src >= 0) & (src < L), np.take_along_axis(s, np.clip(src, 0, L - 1), 1), 0.0)


def _sig_time_warp(s, c, rngs):
    # Read sample t from t + c·L·d(t), d a smooth random curve with max |d| = 1.
    L = s.shape[1]
    d = ndimage.gaussian_filter1d(draw(rngs, lambda g: g.standard_normal(L)), L / 8, axis=1)
    d /= np.abs(d).max(axis=1, keepdims=True)
    t = np.clip(np.arange(L) + c * L * d, 0, L - 1)
    return np.stack([np.interp(ti, np.arange(L), si) for ti, si in zip(t, s)])


def _sig_segment_dropout(s, c, rngs):
    # Zero a segment of length c·L around a random centre; segments grow with severity, nested.
    L = s.shape[1]
    centre = draw(rngs, lambda g: g.uniform(0, L))[:, None]
    t = np.arange(L)[None, :] + 0.5
    return np.where(np.abs(t - centre) < c * L / 2, 0.0, s)


_SIGNAL_FNS: dict[str, Callable[[np.ndarray, float, Rngs], np.ndarray]] = {
    "gaussian_noise": _sig_gaussian_noise, "impulse_noise": _sig_impulse_noise,
    "gaussian_blur": _sig_gaussian_blur, "scaling": _sig_scaling,
    "translation": _sig_translation, "time_warp": _sig_time_warp,
    "segment_dropout": _sig_segment_dropout,
}  # fmt: skip
