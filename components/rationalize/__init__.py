"""The rationalize component (``component.py``); see README.md."""

from videostar.components.rationalize.component import rationalize

__all__ = ["rationalize"]
