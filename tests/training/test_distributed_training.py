"""SFT and the reward model under ``torchrun`` (2 gloo ranks on CPU) against one process, and a
2-rank SFT killed after its first checkpoint and rerun: the real CLI, launcher and workers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import colour_preferences
from safetensors.torch import load_file

from videostar.cli import main
from videostar.data.records import read_rows, write_jsonl
from videostar.training.checkpoints import folder_for

pytestmark = pytest.mark.slow

SFT = {"lr": 0.005, "epochs": 2, "batch_size": 4, "warmup_ratio": 0.0, "checkpoint_steps": 3,
       "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}
REWARD = {"lr": 0.003, "epochs": 3, "batch_size": 4, "checkpoint_steps": 2,
          "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}


def config(folder: Path, procs: int) -> Path:
    """A run config: SFT and reward model on ``procs`` processes (1: in-process, as today)."""
    launcher = ({"kind": "torchrun", "procs_per_node": procs} if procs > 1 else {"kind": "local"})
    path = folder / f"config-{procs}.yaml"
    path.write_text(yaml.safe_dump({
        "video": {"num_frames": 4}, "sft": SFT, "rlaif": {"reward_model": REWARD},
        "pipeline": {"sft": {"launcher": launcher}, "reward_model": {"launcher": launcher}}}))
    return path


@pytest.fixture(scope="module")
def sft_data(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """23 verified answers (the references) and one row whose video is gone: 6 steps an epoch."""
    rows = read_rows(synthetic_data)[:23]
    rows = [{**r, "answer": r["meta"].get("reference") or "The answer is given."} for r in rows]
    rows.append({**rows[0], "id": "gone", "video": "/nonexistent/gone.mp4"})
    path = tmp_path_factory.mktemp("sft-data") / "verified.jsonl"
    write_jsonl(path, rows)
    return path


def sft_args(cfg: Path, base: Path, data: Path, out: Path) -> list[str]:
    return ["--config", str(cfg), "sft", "--base-model", str(base), "--data", str(data), "--out", str(out)]


@pytest.fixture(scope="module")
def sft_runs(tiny_base: Path, sft_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same SFT on 1 process and on 2 (torchrun, gloo): {procs: out folder}."""
    tmp = tmp_path_factory.mktemp("sft-runs")
    outs = {}
    for procs in (1, 2):
        outs[procs] = tmp / f"p{procs}"
        assert main(sft_args(config(tmp, procs), tiny_base, sft_data, outs[procs])) == 0
    return outs


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def adapter(out: Path) -> dict:
    return load_file(str(out / "model" / "adapter_model.safetensors"))


def assert_same_weights(a: dict, b: dict, atol: float) -> float:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= atol, f"weights differ by up to {worst}"
    return worst


