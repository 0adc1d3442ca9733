"""Typed construction of dataclasses from plain mappings (YAML, CLI overrides, kwargs).

One mechanism validates every config section, dataset option block, encoder option block and
method hyper-parameter block, so every error message has the same shape:
``<where>.<field>: got <value!r>; expected <what>``.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from mmbalance.errors import ConfigError

T = TypeVar("T")


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the type annotation ``tp`` and return it (ints widen to floats).

    Raises:
        ConfigError: naming ``where``, the value and the accepted type.
    """
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{where}: got {value!r}; expected {_describe(tp)}")
    if origin in (Union, types.UnionType):
        if isinstance(value, float) and not math.isfinite(value) and float in get_args(tp):
            raise ConfigError(f"{where}: got {value!r}; expected a finite number")
        for arg in get_args(tp):
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: got {value!r}; expected {_describe(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: got {value!r}; expected null")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: got {value!r}; expected {_describe(tp)}")
        (item_tp,) = get_args(tp)[:1] or (Any,)
        items = [coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: got {value!r}; expected a mapping")
        _, val_tp = get_args(tp) or (str, Any)
        return {str(k): coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: got {value!r}; expected a mapping of {tp.__name__}")
        return from_dict(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: got {value!r}; expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: got {value!r}; expected an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # a NaN learning rate fails only at the first step
                raise ConfigError(f"{where}: got {value!r}; expected a finite number")
            return float(value)
        raise ConfigError(f"{where}: got {value!r}; expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: got {value!r}; expected a string")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown fields and wrong types.

    Each dataclass may define ``validate(self, where)`` for cross-field checks; it is called last.
    """
    data = dict(data or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields)) if fields else "none (this takes no options)"
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {allowed}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = coerce(value, hints[name], f"{where}.{name}" if where else name)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {', '.join(missing)}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(where)
    return obj


def fill_defaults(cls: type, data: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """``data`` as plain data with every default of ``cls`` written in, at every depth (a field
    typed as a dataclass, or as a mapping of them, is filled in too), and unknown names refused
    at every depth. Values are kept as given (checked by :func:`from_dict` when the object is
    built): a path keeps its ``~``, so a run's config.yaml stays usable on another machine."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
        )
    out: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            out[name] = _fill_value(data[name], hints[name], f"{where}.{name}")
        elif f.default is not dataclasses.MISSING:
            out[name] = to_dict(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[name] = to_dict(f.default_factory())
    return out


def _fill_value(value: Any, tp: Any, where: str) -> Any:
    """:func:`fill_defaults` for one value of type ``tp``: nested dataclasses filled."""
    if not isinstance(value, Mapping):
        return value
    origin = get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return fill_defaults(tp, value, where)
    if origin in (dict, Mapping):
        _, val_tp = get_args(tp) or (str, Any)
        return {str(k): _fill_value(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            if (isinstance(arg, type) and dataclasses.is_dataclass(arg)) or get_origin(arg) in (
                dict,
                Mapping,
            ):
                return _fill_value(value, arg, where)
    return value


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML/JSON-safe) view of a dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def init_fields(obj: Any) -> dict[str, Any]:
    """The constructor fields of a dataclass instance as plain data (what ``from_dict`` takes
    back); ``{}`` for anything else."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return {}
    return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}


def check_positive(value: float | int, where: str, *, allow_zero: bool = False) -> None:
    """Refuse a non-positive number with a message naming the field."""
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{where}: got {value!r}; expected a number {bound}")


__all__ = ["check_positive", "coerce", "fill_defaults", "from_dict", "to_dict"]
