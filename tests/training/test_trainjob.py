"""Training steps as Kubeflow Trainer v2 TrainJobs (``launcher: trainjob``).

The TrainJobs are checked against the Trainer v2 API models (``kubeflow-trainer-api``) and the
pods they make against the strict Kubernetes schemas and the platform's policies; the committed
2 x 8 GPU example is what the code renders. Create, reattach, wait, fail, replace and the log
stream run over HTTP through the real ``kubernetes`` client against :mod:`kube_api`, a loopback
stand-in for the API server (none can run here): what the Trainer controller and the nodes do
is played by each test.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_api import FakeKubeAPI
from manifest_policy import policy_violations, repo_root, validate

from videostar.config import config_from_dict, load_config
from videostar.errors import ConfigError, VideostarError
from videostar.training import launch
from videostar.training import trainjob as tj
from videostar.training.launch import PPOStep, RewardModelStep, SftStep

pytestmark = pytest.mark.fast  # no model, no server but the loopback stand-in

ROOT = repo_root()
EXAMPLE_CONFIG = ROOT / "configs" / "trainjob-sft-2x8.yaml"
EXAMPLE_JOB = ROOT / "manifests" / "examples" / "trainjob-sft-2x8.yaml"
GPU_SFT = {"accelerator_type": "nvidia.com/gpu", "cpu": "8", "memory": "128Gi",
           "node_selector": {"videostar.ai/pool": "gpu"}, "tolerations": [{"key": "nvidia.com/gpu"}],
           "shm_size": "16Gi"}


def config(shared: Path | str = "/data", nodes: int = 1, procs: int = 1, **launcher: Any) -> Any:
    launch = {"kind": "trainjob", "num_nodes": nodes, "procs_per_node": procs, "poll_seconds": 0.01,
              **launcher}
    return config_from_dict({"pipeline": {
        "pvc": "videostar-videos", "pvc_mount": str(shared), "num_shards": 2,
        "sft": {**GPU_SFT, "launcher": launch}, "reward_model": {**GPU_SFT, "launcher": launch}}})


def node_pod(job: dict[str, Any], replicated_job: str = "node") -> dict[str, Any]:
    """The pod the Trainer makes for ``job``'s node: the runtime's container with the trainer's
    image, command, env and resources, and our runtime patch applied (the runtime's own fields,
    e.g. its labels, left out)."""
    trainer = job["spec"]["trainer"]
    (patch,) = job["spec"]["runtimePatches"]
    jobs = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    patched = next(j for j in jobs if j["name"] == replicated_job)
    spec = copy.deepcopy(patched["template"]["spec"]["template"]["spec"])
    (container,) = spec.pop("containers")
    container |= {"image": trainer["image"], "command": trainer["command"],
                  "env": trainer["env"] + container["env"], "resources": trainer["resourcesPerNode"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{job['metadata']['name']}-node-0-0",
                                                           "namespace": "videostar"},
            "spec": spec | {"containers": [container]}}


# ---- the TrainJob, against the API ------------------------------------------------------------

@pytest.mark.parametrize("nodes, procs", [(1, 1), (2, 8)])
def test_trainjob_validates_against_the_trainer_v2_api(nodes, procs):
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    cfg = config(nodes=nodes, procs=procs)
    job = launch.sft_trainjob(cfg, "run-7f3a", 1)
    parsed = TrainerV1alpha1TrainJob.from_dict(job)
    assert parsed.to_dict() == job  # every field is one the API has, with the API's type
    spec = parsed.spec
    assert (spec.runtime_ref.name, spec.runtime_ref.kind) == ("torch-distributed", "ClusterTrainingRuntime")
    assert (spec.trainer.num_nodes, spec.trainer.num_proc_per_node) == (nodes, procs)
    assert spec.trainer.image == cfg.pipeline.images.gpu
    resources = job["spec"]["trainer"]["resourcesPerNode"]
    assert resources["limits"] == resources["requests"] == {"cpu": "8", "memory": "128Gi",
                                                            "nvidia.com/gpu": str(procs)}
    command = spec.trainer.command
    assert command[:7] == ["torchrun", "--nnodes", str(nodes), "--nproc-per-node", str(procs),
                           "-m", "videostar.cli"]
    folder = f"/data/trainjobs/{job['metadata']['name']}"
    assert command[7:10] == ["--config", f"{folder}/config.yaml", "sft"]
    assert command[command.index("--model-out") + 1] == f"{folder}/out/model"
    assert command[command.index("--metrics-out") + 1] == f"{folder}/out/metrics.json"
    assert command[command.index("--cycle") + 1] == "1"
    assert len(command[command.index("--data") + 1:command.index("--cycle")]) == 3  # verified + 2 shards
    # the pods it makes: strict Kubernetes 1.32 schema and the platform's policies
    pod = node_pod(job)
    assert validate([pod]) == [] and policy_violations([pod]) == []
    assert pod["spec"]["nodeSelector"] == {"videostar.ai/pool": "gpu"}
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                           "effect": "NoSchedule"}]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["videostar-shared"]["persistentVolumeClaim"] == {"claimName": "videostar-videos"}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "videostar-s3",
                                                                         "key": "AWS_SECRET_ACCESS_KEY"}
    assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["secretKeyRef"]["name"] == "videostar-mlflow"


def test_deepspeed_runtime_runs_mpirun_on_the_launcher_and_patches_both_jobs():
    job = launch.sft_trainjob(config(nodes=2, procs=8, runtime="deepspeed-distributed"), "run", 0)
    assert job["spec"]["runtimeRef"]["name"] == "deepspeed-distributed"
    assert job["spec"]["trainer"]["command"][:5] == ["mpirun", "--hostfile", "/etc/mpi/hostfile",
                                                     "python", "-m"]
    for replicated in ("launcher", "node"):
        pod = node_pod(job, replicated)
        assert validate([pod]) == [] and policy_violations([pod]) == []


def test_the_api_models_refuse_what_the_api_does_not_have():
    job = launch.sft_trainjob(config(), "run", 0)
    typo = copy.deepcopy(job)
    typo["spec"]["trainer"]["numProcsPerNode"] = 8
    with pytest.raises(VideostarError, match=r"fields the Trainer v2 API does not have: .*numProcsPerNode"):
        tj.checked(typo)
    wrong = copy.deepcopy(job)
    wrong["spec"]["trainer"]["numNodes"] = "2"
    with pytest.raises(VideostarError, match="not a valid Trainer v2 object"):
        tj.checked(wrong)


def test_job_names_are_stable_dns_labels_per_run_cycle_and_step():
    run = "0b9f6f0e-6a4c-4f0e-9d38-6d7ab1f0c111"
    name = tj.job_name("sft", run, 12)
    assert name == tj.job_name("sft", run, 12) == "vs-sft-c12-" + name[-10:]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 40
    others = {tj.job_name("sft", "another-run", 12), tj.job_name("sft", run, 11),
              tj.job_name("reward-model", run)}
    assert name not in others and len(others) == 3


def test_committed_example_is_what_the_code_renders():
    cfg = load_config(EXAMPLE_CONFIG)
    job = launch.sft_trainjob(cfg, "example", 0)
    assert yaml.safe_load(EXAMPLE_JOB.read_text()) == job, (
        "regenerate: videostar --config configs/trainjob-sft-2x8.yaml pipeline trainjob "
        "-o manifests/examples/trainjob-sft-2x8.yaml")
    assert (job["spec"]["trainer"]["numNodes"], job["spec"]["trainer"]["numProcPerNode"]) == (2, 8)
    assert job["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert cfg.sft.deepspeed == "zero3.json" and not cfg.sft.lora.enabled
    pod = node_pod(job)
    assert validate([pod]) == [] and policy_violations([pod]) == []


def test_cli_renders_the_example(capsys, tmp_path):
    from videostar.cli import main

    rendered = tmp_path / "job.yaml"
    assert main(["--config", str(EXAMPLE_CONFIG), "pipeline", "trainjob", "-o", str(rendered)]) == 0
    assert yaml.safe_load(rendered.read_text()) == yaml.safe_load(EXAMPLE_JOB.read_text())
    local = tmp_path / "local.yaml"
    local.write_text("pipeline: {pvc: v}\n")
    assert main(["--config", str(local), "pipeline", "trainjob"]) == 2
    assert "pipeline.sft.launcher.kind" in capsys.readouterr().err


@pytest.mark.parametrize("data, error", [
    ({"pipeline": {"sft": {"launcher": {"kind": "trainjob"}}}}, "pipeline.pvc: invalid value"),
    ({"pipeline": {"pvc": "v", "sft": {"launcher": {"kind": "trainjob", "runtime": "mpi"}}}},
     "pipeline.sft.launcher.runtime: invalid value"),
    ({"pipeline": {"pvc": "v", "reward_model": {"launcher": {"kind": "trainjob", "keep": "sometimes"}}}},
     "pipeline.reward_model.launcher.keep: invalid value"),
    ({"pipeline": {"pvc": "v", "sft": {"launcher": {"kind": "trainjob", "poll_seconds": 0}}}},
     "pipeline.sft.launcher.poll_seconds: invalid value"),
    ({"pipeline": {"ppo": {"launcher": {"kind": "trainjob"}}}}, "pipeline.pvc: invalid value"),
])
def test_bad_launcher_settings_name_the_field(data, error):
    with pytest.raises(ConfigError, match=re.escape(error)):
        config_from_dict(data)


def test_compiled_sft_step_waits_on_the_cpu_pool(tmp_path):
    from videostar.pipelines.submit import compile_pipeline

    cfg = load_config(EXAMPLE_CONFIG)
    cfg.decide.max_cycles = 1
    ir, platform = yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text())
    container = ir["deploymentSpec"]["executors"]["exec-sft"]["container"]
    assert "accelerator" not in container.get("resources", {})
    assert container["resources"]["resourceMemoryLimit"] == "4Gi"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-sft"]
    assert k8s["nodeSelector"]["labels"] == {"videostar.ai/pool": "cpu"}
    assert "tolerations" not in k8s and "emptyDirMounts" not in k8s
    assert k8s["pvcMount"][0]["mountPath"] == "/data"
    assert {s["secretName"] for s in k8s["secretAsEnv"]} == {"videostar-s3", "videostar-mlflow"}
    # the generate step keeps its GPU; the sft task gets the run's id to name its TrainJob
    assert ir["deploymentSpec"]["executors"]["exec-generate"]["container"]["resources"]["accelerator"]
    sft_task = _find_task(ir, "sft")
    assert sft_task["inputs"]["parameters"]["pipeline_run"]["runtimeValue"]["constant"] == \
        "{{$.pipeline_job_uuid}}"
    default = ir["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"]
    assert json.loads(default)["pipeline"]["sft"]["launcher"]["kind"] == "trainjob"


def _find_task(ir: dict[str, Any], name: str) -> dict[str, Any]:
    for comp in ir["components"].values():
        for task_name, task in (comp.get("dag") or {}).get("tasks", {}).items():
            if task_name == name:
                return task
    raise AssertionError(f"no task {name}")


# ---- create / reattach / wait / fail / logs, over HTTP ----------------------------------------

RUNNER_ROLE = ROOT / "manifests" / "base" / "rbac" / "pipeline-runner.yaml"
VERBS = {"POST": "create", "DELETE": "delete", "PUT": "update", "PATCH": "patch"}


def assert_the_runner_may(api: FakeKubeAPI) -> None:
    """Every call the step made is one the pipeline runner's Role grants (no more is checked
    by test_manifests.py's exact rules)."""
    (role,) = [o for o in yaml.safe_load_all(RUNNER_ROLE.read_text()) if o["kind"] == "Role"]
    for method, path in api.requests:
        parts = path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        rest = parts[parts.index("namespaces") + 2:]  # resource[/name[/subresource]]
        resource = "/".join([rest[0], *rest[2:]])
        verb = VERBS.get(method) or ("get" if len(rest) > 1 else "list")
        assert any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   for r in role["rules"]), f"{method} {path}: the Role lacks {verb} {resource}"


