import pytest
from videostar.components import preferences

pytestmark = pytest.mark.fast


def test_preferences_interface(interface):
    inputs = {"config", "parent_run", "model", "base_model", "records"}
    assert interface(preferences) == (inputs, {"out", "metrics"}, "gpu")
