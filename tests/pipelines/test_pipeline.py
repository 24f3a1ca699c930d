"""The cyclic KFP pipeline: compiled structure, components as functions, and a local run."""

import copy
import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import S3_ENV, TINY_CONFIG, free_port
from kfp import dsl
from videostar.components import build_components
from videostar.pipelines.local import collect
from videostar.pipelines.submit import compile_pipeline

from videostar import layout
from videostar.cli import main
from videostar.config import load_config
from videostar.data.records import read_records, write_json, write_jsonl
from videostar.data.synthetic import write_kinetics_split
from videostar.model import MODEL_CARD


def _compile(tmp_path: Path, cycles: int, shards: int, **pipeline) -> tuple[dict, dict]:
    """The compiled pipeline spec and its Kubernetes executors (compiled once per setting)."""
    spec, platform = _compiled(cycles, shards, tuple(sorted(pipeline.items())))
    return copy.deepcopy(spec), copy.deepcopy(platform)


@functools.cache
def _compiled(cycles: int, shards: int, pipeline: tuple[tuple[str, Any], ...]) -> tuple[dict, dict]:
    cfg = load_config(TINY_CONFIG)
    cfg.decide.max_cycles, cfg.pipeline.num_shards = cycles, shards
    for key, value in pipeline:
        setattr(cfg.pipeline, key, value)
    with tempfile.TemporaryDirectory() as tmp:
        spec, platform = yaml.safe_load_all(compile_pipeline(cfg, Path(tmp) / "p.yaml").read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _task_names(spec: dict) -> list[str]:
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return [t["taskInfo"]["name"] for dag in dags for t in dag["tasks"].values()]


def _cycle_chain(spec: dict) -> list[str]:
    """The cycle sub-pipelines from the root down: cycle k+1 runs inside the root's condition on
    cycle k's decision, nested in cycle k's own condition; no cycle's graph holds another's."""
    chain, dag = [], spec["root"]["dag"]
    while True:
        (task,) = [t for t in dag["tasks"].values() if t["taskInfo"]["name"] == f"cycle {len(chain)}"]
        chain.append(task["componentRef"]["name"])
        assert not any(t["taskInfo"]["name"].startswith("cycle ")
                       for t in spec["components"][chain[-1]]["dag"]["tasks"].values())
        conditions = [t for t in dag["tasks"].values()
                      if t["taskInfo"]["name"] == f"continue-after-cycle-{len(chain) - 1}"]
        if not conditions:
            return chain
        (cond,) = conditions
        dag = spec["components"][cond["componentRef"]["name"]]["dag"]


@pytest.mark.parametrize(("cycles", "shards"), [
    pytest.param(1, 1, marks=pytest.mark.fast), pytest.param(3, 2, marks=pytest.mark.fast),
    (10, 16),  # the scale case: 15 s of compiling, left to the full suite
])
def test_cycles_unroll_into_nested_conditions(tmp_path: Path, cycles: int, shards: int):
    spec, _ = _compile(tmp_path, cycles, shards)
    names = _task_names(spec)
    for k in range(cycles):
        for step in ("generate", "verify", "rationalize", "sft", "decide"):
            assert names.count(f"cycle-{k}-{step}") == 1, (k, step)
    assert f"cycle-{cycles}-generate" not in names
    assert _cycle_chain(spec) == [f"comp-cycle-{k}" for k in range(cycles)]  # one sub-graph per cycle
    loops = [c["dag"]["tasks"] for c in spec["components"].values() if "dag" in c]
    iterators = [t["parameterIterator"] for tasks in loops for t in tasks.values()
                 if "parameterIterator" in t]
    assert len(iterators) == 2 * cycles
    assert all(json.loads(it["items"]["raw"]) == list(range(shards)) for it in iterators)


@pytest.mark.fast
def test_condition_reads_the_previous_decision(tmp_path: Path):
    """Cycle 1 runs when cycle 0's graph hands on decide's verdict true; the RLAIF stage when
    it is false."""
    spec, _ = _compile(tmp_path, 2, 2)
    conds = {t["taskInfo"]["name"]: t["triggerPolicy"]["condition"]
             for t in spec["root"]["dag"]["tasks"].values() if "triggerPolicy" in t}
    decision = "inputs.parameter_values['pipelinechannel--cycle-0-Output']"
    assert conds == {"continue-after-cycle-0": f"{decision} == true",
                     "stop-after-cycle-0": f"{decision} == false"}
    outputs = spec["components"]["comp-cycle-0"]["dag"]["outputs"]
    assert outputs["parameters"]["Output"]["valueFromParameter"] == {
        "producerSubtask": "decide", "outputParameterKey": "Output"}


@pytest.mark.fast
@pytest.mark.parametrize("cycles", [1, 3])
def test_rlaif_follows_whichever_cycle_stops(tmp_path: Path, cycles: int):
    """One RLAIF stage per place the cycles can stop: each stop branch, and after the last cycle."""
    spec, _ = _compile(tmp_path, cycles, 2)
    names = _task_names(spec)
    assert names.count("VLM-RLAIF") == cycles  # the stage's sub-graph, once per stop branch
    rl = load_config(TINY_CONFIG).rlaif.algorithm  # the demo's RL step: grpo
    for step in ("preferences", "reward-model", rl, "evaluate"):
        assert names.count(f"rlaif-{step}") == cycles, step
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    for dag in dags:
        tasks = {t["taskInfo"]["name"]: t for t in dag["tasks"].values()}
        if f"rlaif-{rl}" in tasks:
            inputs = tasks[f"rlaif-{rl}"]["inputs"]["artifacts"]
            assert inputs["reward_model"]["taskOutputArtifact"]["producerTask"].startswith("reward-model")
            ev = tasks["rlaif-evaluate"]["inputs"]
            assert ev["parameters"]["stage"]["runtimeValue"]["constant"] == "rlaif"


@pytest.mark.fast
def test_rlaif_alone_from_a_given_sft_model(tmp_path: Path):
    cfg = load_config(TINY_CONFIG)
    cfg.rlaif.sft_model = "s3://models/sft-cycle-2"
    spec, _ = yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text())
    names = _task_names(spec)
    assert sorted(names) == sorted(["base-model", "dataset", "sft-model", "track-start", "VLM-RLAIF",
                                    "rlaif-preferences", "rlaif-reward-model", f"rlaif-{cfg.rlaif.algorithm}",
                                    "rlaif-evaluate"])
    assert spec["root"]["inputDefinitions"]["parameters"]["sft_model"]["defaultValue"] == (
        "s3://models/sft-cycle-2")


