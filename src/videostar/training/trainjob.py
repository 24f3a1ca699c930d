"""A training step as a Kubeflow Trainer v2 ``TrainJob``: build it, create or reattach, wait,
stream node 0's log, hand the outputs back.

The step (a KFP task on the CPU pool) and the job's nodes share one ReadWriteMany volume
(``pipeline.pvc`` at ``pipeline.pvc_mount``). Under ``trainjobs/<job name>/`` on it the step
stages its inputs (``inputs/``) and the run configuration (``config.yaml``), the job trains
into ``out/`` (checkpoints included, so a replacement job resumes there), and when the job is
``Complete`` the step copies ``out/`` into its KFP output paths, which KFP then uploads as the
step's artifacts; the folder is removed after that copy.

The job's name is derived from the pipeline run, the cycle and the step, so a KFP retry of the
step finds the job it created before and waits for it again instead of starting a second one; a
job that ``Failed`` is replaced (its checkpoints stay on the volume).

Why the ``kubeflow-trainer-api`` models and the Kubernetes client rather than the Kubeflow SDK's
``TrainerClient`` (``kubeflow`` 0.5.0): its container trainer cannot set ``numProcPerNode``, its
``get_job``/``wait_for_job_status``/``get_job_logs`` look up the runtime (a cluster-scoped read
the pipeline runner's namespaced Role does not grant) and a failed job's reason never reaches
the caller. The models are the SDK's own API layer: every TrainJob is checked against them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videostar.config import RunConfig, StepResources, config_to_json
from videostar.config.platform import trainjob_resources
from videostar.errors import VideostarError

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
MANAGER = "videostar.ai/pipeline-step"
"""Owner of the runtime patch this module writes (the Trainer keys patches by manager)."""
SHARED_VOLUME = "videostar-shared"
NODE_LOG_JOB = {"torch-distributed": "node", "deepspeed-distributed": "launcher"}
"""The replicated job whose index-0 pod runs the training command (MPI: the launcher)."""
PATCHED_JOBS = {"torch-distributed": ("node",), "deepspeed-distributed": ("launcher", "node")}
CONTAINER = "node"
"""The trainer container's name in both runtimes."""
RUN_AS = 10001
"""The step images' user (images/*.Dockerfile)."""

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def job_name(step: str, pipeline_run: str, cycle: int | None = None) -> str:
    """A DNS-1035 name, the same on every attempt of one step of one pipeline run."""
    digest = hashlib.sha256(pipeline_run.encode()).hexdigest()[:10]
    return f"vs-{step}-" + (f"c{cycle}-" if cycle is not None else "") + digest


