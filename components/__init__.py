"""The component catalogue: one folder per pipeline step (``component.py``, ``README.md``, tests).

Each component is a lightweight KFP Python component whose body only parses its inputs and calls
the step's library function (:mod:`videostar.star.steps` or :mod:`videostar.rlaif.steps`). The
step images install ``videostar`` with these folders as ``videostar.components``, and the local
runner uses the current environment, so the same component runs in both. Every step writes its
folder of outputs into ``out`` (file names: :mod:`videostar.layout`) and its headline numbers
into ``metrics`` (shown by the KFP UI). ``POOL`` in each ``component.py`` says which image and
node pool the step needs.
"""

from dataclasses import dataclass
from typing import Any

from kfp import dsl
from videostar.components import (
    decide,
    evaluate,
    generate,
    grpo,
    ppo,
    preferences,
    rationalize,
    reward_model,
    sft,
    start,
    verify,
)

from videostar.config import Images

STEPS = (start, generate, verify, rationalize, sft, evaluate, decide, preferences, reward_model, ppo, grpo)
"""Every component package, in pipeline order (``ppo`` or ``grpo``: ``rlaif.algorithm``)."""


@dataclass(frozen=True)
class Components:
    """The components of one pipeline, each built with its image."""

    start: Any
    generate: Any
    verify: Any
    rationalize: Any
    sft: Any
    evaluate: Any
    decide: Any
    preferences: Any
    reward_model: Any
    ppo: Any
    grpo: Any


def build_component(step: Any, images: Images) -> Any:
    """One step's KFP component on the image of its pool (GPU or CPU).

    The images install videostar, and with it the kfp its pyproject pins: the task need not
    pip-install kfp again before every step (0.4 s locally, a network round trip on a cluster).
    """
    name = step.__name__.rsplit(".", 1)[-1]
    func = getattr(step, name)
    return dsl.component(func, base_image=images.gpu if step.component.POOL == "gpu" else images.cpu,
                         install_kfp_package=False)


def build_components(images: Images) -> Components:
    """Every step's component with its image: generation and training on GPU, the rest on CPU."""
    return Components(**{s.__name__.rsplit(".", 1)[-1]: build_component(s, images) for s in STEPS})