def test_two_processes_give_the_single_process_loss_curve(sft_runs: dict, tmp_path: Path, sft_data: Path):
    one, two = metrics(sft_runs[1]), metrics(sft_runs[2])
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["optimizer_steps"] == two["optimizer_steps"] == 12  # the global batch, whatever the ranks
    assert one["tokens"] == two["tokens"]
    assert len(one["loss_history"]) == 12 and one["loss_history"][-1] < one["loss_history"][0]
    # padding differs (two half batches vs one), so float rounding does too
    assert two["loss_history"] == pytest.approx(one["loss_history"], rel=1e-3, abs=1e-5)
    assert_same_weights(adapter(sft_runs[1]), adapter(sft_runs[2]), atol=1e-3)
    # the unreadable video is reported once per epoch, by whichever rank had it
    assert [e["id"] for e in two["video_errors"]] == [e["id"] for e in one["video_errors"]] == ["gone"] * 2
    assert not folder_for(sft_runs[2] / "model").exists()  # spent checkpoints are removed

    # the 2-process adapter loads and generates
    records = tmp_path / "records.jsonl"
    write_jsonl(records, read_rows(sft_data)[:3])
    gen = tmp_path / "gen"
    assert main(["--config", str(config(tmp_path, 1)), "generate", "--model", str(sft_runs[2] / "model"),
                 "--data", str(records), "--out", str(gen)]) == 0
    rows = read_rows(gen / "answers.jsonl")
    assert len(rows) == 3 and all(r["answer"].strip() for r in rows)


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (from /proc: no extra dependency)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_at_first_checkpoint(args: list[str], checkpoints: Path) -> list[int]:
    """Run the CLI with ``args`` and SIGKILL its whole process tree as soon as its first checkpoint
    lands (the moment a preempted node dies); returns the tree, every process in it gone."""
    proc = subprocess.Popen([sys.executable, "-m", "videostar.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list(checkpoints.glob("step-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    tree = process_tree(proc.pid)
    for pid in tree:  # torchrun starts its workers in sessions of their own: kill each one
        with contextlib.suppress(ProcessLookupError):  # a short-lived helper may be gone already
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    while any(alive(pid) for pid in tree[1:]):
        time.sleep(0.05)
    return tree


def test_killed_two_process_sft_resumes_from_its_checkpoint(
    sft_runs: dict, tiny_base: Path, sft_data: Path, tmp_path: Path
):
    out = tmp_path / "killed"
    args = sft_args(config(tmp_path, 2), tiny_base, sft_data, out)
    checkpoints = folder_for(out / "model")
    tree = kill_at_first_checkpoint(args, checkpoints)
    assert len(tree) >= 4, "the CLI, torchrun and two workers"
    saved = sorted(checkpoints.glob("step-*"))
    assert len(saved) == 1 and not (out / "model").exists(), "killed before the run ended"
    step = int(saved[0].name[5:])
    assert 3 <= step < 12

    # a torn checkpoint (a rank's part missing) and a killed save's debris are passed over
    torn = checkpoints / "step-11"
    shutil.copytree(saved[0], torn)
    shutil.rmtree(torn / "rank-1")
    (checkpoints / ".step-12.tmp").mkdir()

    result = subprocess.run([sys.executable, "-m", "videostar.cli", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"checkpoint: ignoring the incomplete {torn} (no rank-1/state.json)" in result.stderr
    assert "cleanup: removed the temp folder of an interrupted save" in result.stderr
    resumed, whole = metrics(out), metrics(sft_runs[2])
    assert resumed["resumed_from"] == step
    assert resumed["loss_history"] == pytest.approx(whole["loss_history"], rel=1e-5, abs=1e-7)
    assert resumed["tokens"] == whole["tokens"]  # no example trained twice, none left out
    assert_same_weights(adapter(out), adapter(sft_runs[2]), atol=1e-6)

    # the finished model is not retrained: a rerun (a retried step) completes from its card
    again = subprocess.run([sys.executable, "-m", "videostar.cli", *args], capture_output=True, text=True)
    assert again.returncode == 0 and "already holds this run's model" in again.stderr
    assert metrics(out) == resumed


def test_reward_model_on_two_processes_matches_one(
    tiny_base: Path, synthetic_data: Path, tmp_path: Path
):
    pairs = [p.__dict__ for p in colour_preferences(synthetic_data)]
    prefs = tmp_path / "prefs"
    write_jsonl(prefs / "pairs.jsonl", pairs[:16])
    write_jsonl(prefs / "heldout.jsonl", pairs[16:32])
    results = {}
    for procs in (1, 2):
        out = tmp_path / f"reward-{procs}"
        assert main(["--config", str(config(tmp_path, procs)), "reward-model", "--model", str(tiny_base),
                     "--preferences", str(prefs), "--out", str(out)]) == 0
        results[procs] = metrics(out)
    one, two = results[1], results[2]
    assert (one["world_size"], two["world_size"], one["steps"]) == (1, 2, 12)
    assert two["loss_history"] == pytest.approx(one["loss_history"], rel=1e-3, abs=1e-5)
    assert two["heldout_pairs"] == one["heldout_pairs"] == 16
    assert two["heldout_accuracy"] == one["heldout_accuracy"]


def test_a_failing_worker_fails_the_step_with_its_line(tmp_path: Path, sft_data: Path, capsys):
    code = main(sft_args(config(tmp_path, 2), tmp_path / "no-base", sft_data, tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 1
    assert "error: sft: torchrun exited with status 1 (last line: error: " in err
    assert "no-base" in err.splitlines()[-1]