@pytest.fixture
def api():
    with FakeKubeAPI() as server:
        yield server


@pytest.fixture
def inputs(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "tiny"}')
    data = []
    for i in range(3):
        (tmp_path / f"shard{i}").mkdir()
        data.append(tmp_path / f"shard{i}" / "verified.jsonl")
        data[-1].write_text(f'{{"id": {i}}}\n')
    return base, [str(p) for p in data]


def node_writes_outputs(job: dict[str, Any], metrics: dict[str, Any]) -> None:
    """What the training node leaves in ``--model-out`` and ``--metrics-out`` on the shared volume."""
    command = job["spec"]["trainer"]["command"]
    model = Path(command[command.index("--model-out") + 1])
    model.mkdir(parents=True, exist_ok=True)
    (model / "adapter_model.safetensors").write_bytes(b"weights")
    Path(command[command.index("--metrics-out") + 1]).write_text(json.dumps(metrics))


def scripted(*steps: Any) -> Any:
    """An ``on_get`` that plays ``steps[i]`` on the i-th GET of the job (then the last again)."""
    count = {"n": 0}

    def on_get(api: FakeKubeAPI, name: str) -> None:
        steps[min(count["n"], len(steps) - 1)](api, name)
        count["n"] += 1
    return on_get


def on_trainjob(step: SftStep | RewardModelStep | PPOStep, cfg: Any, **kw: Any) -> dict[str, Any]:
    """``step`` run as the TrainJob of pipeline run ``run-1``: the metrics it handed back."""
    launch.run_trainjob(step, cfg, "run-1", **kw)
    return json.loads(Path(step.metrics_out).read_text())


