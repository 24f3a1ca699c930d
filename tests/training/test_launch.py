"""The training command a launcher runs (one build of the step's command line, read back by the
real parser), the checkpoint folder's claim, and the reward loss split over ranks (no model, no
server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from videostar.config.platform import Launcher
from videostar.errors import VideostarError
from videostar.rlaif.reward_model import bradley_terry_loss, bradley_terry_share
from videostar.training.checkpoints import Checkpoints, folder_for
from videostar.training.launch import (
    PPOStep,
    RewardModelStep,
    SftStep,
    delegates,
    step_argv,
    training_command,
)

pytestmark = pytest.mark.fast


SFT = SftStep("b", ["d0.jsonl", Path("d1.jsonl")], Path("o/model"), "o/metrics.json", "parent-1", 2)
REWARD = RewardModelStep("m", "prefs", "r/model", "r/metrics.json", base="b", parent_run="parent-1")


def test_torchrun_command_runs_the_step_cli_on_this_machine():
    cmd = training_command(SFT, Launcher("torchrun", 1, 4), "/c.yaml")
    assert cmd == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                   "--nproc-per-node", "4", "-m", "videostar.cli", "--config", "/c.yaml", "sft",
                   "--base-model", "b", "--data", "d0.jsonl", "d1.jsonl", "--cycle", "2",
                   "--model-out", "o/model", "--metrics-out", "o/metrics.json",
                   "--parent-run", "parent-1"]


def test_trainjob_command_spans_nodes_with_the_runtime_rendezvous():
    cmd = training_command(REWARD, Launcher("trainjob", 2, 8), "/c.yaml")
    assert cmd[:5] == ["torchrun", "--nnodes", "2", "--nproc-per-node", "8"]
    assert "--standalone" not in cmd and cmd[5:] == ["-m", "videostar.cli", "--config", "/c.yaml",
                                                     *step_argv(REWARD)]
    mpi = training_command(REWARD, Launcher("trainjob", 2, 8, runtime="deepspeed-distributed"), "/c.yaml")
    assert mpi == ["mpirun", "--hostfile", "/etc/mpi/hostfile", "python", "-m", "videostar.cli",
                   "--config", "/c.yaml", *step_argv(REWARD)]
    with pytest.raises(ValueError, match="in-process"):
        training_command(SFT, Launcher("local"), "/c.yaml")


def parsed(argv: list[str]) -> dict:
    """``videostar --config c.yaml <argv>`` as the real ``videostar`` parser reads it."""
    from videostar.cli import build_parser

    args = vars(build_parser().parse_args(["--config", "c.yaml", *argv]))
    return {k: v for k, v in args.items() if k not in ("config", "func")}


@pytest.mark.parametrize("parent_run, cycle", [("parent-1", 3), ("", 0)])
def test_the_sft_command_line_reads_back_into_the_values_given(parent_run, cycle):
    step = SftStep(Path("/b"), ["/d0.jsonl", "/d1.jsonl"], "/o/model", Path("/o/metrics.json"),
                   parent_run, cycle)
    assert parsed(step_argv(step)) == {
        "command": "sft", "base_model": "/b", "data": ["/d0.jsonl", "/d1.jsonl"], "cycle": cycle,
        "model_out": "/o/model", "metrics_out": "/o/metrics.json", "parent_run": parent_run,
        "out": None}


@pytest.mark.parametrize("base, parent_run", [("/b", "parent-1"), (None, "")])
def test_the_reward_command_line_reads_back_into_the_values_given(base, parent_run):
    step = RewardModelStep("/m", Path("/prefs"), "/r/model", "/r/metrics.json", base, parent_run)
    assert parsed(step_argv(step)) == {
        "command": "reward-model", "model": "/m", "preferences": "/prefs", "adapter_base": base,
        "model_out": "/r/model", "metrics_out": "/r/metrics.json", "parent_run": parent_run,
        "out": None}


@pytest.mark.parametrize("base, parent_run, fresh", [("/b", "parent-1", True), (None, "", False)])
def test_the_ppo_command_line_reads_back_into_the_values_given(base, parent_run, fresh):
    step = PPOStep("/m", "/rm", Path("/records.jsonl"), "/prefs", "/p/model", "/p/metrics.json", base,
                   parent_run, fresh)
    assert parsed(step_argv(step)) == {
        "command": "ppo", "model": "/m", "reward_model": "/rm", "records": "/records.jsonl",
        "preferences": "/prefs", "adapter_base": base, "model_out": "/p/model",
        "metrics_out": "/p/metrics.json", "parent_run": parent_run, "fresh": fresh, "out": None}


def test_only_training_steps_have_a_command_line():
    with pytest.raises(TypeError, match="not a training step"):
        step_argv("sft")  # type: ignore[arg-type]


def test_only_torchrun_outside_a_worker_delegates(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert delegates(Launcher("torchrun", 1, 2)) and not delegates(Launcher("local"))
    monkeypatch.setenv("LOCAL_RANK", "1")  # a worker runs the step itself
    assert not delegates(Launcher("torchrun", 1, 2))


def test_checkpoints_of_other_work_are_refused(tmp_path: Path):
    folder = folder_for(tmp_path / "model")
    assert folder == tmp_path / "model-checkpoints"
    Checkpoints(folder, {"base": "a", "lr": 1e-3}, 5).claim()
    (folder / "step-5").mkdir()
    Checkpoints(folder, {"lr": 1e-3, "base": "a"}, 9).claim()  # the same work, another interval
    with pytest.raises(VideostarError, match=r"holds the output of other work \(different base\); use "
                       "another folder, or remove it to start over$"):
        Checkpoints(folder, {"base": "b", "lr": 1e-3}, 5).claim()
    Checkpoints(folder, {"base": "b", "lr": 1e-3}, 5).claim(fresh=True)  # ppo --fresh
    assert not (folder / "step-5").exists()


@pytest.mark.parametrize("center", [1e-3, 0.5])
def test_reward_loss_share_alone_has_the_whole_loss_and_gradient(center: float):
    torch.manual_seed(0)
    chosen, rejected = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    bradley_terry_loss(chosen, rejected, center).backward()
    whole = chosen.grad.clone(), rejected.grad.clone()
    chosen.grad = rejected.grad = None
    share = bradley_terry_share(chosen, rejected, center, len(chosen))  # one process: the whole batch
    share.backward()
    assert float(share) == pytest.approx(float(bradley_terry_loss(chosen, rejected, center).detach()))
    assert torch.allclose(chosen.grad, whole[0]) and torch.allclose(rejected.grad, whole[1])
