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
    assert parent_again == runs["pipeline"] and [r["cycle"] for r in rows] == [1, 0]  # best total_yield first


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


def _adapter(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "name": name}))
    return folder


def test_every_model_is_a_logged_model_ranked_and_aliased(mlflow_server: str, tmp_path: Path, monkeypatch,
                                                          capsys):
    """Each cycle's adapter, the reward model and the PPO policy become MLflow 3 LoggedModels of
    their runs, with metrics linked to them and to their datasets; ``champion`` follows the
    ranking by ``decide.metric``; a retried decide step adds nothing; ``compare`` ranks them."""
    from videostar.cli import main

    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    client = MlflowClient(mlflow_server)
    cfg = RunConfig()
    cfg.tracking.mlflow_uri, cfg.tracking.experiment = mlflow_server, "logged-models"
    cfg.tracking.registered_model, cfg.tracking.registered_policy = "lm-sft", "lm-policy"
    cfg.tracking.system_metrics = False
    parent = tracking.start_run(cfg, "lm-run")
    data = tmp_path / "verified.jsonl"
    data.write_text('{"id": "r1"}\n')
    history, logged = [], []
    champions = []
    for cycle, (total, score) in enumerate([(0.5, 0.9), (0.8, 0.2), (0.6, 0.4)]):
        history.append(_summary(cycle, total - 0.1) | {"eval.suite.accuracy": score})
        logged.append(tracking.log_cycle(cfg, parent, history[-1], {"train_loss": 1.0, "examples": 3},
                                         [str(data)], str(_adapter(tmp_path, f"a{cycle}")), history, {}))
        champions.append(client.get_model_version_by_alias("lm-sft", "champion").tags["cycle"])
    assert champions == ["0", "1", "1"]  # total_yield 0.5, 0.8, 0.6: the best so far
    again = tracking.log_cycle(cfg, parent, history[-1], {"train_loss": 1.0, "examples": 3}, [str(data)],
                               str(_adapter(tmp_path, "retry")), history, {})
    assert (again["model_id"], again["model_version"]) == (logged[2]["model_id"], logged[2]["model_version"])

    exp = client.get_experiment_by_name("logged-models")
    models = {m.name: m for m in client.search_logged_models([exp.experiment_id])}
    assert sorted(models) == ["cycle-0", "cycle-1", "cycle-2"]
    for cycle, entry in enumerate(logged):
        model = models[f"cycle-{cycle}"]
        assert model.model_id == entry["model_id"] and model.source_run_id == entry["run_id"]
        assert str(model.status) == "READY" and model.model_type == tracking.SFT_MODEL
        metrics = {m.key: m for m in model.metrics}
        assert metrics["total_yield"].value == pytest.approx(history[cycle]["total_yield"])
        assert metrics["total_yield"].dataset_name == f"cycle-{cycle}-train"
        assert metrics["eval.suite.accuracy"].dataset_name is None  # the model's own score
        files = [f.path for f in client.list_logged_model_artifacts(model.model_id)]
        assert files == ["adapter_config.json"]
        run = client.get_run(entry["run_id"])
        assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
        version = client.get_model_version("lm-sft", entry["model_version"])
        assert version.source == f"models:/{model.model_id}" and version.run_id == entry["run_id"]
    assert len(client.search_model_versions("name = 'lm-sft'")) == 3
    assert client.get_model_version_by_alias("lm-sft", "candidate").version == logged[2]["model_version"]

    # RLAIF: the reward model (linked to the preference pairs) and the registered policy
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p"}\n')
    tracking.log_preferences(cfg, parent, {"kept": 4}, [pairs])
    reward_id = tracking.log_reward_model(cfg, parent, {"heldout_accuracy": 0.75, "loss_history": [0.7, 0.6]},
                                          str(_adapter(tmp_path, "reward")))
    ppo = {"heldout_reward_after": 0.3, "history": [{"step": 1, "reward": 0.1, "kl": 0.0}]}
    tracking.log_policy(cfg, parent, ppo, str(_adapter(tmp_path, "policy")))
    tracking.log_scores(cfg, parent, "rlaif", None, {"eval.suite.accuracy": 0.95})
    reward = client.get_logged_model(reward_id)
    assert reward.model_type == tracking.REWARD_MODEL
    accuracy = next(m for m in reward.metrics if m.key == "reward_model.heldout_accuracy")
    assert (accuracy.value, accuracy.dataset_name) == (0.75, tracking.PREFERENCES)
    policy = client.get_model_version_by_alias("lm-policy", "aligned")
    policy_model = client.get_logged_model(policy.source.removeprefix("models:/"))
    assert policy_model.model_type == tracking.POLICY_MODEL
    assert {m.key: m.value for m in policy_model.metrics} == {"ppo.heldout_reward_after": 0.3,
                                                              "eval.suite.accuracy": 0.95}

    _, rows = tracking.compare(cfg)
    assert [(r["rank"], r["cycle"]) for r in rows] == [(1, 1), (2, 2), (3, 0)]
    assert rows[0]["aliases"] == ["champion"] and rows[1]["aliases"] == ["candidate"]
    _, by_eval = tracking.compare(cfg, parent, "eval.suite.accuracy")
    assert [r["cycle"] for r in by_eval] == [0, 2, 1]
    capsys.readouterr()
    assert main(["compare", "--mlflow-uri", mlflow_server, "--experiment", "logged-models",
                 "--metric", "eval.suite.accuracy"]) == 0
    table = capsys.readouterr().out
    assert "ranked by eval.suite.accuracy" in table and logged[0]["model_id"] in table
    assert table.index(logged[0]["model_id"]) < table.index(logged[1]["model_id"])
