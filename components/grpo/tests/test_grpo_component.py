import pytest
from videostar.components import grpo, ppo

pytestmark = pytest.mark.fast


def test_grpo_interface_is_ppos(interface):
    """The pipeline puts grpo where ppo was: ppo's inputs and outputs, on the GPU pool (less
    ``pipeline_run``, which names PPO's TrainJob: GRPO runs in its step)."""
    inputs = {"config", "parent_run", "model", "base_model", "reward_model", "records", "preferences"}
    outputs = {"policy", "out", "metrics"}
    assert interface(grpo) == (inputs, outputs, "gpu")
    ppo_inputs, ppo_outputs, pool = interface(ppo)
    assert (ppo_inputs - {"pipeline_run"}, ppo_outputs, pool) == (inputs, outputs, "gpu")
