"""The composed config's values against the types their constructors declare, before anything is built.

Each node with a `_target_` is checked against that callable's own signature (its type hints: `beta: float`,
`max_steps: int`, `dtype: str`, `Literal[...]` choices), so `loss.beta=abc` fails in a second as
"loss.beta='abc': DPOLoss takes beta as a number", not as a `TypeError` from inside the constructor after the
model loaded. No rule is restated here: a hint this reader does not understand accepts any value, and the
constructors' own checks (ranges, choices) still run when the config check builds them.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from ..core.errors import UsageError

NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def check_types(node: Any, key: str) -> None:
    """Raise a `UsageError` naming `<key>.<arg>` where a value does not match its constructor's declared type, or
    is required (`???`) and missing; recurse into nested nodes."""
    if not isinstance(node, DictConfig):
        return
    hints, owner = _hints(node.get("_target_")) if "_target_" in node else ({}, "")
    for name in node:
        if str(name).startswith("_"):
            continue
        where = f"{key}.{name}" if key else str(name)
        try:
            value = node[name]
        except MissingMandatoryValue:
            raise UsageError(f"{where} is required: set {where}=...") from None
        except InterpolationResolutionError as e:
            raise UsageError(f"{where}: {e.msg if hasattr(e, 'msg') else e}".splitlines()[0]) from None
        hint = hints.get(str(name))
        if hint is not None and not _matches(value, hint):
            shown = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
            raise UsageError(f"{where}={shown!r}: {owner} takes {name} as {_describe(hint)}")
        if isinstance(value, DictConfig):
            check_types(value, where)


def _hints(target: Any) -> tuple[dict[str, Any], str]:
    """The declared argument types of `target` (a class: its __init__), and its short name; ({}, name) when it
    cannot be imported (instantiating it says why) or declares none."""
    try:
        fn = get_object(str(target))
    except Exception:  # noqa: BLE001  (instantiation reports a missing target itself)
        return {}, str(target)
    owner = getattr(fn, "__name__", str(target))
    hints = _declared(fn)
    forwarded = getattr(fn, "keywords_for", None)  # a factory whose **settings go to this class (data options)
    if forwarded is not None:
        hints = {**_declared(forwarded), **hints}
    return hints, owner


def _declared(fn: Any) -> dict[str, Any]:
    init = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return typing.get_type_hints(init)
    except Exception:  # noqa: BLE001  (a hint naming a type only imported for type checkers): one at a time
        module = inspect.getmodule(init)
        out = {}
        for name, parameter in inspect.signature(init).parameters.items():
            annotation = parameter.annotation
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, vars(module) if module else {})  # noqa: S307 (a type hint)
                except Exception:  # noqa: BLE001
                    continue
            if annotation is not inspect.Parameter.empty:
                out[name] = annotation
        return out


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    if isinstance(value, DictConfig) and "_target_" in value:
        return True  # built into an object whose type is the target's: not known before building it
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is torch.Tensor:  # a number given as a tensor (torch.optim's lr): a number from a config
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is timedelta:
        return False  # a plain value where a duration node is needed
    base = origin or hint
    if inspect.isclass(base):
        if issubclass(base, Mapping) and not issubclass(base, str):
            return isinstance(value, DictConfig)
        if issubclass(base, Sequence) and not issubclass(base, str):
            return isinstance(value, ListConfig)
    return True  # a hint this reader does not understand: the constructor decides


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(h) for h in typing.get_args(hint)))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if hint in NAMES:
        return NAMES[hint]
    if hint is torch.Tensor:
        return "a number"
    base = origin or hint
    if inspect.isclass(base) and issubclass(base, Mapping):
        return "a mapping"
    if inspect.isclass(base) and issubclass(base, Sequence):
        return "a list"
    return getattr(hint, "__name__", str(hint))
