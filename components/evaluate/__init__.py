"""The evaluate component (``component.py``); see README.md."""

from videostar.components.evaluate.component import evaluate

__all__ = ["evaluate"]
