"""The training command a launcher runs, the checkpoint folder's claim, and the reward loss split
over ranks (no model, no server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from videostar.checkpoints import Checkpoints, folder_for
from videostar.config import config_from_dict
from videostar.config.platform import Launcher
from videostar.errors import ConfigError, VideostarError
from videostar.launch import delegates, training_command
from videostar.rlaif.reward import bradley_terry_loss, bradley_terry_share

pytestmark = pytest.mark.fast


def test_torchrun_command_runs_the_step_cli_on_this_machine():
    cmd = training_command("sft", ["--base", "b", "--cycle", 2], Launcher("torchrun", 1, 4), "/c.yaml")
    assert cmd == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                   "--nproc-per-node", "4", "-m", "videostar.cli", "--config", "/c.yaml", "sft",
                   "--base", "b", "--cycle", "2"]


def test_trainjob_command_spans_nodes_with_the_runtime_rendezvous():
    cmd = training_command("reward", ["--model", "m"], Launcher("trainjob", 2, 8), "/c.yaml")
    assert cmd[:5] == ["torchrun", "--nnodes", "2", "--nproc-per-node", "8"]
    assert "--standalone" not in cmd and cmd[-3:] == ["reward", "--model", "m"]
    with pytest.raises(ValueError, match="in-process"):
        training_command("sft", [], Launcher("local"), "/c.yaml")


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
    Checkpoints(folder, {"lr": 1e-3, "base": "a"}, 9).claim()  # the same work, another interval
    with pytest.raises(VideostarError, match="holds checkpoints of other work"):
        Checkpoints(folder, {"base": "b", "lr": 1e-3}, 5).claim()


def test_deepspeed_runs_are_not_checkpointed():
    with pytest.raises(ConfigError, match="checkpoint_steps"):
        config_from_dict({"sft": {"deepspeed": "zero2.json"}})
    assert config_from_dict({"sft": {"deepspeed": "zero2.json", "checkpoint_steps": 0}})


@pytest.mark.parametrize("center", [1e-3, 0.5])
def test_reward_loss_share_alone_has_the_whole_loss_and_gradient(center: float):
    torch.manual_seed(0)
    chosen, rejected = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    bradley_terry_loss(chosen, rejected, center).backward()
    whole = chosen.grad.clone(), rejected.grad.clone()
    chosen.grad = rejected.grad = None
    share, value = bradley_terry_share(chosen, rejected, center)  # one process: the whole batch
    share.backward()
    assert value == pytest.approx(float(bradley_terry_loss(chosen, rejected, center).detach()))
    assert torch.allclose(chosen.grad, whole[0]) and torch.allclose(rejected.grad, whole[1])
