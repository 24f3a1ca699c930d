import pytest
from videostar.components import evaluate

pytestmark = pytest.mark.fast


def test_evaluate_interface(interface):
    inputs = {"config", "stage", "cycle", "parent_run", "model", "adapter_base"}
    assert interface(evaluate) == (inputs, {"out", "metrics"}, "gpu")


def test_a_cycle_number_belongs_to_the_cycle_stage(tmp_path, dataset):
    model = dataset(tmp_path / "model")
    with pytest.raises(ValueError, match="belongs to stage 'cycle'"):
        evaluate.evaluate(config="{}", stage="baseline", cycle=0, parent_run="", model=model,
                             adapter_base=model, out=dataset(tmp_path / "out"),
                             metrics=dataset(tmp_path / "m"))
