"""The one way a configuration section refuses a value: a ConfigError naming the dotted field."""

from __future__ import annotations

from videostar.errors import ConfigError


def require(where: str, name: str, ok: bool, rule: str) -> None:
    """Refuse ``where.name`` unless ``ok``; ``rule`` says what is allowed."""
    if not ok:
        path = f"{where}.{name}" if where else name
        raise ConfigError(f"{path}: invalid value ({rule})")
