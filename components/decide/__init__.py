"""The decide component (``component.py``); see README.md."""

from videostar.components.decide.component import decide

__all__ = ["decide"]
