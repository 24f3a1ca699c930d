"""Helpers shared by the supervision adapters: file lookups and value checks.

Adapters only check that videos exist (decoding happens later), so each walks its video tree
once and looks clips up by file name: download tools disagree on folder layout (flat, per
split, per label with rewritten label names), but they keep the clip's file name.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from videostar.errors import RecordError, VideoError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm")


def require_file(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise naming it, so a typo fails before any work."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would hang the reader
        raise RecordError(f"{path}: not a regular file; annotations are read from regular files only")
    if not path.is_file():
        raise RecordError(f"{path}: annotation file not found")
    return path


def index_videos(root: str | Path) -> dict[str, Path]:
    """Map every video file name under ``root`` (any depth) to its path, in one walk.

    Folders are walked in sorted order, so when a name occurs twice the choice is stable.
    Symlinked folders are followed (datasets often live on mounted volumes), each real folder
    at most once so a link cycle cannot loop.
    """
    root = Path(root)
    if not root.is_dir():
        raise VideoError(str(root), "video folder not found")
    index: dict[str, Path] = {}
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames.clear()
            continue
        seen.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(VIDEO_SUFFIXES):
                index.setdefault(name, Path(dirpath) / name)
    return index


def find_video(index: dict[str, Path], stems: Iterable[str]) -> Path | None:
    """First indexed file named ``<stem><suffix>``, stems in order, then .mp4 before others."""
    for stem in stems:
        for suffix in VIDEO_SUFFIXES:
            path = index.get(stem + suffix)
            if path is not None:
                return path
    return None


def not_found(name: str, root: str | Path) -> str:
    """The ``AdapterResult.missing`` entry for a video that is not on disk."""
    return f"{name}: video not found under {root}"


def is_number(value: Any) -> bool:
    """A finite real number (Python or numpy); bools are refused although they are ints, and
    so are ints too large for a float (10**400)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False
