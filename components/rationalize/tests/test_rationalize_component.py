import pytest
from videostar.components import rationalize

pytestmark = pytest.mark.fast


def test_rationalize_interface(interface):
    inputs = {"config", "model", "base_model", "verification", "shard", "num_shards"}
    assert interface(rationalize) == (inputs, {"out", "metrics"}, "gpu")
