"""Typed records checked against their type hints: the base of settings and results.

A ``Record`` is a frozen dataclass whose ``__post_init__`` checks every field against its
annotation (``int``, ``float``, ``bool``, ``str``, ``X | None``, ``X | dict[str, X]``, ``Literal[...]``,
an ``Enum``, ``tuple[X, ...]``, ``list[X]``, ``dict[str, X]``, another ``Record``) and against
the bounds given with ``setting(...)``. ``build`` makes one from a plain (YAML or JSON)
mapping and refuses unknown and missing keys. Every refusal is a one-line ``UsageError``
whose ``parameter`` is the dotted key (``compress.distill.batch_size``), so a caller can name
the file or the command-line flag the value came from.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import reprlib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from typing_extensions import dataclass_transform

from spikerl.errors import UsageError

R = TypeVar("R", bound="Record")


def setting(
    *,
    default: Any = dataclasses.MISSING,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    hint: str = "",
    factory: Any = dataclasses.MISSING,
) -> Any:
    """A ``Record`` field with a ``default`` and bounds: ``low <= value <= high`` and ``value > above``.

    For a sequence the bounds hold for each element. ``hint`` ends the error message.
    ``factory`` makes mutable defaults, as ``dataclasses.field(default_factory=...)``.
    """
    metadata = {"low": low, "high": high, "above": above, "hint": hint}
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_QUOTE = reprlib.Repr()
_QUOTE.maxstring, _QUOTE.maxother, _QUOTE.maxlong = 80, 80, 40


def quoted(value: Any) -> str:
    """``value`` as an error line quotes it: its repr, shortened (long strings, lists, nesting and
    numbers cut with ``...``)."""
    try:
        return _QUOTE.repr(value)
    except ValueError:  # an integer past the 4300 digits Python turns into text
        return "a number too long to print"


def _fail(name: str, problem: str, hint: str = "") -> UsageError:
    return UsageError(f"{name} {problem}{'; ' + hint if hint else ''}", parameter=name)


def check_number(value: Any, name: str, kind: type, bounds: Mapping[str, Any] | None = None) -> Any:
    """``value`` as ``kind`` (int or float): finite and within ``bounds`` (``setting``'s), or a ``UsageError``."""
    bounds = bounds or {}
    hint = bounds.get("hint", "")
    integral = isinstance(value, int) and not isinstance(value, bool)
    if kind is int and not integral:
        raise _fail(name, f"must be an integer, got {quoted(value)}", hint)
    if kind is float and not (integral or isinstance(value, float)):
        raise _fail(name, f"must be a number, got {quoted(value)}", hint)
    if kind is float:
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float
            value = math.inf
        if not math.isfinite(value):
            raise _fail(name, f"must be a finite number, got {quoted(value)}", hint)
    low, high, above = bounds.get("low"), bounds.get("high"), bounds.get("above")
    if above is not None and not value > above:
        raise _fail(name, f"must be greater than {_number(above)}, got {quoted(value)}", hint)
    if low is not None and value < low:
        raise _fail(name, f"must be at least {_number(low)}, got {quoted(value)}", hint)
    if high is not None and value > high:
        raise _fail(name, f"must be at most {_number(high)}, got {quoted(value)}", hint)
    return value


def check_plain(value: Any, name: str) -> Any:
    """``value`` if it is plain data (None, bool, str, finite numbers, lists and str-keyed mappings of them)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(name, f"must be a finite number, got {quoted(value)}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(name, f"keys must be strings, got {quoted(key)}")
            check_plain(item, f"{name}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{name}[{index}]")
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        raise _fail(name, f"must be plain data (numbers, strings, lists, mappings), got {type(value).__name__}")
    return value


def check_value(value: Any, hint: Any, name: str, bounds: Mapping[str, Any] | None = None) -> Any:
    """``value`` checked (and normalized: int -> float, list -> tuple, mapping -> Record) against the type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [arg for arg in args if arg is not type(None)]
        if len(arms) > 1:  # such as ``int | dict[str, int]``: the mapping arm takes mappings, the other the rest
            arms = [arm for arm in arms if (typing.get_origin(arm) is dict) == isinstance(value, Mapping)]
        if len(arms) != 1:  # a programming error in a Record's annotations
            raise TypeError(f"{name}: no check for the union {hint!r} (one arm, or one mapping arm and one other)")
        return check_value(value, arms[0], name, bounds)
    if origin is typing.Literal:
        if value not in args:
            raise _fail(name, f"must be one of {', '.join(map(str, args))}, got {quoted(value)}")
        return value
    if hint is Any:
        return check_plain(value, name)
    if hint in (int, float):
        return check_number(value, name, hint, bounds)
    if hint in (bool, str):
        if not isinstance(value, hint):
            raise _fail(name, f"must be {'true or false' if hint is bool else 'a string'}, got {quoted(value)}")
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise _fail(name, f"must be one of {', '.join(str(m.value) for m in hint)}, got {quoted(value)}") from None
    if isinstance(hint, type) and issubclass(hint, Record):
        return value if isinstance(value, hint) else build(hint, value, name)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _fail(name, f"must be a list, got {quoted(value)}")
        items = [check_value(item, args[0], f"{name}[{index}]", bounds) for index, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _fail(name, f"must be a mapping, got {quoted(value)}")
        keys = [check_value(key, str, f"{name} key") for key in value]
        return {key: check_value(value[key], args[1], f"{name}.{key}", bounds) for key in keys}
    raise TypeError(f"{name}: no check for type {hint!r}")  # a programming error in a Record's annotations


def _prefixed(error: UsageError, prefix: str) -> UsageError:
    """``error`` with its parameter name written as ``prefix.parameter``."""
    if not prefix or error.parameter is None:
        return error
    name = f"{prefix}.{error.parameter}"
    return UsageError(str(error).replace(error.parameter, name, 1), parameter=name)


@dataclass_transform(frozen_default=True, field_specifiers=(setting,))
class Record:
    """A frozen dataclass that checks its fields on construction (see the module docstring).

    Subclasses are made frozen dataclasses when they are defined; declare fields with their
    type, and ``setting(...)`` for a default and bounds.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True)(cls)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in _fields(self):
            checked = check_value(getattr(self, field.name), hints[field.name], field.name, field.metadata)
            object.__setattr__(self, field.name, checked)
        self.check()

    def check(self) -> None:
        """Checks across fields; raise ``UsageError(..., parameter=field name)``. Override as needed."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for YAML and JSON): nested records as mappings, tuples as lists, enums as values."""
        return {field.name: _plain(getattr(self, field.name)) for field in _fields(self)}


def _fields(record: Record | type[Record]) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(record)  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def build(cls: type[R], data: Any, name: str = "") -> R:
    """A ``cls`` from the mapping ``data``; errors name keys as ``name.key``."""
    where = name or "the top level"
    if not isinstance(data, Mapping):
        raise UsageError(f"{where} must be a mapping of keys to values, got {type(data).__name__}", parameter=name or None)
    fields = {field.name: field for field in _fields(cls)}
    for key in data:
        if key not in fields:
            full = f"{name}.{key}" if name else str(key)
            raise UsageError(f"unknown key {full}; {where} takes {', '.join(fields)}", parameter=full)
    for key, field in fields.items():
        if key not in data and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            full = f"{name}.{key}" if name else key
            raise UsageError(f"missing key {full}; add it", parameter=full)
    try:
        return cls(**data)
    except UsageError as error:
        raise _prefixed(error, name) from None
    except TypeError as error:  # keys that are not strings
        raise UsageError(f"{where} has keys that are not names ({error})", parameter=name or None) from None
