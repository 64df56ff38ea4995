"""The CIFAR-10-C image corruptions (Hendrycks & Dietterich 2019), one function each.

Each takes uint8 images [n, H, W, C], the severity's parameter and one generator per image, and
returns float pixels in [0, 255] (or uint8); `corruptions.corrupt` is the public entry point and
documents the conventions (sizes, grayscale, seeding, the original's deliberate details).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from scipy import ndimage

Rngs = list[np.random.Generator]

# Severity 1..5 parameters, as in make_cifar_c.py (pixel units at 32×32).
IMAGE_PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),  # ends of np.arange(1, end, 0.01)
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    # (alpha, sigma, affine) as fractions of the image size (IMSIZE · fraction in the original)
    "elastic_transform": (
        (0, 0, 0.08),
        (0.05, 0.2, 0.07),
        (0.08, 0.06, 0.06),
        (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03),
    ),
}


def draw(rngs: Rngs, fn: Callable[[np.random.Generator], np.ndarray]) -> np.ndarray:
    """One draw per example, each from that example's own generator: [n, *draw shape]."""
    return np.stack([fn(g) for g in rngs])


def _unit(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) / 255.0


def _scale(x: np.ndarray) -> float:
    # Never below 1: published pixel sizes are the smallest that still blur a pixel measurably.
    return max(1.0, min(x.shape[1], x.shape[2]) / 32.0)


# ---- noise ------------------------------------------------------------------------------------


def _gaussian_noise(x, c, rngs):
    z = draw(rngs, lambda g: g.standard_normal(x.shape[1:]))
    return np.clip(_unit(x) + c * z, 0, 1) * 255


def _shot_noise(x, c, rngs):
    u = _unit(x)
    return np.clip(np.stack([g.poisson(ui * c) for g, ui in zip(rngs, u)]) / c, 0, 1) * 255


def _impulse_noise(x, c, rngs):
    # skimage random_noise(mode="s&p", amount=c): each value (per channel) is hit with
    # probability c, and a hit value becomes 1 or 0 with equal probability.
    r = draw(rngs, lambda g: g.random((2, *x.shape[1:])))
    return np.where(r[:, 0] < c, (r[:, 1] < 0.5).astype(np.float64), _unit(x)) * 255


def _speckle_noise(x, c, rngs):
    u = _unit(x)
    z = draw(rngs, lambda g: g.standard_normal(x.shape[1:]))
    return np.clip(u + u * c * z, 0, 1) * 255


# ---- blurs ------------------------------------------------------------------------------------


def _gauss2d(u: np.ndarray, sigma: float) -> np.ndarray:
    # skimage.filters.gaussian defaults: mode "nearest", truncate 4, channels not blurred
    return ndimage.gaussian_filter(u, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0)


def _gaussian_blur(x, c, rngs):
    return np.clip(_gauss2d(_unit(x), c * _scale(x)), 0, 1) * 255


def _glass_blur(x, c, rngs):
    sigma, iterations = c[0] * _scale(x), c[2]
    n, H, W, _ = x.shape
    y = np.floor(_gauss2d(_unit(x), sigma) * 255 + 1e-6).astype(np.uint8)
    # The original visits (h, w) for h, w = size-1 .. 2 in descending order and "swaps" with
    # (h + dy, w + dx), dx, dy ∈ {-1, 0}. The swap of two NumPy views only copies the neighbour
    # in, and a neighbour at (h - 1 or h, w - 1 or w) has not been visited yet, so one pass is
    # exactly a gather from the image before the pass.
    rows, cols = np.arange(2, H)[:, None], np.arange(2, W)[None, :]
    # The original draws (dx, dy) per pixel in visiting order; any fixed order is equivalent.
    d = draw(rngs, lambda g: g.integers(-1, 0, size=(iterations, 2, H - 2, W - 2), endpoint=True))
    idx = np.arange(n)[:, None, None]
    for it in range(iterations):
        y[:, 2:, 2:] = y[idx, rows + d[:, it, 1], cols + d[:, it, 0]]
    return np.clip(_gauss2d(y / 255.0, sigma), 0, 1) * 255


