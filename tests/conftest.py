"""Shared fixtures: real mp4s, the tiny model, synthetic data — all built by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def gradient_video(frames: int = 24, size: int = 32) -> np.ndarray:
    """Frames whose brightness encodes their index, so sampled indices can be read back."""
    out = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        out[t] = int(t * 255 / max(1, frames - 1))
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pretrained base, built once per test session through the CLI (about 30 s)."""
    from videostar.cli import main

    out = tmp_path_factory.mktemp("tiny") / "base"
    assert main(["model", "tiny", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 synthetic shape videos x 3 tasks = 144 records; returns records.jsonl."""
    from videostar.cli import main

    out = tmp_path_factory.mktemp("synthetic")
    assert main(["data", "synthetic", "--count", "48", "--seed", "0", "--out", str(out)]) == 0
    return out / "records.jsonl"


TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
