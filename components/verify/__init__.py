"""The verify component (``component.py``); see README.md."""

from videostar.components.verify.component import verify

__all__ = ["verify"]