def run_sft(cfg: Any, api: FakeKubeAPI, inputs: Any, tmp_path: Path, lines: list[str]) -> dict[str, Any]:
    base, data = inputs
    cluster = tj.Cluster(api.namespace, api.configuration())
    step = SftStep(str(base), data, tmp_path / "kfp" / "model", tmp_path / "kfp" / "out" / "metrics.json")
    return on_trainjob(step, cfg, cluster=cluster, log=lines.append, sleep=lambda s: None)


def test_creates_waits_streams_node0_once_and_copies_the_outputs(api, inputs, tmp_path):
    cfg = config(tmp_path / "shared")
    name = tj.job_name("sft", "run-1", 0)

    def running(api, name):
        if f"{name}-node-0-0-a" not in api.pods:
            api.add_pod(f"{name}-node-0-0-a", name, lines=["loading the base", "step 1 loss 2.0"])
            api.add_pod(f"{name}-node-0-1-a", name, index=1, lines=["rank 8 is not streamed"])

    def restarted(api, name):  # node 0's pod was replaced (e.g. the node went away)
        api.pods[f"{name}-node-0-0-a"]["status"]["phase"] = "Failed"
        api.add_pod(f"{name}-node-0-0-b", name, lines=["resuming from checkpoint-1", "step 2 loss 1.5"])

    def complete(api, name):
        api.pods[f"{name}-node-0-0-b"]["status"]["phase"] = "Succeeded"
        api.logs[f"{name}-node-0-0-b"].append("saved the model")
        node_writes_outputs(api.jobs[name], {"train_loss": 1.5, "train_examples": 3})
        api.set_condition(name, "Complete", "JobSetCompleted", "jobset completed")

    api.on_get = scripted(running, restarted, complete)
    lines: list[str] = []
    metrics = run_sft(cfg, api, inputs, tmp_path, lines)

    assert metrics == {"train_loss": 1.5, "train_examples": 3}
    assert (tmp_path / "kfp" / "model" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert json.loads((tmp_path / "kfp" / "out" / "metrics.json").read_text())["train_loss"] == 1.5
    streamed = [line for line in lines if not line.startswith("TrainJob ")]
    assert streamed == ["loading the base", "step 1 loss 2.0", "resuming from checkpoint-1",
                        "step 2 loss 1.5", "saved the model"]
    assert lines[0] == f"TrainJob videostar/{name}: created on torch-distributed, 1 x 1 processes"
    assert len(api.calls("POST")) == 1
    assert_the_runner_may(api)
    # once done, the job and its folder on the shared volume are gone
    assert api.calls("DELETE") == [f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/videostar/trainjobs/"
                                   f"{name}"]
    assert not (tmp_path / "shared" / "trainjobs" / name).exists()


def test_inputs_and_config_are_staged_for_the_job(api, inputs, tmp_path):
    cfg = config(tmp_path / "shared", keep="always")
    name = tj.job_name("sft", "run-1", 0)

    def complete(api, name):
        node_writes_outputs(api.jobs[name], {"train_loss": 1.0})
        api.set_condition(name, "Complete")

    api.on_get = scripted(complete)
    run_sft(cfg, api, inputs, tmp_path, [])
    job = api.jobs[name]  # kept: keep: always
    assert api.calls("DELETE") == []
    command = job["spec"]["trainer"]["command"]
    folder = tmp_path / "shared" / "trainjobs" / name
    base = Path(command[command.index("--base-model") + 1])
    assert base == folder / "inputs" / "base" and (base / "config.json").exists()
    data = command[command.index("--data") + 1:command.index("--cycle")]
    assert [Path(p).read_text() for p in data] == [f'{{"id": {i}}}\n' for i in range(3)]
    staged = load_config(folder / "config.yaml")  # what `videostar --config` in the job reads
    assert staged.pipeline.sft.launcher.kind == "local"  # inside the job it trains
    assert staged.sft == cfg.sft and staged.rlaif == cfg.rlaif and staged.pipeline.pvc == "videostar-videos"


def test_a_retry_reattaches_to_the_running_job(api, inputs, tmp_path):
    cfg = config(tmp_path / "shared")
    name = tj.job_name("sft", "run-1", 0)
    api.add_job(launch.sft_trainjob(cfg, "run-1", 0))  # created by the attempt that was killed
    api.add_pod(f"{name}-node-0-0-a", name, lines=["step 40 loss 0.9"])

    def complete(api, name):
        api.pods[f"{name}-node-0-0-a"]["status"]["phase"] = "Succeeded"
        node_writes_outputs(api.jobs[name], {"train_loss": 0.9})
        api.set_condition(name, "Complete")

    api.on_get = scripted(lambda api, name: None, lambda api, name: None, complete)
    lines: list[str] = []
    assert run_sft(cfg, api, inputs, tmp_path, lines) == {"train_loss": 0.9}
    assert api.calls("POST") == []
    assert lines[0].startswith(f"TrainJob {name}: reattaching (created 20")
    assert "step 40 loss 0.9" in lines
    assert not (tmp_path / "shared" / "trainjobs" / name / "inputs").exists()  # nothing staged again


def test_an_unreadable_log_does_not_stop_the_wait(api, inputs, tmp_path):
    cfg = config(tmp_path / "shared")
    name = tj.job_name("sft", "run-1", 0)

    def gone(api, name):  # the pod is listed, but its log is gone (the node was drained)
        api.add_pod(f"{name}-node-0-0-a", name)
        del api.logs[f"{name}-node-0-0-a"]

    def complete(api, name):
        node_writes_outputs(api.jobs[name], {"train_loss": 1.1})
        api.set_condition(name, "Complete")

    api.on_get = scripted(gone, complete)
    lines: list[str] = []
    assert run_sft(cfg, api, inputs, tmp_path, lines) == {"train_loss": 1.1}
    assert (f"TrainJob {name}: the log of {name}-node-0-0-a is unavailable "
            f'(pods "{name}-node-0-0-a" not found); still waiting') in lines


@pytest.mark.parametrize("keep, deleted", [("failed", False), ("never", True)])
def test_a_failed_job_fails_the_step_with_its_reason(api, inputs, tmp_path, keep, deleted):
    cfg = config(tmp_path / "shared", keep=keep)
    name = tj.job_name("sft", "run-1", 0)

    def failed(api, name):
        api.add_pod(f"{name}-node-0-0-a", name, phase="Failed", lines=["CUDA out of memory"])
        api.set_condition(name, "Failed", "FailedJobs", "jobset failed: node-0 exited with code 137")

    api.on_get = scripted(failed)
    lines: list[str] = []
    with pytest.raises(VideostarError) as err:
        run_sft(cfg, api, inputs, tmp_path, lines)
    assert str(err.value) == (f"TrainJob videostar/{name} failed: FailedJobs: jobset failed: "
                              "node-0 exited with code 137")
    assert "CUDA out of memory" in lines  # node 0's last words are in the step's log
    assert bool(api.calls("DELETE")) is deleted
    assert_the_runner_may(api)
    assert not (tmp_path / "kfp" / "model").exists()
    assert (tmp_path / "shared" / "trainjobs" / name / "inputs" / "base").exists()  # kept for a retry


def test_a_retry_replaces_a_failed_job_and_keeps_its_folder(api, inputs, tmp_path):
    cfg = config(tmp_path / "shared")
    name = tj.job_name("sft", "run-1", 0)
    api.add_job(launch.sft_trainjob(cfg, "run-1", 0))
    api.set_condition(name, "Failed", "DeadlineExceeded", "")
    checkpoint = tmp_path / "shared" / "trainjobs" / name / "out" / "checkpoints" / "step-40"
    checkpoint.mkdir(parents=True)
    api.linger = 2  # foreground deletion: the job is still there for two more reads

    def complete(api, name):
        if "status" in api.jobs[name]:  # still the failed one
            return
        assert checkpoint.exists()  # the new job finds the old one's checkpoints
        node_writes_outputs(api.jobs[name], {"train_loss": 0.8})
        api.set_condition(name, "Complete")

    api.on_get = complete
    lines: list[str] = []
    assert run_sft(cfg, api, inputs, tmp_path, lines) == {"train_loss": 0.8}
    assert lines[0] == (f"TrainJob {name}: replacing the failed job of an earlier attempt "
                        "(DeadlineExceeded); training resumes from its last checkpoint")
    assert len(api.calls("POST")) == 1 and len(api.calls("DELETE")) == 2  # the failed one, the done one
    assert_the_runner_may(api)


def test_a_job_deleted_under_the_step_fails_it(api, inputs, tmp_path):
    cfg = config(tmp_path / "shared")
    name = tj.job_name("sft", "run-1", 0)
    api.on_get = scripted(lambda api, name: api.deleting.setdefault(name, 0))
    with pytest.raises(VideostarError, match=f"TrainJob videostar/{name}: deleted while the step waited"):
        run_sft(cfg, api, inputs, tmp_path, [])


def test_an_api_refusal_is_one_line(inputs, tmp_path):
    cfg = config(tmp_path / "shared")
    base, data = inputs
    with FakeKubeAPI("elsewhere") as other:  # serves another namespace: 404 on every path
        cluster = tj.Cluster("videostar", other.configuration())
        with pytest.raises(VideostarError, match=r"could not create it \(POST .* not served here\)"):
            on_trainjob(SftStep(str(base), data, tmp_path / "m", tmp_path / "o.json"), cfg, cluster=cluster,
                        log=lambda line: None, sleep=lambda s: None)


def test_reward_model_runs_as_a_trainjob(api, tmp_path):
    cfg = config(tmp_path / "shared")
    model, base, prefs = (tmp_path / n for n in ("sft-model", "base", "preferences"))
    for folder in (model, base, prefs):
        folder.mkdir()
        (folder / "x.json").write_text("{}")

    def complete(api, name):
        command = api.jobs[name]["spec"]["trainer"]["command"]
        assert command[command.index("--config") + 2] == "reward-model"
        for flag, staged in (("--model", "model"), ("--preferences", "preferences"),
                             ("--adapter-base", "base")):
            assert command[command.index(flag) + 1].endswith(f"/inputs/{staged}")
        node_writes_outputs(api.jobs[name], {"heldout_accuracy": 0.75, "loss_history": [0.7, 0.6]})
        api.set_condition(name, "Complete")

    api.on_get = scripted(complete)
    cluster = tj.Cluster(api.namespace, api.configuration())
    step = RewardModelStep(str(model), str(prefs), tmp_path / "kfp" / "reward",
                           tmp_path / "kfp" / "metrics.json", str(base))
    result = on_trainjob(step, cfg, cluster=cluster, log=lambda line: None, sleep=lambda s: None)
    assert result["heldout_accuracy"] == 0.75
    assert (tmp_path / "kfp" / "reward" / "adapter_model.safetensors").exists()


def test_ppo_runs_as_a_trainjob_with_its_checkpoints_on_the_shared_volume(api, tmp_path):
    cfg = config_from_dict({"pipeline": {
        "pvc": "videostar-videos", "pvc_mount": str(tmp_path / "shared"),
        "ppo": {**GPU_SFT, "launcher": {"kind": "trainjob", "num_nodes": 2, "procs_per_node": 4,
                                        "poll_seconds": 0.01}}}})
    model, base, reward, prefs = (tmp_path / n for n in ("sft-model", "base", "reward", "preferences"))
    for folder in (model, base, reward, prefs):
        folder.mkdir()
        (folder / "x.json").write_text("{}")
    records = tmp_path / "records.jsonl"
    records.write_text('{"id": 0}\n')

    def complete(api, name):
        job = api.jobs[name]
        command = job["spec"]["trainer"]["command"]
        assert command[:5] == ["torchrun", "--nnodes", "2", "--nproc-per-node", "4"]
        assert command[command.index("--config") + 2] == "ppo"
        for flag, staged in (("--model", "model"), ("--reward-model", "reward_model"),
                             ("--records", "records"), ("--preferences", "preferences"),
                             ("--adapter-base", "base")):
            assert command[command.index(flag) + 1].endswith(f"/inputs/{staged}")
        assert Path(command[command.index("--records") + 1]).read_text() == '{"id": 0}\n'
        # the checkpoints go beside the metrics, in the job's out/ on the shared volume: a
        # replacement job resumes from them
        assert Path(command[command.index("--metrics-out") + 1]).parent == tj.job_folder(cfg, name).out
        node_writes_outputs(job, {"heldout_reward_after": 0.5, "kl_within_budget": True})
        api.set_condition(name, "Complete")

    api.on_get = scripted(complete)
    cluster = tj.Cluster(api.namespace, api.configuration())
    step = PPOStep(str(model), str(reward), str(records), str(prefs), tmp_path / "kfp" / "policy",
                   tmp_path / "kfp" / "out" / "metrics.json", str(base))
    result = on_trainjob(step, cfg, cluster=cluster, log=lambda line: None, sleep=lambda s: None)
    assert result == {"heldout_reward_after": 0.5, "kl_within_budget": True}
    assert (tmp_path / "kfp" / "policy" / "adapter_model.safetensors").exists()
    assert_the_runner_may(api)


# ---- one command line for every launcher ------------------------------------------------------

def videostar_args(command: list[str]) -> dict[str, Any]:
    """What a launcher's command hands ``videostar`` (all after ``-m videostar.cli``), read by the
    real ``videostar`` parser."""
    from videostar.cli import build_parser

    args = vars(build_parser().parse_args(command[command.index("videostar.cli") + 1:]))
    args.pop("func")
    return args


def flags(command: list[str]) -> list[str]:
    return [a for a in command if a.startswith("--")]


def torchrun_command(monkeypatch: pytest.MonkeyPatch, step: str, run: Any) -> list[str]:
    """The command the in-process step (``pipeline.<step>.launcher``: torchrun) starts: ``run(cfg)``
    calls the step; torchrun and its workers are played by a process that writes the metrics."""
    from videostar.training import launch

    cfg = config_from_dict({"pipeline": {step: {"launcher": {"kind": "torchrun", "procs_per_node": 2}}}})
    started: list[list[str]] = []

    class Torchrun:
        def __init__(self, cmd: list[str], **kw: Any) -> None:
            started.append(cmd)
            metrics = Path(cmd[cmd.index("--metrics-out") + 1])
            metrics.parent.mkdir(parents=True, exist_ok=True)
            metrics.write_text("{}")
            self.stdout: list[str] = []

        def __enter__(self) -> Torchrun:
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

        def wait(self) -> int:
            return 0

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(launch.subprocess, "Popen", Torchrun)
    run(cfg)
    (command,) = started
    return command


def run_job(api: FakeKubeAPI, name: str, run: Any) -> list[str]:
    """The command of the TrainJob ``name`` that ``run(cluster, **kw)`` creates (kept after it)."""
    def complete(api, name):
        node_writes_outputs(api.jobs[name], {"train_loss": 1.0})
        api.set_condition(name, "Complete")

    api.on_get = scripted(complete)
    run(cluster=tj.Cluster(api.namespace, api.configuration()), log=lambda line: None, sleep=lambda s: None)
    return api.jobs[name]["spec"]["trainer"]["command"]


@pytest.mark.parametrize("runtime", ["torch-distributed", "deepspeed-distributed"])
def test_the_sft_job_carries_every_argument_torchrun_does(api, inputs, tmp_path, monkeypatch, runtime):
    from videostar.star import steps

    base, data = inputs
    cfg = config(tmp_path / "shared", keep="always", runtime=runtime)
    name = tj.job_name("sft", "run-1", 2)
    job = run_job(api, name, lambda **kw: on_trainjob(SftStep(
        str(base), data, tmp_path / "kfp" / "model", tmp_path / "kfp" / "metrics.json", "parent-9", 2),
        cfg, **kw))
    here = torchrun_command(monkeypatch, "sft", lambda cfg: steps.run_sft_step(
        str(base), data, tmp_path / "t" / "model", tmp_path / "t" / "metrics.json", cfg,
        parent_run="parent-9", cycle=2))

    assert flags(job[job.index("sft"):]) == flags(here[here.index("sft"):])  # the same options
    folder = tj.job_folder(cfg, name)
    staged = folder.staged({"base": base, "data": data})
    assert videostar_args(job) == {
        "config": str(folder.config), "command": "sft", "base_model": staged["base"], "data": staged["data"],
        "model_out": f"{folder.out}/model", "metrics_out": f"{folder.out}/metrics.json",
        "parent_run": "parent-9", "cycle": 2, "out": None}
    assert videostar_args(here) == {
        "config": here[here.index("--config") + 1], "command": "sft", "base_model": str(base), "data": data,
        "model_out": str(tmp_path / "t" / "model"), "metrics_out": str(tmp_path / "t" / "metrics.json"),
        "parent_run": "parent-9", "cycle": 2, "out": None}


def test_the_reward_job_carries_every_argument_torchrun_does(api, tmp_path, monkeypatch):
    from videostar.rlaif import steps

    cfg = config(tmp_path / "shared", keep="always")
    model, base, prefs = (tmp_path / n for n in ("sft-model", "base", "preferences"))
    for folder in (model, base, prefs):
        folder.mkdir()
        (folder / "x.json").write_text("{}")
    name = tj.job_name("reward-model", "run-1")
    job = run_job(api, name, lambda **kw: on_trainjob(RewardModelStep(
        str(model), str(prefs), tmp_path / "kfp" / "reward", tmp_path / "kfp" / "metrics.json", str(base),
        "parent-9"), cfg, **kw))
    here = torchrun_command(monkeypatch, "reward_model", lambda cfg: steps.run_reward_model_step(
        str(model), str(prefs), tmp_path / "t" / "reward", tmp_path / "t" / "metrics.json", cfg,
        adapter_base=str(base), parent_run="parent-9"))

    assert flags(job[job.index("reward-model"):]) == flags(here[here.index("reward-model"):])
    folder = tj.job_folder(cfg, name)
    staged = folder.staged({"model": model, "base": base, "preferences": prefs})
    assert videostar_args(job) == {
        "config": str(folder.config), "command": "reward-model", "model": staged["model"],
        "preferences": staged["preferences"], "adapter_base": staged["base"],
        "model_out": f"{folder.out}/model", "metrics_out": f"{folder.out}/metrics.json",
        "parent_run": "parent-9", "out": None}
    assert videostar_args(here) == {
        "config": here[here.index("--config") + 1], "command": "reward-model", "model": str(model),
        "preferences": str(prefs), "adapter_base": str(base), "model_out": str(tmp_path / "t" / "reward"),
        "metrics_out": str(tmp_path / "t" / "metrics.json"), "parent_run": "parent-9", "out": None}


def test_the_ppo_job_carries_every_argument_torchrun_does(api, tmp_path, monkeypatch):
    from videostar.rlaif import steps

    cfg = config_from_dict({"pipeline": {"pvc": "v", "pvc_mount": str(tmp_path / "shared"),
                                         "ppo": {**GPU_SFT, "launcher": {"kind": "trainjob", "keep": "always",
                                                                         "poll_seconds": 0.01}}}})
    model, base, reward, prefs = (tmp_path / n for n in ("sft-model", "base", "reward", "preferences"))
    for folder in (model, base, reward, prefs):
        folder.mkdir()
        (folder / "x.json").write_text("{}")
    records = tmp_path / "records.jsonl"
    records.write_text("{}\n")
    name = tj.job_name("ppo", "run-1")
    job = run_job(api, name, lambda **kw: on_trainjob(PPOStep(
        str(model), str(reward), str(records), str(prefs), tmp_path / "kfp" / "policy",
        tmp_path / "kfp" / "metrics.json", str(base), "parent-9"), cfg, **kw))
    here = torchrun_command(monkeypatch, "ppo", lambda cfg: steps.ppo(
        str(model), reward, records, prefs, tmp_path / "t" / "policy", tmp_path / "t" / "metrics.json", cfg,
        adapter_base=str(base), parent_run="parent-9"))

    assert flags(job[job.index("ppo"):]) == flags(here[here.index("ppo"):])
    folder = tj.job_folder(cfg, name)
    staged = folder.staged({"model": model, "reward_model": reward, "records": records, "preferences": prefs,
                            "base": base})
    common = {"command": "ppo", "fresh": False, "parent_run": "parent-9", "out": None}
    assert videostar_args(job) == {
        **common, "config": str(folder.config), "model": staged["model"],
        "reward_model": staged["reward_model"], "records": staged["records"],
        "preferences": staged["preferences"], "adapter_base": staged["base"],
        "model_out": f"{folder.out}/model", "metrics_out": f"{folder.out}/metrics.json"}
    assert videostar_args(here) == {
        **common, "config": here[here.index("--config") + 1], "model": str(model),
        "reward_model": str(reward), "records": str(records), "preferences": str(prefs),
        "adapter_base": str(base), "model_out": str(tmp_path / "t" / "policy"),
        "metrics_out": str(tmp_path / "t" / "metrics.json")}


@pytest.mark.parametrize("kind", ["local", "torchrun", "trainjob"])
def test_one_place_decides_where_a_training_step_runs(monkeypatch, tmp_path, kind):
    """``launch.run``: here, under torchrun or as a TrainJob, from ``pipeline.<step>.launcher``;
    launched, the step's metrics are read back from where it wrote them."""
    ran: list[str] = []
    monkeypatch.setattr(launch, "run_torchrun", lambda step, launcher, cfg: ran.append("torchrun"))
    monkeypatch.setattr(launch, "run_trainjob", lambda step, cfg, run: ran.append(f"trainjob of {run}"))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    (tmp_path / "metrics.json").write_text('{"launched": true}')
    step = RewardModelStep("/m", "/prefs", tmp_path / "model", tmp_path / "metrics.json")
    result = launch.run(step, config(kind=kind), lambda: {"here": True}, "run-1")
    assert result == ({"here": True} if kind == "local" else {"launched": True})
    assert ran == {"local": [], "torchrun": ["torchrun"], "trainjob": ["trainjob of run-1"]}[kind]
