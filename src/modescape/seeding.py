"""Seeds derived from the run's base seed, so that every random choice is reproducible.

`derive_seed(base, "member", 3)` is a stable 63-bit integer for member 3; different keys give
independent streams. Hashing (rather than `base + i`) keeps runs with neighbouring base seeds from
sharing members.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(base_seed: int, *keys: object) -> int:
    text = "/".join([str(int(base_seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def numpy_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