def _defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The original's anti-aliased disk (an OpenCV Gaussian blur of a binary disk)."""
    half, ksize = (8, 3) if radius <= 8 else (math.ceil(radius), 5)
    L = np.arange(-half, half + 1)
    disk = ((L[:, None] ** 2 + L[None, :] ** 2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    # cv2.getGaussianKernel with sigma > 0: exp(-t²/2σ²) on t = -(k-1)/2 .. (k-1)/2, normalised
    t = np.arange(ksize) - (ksize - 1) / 2
    g = np.exp(-(t**2) / (2 * alias_blur**2))
    g /= g.sum()
    for axis in (0, 1):  # OpenCV's default border is reflect-101, SciPy's "mirror"
        disk = ndimage.correlate1d(disk, g, axis=axis, mode="mirror")
    nz = np.flatnonzero(np.abs(disk).max(axis=0) > 0)  # drop all-zero border (same result, faster)
    r = max(half - nz[0], nz[-1] - half)
    return disk[half - r : half + r + 1, half - r : half + r + 1]


def _defocus_blur(x, c, rngs):
    k = _defocus_kernel(c[0] * _scale(x), c[1] * _scale(x))
    y = ndimage.correlate(_unit(x), k[None, :, :, None], mode="mirror")  # cv2.filter2D
    return np.clip(y, 0, 1) * 255


def _motion_blur_batch(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray):
    """ImageMagick's MotionBlurImage: a one-sided Gaussian along `angles` (degrees, per image).

    width = 2·ceil(radius) + 1 taps, weight_i ∝ exp(-i²/2σ²), tap i at offset
    (ceil(i·sin θ - ½), ceil(i·cos θ - ½)) rows/cols; edge pixels are replicated.
    Returns floats in the input's units, rounded as ImageMagick's 8-bit output is.
    """
    n, H, W = x.shape[:3]
    width = int(2 * math.ceil(radius) + 1)
    i = np.arange(width)
    k = np.exp(-(i**2) / (2 * sigma**2))
    k /= k.sum()
    th = np.deg2rad(angles)[:, None]
    drow = np.ceil(i * np.sin(th) - 0.5).astype(int)  # [n, width]
    dcol = np.ceil(i * np.cos(th) - 0.5).astype(int)
    out = np.zeros(x.shape, np.float64)
    idx = np.arange(n)[:, None, None]
    for j in range(width):
        r = np.clip(np.arange(H)[None, :] + drow[:, j : j + 1], 0, H - 1)[:, :, None]
        q = np.clip(np.arange(W)[None, :] + dcol[:, j : j + 1], 0, W - 1)[:, None, :]
        out += k[j] * x[idx, r, q]
    return np.rint(out)


def _motion_blur(x, c, rngs):
    angles = np.array([g.uniform(-45, 45) for g in rngs])
    return _motion_blur_batch(x, c[0] * _scale(x), c[1] * _scale(x), angles)


def _clipped_zoom(u: np.ndarray, z: float) -> np.ndarray:
    """Zoom the centre of u [n, H, W, C] by z ≥ 1 and crop back to H×W.

    Same result as the original's scipy.ndimage.zoom(order=1) of the centre crop, computed as
    separable linear interpolation of only the rows and columns that survive the crop.
    """
    for axis in (1, 2):
        size = u.shape[axis]
        crop = math.ceil(size / z)
        top = (size - crop) // 2
        zoomed = round(crop * z)  # scipy's output length
        trim = (zoomed - size) // 2
        pos = (np.arange(size) + trim) * ((crop - 1) / (zoomed - 1) if zoomed > 1 else 0.0)
        lo = np.floor(pos).astype(int)
        w = (pos - lo).astype(u.dtype).reshape([-1 if a == axis else 1 for a in range(u.ndim)])
        hi = np.minimum(lo + 1, crop - 1)
        u = np.take(u, top + lo, axis=axis) * (1 - w) + np.take(u, top + hi, axis=axis) * w
    return u


def _zoom_blur(x, c, rngs):
    u = x.astype(np.float32) / np.float32(255)  # float32, as published
    zooms = np.arange(1, c, 0.01)
    out = sum(_clipped_zoom(u, z) for z in zooms)
    return np.clip((u + out) / (len(zooms) + 1), 0, 1) * 255


# ---- weather ----------------------------------------------------------------------------------


def _plasma_fractal(rngs: Rngs, mapsize: int, decay: float) -> np.ndarray:
    """Diamond-square height maps [n, mapsize, mapsize] in [0, 1] (mapsize a power of two)."""
    n = len(rngs)
    steps = [mapsize >> k for k in range(int(math.log2(mapsize)))]  # mapsize, ..., 2
    sizes = [3 * (mapsize // s) ** 2 for s in steps]
    noise = draw(rngs, lambda g: g.uniform(-1, 1, sum(sizes)))  # all of one example's draws
    m = np.zeros((n, mapsize, mapsize))
    wibble, used = 100.0, 0

    def wibbled_mean(a: np.ndarray) -> np.ndarray:
        nonlocal used
        r = noise[:, used : used + a[0].size].reshape(a.shape)
        used += a[0].size
        return a / 4 + wibble * wibble * r  # wibble * uniform(-wibble, wibble), as published

    for s in steps:
        h = s // 2
        corners = m[:, ::s, ::s]
        sq = corners + np.roll(corners, -1, axis=1)
        sq = sq + np.roll(sq, -1, axis=2)
        m[:, h::s, h::s] = wibbled_mean(sq)
        centres, corners = m[:, h::s, h::s], m[:, ::s, ::s]
        m[:, ::s, h::s] = wibbled_mean(
            centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        )
        m[:, h::s, ::s] = wibbled_mean(
            centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        )
        wibble /= decay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


def _fog(x, c, rngs):
    H, W = x.shape[1:3]
    u = _unit(x)
    max_val = u.max(axis=(1, 2, 3), keepdims=True)
    mapsize = 1 << max(1, math.ceil(math.log2(max(H, W))))  # 32 at CIFAR size
    u = u + c[0] * _plasma_fractal(rngs, mapsize, c[1])[:, :H, :W, None]
    return np.clip(u * max_val / (max_val + c[0]), 0, 1) * 255


def _snow(x, c, rngs):
    H, W, C = x.shape[1:]
    u = x.astype(np.float32) / 255.0
    layer = draw(rngs, lambda g: g.normal(c[0], c[1], (H, W)))[..., None]
    angles = np.array([g.uniform(-135, -45) for g in rngs])  # drawn after the layer, as published
    layer = _clipped_zoom(layer, c[2])
    layer[layer < c[3]] = 0
    layer = np.floor(np.clip(layer, 0, 1) * 255 + 1e-6)  # 8-bit gray PNG for ImageMagick
    layer = _motion_blur_batch(layer, c[4] * _scale(x), c[5] * _scale(x), angles) / 255.0
    gray = u if C == 1 else u @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
    u = c[6] * u + (1 - c[6]) * np.maximum(u, gray * 1.5 + 0.5)
    return np.clip(u + layer + np.rot90(layer, 2, axes=(1, 2)), 0, 1) * 255


# ---- digital ----------------------------------------------------------------------------------


def _contrast(x, c, rngs):
    u = _unit(x)
    means = u.mean(axis=(1, 2), keepdims=True)  # per image and channel
    return np.clip((u - means) * c + means, 0, 1) * 255


def _hsv_edit(x: np.ndarray, channel: int, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    hsv = rgb_to_hsv(_unit(x))
    hsv[..., channel] = fn(hsv[..., channel])
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


def _brightness(x, c, rngs):
    if x.shape[3] == 1:  # a gray pixel's HSV value is the pixel itself
        return np.clip(_unit(x) + c, 0, 1) * 255
    return _hsv_edit(x, 2, lambda v: np.clip(v + c, 0, 1))


def _saturate(x, c, rngs):
    if x.shape[3] == 1:  # no colour to (de)saturate
        return x.copy()
    return _hsv_edit(x, 1, lambda s: np.clip(s * c[0] + c[1], 0, 1))


def _pil_map(x: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    out = np.empty_like(x)
    for i, img in enumerate(x):
        pil = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
        out[i] = np.asarray(fn(pil)).reshape(img.shape)
    return out


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(buf)


def _jpeg_compression(x, c, rngs):
    return _pil_map(x, lambda img: _jpeg(img, c))


def _pixelate(x, c, rngs):
    H, W = x.shape[1:3]
    small = (int(W * c), int(H * c))
    return _pil_map(x, lambda img: img.resize(small, Image.BOX).resize((W, H), Image.BOX))


def _reflect_index(i: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Integer indices folded into 0..size-1: "mirror" = d c b|a b c d|c b a (OpenCV's
    reflect-101), "reflect" = c b a|a b c d|d c b (SciPy's reflect)."""
    if size == 1:
        return np.zeros_like(i)
    period = 2 * size - 2 if mode == "mirror" else 2 * size
    i = np.mod(i, period)
    return np.where(i < size, i, period - i - (0 if mode == "mirror" else 1))


def _bilinear(u: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Sample u [n, H, W, C] at float positions rows, cols [n, H, W] (order-1 interpolation)."""
    n, H, W, _ = u.shape
    r0, c0 = np.floor(rows), np.floor(cols)
    wr, wc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = r0.astype(int), c0.astype(int)
    ra, rb = _reflect_index(r0, H, mode), _reflect_index(r0 + 1, H, mode)
    ca, cb = _reflect_index(c0, W, mode), _reflect_index(c0 + 1, W, mode)
    idx = np.arange(n)[:, None, None]
    top = u[idx, ra, ca] * (1 - wc) + u[idx, ra, cb] * wc
    bottom = u[idx, rb, ca] * (1 - wc) + u[idx, rb, cb] * wc
    return top * (1 - wr) + bottom * wr


def _elastic_transform(x, c, rngs):
    n, H, W, _ = x.shape
    size = min(H, W)  # IMSIZE in the original, 32 for CIFAR
    alpha, sigma, affine = (f * size for f in c)
    u = x.astype(np.float32) / 255.0
    # Random affine: move three points by up to ±affine pixels. OpenCV's warpAffine samples the
    # source at M⁻¹(p), where M maps the original points (x, y) onto the moved ones.
    centre = np.float32([H, W]) // 2
    sq = size // 3
    p1 = np.float32([centre + sq, [centre[0] + sq, centre[1] - sq], centre - sq])
    # per example: 6 affine offsets, then the dx and dy noise fields, in the original's order
    fields = draw(rngs, lambda g: np.r_[g.uniform(-affine, affine, 6), g.uniform(-1, 1, 2 * H * W)])
    src = np.hstack([p1, np.ones((3, 1), np.float32)]).astype(np.float64)  # [3, 3]
    p2 = p1[None] + fields[:, :6].reshape(n, 3, 2)
    M = np.linalg.solve(src[None], p2)  # [n, 3(x, y, 1), 2]: p2 = [p1 1] @ M
    A = np.concatenate([np.swapaxes(M, 1, 2), np.tile([[[0, 0, 1]]], (n, 1, 1))], axis=1)
    inv = np.linalg.inv(A)  # [n, 3, 3] acting on (x, y, 1)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    pts = np.stack([xx, yy, np.ones_like(xx)])  # [3, H, W]
    sx, sy = (np.einsum("nij,jhw->nihw", inv, pts)[:, k] for k in (0, 1))
    u = _bilinear(u, sy, sx, "mirror")
    # Elastic part: displacement fields = Gaussian-smoothed uniform noise times alpha.
    d = fields[:, 6:].reshape(n, 2, H, W)
    d = ndimage.gaussian_filter(d, (0, 0, sigma, sigma), mode="reflect", truncate=3) * alpha
    dx, dy = d[:, 0].astype(np.float32), d[:, 1].astype(np.float32)
    return np.clip(_bilinear(u, yy + dy, xx + dx, "reflect"), 0, 1) * 255


IMAGE_FNS: dict[str, Callable[[np.ndarray, object, Rngs], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise, "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur, "glass_blur": _glass_blur, "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur, "zoom_blur": _zoom_blur, "fog": _fog, "snow": _snow,
    "contrast": _contrast, "brightness": _brightness, "saturate": _saturate,
    "jpeg_compression": _jpeg_compression, "pixelate": _pixelate,
    "elastic_transform": _elastic_transform,
}  # fmt: skip
