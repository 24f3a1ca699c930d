"""The sft component (``component.py``); see README.md."""

from videostar.components.sft.component import sft

__all__ = ["sft"]
