"""The start component (``component.py``); see README.md."""

from videostar.components.start.component import start

__all__ = ["start"]
