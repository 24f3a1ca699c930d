"""The grpo component (``component.py``); see README.md."""

from videostar.components.grpo.component import grpo

__all__ = ["grpo"]
