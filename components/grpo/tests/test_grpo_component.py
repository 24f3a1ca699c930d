import pytest
from videostar.components import grpo, ppo

pytestmark = pytest.mark.fast


def test_grpo_interface_is_ppos(interface):
    """The pipeline puts grpo where ppo was: the same inputs and outputs, on the GPU pool."""
    inputs = {"config", "parent_run", "model", "base_model", "reward_model", "records", "preferences"}
    assert interface(grpo) == (inputs, {"policy", "out", "metrics"}, "gpu") == interface(ppo)
