"""A seed pins the demo: the same seed gives byte-identical synthetic data and tiny base, in
fresh processes with different hash seeds (the README's reproducibility claim)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from videostar.resume import STAMP

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
        _cli(["model", "tiny", "--pretrain-steps", "6", "--videos", "8", "--seed", "3",
              "--out", str(tmp_path / run / "base")], hash_seed)
    for part in ("data", "base"):
        a, b = _digest(tmp_path / "a" / part), _digest(tmp_path / "b" / part)
        assert a and a.keys() == b.keys()
        assert a == b, [name for name in a if a[name] != b[name]]
    other = tmp_path / "c"
    _cli(["model", "tiny", "--pretrain-steps", "6", "--videos", "8", "--seed", "4", "--out", str(other)], "1")
    assert _digest(other)["model.safetensors"] != _digest(tmp_path / "a" / "base")["model.safetensors"]


_STEPS = r'''
import json, sys
from pathlib import Path
from videostar.cli import main

base, config, steps = sys.argv[1], sys.argv[2], sys.argv[3].split(",")


def run(*args):
    if main(["--config", config, *args]) != 0:
        sys.exit(f"failed: {args}")


if "data" in steps:
    run("data", "synthetic", "--count", "2", "--seed", "0", "--out", "data")
    near = []  # answers whose nearest word ties with others (one letter off each): a set's order shows
    for row in map(json.loads, Path("data/records.jsonl").read_text().splitlines()):
        words = [w for v in row["label"].values() if isinstance(v, str) for w in v.split()]
        near.append(row | {"answer": " ".join(w[:-1] + c for w in words for c in "xyz")})
    Path("near.jsonl").write_text("".join(json.dumps(r) + "\n" for r in near))
if "generate" in steps:
    run("generate", "--model", base, "--data", "data/records.jsonl", "--out", "gen")
if "verify" in steps:
    run("verify", "--answers", "gen/answers.jsonl", "--out", "ver")
    run("verify", "--answers", "near.jsonl", "--out", "near")
if "rationalize" in steps:
    run("rationalize", "--model", base, "--rejected", "ver/rejected.jsonl", "--out", "rat")
if "decide" in steps:
    run("summarize", "--cycle", "0", "--verify", "ver/metrics.json", "--rationalize", "rat/metrics.json",
        "--out", "summary.json")
    run("decide", "--history", "summary.json", "--out", "decision.json")
'''

_TIMING = ("seconds", "answers_per_s")


def _steps(folder: Path, base: Path, hash_seed: str, steps: str, threads: str = "2") -> None:
    config = folder / "run.yaml"
    # Sampled (per-row seeds), small batches, so a torn batch and the batch-mates matter.
    config.write_text("generate: {temperature: 0.7, max_new_tokens: 12, batch_size: 4}\n")
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": threads}
    done = subprocess.run([sys.executable, "-c", _STEPS, str(base), str(config), steps], cwd=folder,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def _untimed(value: object) -> object:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in _TIMING}
    return value


def _contents(folder: Path) -> dict[str, bytes]:
    """Every output's bytes; metrics.json without its timings (how fast is no output)."""
    import json

    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".json", ".jsonl"):
            data = p.read_bytes()
            if p.name == "metrics.json":
                data = json.dumps(_untimed(json.loads(data))).encode()
            out[str(p.relative_to(folder))] = data
    return out


def test_steps_same_bytes_under_any_hash_seed_and_resume_after_kills(tmp_path: Path, tiny_base: Path):
    """data -> generate -> verify -> rationalize -> summarize/decide on the tiny model, sampled:
    the same bytes under hash seeds 1 and 2 (on 2 threads and on 1); then generate and
    rationalize killed mid-batch (a torn last line) and all rerun under hash seed 3: verify
    rewrites the same bytes, and rationalize and generate resume into what the uninterrupted
    run wrote."""
    every = "data,generate,verify,rationalize,decide"
    for run, hash_seed, threads in (("a", "1", "2"), ("b", "2", "1")):
        (tmp_path / run).mkdir()
        _steps(tmp_path / run, tiny_base, hash_seed, every, threads)
    a, b = _contents(tmp_path / "a"), _contents(tmp_path / "b")
    assert len(a) > 15 and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert a["near/rejected.jsonl"].count(b"(best '") >= 2

    b_dir = tmp_path / "b"
    for step, name in (("gen", "answers.jsonl"), ("rat", "rationales.jsonl")):
        lines = (b_dir / step / name).read_bytes().splitlines(keepends=True)
        assert len(lines) >= 3
        cut = len(lines) // 2  # within the first batch of 4: its rows torn
        (b_dir / step / f"{name}.partial").write_bytes(b"".join(lines[:cut]) + lines[cut][:20])
        for p in (b_dir / step).iterdir():
            if p.name not in (f"{name}.partial", STAMP):
                p.unlink()
    (b_dir / "ver" / "rejected.jsonl").unlink()  # verify killed mid-write too
    _steps(b_dir, tiny_base, "3", "generate,verify,rationalize,decide")
    again = _contents(b_dir)
    changed = [k for k in a if a[k] != again[k] and not k.endswith("metrics.json")]
    assert changed == []
