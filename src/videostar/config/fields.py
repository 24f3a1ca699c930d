"""The one way a configuration section refuses a value: a ConfigError naming the dotted field
and what is allowed. The checks below are the ranges every section uses."""

from __future__ import annotations

import math
import string
from collections.abc import Iterable

from videostar.errors import ConfigError


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
