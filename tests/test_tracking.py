"""MLflow under KFP's MLflow plugin (KFP 2.17): the plugin owns one run per pipeline run and a
nested run per task, and gives each task ``MLFLOW_RUN_ID`` (its own run) and
``MLFLOW_EXPERIMENT_ID``. Against a real ``mlflow server``, runs are created the way the plugin
creates them and the steps run with those variables: cycles must nest under the pipeline's run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from videostar import tracking
from videostar.config import RunConfig
from videostar.star import steps

PLUGIN_EXPERIMENT = "kfp-plugin-experiment"


def _plugin_runs(client: MlflowClient, experiment_id: str) -> dict[str, str]:
    """The pipeline's run, a sub-pipeline's run and three task runs, as the plugin nests them."""
    pipeline = client.create_run(experiment_id, run_name="cyclic-run-7f3a",
                                 tags={"kfp.pipeline_run_id": "7f3a"}).info.run_id
    loop = client.create_run(experiment_id, run_name="for-loop-2",
                             tags={"mlflow.parentRunId": pipeline}).info.run_id
    runs = {"pipeline": pipeline, "loop": loop}
    for task, parent in (("start", pipeline), ("sft", loop), ("conclude", loop)):
        runs[task] = client.create_run(experiment_id, run_name=f"{task}-op",
                                       tags={"mlflow.parentRunId": parent}).info.run_id
    return runs


def _summary(cycle: int, answer_yield: float) -> dict:
    return {"cycle": cycle, "answer_yield": answer_yield, "rationalization_yield": 0.5,
            "total_yield": answer_yield + 0.1,
            "per_label_type": {"class": {"answer_yield": answer_yield, "total_yield": 0.9}}}


def test_cycles_nest_under_the_plugins_pipeline_run(mlflow_server: str, tmp_path: Path, monkeypatch):
    client = MlflowClient(mlflow_server)
    experiment_id = client.create_experiment(PLUGIN_EXPERIMENT)
    runs = _plugin_runs(client, experiment_id)
    cfg = RunConfig()
    cfg.tracking.mlflow_uri = mlflow_server
    cfg.tracking.experiment = "videostar-own"  # the plugin's experiment wins
    cfg.tracking.registered_model = "plugin-test-sft"
    cfg.tracking.system_metrics = False
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)

    monkeypatch.setenv("MLFLOW_RUN_ID", runs["start"])  # the track-start task
    parent = steps.start(cfg, "7f3a")
    assert parent == runs["pipeline"]

    monkeypatch.setenv("MLFLOW_RUN_ID", runs["sft"])  # a task inside the loop's sub-pipeline
    with tracking.step_run(cfg, parent, 0, {"dataset": "d"}) as active:
        assert active is not None and active != runs["sft"]
    model_dir = tmp_path / "adapter"
    model_dir.mkdir()
    (model_dir / "adapter_config.json").write_text(json.dumps({"r": 4}))
    data = tmp_path / "verified.jsonl"
    data.write_text('{"id": "r1"}\n')
    history = [_summary(0, 0.4)]
    monkeypatch.setenv("MLFLOW_RUN_ID", runs["conclude"])
    logged = tracking.log_cycle(cfg, parent, history[0], {"train_loss": 1.5, "examples": 3},
                                [str(data)], str(model_dir), history, {"dataset": "d"})
    assert logged["run_id"] == active
    history.append(_summary(1, 0.6))
    tracking.log_cycle(cfg, parent, history[1], {"train_loss": 1.2, "examples": 4}, [str(data)],
                       str(model_dir), history, {"dataset": "d"})
    tracking.finish(cfg, parent)

    cycles = client.search_runs([experiment_id], filter_string="tags.`videostar.cycle` != ''")
    assert sorted(r.data.tags["cycle"] for r in cycles) == ["0", "1"]
    assert {r.data.tags["mlflow.parentRunId"] for r in cycles} == {runs["pipeline"]}
    assert {r.info.experiment_id for r in cycles} == {experiment_id}
    assert client.get_experiment_by_name("videostar-own") is None
    pipeline = client.get_run(runs["pipeline"])
    assert pipeline.data.tags[tracking.PARENT_TAG] == "7f3a"
    assert pipeline.data.params["decide.max_cycles"] == "3"
    history_metric = client.get_metric_history(runs["pipeline"], "answer_yield")
    assert [(m.step, m.value) for m in history_metric] == [(0, 0.4), (1, 0.6)]
    # the plugin's runs stay open (it closes them); the cycle runs are ours and are closed
    for name in ("pipeline", "loop", "start", "sft", "conclude"):
        assert client.get_run(runs[name]).info.status == "RUNNING", name
    assert {r.info.status for r in cycles} == {"FINISHED"}
    for task in ("start", "sft", "conclude"):  # nothing hangs under a task's run
        assert not client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{runs[task]}'")
    parent_again, rows = tracking.compare(cfg)
    assert parent_again == runs["pipeline"] and [r["cycle"] for r in rows] == [0, 1]


def test_pipeline_run_of_walks_up_to_the_top(mlflow_server: str):
    client = MlflowClient(mlflow_server)
    experiment_id = client.create_experiment("walk-up")
    runs = _plugin_runs(client, experiment_id)
    assert tracking.pipeline_run_of(client, runs["sft"]) == runs["pipeline"]
    assert tracking.pipeline_run_of(client, runs["pipeline"]) == runs["pipeline"]


@pytest.mark.parametrize("owned", [True, False])
def test_finish_closes_only_its_own_parent(mlflow_server: str, monkeypatch, owned: bool):
    client = MlflowClient(mlflow_server)
    experiment = f"finish-{owned}"
    cfg = RunConfig()
    cfg.tracking.mlflow_uri, cfg.tracking.experiment = mlflow_server, experiment
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    if owned:
        exp_id = client.create_experiment(experiment)
        runs = _plugin_runs(client, exp_id)
        monkeypatch.setenv("MLFLOW_RUN_ID", runs["start"])
    else:
        monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    parent = steps.start(cfg, f"run-{owned}")
    tracking.finish(cfg, parent)
    assert client.get_run(parent).info.status == ("RUNNING" if owned else "FINISHED")
