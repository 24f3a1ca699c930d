import json

import pytest
from videostar.components import start

pytestmark = pytest.mark.fast


def test_start_interface(interface):
    assert interface(start) == ({"config", "pipeline_run"}, {"out", "Output"}, "cpu")


def test_start_without_tracking_writes_the_empty_history(tmp_path, dataset, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri exports it
    assert start.start(config="{}", pipeline_run="r", out=dataset(tmp_path / "out")) == ""
    assert json.loads((tmp_path / "out" / "history.json").read_text()) == []