def _secret_env(cfg: RunConfig) -> list[dict[str, Any]]:
    return [{"name": env, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": key}}}
            for s in cfg.pipeline.secrets for env, key in s.env.items()]


def trainjob_manifest(name: str, cfg: RunConfig, res: StepResources, command: list[str],
                      labels: dict[str, str] | None = None,
                      annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The TrainJob for a step with resources ``res``, checked against the Trainer v2 API.

    The step's image and the command go to the trainer; the node pool, tolerations, shared
    volume, ``/dev/shm``, the pipeline's Secrets as env and the non-root security context go to
    every pod of the runtime through one runtime patch.
    """
    launcher, p = res.launcher, cfg.pipeline
    mounts = [{"name": SHARED_VOLUME, "mountPath": p.pvc_mount}]
    volumes: list[dict[str, Any]] = [{"name": SHARED_VOLUME, "persistentVolumeClaim": {"claimName": p.pvc}}]
    if res.shm_size:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": res.shm_size}})
    container = {"name": CONTAINER, "env": _secret_env(cfg), "volumeMounts": mounts,
                 "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                     "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS}}
    pod: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": volumes, "containers": [container],
    }
    if res.node_selector:
        pod["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod["tolerations"] = [{k: v for k, v in (("key", t.key), ("operator", t.operator),
                                                 ("value", t.value), ("effect", t.effect)) if v is not None}
                              for t in res.tolerations]
    resources = trainjob_resources(res)
    job = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainJob",
        "metadata": {"name": name, **({"labels": labels} if labels else {}),
                     **({"annotations": annotations} if annotations else {})},
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": launcher.runtime},
            "trainer": {
                "image": p.images.gpu, "command": command,
                "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
                "numNodes": launcher.num_nodes, "numProcPerNode": launcher.procs_per_node,
                "resourcesPerNode": {"requests": resources, "limits": dict(resources)},
            },
            "runtimePatches": [{"manager": MANAGER, "trainingRuntimeSpec": {"template": {"spec": {
                "replicatedJobs": [{"name": j, "template": {"spec": {"template": {"spec": pod}}}}
                                   for j in PATCHED_JOBS[launcher.runtime]]}}}}],
        },
    }
    return checked(job)


def checked(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` as the Trainer v2 API models read it; a field they do not know (which the API
    server would prune or refuse) or a wrong type is an error, never silently dropped."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    try:
        parsed = TrainerV1alpha1TrainJob.from_dict(job).to_dict()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise VideostarError(f"TrainJob {job['metadata']['name']}: not a valid Trainer v2 object ({exc})"
                             ) from exc
    if parsed != job:
        raise VideostarError(f"TrainJob {job['metadata']['name']}: fields the Trainer v2 API does not "
                             f"have: {json.dumps(_difference(job, parsed))}")
    return parsed


def _difference(ours: Any, theirs: Any) -> Any:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return {k: _difference(v, theirs.get(k)) for k, v in ours.items() if theirs.get(k) != v}
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [_difference(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    return ours


def finished(job: dict[str, Any]) -> tuple[str, str] | None:
    """``("Complete" | "Failed", reason)`` once the job has ended, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            reason = ": ".join(x for x in (cond.get("reason"), cond.get("message")) if x)
            return cond["type"], reason or "no reason given"
    return None


class Cluster:
    """The calls a step makes on the Kubernetes API: TrainJobs (create, get, delete) in one
    namespace and the logs of their pods; nothing else (manifests/base/rbac/)."""

    def __init__(self, namespace: str, configuration: Any = None) -> None:
        from kubernetes import client

        api = client.ApiClient(configuration)
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    @classmethod
    def in_cluster(cls, namespace: str | None = None) -> Cluster:
        """From the pod's ServiceAccount; the namespace defaults to the pod's own."""
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
            own = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
        except (config.ConfigException, OSError) as exc:
            raise VideostarError(f"launcher trainjob: not inside a Kubernetes pod ({exc})") from exc
        return cls(namespace or own, configuration)

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client import ApiException

        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise VideostarError(f"TrainJob {self.namespace}/{name}: {_api_error(exc)}") from exc

    def create(self, job: dict[str, Any]) -> bool:
        """Create ``job``; False when one of that name exists already (another attempt's)."""
        from kubernetes.client import ApiException

        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, job)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise VideostarError(f"TrainJob {self.namespace}/{job['metadata']['name']}: could not "
                                 f"create it ({_api_error(exc)})") from exc
        return True

    def delete(self, name: str) -> None:
        from kubernetes.client import ApiException

        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                                        propagation_policy="Foreground")
        except ApiException as exc:
            if exc.status != 404:
                raise VideostarError(f"TrainJob {self.namespace}/{name}: could not delete it "
                                     f"({_api_error(exc)})") from exc

    def node0_pod(self, name: str, runtime: str) -> Any:
        """The newest pod of the job's index-0 training node (None before it exists)."""
        selector = (f"jobset.sigs.k8s.io/jobset-name={name},"
                    f"jobset.sigs.k8s.io/replicatedjob-name={NODE_LOG_JOB[runtime]},"
                    "batch.kubernetes.io/job-completion-index=0")
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return max(pods, key=lambda p: p.metadata.creation_timestamp, default=None)

    def log_lines(self, pod: str, follow: bool) -> Iterator[str]:
        """The trainer container's log, line by line; with ``follow`` until the container ends."""
        if not follow:
            text = self.core.read_namespaced_pod_log(pod, self.namespace, container=CONTAINER)
            yield from text.splitlines()
            return
        from kubernetes import watch

        yield from watch.Watch().stream(self.core.read_namespaced_pod_log, name=pod,
                                        namespace=self.namespace, container=CONTAINER, follow=True)


