"""Any PyTorch classifier as a modescape architecture: built-ins, registered names, import paths.

An architecture name is resolved in this order:
1. a built-in (`smallcnn`, `mediumcnn`, `resnet20`, with their variants);
2. a name given to `register_arch(name, factory)` in this process;
3. an import path `"package.module:factory"` (the attribute may be dotted, `module:Class.make`).

A *factory* is any callable `factory(in_shape, num_classes, **kwargs) -> nn.Module` returning
logits `(batch, num_classes)` for inputs `(batch, *in_shape)`; it draws its initial weights from
the global torch RNG (seed it first, as for the built-ins). If its signature names a `dropout`
parameter it receives the run's dropout. The keyword arguments live in the run's config
(`ModelConfig.arch_kwargs`), so a run directory rebuilds exactly the same network.

`describe_arch(arch)` records where a factory came from (import path, distribution and version,
sha256 of its source file) for the run's manifest. `norm_parameter_names(model)` lists the
normalisation layers' parameters, which weight-space selections treat apart from kernels.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from modescape.errors import ModescapeError
from modescape.models import architectures

log = logging.getLogger(__name__)

Factory = Callable[..., nn.Module]
_REGISTRY: dict[str, Factory] = {}


def is_builtin(arch: str) -> bool:
    return arch in architectures.ARCHITECTURES


def register_arch(name: str, factory: Factory, *, replace: bool = False) -> None:
    """Make `name` build models with `factory(in_shape, num_classes, **kwargs)`.

    Names of built-ins and names containing ":" (import paths) are refused; registering a name
    twice needs `replace=True`.
    """
    if not isinstance(name, str) or not name or ":" in name or is_builtin(name):
        raise ModescapeError(
            f"cannot register architecture {name!r}: names must be non-empty, without ':' and "
            f"not a built-in ({', '.join(architectures.ARCHITECTURES)})"
        )
    if not callable(factory):
        raise ModescapeError(f"architecture {name!r}: factory {factory!r} is not callable")
    if name in _REGISTRY and _REGISTRY[name] is not factory and not replace:
        raise ModescapeError(f"architecture {name!r} is already registered (use replace=True)")
    _REGISTRY[name] = factory


def unregister_arch(name: str) -> None:
    """Forget a registered name (no error if unknown)."""
    _REGISTRY.pop(name, None)


def registered_archs() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def is_known_arch(arch: str) -> bool:
    """A built-in, a registered name or something shaped like an import path (not yet imported)."""
    return is_builtin(arch) or arch in _REGISTRY or _split_path(arch) is not None


def _split_path(arch: str) -> tuple[str, str] | None:
    module, sep, attr = arch.partition(":")
    if not sep or not module or not attr:
        return None
    return module, attr


def _import_module(module: str, arch: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        # Console scripts do not put the working directory on sys.path (`python -m` does): a
        # factory in ./examples/ or ./mypkg/ should be found either way.
        if "" in sys.path or str(Path.cwd()) in sys.path or not _is_missing_root(e, module):
            raise ModescapeError(f"architecture {arch!r}: cannot import {module!r} ({e})") from e
        sys.path.insert(0, str(Path.cwd()))
        return _import_module(module, arch)
    except Exception as e:  # the module itself failed: say which and why
        raise ModescapeError(
            f"architecture {arch!r}: importing {module!r} failed ({type(e).__name__}: {e})"
        ) from e


def _is_missing_root(e: ModuleNotFoundError, module: str) -> bool:
    return e.name is not None and module.split(".")[0] == e.name.split(".")[0]


def resolve_factory(arch: str) -> Factory:
    """The factory of a registered name or an import path (not for built-ins)."""
    if arch in _REGISTRY:
        return _REGISTRY[arch]
    parts = _split_path(arch)
    if parts is None:
        raise ModescapeError(
            f"unknown architecture {arch!r}: not a built-in "
            f"({', '.join(architectures.ARCHITECTURES)}), not registered "
            f"({', '.join(_REGISTRY) or 'none'}) and not an import path 'package.module:factory'"
        )
    module_name, attr = parts
    obj: Any = _import_module(module_name, arch)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModescapeError(
                f"architecture {arch!r}: {module_name!r} has no attribute {attr!r}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModescapeError(
            f"architecture {arch!r}: {attr!r} is not callable (a {type(obj).__name__}); {_FACTORY}"
        )
    if getattr(obj, "__module__", None) == "builtins" or (
        isinstance(obj, type) and not issubclass(obj, nn.Module)
    ):  # `builtins:eval` would be called with the input shape: refuse what cannot be a factory
        raise ModescapeError(
            f"architecture {arch!r}: {attr!r} is {_describe(obj)}, not a model factory; {_FACTORY}"
        )
    return obj


_FACTORY = "a factory is a callable factory(in_shape, num_classes, **kwargs) returning an nn.Module"


def _describe(obj: Any) -> str:
    kind = "class" if isinstance(obj, type) else type(obj).__name__.replace("_", " ")
    return f"the {kind} {getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


def build_model(
    arch: str,
    variant: str = "paper",
    in_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    dropout: float = 0.1,
    **kwargs: Any,
) -> nn.Module:
    """A freshly initialised model (global torch RNG) mapping `(batch, *in_shape)` to logits.

    Built-ins take `variant`, `dropout` and the keyword `padding` ("torch" | "keras"); other
    architectures get `factory(in_shape, num_classes, **kwargs)`, plus `dropout=` when the
    factory's signature names it (`variant` is ignored for them).
    """
    if is_builtin(arch):
        unknown = set(kwargs) - {"padding"}
        if unknown:
            raise ModescapeError(
                f"built-in architecture {arch!r} takes only the keyword 'padding'; got "
                f"{', '.join(sorted(unknown))}"
            )
        return architectures.build_model(arch, variant, in_shape, num_classes, dropout, **kwargs)
    factory = resolve_factory(arch)
    call_kwargs = dict(kwargs)
    params = _signature(factory, arch)
    if params is not None and "dropout" in params.parameters and "dropout" not in call_kwargs:
        call_kwargs["dropout"] = dropout
    shape = tuple(int(n) for n in in_shape)
    if params is not None:
        try:
            params.bind(shape, num_classes, **call_kwargs)
        except TypeError as e:
            raise ModescapeError(
                f"architecture {arch!r}: the factory cannot be called as "
                f"factory(in_shape, num_classes{''.join(f', {k}=…' for k in call_kwargs)}): {e}"
            ) from e
    try:
        model = factory(shape, num_classes, **call_kwargs)
    except Exception as e:  # the user's code: name it and what it raised (-v: the traceback)
        log.debug("architecture %s: the factory raised", arch, exc_info=True)
        raise ModescapeError(
            f"architecture {arch!r}: calling {_describe(factory)}(in_shape={shape}, "
            f"num_classes={num_classes}) raised {type(e).__name__}: {e}; {_FACTORY}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModescapeError(
            f"architecture {arch!r}: the factory returned {type(model).__name__}, not an "
            f"nn.Module; {_FACTORY}"
        )
    return model


def _signature(factory: Factory, arch: str) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins and C callables have none: just call them
        log.debug("architecture %s: factory has no inspectable signature", arch)
        return None


def describe_arch(arch: str) -> dict[str, Any]:
    """Where an architecture comes from, for the run's manifest.

    Returns `{"arch", "source": "builtin" | "registered" | "import", "factory": "module:qualname",
    "distribution", "version", "file", "sha256"}`; the last four are None when unknown (e.g. a
    factory defined in a notebook or a script that is not installed as a package).
    """
    if is_builtin(arch):
        factory: Factory = architectures.build_model
        source = "builtin"
    else:
        factory = resolve_factory(arch)
        source = "registered" if arch in _REGISTRY else "import"
    module_name = getattr(factory, "__module__", None) or ""
    qualname = getattr(factory, "__qualname__", type(factory).__qualname__)
    distribution, version = _distribution(module_name)
    file, digest = _source_file(module_name)
    return {
        "arch": arch,
        "source": source,
        "factory": f"{module_name}:{qualname}",
        "distribution": distribution,
        "version": version,
        "file": file,
        "sha256": digest,
    }


def _distribution(module_name: str) -> tuple[str | None, str | None]:
    top = module_name.split(".")[0]
    if not top:
        return None, None
    names = importlib.metadata.packages_distributions().get(top, [])
    for name in names:
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, getattr(sys.modules.get(top), "__version__", None)


def _source_file(module_name: str) -> tuple[str | None, str | None]:
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if not path or not Path(path).is_file():
        return None, None
    return path, hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Normalisation layers.

NORM_KINDS: dict[str, tuple[type[nn.Module], ...]] = {
    "batchnorm": (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm),
    "layernorm": (nn.LayerNorm,),
    "groupnorm": (nn.GroupNorm,),
}


def norm_parameter_names(model: nn.Module) -> dict[str, list[str]]:
    """`{"batchnorm" | "layernorm" | "groupnorm": [parameter names]}` in state-dict order.

    Only learnable parameters (gammas `…weight`, betas `…bias`); running statistics are buffers.
    Kinds without any layer map to an empty list.
    """
    out: dict[str, list[str]] = {kind: [] for kind in NORM_KINDS}
    for module_name, module in model.named_modules():
        kind = next((k for k, types in NORM_KINDS.items() if isinstance(module, types)), None)
        if kind is None:
            continue
        for param_name, _ in module.named_parameters(recurse=False):
            out[kind].append(f"{module_name}.{param_name}" if module_name else param_name)
    return out


def has_batchnorm(model: nn.Module) -> bool:
    """Whether any module keeps batch statistics (its eval output depends on running stats)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
