"""The reward_model component (``component.py``); see README.md."""

from videostar.components.reward_model.component import reward_model

__all__ = ["reward_model"]
