"""The ppo component (``component.py``); see README.md."""

from videostar.components.ppo.component import ppo

__all__ = ["ppo"]
