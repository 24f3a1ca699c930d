"""The generate component (``component.py``); see README.md."""

from videostar.components.generate.component import generate

__all__ = ["generate"]