def _api_error(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message") or f"HTTP {exc.status}"
    except (TypeError, ValueError):
        return f"HTTP {exc.status} {exc.reason}"


def _copy_once(source: Path, dest: Path) -> None:
    """Copy a file or folder beside ``dest`` and rename it into place: a half-copied input is
    never taken for a complete one."""
    if dest.exists():
        return
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if source.is_dir() else shutil.copyfile)(source, tmp)
    tmp.rename(dest)


@dataclass(frozen=True)
class JobFolder:
    """A job's folder on the shared volume: inputs staged by the step, outputs of the job."""

    root: Path

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def staged(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Where the job reads each input (a list as ``<name>-<i><suffix>`` each) and ``out``."""
        paths: dict[str, Any] = {
            key: [str(self.root / "inputs" / f"{key}-{i}{Path(s).suffix}") for i, s in enumerate(src)]
            if isinstance(src, list) else str(self.root / "inputs" / key) for key, src in inputs.items()}
        return paths | {"out": str(self.out)}

    def stage(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Copy every input to its place (once: a retry finds it there); returns :meth:`staged`."""
        paths = self.staged(inputs)
        for key, src in inputs.items():
            for source, dest in zip(src if isinstance(src, list) else [src],
                                    paths[key] if isinstance(src, list) else [paths[key]], strict=True):
                _copy_once(Path(source), Path(dest))
        return paths

    def write_config(self, cfg: RunConfig) -> str:
        """The run configuration the job's ``videostar --config`` reads, its launchers set to
        ``local``: inside the job the step trains, it does not launch again. Written as YAML:
        JSON's ``1e-05`` is a string to the YAML loader."""
        import yaml

        data = json.loads(config_to_json(cfg))
        for step in ("sft", "reward_model", "ppo"):
            data["pipeline"][step]["launcher"]["kind"] = "local"
            data["pipeline"][step]["launcher"]["num_nodes"] = 1
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(data, sort_keys=False))
        return str(self.config)

    def collect(self, outputs: dict[str, str | Path]) -> None:
        """Copy ``out/<name>`` to each KFP output path (replacing what is there)."""
        for name, dest in outputs.items():
            src, dest = self.out / name, Path(dest)
            if not src.exists():
                raise VideostarError(f"{src}: the TrainJob finished without writing it")
            if dest.is_dir():
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dest)


