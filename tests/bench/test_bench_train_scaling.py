"""bench/bench_train_scaling.py's CPU mode end to end: 1 and 2 processes train the same steps."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_train_scaling.py"

pytestmark = pytest.mark.slow


def test_bench_train_scaling_runs_one_and_two_processes(tmp_path: Path):
    out = tmp_path / "scaling.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--steps", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = json.loads(out.read_text())["rows"]
    assert (one["procs"], two["procs"]) == (1, 2)
    assert one["steps"] == two["steps"] == 2 and one["tokens"] == two["tokens"]
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=1e-3)  # the same global batch
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in (one, two))
    assert "speed-up" in proc.stdout
