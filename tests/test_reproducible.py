"""A seed pins the demo: the same seed gives byte-identical synthetic data and tiny base, in
fresh processes with different hash seeds (the README's reproducibility claim)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _digest(folder: Path) -> dict[str, str]:
    """Each file's hash, with the folder's own path taken out (records name their videos)."""
    return {str(p.relative_to(folder)): hashlib.sha256(
        p.read_bytes().replace(str(folder).encode(), b"<folder>")).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(args: list[str], hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run([sys.executable, "-m", "videostar.cli", *args], check=True, env=env,
                   capture_output=True)


def test_same_seed_same_bytes(tmp_path: Path):
    for run, hash_seed in (("a", "1"), ("b", "2")):
        _cli(["data", "synthetic", "--count", "4", "--seed", "3", "--out", str(tmp_path / run / "data")],
             hash_seed)
        _cli(["model", "tiny", "--steps", "6", "--videos", "8", "--seed", "3",
              "--out", str(tmp_path / run / "base")], hash_seed)
    for part in ("data", "base"):
        a, b = _digest(tmp_path / "a" / part), _digest(tmp_path / "b" / part)
        assert a and a.keys() == b.keys()
        assert a == b, [name for name in a if a[name] != b[name]]
    other = tmp_path / "c"
    _cli(["model", "tiny", "--steps", "6", "--videos", "8", "--seed", "4", "--out", str(other)], "1")
    assert _digest(other)["model.safetensors"] != _digest(tmp_path / "a" / "base")["model.safetensors"]
