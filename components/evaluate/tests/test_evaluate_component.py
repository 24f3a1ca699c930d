import pytest
from videostar.components import evaluate

pytestmark = pytest.mark.fast


def test_evaluate_interface(interface):
    inputs = {"config", "stage", "cycle", "parent_run", "model", "adapter_base"}
    assert interface(evaluate) == (inputs, {"out", "metrics"}, "gpu")


def test_an_unknown_stage_is_refused(tmp_path, dataset):
    model = dataset(tmp_path / "model")
    with pytest.raises(ValueError, match="stage 'final'"):
        evaluate.evaluate(config="{}", stage="final", cycle=0, parent_run="", model=model,
                             adapter_base=model, out=dataset(tmp_path / "out"),
                             metrics=dataset(tmp_path / "m"))
