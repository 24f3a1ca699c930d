"""The one way a configuration section refuses a value: a ConfigError naming the dotted field
and what is allowed. The checks below are the ranges every section uses."""

from __future__ import annotations

import dataclasses
import math
import string
import types
import typing
from collections.abc import Iterable
from typing import Any

from videostar.errors import ConfigError

INT_MAX = 2**63 - 1
"""The largest count anything takes: torch and numpy hold integers in int64."""
SEED_MAX = 2**32 - 1
"""The largest seed every seeded library takes (numpy's ``RandomState`` is 32-bit)."""


def require(where: str, name: str, ok: bool, rule: str) -> None:
    """Refuse ``where.name`` unless ``ok``; ``rule`` says what is allowed."""
    if not ok:
        path = f"{where}.{name}" if where else name
        raise ConfigError(f"{path}: invalid value ({rule})")


def finite(x: float) -> bool:
    return math.isfinite(x)


def fraction(where: str, name: str, value: float, closed_top: bool = True) -> None:
    """A threshold or ratio: in [0, 1] (or [0, 1) when ``closed_top`` is off)."""
    ok = finite(value) and value >= 0 and (value <= 1 if closed_top else value < 1)
    require(where, name, ok, "a number in [0, 1]" if closed_top else "a number in [0, 1)")


def positive(where: str, name: str, value: float) -> None:
    """A learning rate, a norm, a count of epochs: finite and > 0."""
    require(where, name, finite(value) and value > 0, "a finite number > 0")


def non_negative(where: str, name: str, value: float) -> None:
    require(where, name, finite(value) and value >= 0, "a finite number >= 0")


def at_least(where: str, name: str, value: int | None, low: int, optional: bool = False) -> None:
    """A count: an integer >= ``low`` (or null when ``optional``)."""
    if optional and value is None:
        return
    require(where, name, value is not None and value >= low,
            f"an integer >= {low}" + (" or null" if optional else ""))


def placeholders(where: str, name: str, template: str, known: Iterable[str],
                 required: Iterable[str] = ()) -> None:
    """A ``str.format`` template whose every ``{field}`` is one the code fills in."""
    known, required = set(known), set(required)
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        require(where, name, False, f"a format template ({exc})")
        return
    allowed = ", ".join(f"{{{k}}}" for k in sorted(known)) or "no {placeholder}"
    unknown = sorted(used - known)
    require(where, name, not unknown, f"unknown placeholder {{{unknown[0]}}}; allowed: {allowed}"
            if unknown else "")
    missing = sorted(required - used)
    require(where, name, not missing, f"must contain {{{missing[0]}}}" if missing else "")


def numeric_type(tp: Any) -> type | None:
    """``int`` or ``float`` for a field of that type (or optional), else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else None
    return tp if tp in (int, float) else None


def is_seed(name: str) -> bool:
    return name == "seed" or name.endswith("_seed")


def numbers(obj: Any, where: str) -> None:
    """The bounds every number of a config section has, whatever its section says besides:
    finite, an int64, a seed in [0, 2**32 - 1]. Walks the section's fields, so a field added
    later is bounded too; each section's ``validate`` gives the field's own range."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        tp, value = numeric_type(hints[f.name]), getattr(obj, f.name)
        if tp is None or value is None:
            continue
        if is_seed(f.name):
            require(where, f.name, 0 <= value <= SEED_MAX, f"an integer from 0 to {SEED_MAX} (2**32 - 1)")
        elif tp is int:
            require(where, f.name, -INT_MAX - 1 <= value <= INT_MAX, "an integer that fits in 64 bits")
        else:
            require(where, f.name, finite(value), "a finite number")
