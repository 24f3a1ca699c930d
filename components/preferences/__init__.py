"""The preferences component (``component.py``); see README.md."""

from videostar.components.preferences.component import preferences

__all__ = ["preferences"]
