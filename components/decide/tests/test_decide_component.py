import pytest
from videostar.components import decide

pytestmark = pytest.mark.fast


def test_decide_interface(interface):
    inputs = {"config", "cycle", "parent_run", "verification", "rationales", "training", "model",
              "handed_on", "previous", "evaluation"}
    assert interface(decide) == (inputs, {"out", "chosen", "metrics", "Output"}, "cpu")
