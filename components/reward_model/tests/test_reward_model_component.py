import pytest
from videostar.components import reward_model

pytestmark = pytest.mark.fast


def test_reward_model_interface(interface):
    inputs = {"config", "parent_run", "pipeline_run", "model", "base_model", "preferences"}
    assert interface(reward_model) == (inputs, {"reward_model", "out", "metrics"}, "gpu")
