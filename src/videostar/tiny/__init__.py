"""Tiny real checkpoints, written like hub downloads, for the tests and the demo.

:mod:`~videostar.tiny.base` is the demo's pretrained Qwen2.5-VL base, :mod:`~videostar.tiny.families`
one random checkpoint per supported family, :mod:`~videostar.tiny.tokenizer` their tokenizer.
"""

from videostar.tiny.base import build_random, build_tiny
from videostar.tiny.families import BUILDERS, build_arch

__all__ = ["BUILDERS", "build_arch", "build_random", "build_tiny"]
