"""bench/bench_gpu.py end to end with the tiny config on CPU: the GPU run is the same code."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmark scripts run in the CI tier

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_gpu.py"


def test_bench_gpu_runs_end_to_end_with_the_tiny_config(tmp_path: Path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    phases = [r["phase"].split(" (")[0] for r in result["rows"]]
    assert phases == ["generate", "LoRA r=64 SFT", "full SFT"]
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in result["rows"])  # no peak on CPU
    assert result["rows"][0]["answers_per_s"] > 0
    lora, full = result["rows"][1:]
    assert 0 < lora["trainable_params"] < full["trainable_params"] < result["params"]
    assert all(math.isfinite(r["loss"]) for r in (lora, full))
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("phase"))
    assert [line.split(" (")[0] for line in lines[header + 1:header + 4]] == phases


def test_vllm_comparison_needs_vllm_and_a_gpu():
    """``--vllm`` compares HF and vLLM answers/s on a GPU; without one it is a one-line usage error."""
    proc = subprocess.run([sys.executable, str(BENCH), "--tiny", "--vllm"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "error: --vllm needs vLLM on a CUDA GPU (the images/vllm.Dockerfile image) and the real-size model")
