"""Strict conversion of plain YAML data into frozen dataclasses.

One mechanism for every section of params.yaml: an unknown key, a missing required key or a value of the
wrong type raises `ConfigError` naming the dotted key, the value and what is allowed. Range checks live in
each dataclass's `__post_init__` through `require`.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from kdmed.errors import ConfigError

T = TypeVar("T")


def require(condition: bool, key: str, value: Any, allowed: str) -> None:
    """Raise a ConfigError for `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"params: '{key}' = {value!r} is not allowed; expected {allowed}.")


def build(cls: type[T], data: Any, key: str) -> T:
    """Build dataclass `cls` from a mapping, checking every key and type; `key` is the dotted path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"params: '{key}' must be a mapping of settings, got {type(data).__name__} {data!r}."
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"params: unknown key(s) {', '.join(repr(f'{key}.{u}') for u in unknown)}; "
            f"valid keys under '{key}' are: {', '.join(sorted(fields))}."
        )
    hints = get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in data:
            values[name] = _convert(hints[name], data[name], sub)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"params: required key '{sub}' is missing.")
    try:
        return cls(**values)
    except ConfigError as error:
        if key and f"'{key}" not in str(error):
            raise ConfigError(f"{error} (in section '{key}')") from None
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"params: invalid settings under '{key}': {error}") from error


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(option, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"params: '{key}' = {value!r} does not match any of {_type_name(tp)}.")
    if origin is Literal:
        if value not in args:
            raise ConfigError(
                f"params: '{key}' = {value!r} is not allowed; choose one of {', '.join(map(repr, args))}."
            )
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"params: '{key}' must be a list, got {value!r}.")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"params: '{key}' must be a list of {len(args)} values, got {value!r}.")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"params: '{key}' must be a mapping, got {value!r}.")
        return types.MappingProxyType({str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()})
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"params: '{key}' must be true or false, got {value!r}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"params: '{key}' must be an integer, got {value!r}.")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"params: '{key}' must be a number, got {value!r}.")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"params: '{key}' must be a string, got {value!r}.")
        return value
    raise TypeError(f"config_schema has no rule for type {tp!r} (at '{key}')")


def to_plain(obj: Any) -> Any:
    """Inverse of `build`: dataclasses / mappings / tuples back to YAML-able plain data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict | types.MappingProxyType):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [to_plain(v) for v in obj]
    return obj
