"""A decide step killed while uploading its cycle's model leaves a PENDING LoggedModel in MLflow;
the retried step must not rank or register it, nor reuse it: it is marked FAILED and the model is
logged anew, against a real ``mlflow server``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from videostar import tracking
from videostar.config import RunConfig

pytestmark = [pytest.mark.faults]


def test_a_model_upload_cut_short_is_failed_and_logged_anew(mlflow_server: str, tmp_path: Path, monkeypatch):
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    client = MlflowClient(mlflow_server)
    cfg = RunConfig()
    cfg.tracking.mlflow_uri, cfg.tracking.experiment = mlflow_server, "cut-short-upload"
    cfg.tracking.registered_model, cfg.tracking.system_metrics = "cut-short-sft", False
    parent = tracking.start_run(cfg, "cut-short")
    run_id = tracking.cycle_run(cfg, parent, 0, {})
    experiment = client.get_run(run_id).info.experiment_id
    # what the killed attempt left: the model created, its files half uploaded, never finalized
    stale = client.create_logged_model(experiment, name="cycle-0", source_run_id=run_id,
                                       model_type=tracking.SFT_MODEL, tags={tracking.PARENT_RUN_TAG: parent})
    assert tracking.ranked_models(client, experiment, parent, "total_yield") == []  # never ranked

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4}))
    data = tmp_path / "verified.jsonl"
    data.write_text('{"id": "r1"}\n')
    summary = {"cycle": 0, "answer_yield": 0.5, "rationalization_yield": 0.5, "total_yield": 0.7,
               "per_label_type": {}}
    logged = tracking.log_cycle(cfg, parent, summary, {"train_loss": 1.0, "examples": 2}, [str(data)],
                                str(adapter), [summary], {})

    assert str(client.get_logged_model(stale.model_id).status) == "FAILED"
    assert logged["model_id"] != stale.model_id
    assert [m.model_id for m in tracking.ranked_models(client, experiment, parent, "total_yield")] == [
        logged["model_id"]]
    champion = client.get_model_version_by_alias("cut-short-sft", "champion")
    assert champion.source == f"models:/{logged['model_id']}"