@pytest.mark.fast
def test_every_sft_starts_from_the_base(tmp_path: Path):
    """Each cycle's SFT reads its graph's base_model input, which is the imported base model
    (in the root, or handed into the conditions the later cycles run in)."""
    spec, _ = _compile(tmp_path, 3, 2)
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    sfts = [t for dag in dags for t in dag["tasks"].values() if t["taskInfo"]["name"].endswith("-sft")]
    assert len(sfts) == 3
    for task in sfts:
        assert task["inputs"]["artifacts"]["base_model"] == {"componentInputArtifact": "base_model"}
    cycles = [t for dag in dags for t in dag["tasks"].values() if t["taskInfo"]["name"].startswith("cycle ")]
    for task in cycles:
        assert task["inputs"]["artifacts"]["base_model"] in (
            {"taskOutputArtifact": {"outputArtifactKey": "artifact", "producerTask": "importer"}},
            {"componentInputArtifact": "pipelinechannel--importer-artifact"})


@pytest.mark.fast
def test_gpu_scheduling_lands_in_the_platform_spec(tmp_path: Path):
    spec, executors = _compile(tmp_path, 2, 4, pvc="videostar-data")
    resources = spec["deploymentSpec"]["executors"]["exec-generate"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    assert resources["resourceMemoryLimit"] == "64Gi"
    gen = executors["exec-generate"]
    assert gen["nodeSelector"]["labels"] == {"videostar.ai/pool": "gpu"}
    assert gen["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert gen["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
    assert gen["emptyDirMounts"][0]["medium"] == "Memory"
    assert gen["pvcMount"][0]["mountPath"] == "/data"
    secrets = {s["secretName"]: s for s in gen["secretAsEnv"]}
    assert {"videostar-s3", "videostar-mlflow"} <= set(secrets)
    verify = executors["exec-verify"]
    assert verify["nodeSelector"]["labels"] == {"videostar.ai/pool": "cpu"}
    assert "tolerations" not in verify
    assert "accelerator" not in spec["deploymentSpec"]["executors"]["exec-verify"]["container"].get(
        "resources", {})
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
              if "container" in e}
    assert images == {"ghcr.io/videostar/videostar-gpu:0.1.0", "ghcr.io/videostar/videostar-cpu:0.1.0"}


@pytest.mark.fast
def test_kubernetes_native_manifest(tmp_path: Path):
    cfg = load_config(TINY_CONFIG)
    out = compile_pipeline(cfg, tmp_path / "k.yaml", kubernetes_manifest=True, namespace="kubeflow")
    kinds = [(d["kind"], d["metadata"]["namespace"]) for d in yaml.safe_load_all(out.read_text())]
    assert kinds == [("Pipeline", "kubeflow"), ("PipelineVersion", "kubeflow")]


@pytest.mark.fast
def test_bad_pipeline_config_exits_2(tmp_path: Path, capsys):
    bad = tmp_path / "run.yaml"
    bad.write_text("pipeline:\n  num_shards: 0\n")
    assert main(["--config", str(bad), "pipeline", "compile", "-o", str(tmp_path / "p.yaml")]) == 2
    assert "pipeline.num_shards: invalid value" in capsys.readouterr().err
    bad.write_text("pipeline:\n  generate:\n    tolerations: [{operator: Exists}]\n")
    assert main(["--config", str(bad), "run", "--local"]) == 2
    assert "pipeline.generate.tolerations[0]" in capsys.readouterr().err


@pytest.mark.fast
def test_submit_to_an_unreachable_endpoint_is_one_line(tmp_path: Path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("pipeline:\n  base_model: s3://m/base\n  dataset: s3://d/records.jsonl\n")
    assert main(["--config", str(cfg), "pipeline", "submit", "--host", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: http://127.0.0.1:9: could not submit")


def _artifact(cls, path: Path):
    return cls(name=path.name, uri=str(path))


def test_verify_and_decide_components_as_functions(tmp_path: Path, synthetic_data: Path):
    """verify then decide twice: the yields join the history, the cycles stop on validation and
    the better earlier cycle's model is handed on."""
    ops = build_components(load_config(TINY_CONFIG).pipeline.images)
    suite = {"name": "kinetics700", "role": "validation", "data": {"csv": "v.csv", "videos": "v"}}
    config = json.dumps({"decide": {"max_cycles": 3, "select": "val.kinetics700.accuracy"},
                         "evaluate": {"suites": [suite]}})
    start = tmp_path / "start"
    ops.start.python_func(config=config, pipeline_run="r", out=_artifact(dsl.Dataset, start))
    shards = []
    for i, rec in enumerate(read_records(synthetic_data)[:4]):
        shard = tmp_path / f"gen{i}"
        good = rec.meta["reference"] if i % 2 == 0 else "I cannot tell."
        write_jsonl(shard / "answers.jsonl", [rec.to_json() | {"answer": good}])
        shards.append(_artifact(dsl.Dataset, shard))
    ver_out, metrics = tmp_path / "verify", _artifact(dsl.Metrics, tmp_path / "m1")
    ops.verify.python_func(config=config, answers=shards, out=_artifact(dsl.Dataset, ver_out),
                           metrics=metrics)
    assert metrics.metadata["total"] == 4 and metrics.metadata["passed"] == 2
    rat = tmp_path / "rat"
    rat.mkdir()
    (rat / "metrics.json").write_text(json.dumps({"passed": 1, "per_label_type": {}}))
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / layout.METRICS).write_text(json.dumps({"step": "sft", "train_loss": 1.0}))
    models = {}
    for name in ("base", "model-0", "model-1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "weights").write_text(name)
        models[name] = _artifact(dsl.Model, tmp_path / name)

    def decide(cycle: int, previous: Path, handed_on: str, accuracy: float) -> bool:
        evaluation = tmp_path / f"eval-{cycle}"
        write_json(evaluation / layout.SCORES, {"stage": "cycle", "cycle": cycle,
                                                "scores": {"val.kinetics700.accuracy": accuracy}})
        return ops.decide.python_func(
            config=config, cycle=cycle, parent_run="", verification=_artifact(dsl.Dataset, ver_out),
            rationales=[_artifact(dsl.Dataset, rat)], training=_artifact(dsl.Dataset, tmp_path / "sft"),
            model=models[f"model-{cycle}"], handed_on=models[handed_on],
            previous=_artifact(dsl.Dataset, previous),
            out=_artifact(dsl.Dataset, tmp_path / f"decide-{cycle}"),
            chosen=_artifact(dsl.Model, tmp_path / f"chosen-{cycle}"),
            metrics=_artifact(dsl.Metrics, tmp_path / f"m-{cycle}"),
            evaluation=_artifact(dsl.Dataset, evaluation))

    assert decide(0, start, "base", 0.5) is True
    history = json.loads((tmp_path / "decide-0/history.json").read_text())
    assert [h["total_yield"] for h in history] == [0.75]
    produced = json.loads((tmp_path / "decide-0" / layout.CYCLE).read_text())
    assert produced["training_files"] == [str(ver_out / layout.VERIFIED), str(rat / layout.VERIFIED)]
    assert (tmp_path / "chosen-0/weights").read_text() == "model-0"
    models["chosen-0"] = _artifact(dsl.Model, tmp_path / "chosen-0")
    assert decide(1, tmp_path / "decide-0", "chosen-0", 0.25) is False  # no new best on validation
    decision = json.loads((tmp_path / "decide-1" / layout.DECISION).read_text())
    assert decision["chosen"] == 0 and "has not improved" in decision["reason"]
    assert (tmp_path / "chosen-1/weights").read_text() == "model-0"
    assert len(json.loads((tmp_path / "decide-1/history.json").read_text())) == 2


@pytest.mark.slow  # the CI tier: tests/test_export.py runs the tiny pipeline through kfp.local in `make test`
@pytest.mark.trains
def test_pipeline_runs_locally_with_tracking(
    tiny_base: Path, synthetic_data: Path, tmp_path: Path, capsys, monkeypatch,
    mlflow_server: str, moto_endpoint: str,
):
    """2 cycles x 2 shards and the RLAIF stage through kfp.local, tracked in a real MLflow server
    with S3 artifacts."""
    for key, value in {**S3_ENV, "VIDEOSTAR_S3_ENDPOINT": moto_endpoint}.items():
        monkeypatch.setenv(key, value)
    # MLflow samples system metrics every 10 s: the tiny SFT can end before the first sample
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    config = tmp_path / "run.yaml"
    tiny = yaml.safe_load(TINY_CONFIG.read_text())
    tiny["pipeline"] |= {"base_model": str(tiny_base), "dataset": str(synthetic_data), "num_shards": 2}
    tiny["decide"]["max_cycles"] = 2
    tiny["rlaif"]["ppo"] |= {"steps": 3, "save_every": 0}
    tiny["rlaif"]["algorithm"] = "ppo"  # the paper's; the demo's grpo runs through kfp.local in test_grpo
    tiny["tracking"] = {"mlflow_uri": mlflow_server, "experiment": "pipeline-test",
                        "registered_model": "pipeline-test-sft", "registered_policy": "pipeline-test-policy",
                        "store": "s3://videostar-runs"}
    heldout = write_kinetics_split(tmp_path / "heldout", 6, seed=1)
    validation = write_kinetics_split(tmp_path / "validation", 6, seed=2)
    for suite, csv in zip(tiny["evaluate"]["suites"], (heldout, validation), strict=True):
        suite["data"] = {"csv": str(csv), "videos": str(csv.parent / "videos")}
    config.write_text(yaml.safe_dump(tiny))
    assert main(["--config", str(config), "run", "--local", "--root", str(tmp_path / "runs")]) == 0
    (run_dir,) = (p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    run = collect(run_dir)
    assert [c["cycle"] for c in run.cycles] == [0, 1]
    assert run.cycles[1]["answer_yield"] > run.cycles[0]["answer_yield"]
    assert len(run.models) == 2
    for model in run.models:
        card = json.loads((model / MODEL_CARD).read_text())
        assert card["kind"] == "lora" and Path(card["base"]).name == tiny_base.name
    assert len(list(run_dir.rglob(layout.ANSWERS))) == 4  # 2 shards x 2 cycles
    out = capsys.readouterr().out
    assert "answer yield" in out and str(run_dir) in out and mlflow_server in out

    assert all("eval.kinetics700.accuracy" in c and "val.kinetics700.accuracy" in c for c in run.cycles)
    scores = [c["val.kinetics700.accuracy"] for c in run.cycles]
    chosen = scores.index(max(scores))  # the best on validation (ties: the earlier) is handed on
    assert run.decisions[-1]["chosen"] == chosen
    assert (run.handed_on / "adapter_model.safetensors").read_bytes() == (
        run.models[chosen] / "adapter_model.safetensors").read_bytes()
    stages = [json.loads(p.read_text()) for p in run_dir.rglob(layout.SCORES)]
    assert sorted((s["stage"], s["cycle"]) for s in stages if s["stage"] != "rlaif") == [
        ("baseline", None), ("cycle", 0), ("cycle", 1)]
    assert "eval.kinetics700.accuracy" in run.baseline
    _check_rlaif(run, tiny_base)
    _check_mlflow(mlflow_server, run.cycles, run.rlaif, chosen)
    assert main(["--config", str(config), "compare"]) == 0
    table = capsys.readouterr().out
    assert "rationalized" in table and f"{run.cycles[1]['answer_yield']:.4g}" in table


def _check_rlaif(run, tiny_base: Path) -> None:
    """The stage ran after the last cycle, on its model; pairs, both models and scores are there."""
    r = run.rlaif
    assert r["preferences"]["kept"] == r["preferences"]["train_pairs"] + r["preferences"]["heldout_pairs"] > 0
    pairs = [json.loads(line) for line in next(run.root.rglob(layout.PAIRS)).open()]
    assert pairs and {"prompt", "chosen", "rejected", "narrative", "judge_outputs"} <= set(pairs[0])
    assert pairs[0]["narrative"].startswith("Clip 1: ")
    (rm_card,) = [c for c in map(lambda p: json.loads(p.read_text()), run.root.rglob(MODEL_CARD))
                  if c["kind"] == "reward_model"]
    card = json.loads((Path(r["ppo"]["model"]) / MODEL_CARD).read_text())
    assert rm_card["kind"] == "reward_model" and card["kind"] == "lora"
    assert card["base"] == rm_card["base"] == str(run.handed_on)  # the chosen cycle's model
    assert r["ppo"]["steps"] == 3 and r["reward_model"]["heldout_accuracy"] is not None
    assert "eval.kinetics700.accuracy" in r["scores"] and r["seconds"] > 0
    assert run.baseline and run.baseline != r["scores"]


def _check_mlflow(uri: str, cycles: list[dict], rlaif: dict, chosen: int) -> None:
    """Read the run back: nested runs, metric histories, datasets, model versions, bucket objects."""
    import minio
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("pipeline-test")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if "videostar.cycle" not in r.data.tags]
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    (aligned,) = [r for r in nested if r.data.tags["cycle"] == "rlaif"]
    children = sorted((r for r in nested if r is not aligned), key=lambda r: int(r.data.tags["cycle"]))
    assert [r.data.tags["cycle"] for r in children] == ["0", "1"]
    assert all(r.data.tags["base_model"] and r.data.tags["dataset"] for r in children)
    history = client.get_metric_history(parent.info.run_id, "answer_yield")
    assert [(m.step, round(m.value, 6)) for m in history] == [
        (c["cycle"], round(c["answer_yield"], 6)) for c in cycles]
    assert "train_loss" in children[0].data.metrics and "total_yield.class" in children[0].data.metrics
    assert "eval.kinetics700.accuracy" in children[1].data.metrics
    assert "baseline.eval.kinetics700.accuracy" in parent.data.metrics
    assert any(k.startswith("system/") for k in children[0].data.metrics), "system metrics are on"
    assert parent.data.params["decide.max_cycles"] == "2"
    for child in children:
        (ds,) = child.inputs.dataset_inputs
        assert json.loads(ds.dataset.source)["uri"].startswith("s3://videostar-runs/runs/")
    _check_mlflow_rlaif(client, parent, aligned, rlaif)
    versions = client.search_model_versions("name = 'pipeline-test-sft'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert client.get_model_version_by_alias("pipeline-test-policy", "aligned").tags["stage"] == "rlaif"
    assert client.get_model_version_by_alias("pipeline-test-sft", "candidate").version == "2"
    assert client.get_model_version_by_alias("pipeline-test-sft", "champion").tags["cycle"] == str(chosen)
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id, "plots")]
    assert artifacts == ["plots/ppo_curves.png", "plots/yield_per_cycle.png"]
    s3 = minio.Minio(os.environ["VIDEOSTAR_S3_ENDPOINT"].removeprefix("http://"), access_key="testing",
                     secret_key="testing", secure=False)
    keys = {o.object_name for o in s3.list_objects("videostar-runs", recursive=True)}
    assert {k.split("/", 2)[2] for k in keys} == {"cycle-0/sft/train.jsonl", "cycle-1/sft/train.jsonl",
                                                  "rlaif/preferences.jsonl"}
    # this experiment's artifacts only (proxied: <experiment id>/...): other tests' runs share the bucket
    adapters = [o.object_name for o in s3.list_objects("mlflow", prefix=f"{exp.experiment_id}/",
                                                         recursive=True)]
    # two cycles, the reward model and the aligned policy
    assert sum(name.endswith("adapter_model.safetensors") for name in adapters) == 4


def _check_mlflow_rlaif(client, parent, aligned, rlaif: dict) -> None:
    """The RLAIF run: per-step PPO curves, the reward model's accuracy, the preference dataset."""
    steps = client.get_metric_history(aligned.info.run_id, "ppo.kl")
    assert [m.step for m in steps] == [1, 2, 3]
    for name in ("ppo.reward", "ppo.entropy", "ppo.clipfrac", "ppo.value_loss"):
        assert len(client.get_metric_history(aligned.info.run_id, name)) == 3
    metrics = aligned.data.metrics
    assert metrics["reward_model.heldout_accuracy"] == rlaif["reward_model"]["heldout_accuracy"]
    assert metrics["ppo.heldout_reward_after"] == pytest.approx(rlaif["ppo"]["heldout_reward_after"])
    assert "eval.kinetics700.accuracy" in metrics
    assert parent.data.metrics["rlaif.preferences.kept"] == rlaif["preferences"]["kept"]
    (ds,) = aligned.inputs.dataset_inputs
    assert ds.dataset.name == "rlaif-preferences"
    assert json.loads(ds.dataset.source)["uri"].endswith("/rlaif/preferences.jsonl")
    # the reward model and the policy are the RLAIF run's LoggedModels, not run artifacts
    models = client.search_logged_models([aligned.info.experiment_id],
                                         filter_string=f"source_run_id = '{aligned.info.run_id}'")
    assert sorted(m.name for m in models) == ["reward-model", "rl-policy"]
    assert not client.list_artifacts(aligned.info.run_id)


def test_unreachable_mlflow_fails_before_any_step(tiny_base: Path, synthetic_data: Path, tmp_path: Path,
                                                   capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "pipeline": {"base_model": str(tiny_base), "dataset": str(synthetic_data)},
        "tracking": {"mlflow_uri": f"http://127.0.0.1:{free_port()}"}}))
    assert main(["--config", str(config), "run", "--local", "--root", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if line.startswith("error:")] == err[-1:]
    assert err[-1].startswith("error: MLflow at http://127.0.0.1:")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
