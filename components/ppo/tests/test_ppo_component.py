import pytest
from videostar.components import ppo

pytestmark = pytest.mark.fast


def test_ppo_interface(interface):
    inputs = {"config", "parent_run", "pipeline_run", "model", "base_model", "reward_model", "records",
              "preferences"}
    assert interface(ppo) == (inputs, {"policy", "out", "metrics"}, "gpu")
