import pytest
from videostar.components import generate

pytestmark = pytest.mark.fast


def test_generate_interface(interface):
    inputs = {"config", "model", "base_model", "records", "shard", "num_shards"}
    assert interface(generate) == (inputs, {"out", "metrics"}, "gpu")
