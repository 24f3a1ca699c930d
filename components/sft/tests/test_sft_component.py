import pytest
from videostar.components import sft

pytestmark = pytest.mark.fast


def test_sft_interface(interface):
    inputs = {"config", "cycle", "parent_run", "pipeline_run", "base_model", "verification", "rationales"}
    assert interface(sft) == (inputs, {"model", "out", "metrics"}, "gpu")