@dataclass
class TrainJobStep:
    """One training step run as a TrainJob: where its files go and how it waits."""

    cluster: Cluster
    name: str
    res: StepResources
    folder: JobFolder
    log: Log = _stderr
    sleep: Callable[[float], None] = time.sleep

    def launch(self, job: Callable[[], dict[str, Any]]) -> None:
        """Create the job (``job()`` stages the inputs and builds it) unless this step's job
        exists: a running or finished one is reattached, a failed one replaced."""
        found = self.cluster.get(self.name)
        if found is not None and (finished(found) or ("", ""))[0] == "Failed":
            self.log(f"TrainJob {self.name}: replacing the failed job of an earlier attempt "
                     f"({finished(found)[1]}); training resumes from its last checkpoint")
            self.cluster.delete(self.name)
            self._wait_gone()
            found = None
        if found is not None:
            self.log(f"TrainJob {self.name}: reattaching (created "
                     f"{found['metadata'].get('creationTimestamp', '?')})")
            return
        if self.cluster.create(job()):
            launcher = self.res.launcher
            self.log(f"TrainJob {self.cluster.namespace}/{self.name}: created on {launcher.runtime}, "
                     f"{launcher.num_nodes} x {launcher.procs_per_node} processes")
        else:
            self.log(f"TrainJob {self.name}: created by another attempt meanwhile; reattaching")

    def _wait_gone(self) -> None:
        while self.cluster.get(self.name) is not None:
            self.sleep(self.res.launcher.poll_seconds)

    def wait(self) -> tuple[str, str]:
        """Poll the job until it ends, streaming node 0's log meanwhile (each line once, from
        every pod node 0 ran in); returns its end state and reason."""
        printed: dict[str, int] = {}
        runtime = self.res.launcher.runtime
        while True:
            job = self.cluster.get(self.name)
            if job is None:
                raise VideostarError(f"TrainJob {self.cluster.namespace}/{self.name}: deleted while "
                                     "the step waited for it")
            end = finished(job)
            pod = self.cluster.node0_pod(self.name, runtime)
            phase = pod.status.phase if pod is not None and pod.status else None
            if phase in ("Running", "Succeeded", "Failed"):
                self._print_log(pod.metadata.name, follow=phase == "Running" and end is None,
                                printed=printed)
            if end is not None:
                return end
            self.sleep(self.res.launcher.poll_seconds)

    def _print_log(self, pod: str, follow: bool, printed: dict[str, int]) -> None:
        """Node 0's log lines not printed yet; a log that cannot be read (the pod went away, the
        stream broke) is one line, and the step keeps waiting for the job."""
        from kubernetes.client import ApiException
        from urllib3.exceptions import HTTPError

        seen = printed.get(pod, 0)
        try:
            for i, line in enumerate(self.cluster.log_lines(pod, follow)):
                if i >= seen:
                    self.log(line)
                    printed[pod] = i + 1
        except (ApiException, HTTPError) as exc:
            reason = _api_error(exc) if isinstance(exc, ApiException) else str(exc)
            self.log(f"TrainJob {self.name}: the log of {pod} is unavailable ({reason}); still waiting")

    def finish(self, end: tuple[str, str], outputs: dict[str, str | Path]) -> None:
        """Hand the outputs back (Complete) or fail with the job's reason; delete the job and
        its folder as ``launcher.keep`` says."""
        state, reason = end
        keep = self.res.launcher.keep
        if state == "Failed":
            if keep == "never":
                self.cluster.delete(self.name)
            raise VideostarError(f"TrainJob {self.cluster.namespace}/{self.name} failed: {reason}")
        self.folder.collect(outputs)
        if keep != "always":
            self.cluster.delete(self.name)
            shutil.rmtree(self.folder.root, ignore_errors=True)
        self.log(f"TrainJob {self.name}: complete; outputs copied"
                 + ("" if keep == "always" else ", job and its folder deleted"))


def step_job(cfg: RunConfig, res: StepResources, name: str, folder: JobFolder, command: list[str],
             step: str) -> dict[str, Any]:
    """The TrainJob that runs training step ``step``'s ``command`` on the files in ``folder``
    (:func:`videostar.training.launch.training_command`'s, the one torchrun runs too)."""
    return trainjob_manifest(name, cfg, res, command, labels=job_labels(step),
                             annotations={"videostar.ai/job-folder": str(folder.root)})


def job_folder(cfg: RunConfig, name: str) -> JobFolder:
    return JobFolder(Path(cfg.pipeline.pvc_mount) / "trainjobs" / name)


def run_job(cfg: RunConfig, res: StepResources, name: str, folder: JobFolder, inputs: dict[str, Any],
            job: dict[str, Any], outputs: dict[str, str | Path], cluster: Cluster | None = None,
            log: Log = _stderr, sleep: Callable[[float], None] = time.sleep) -> None:
    """Run ``job`` as the TrainJob ``name`` and copy its ``out/`` entries to ``outputs``. Only
    when it creates the job (not when it reattaches) are ``inputs`` (paths, or lists of paths)
    staged in ``folder`` on the shared volume and the configuration written beside."""
    cluster = cluster or Cluster.in_cluster(res.launcher.namespace)
    runner = TrainJobStep(cluster, name, res, folder, log, sleep)

    def build() -> dict[str, Any]:
        folder.stage(inputs)
        folder.write_config(cfg)
        return job

    runner.launch(build)
    runner.finish(runner.wait(), outputs)


def job_labels(step: str) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "videostar", "videostar.ai/step": step}


MODEL = "model"
"""The model folder the job writes under ``out/`` (beside :data:`~videostar.layout.METRICS`)."""
