import pytest
from videostar.components import decide

pytestmark = pytest.mark.fast


def test_decide_interface(interface):
    inputs = {"config", "cycle", "parent_run", "verification", "rationales", "training", "model",
              "previous", "evaluation"}
    assert interface(decide) == (inputs, {"out", "metrics", "Output"}, "cpu")
