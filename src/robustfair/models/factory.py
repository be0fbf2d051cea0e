"""Your own model, named `package.module:factory` in a config, or passed as an object.

`model.name: "my_models:small_net"` (with `model.kwargs: {width: 32}`) imports `my_models`
and calls `small_net(width=32, ...)`. The factory also receives `num_classes`,
`in_channels` and `input_size` (taken from the data) and `normalize` (`(mean, std)` of
`model.normalize_mean/std`) when it declares parameters of those names; a value given in
`model.kwargs` wins. It must return a `torch.nn.Module` mapping x [B, C, H, W] (or
[B, D]) float in [0, 1] to logits [B, num_classes].

Importing the module runs its code: that is the point (it is your module, named in your
config). robustfair never imports a module named inside a checkpoint file
(`engine.run_model.check_factory_source`). A module that is not importable from
`sys.path` is looked for in the current directory too, as `python -m` would.

A model passed to `robustfair.train(model=...)` as an object that no factory can rebuild
is recorded as `model.name: "<object package.module.Class>"` (`object_model_name`): the
run trains and reports as usual, and rebuilding it later needs the object again.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from torch import nn

from robustfair.errors import ConfigError

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
FACTORY_PATTERN = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*$")
FACTORY_SYNTAX = "'package.module:factory'"
SHARED_ARGUMENTS = ("num_classes", "in_channels", "input_size", "normalize")
OBJECT_PREFIX = "<object "


def is_factory_path(name: str) -> bool:
    """True for a `module:factory` name (anything with a colon that is not an object marker)."""
    return isinstance(name, str) and ":" in name and not is_object_model_name(name)


def is_object_model_name(name: str) -> bool:
    """True for the marker a run records for a model passed as an object (`object_model_name`)."""
    return isinstance(name, str) and name.startswith(OBJECT_PREFIX) and name.endswith(">")


def object_model_name(model: nn.Module) -> str:
    """`<object package.module.Class>`: what a run records for a model it cannot rebuild."""
    cls = type(model)
    return f"{OBJECT_PREFIX}{cls.__module__}.{cls.__qualname__}>"


def factory_path_of(factory: Callable[..., Any]) -> str | None:
    """`module:qualname` of a function or class importable by that path, else None.

    None for lambdas, closures, and anything defined in `__main__` (a script or notebook:
    another process could not import it).
    """
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    path = f"{module}:{qualname}"
    if not FACTORY_PATTERN.match(path):
        return None
    try:
        found = _resolve_attribute(importlib.import_module(module), qualname)
    except (ImportError, AttributeError):
        return None
    return path if found is factory else None


def _resolve_attribute(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _import_module(module_name: str, path: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise ConfigError(f"model.name {path!r}: importing {module_name!r} failed: {_first_line(err)}") from None
        cwd = os.getcwd()
        if cwd in sys.path or "" in sys.path:
            raise ConfigError(
                f"model.name {path!r}: no module named {missing!r} (searched the current directory "
                "and sys.path; set PYTHONPATH to the directory holding it)"
            ) from None
        sys.path.append(cwd)  # after everything installed, so a local file never shadows a package
        importlib.invalidate_caches()
        return _import_module(module_name, path)
    except Exception as err:  # the user's module failed while importing (SyntaxError, its own errors)
        raise ConfigError(f"model.name {path!r}: importing {module_name!r} failed: {_first_line(err)}") from None


def import_factory(path: str) -> Callable[..., Any]:
    """The callable named by `package.module:factory` (importing the module); ConfigError if absent."""
    if not isinstance(path, str) or not FACTORY_PATTERN.match(path):
        raise ConfigError(
            f"model.name {path!r}: expected a registry name or {FACTORY_SYNTAX} (for example my_models:small_net)"
        )
    module_name, qualname = path.split(":", 1)
    module = _import_module(module_name, path)
    try:
        factory = _resolve_attribute(module, qualname)
    except AttributeError:
        callables = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        )
        close = difflib.get_close_matches(qualname, callables, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = f" callables defined there: {', '.join(callables[:12])}" if callables else ""
        raise ConfigError(
            f"model.name {path!r}: module {module_name!r} has no attribute {qualname!r}{hint}"
            f"{';' + listed if listed else ''}"
        ) from None
    if not callable(factory):
        raise ConfigError(f"model.name {path!r}: {qualname!r} is a {type(factory).__name__}, not a function or class")
    return factory


def factory_parameters(factory: Callable[..., Any]) -> set[str] | None:
    """Names the factory accepts as keywords; None when it takes **kwargs (or has no signature)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {
        p.name for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def call_factory(
    factory: Callable[..., Any],
    label: str,
    kwargs: dict[str, Any],
    *,
    num_classes: int,
    in_channels: int,
    input_size: int | tuple[int, ...],
    normalize: tuple[Any, Any] | None = None,
) -> nn.Module:
    """factory(**kwargs, plus the shared arguments it declares) -> nn.Module, or one-line ConfigError."""
    accepted = factory_parameters(factory)
    shared = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
    arguments = dict(kwargs)
    for name, value in shared.items():
        if name not in arguments and accepted is not None and name in accepted:
            arguments[name] = value
    if normalize is not None:
        if accepted is not None and "normalize" not in accepted:
            raise ConfigError(
                f"model.normalize_mean: the factory {label!r} takes no 'normalize' argument; "
                "put the normalisation inside your model (robustfair.models.Normalize)"
            )
        arguments["normalize"] = normalize
    if accepted is not None:
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(accepted), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"model.kwargs.{unknown[0]}: {label!r} has no parameter {unknown[0]!r}{hint} "
                f"(its parameters: {', '.join(sorted(accepted)) or 'none'})"
            )
    try:
        model = factory(**arguments)
    except ConfigError:
        raise
    except Exception as err:  # the user's code: one line naming it, not a traceback
        raise ConfigError(f"model.name {label!r}: building the model failed: {_first_line(err)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.name {label!r}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def build_factory_model(
    path: str,
    kwargs: dict[str, Any] | None = None,
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: int | tuple[int, ...] = 32,
    normalize: tuple[Any, Any] | None = None,
) -> nn.Module:
    """Import `package.module:factory` and build the model (see the module docstring)."""
    return call_factory(
        import_factory(path),
        path,
        dict(kwargs or {}),
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        normalize=normalize,
    )


__all__ = [
    "is_factory_path",
    "is_object_model_name",
    "object_model_name",
    "factory_path_of",
    "import_factory",
    "factory_parameters",
    "call_factory",
    "build_factory_model",
    "FACTORY_PATTERN",
    "SHARED_ARGUMENTS",
]
