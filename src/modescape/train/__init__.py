"""Training: the epoch loop (`trainer`) and the executors that run members (`launch`).

The package itself is callable, so that `modescape.train(config, out)` (the public API, see
`modescape/__init__.py`) and the subpackage `modescape.train` can share one name: importing a
submodule binds `modescape.train` to this package, whatever the top-level package exported.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """`modescape.train.trainer.train`: train (or finish) a run's members in this process."""
        from modescape.train.trainer import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
