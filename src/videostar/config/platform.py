"""Where and how the pipeline runs: inputs, sharding, images, per-step Kubernetes scheduling,
secrets, and MLflow tracking with its object store. None of it changes what the method computes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from videostar.config import kube
from videostar.config.fields import finite, require

MAX_PER_NODE = 64
"""Accelerators or processes one node can hold: no node has more GPUs (8 or 16 today)."""
MAX_NODES = 1024
MAX_RETRIES = 20
"""KFP retries a step at most this often: past it a failing step only burns accelerator hours."""
MAX_WAIT_SECONDS = 3600
"""The longest retry backoff and TrainJob poll: KFP retries a step within one hour
(``backoff_max_duration``), so a longer backoff never retries."""
MAX_SHARDS = 1024
_DURATION = re.compile(r"(\d+)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
"""KFP's retry backoff units (``kfp.dsl.structures.convert_duration_to_seconds``)."""


def _count(where: str, name: str, value: int, low: int, high: int) -> None:
    require(where, name, low <= value <= high, f"an integer from {low} to {high}, got {value}")


@dataclass
class Toleration:
    """A pod toleration, checked as the API server checks it."""

    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = "NoSchedule"

    def validate(self, where: str) -> None:
        require(where, "operator", self.operator in kube.TOLERATION_OPERATORS,
                f"{' or '.join(kube.TOLERATION_OPERATORS)}, got {self.operator!r}")
        require(where, "effect", self.effect is None or self.effect in kube.TOLERATION_EFFECTS,
                f"{', '.join(kube.TOLERATION_EFFECTS)} or null (every effect), got {self.effect!r}")
        if self.key:
            kube.label_key(where, "key", self.key)
        require(where, "key", bool(self.key) or self.operator == "Exists",
                "set unless operator is Exists (an empty key with Exists tolerates every taint)")
        if self.operator == "Exists":
            require(where, "value", not self.value, "empty with operator Exists")
        else:
            kube.label_value(where, "value", self.value or "")


LAUNCHERS = ("local", "torchrun", "trainjob")
TRAINING_STEPS = ("sft", "reward_model", "ppo")
"""The pipeline steps that train, and so may run past one process (issue 12)."""


RUNTIMES = ("torch-distributed", "deepspeed-distributed")
"""The Kubeflow Trainer ClusterTrainingRuntimes a TrainJob may run on (installed by the operator)."""
KEEP = ("never", "failed", "always")


@dataclass
class Launcher:
    """How a training step runs: in the step's own process (``local``), as ``torchrun`` on the
    step's machine (one node, ``procs_per_node`` processes), or as a Kubeflow Trainer
    ``TrainJob`` of ``num_nodes`` x ``procs_per_node`` that the step creates and waits for; the
    fields after ``procs_per_node`` are for ``trainjob`` only.
    """

    kind: str = "local"
    """``local``: in the step's own process; ``torchrun``: ``procs_per_node`` processes on the
    step's machine; ``trainjob``: a Kubeflow Trainer v2 ``TrainJob`` the step creates and waits for."""
    num_nodes: int = 1
    """Nodes (more than 1 only with ``trainjob``)."""
    procs_per_node: int = 1
    """Processes per node (one per GPU); the TrainJob's ``numProcPerNode``."""
    runtime: str = "torch-distributed"
    """The ClusterTrainingRuntime (``trainjob`` only)."""
    resources_per_node: dict[str, str] = field(default_factory=dict)
    """Each node's requests = limits, e.g. ``{nvidia.com/gpu: "8", cpu: "96", memory: 1600Gi}``;
    empty: ``procs_per_node`` of the step's ``accelerator_type`` plus the step's ``cpu`` and ``memory``."""
    keep: str = "failed"
    """Which finished TrainJobs stay for their pods' logs (a completed one is deleted with ``failed``)."""
    poll_seconds: float = 10.0
    """How often the step reads the job's status."""
    namespace: str | None = None
    """Where the TrainJob is created (None: the step pod's own namespace)."""

    def validate(self, where: str) -> None:
        require(where, "kind", self.kind in LAUNCHERS, " | ".join(LAUNCHERS))
        _count(where, "num_nodes", self.num_nodes, 1, MAX_NODES)
        _count(where, "procs_per_node", self.procs_per_node, 1, MAX_PER_NODE)
        require(where, "num_nodes", self.kind == "trainjob" or self.num_nodes == 1,
                "1 unless kind is trainjob (only a TrainJob spans nodes)")
        require(where, "runtime", self.runtime in RUNTIMES, " | ".join(RUNTIMES))
        require(where, "keep", self.keep in KEEP, " | ".join(KEEP))
        require(where, "poll_seconds",
                finite(self.poll_seconds) and 0 < self.poll_seconds <= MAX_WAIT_SECONDS,
                f"a number of seconds > 0 and at most {MAX_WAIT_SECONDS}")
        kube.resources(f"{where}.resources_per_node", self.resources_per_node)
        if self.namespace is not None:
            kube.dns_label(where, "namespace", self.namespace)


@dataclass
class StepResources:
    """Where and how one pipeline step runs on the cluster (ignored by the local runner)."""

    accelerator_type: str | None = None
    """The accelerator the step's pod asks for, e.g. ``nvidia.com/gpu``."""
    accelerator_count: int = 0
    """How many of ``accelerator_type`` (0: none)."""
    cpu: str | None = None
    """The pod's CPU request and limit (a Kubernetes quantity)."""
    memory: str | None = None
    """The pod's memory request and limit."""
    node_selector: dict[str, str] = field(default_factory=dict)
    """Node labels the pod must land on: the node pool (``videostar.ai/pool: gpu``)."""
    tolerations: list[Toleration] = field(default_factory=list)
    """Taints the pod tolerates (the GPU pool's ``nvidia.com/gpu``)."""
    shm_size: str | None = None
    """A memory-backed ``/dev/shm`` of this size (None: the container's default)."""
    retries: int = 0
    """How often KFP retries the step when it fails."""
    backoff: str = "60s"
    """The wait before the first retry, doubled for each one after."""
    cache: bool = True
    """Let KFP reuse the outputs of an earlier task with the same inputs."""
    launcher: Launcher = field(default_factory=Launcher)

    def validate(self, where: str) -> None:
        if self.accelerator_type is not None:
            kube.resource_name(where, "accelerator_type", self.accelerator_type)
        _count(where, "accelerator_count", self.accelerator_count, 0, MAX_PER_NODE)
        if self.cpu is not None:
            kube.quantity(where, "cpu", self.cpu, kfp=kube.KFP_CPU)
        if self.memory is not None:
            kube.quantity(where, "memory", self.memory, kfp=kube.KFP_MEMORY)
        if self.shm_size is not None:
            kube.quantity(where, "shm_size", self.shm_size)
        for key, value in self.node_selector.items():
            kube.label_key(f"{where}.node_selector", key, key)
            kube.label_value(f"{where}.node_selector", key, value)
        _count(where, "retries", self.retries, 0, MAX_RETRIES)
        require(where, "backoff", backoff_seconds(self.backoff) is not None,
                f"a duration from 0s to {MAX_WAIT_SECONDS}s: a whole number and s, m, h, d or w "
                f"(e.g. 60s, 5m), got {self.backoff!r}")


def backoff_seconds(duration: str) -> int | None:
    """A retry backoff in seconds, None when KFP would not read it or it exceeds KFP's hour."""
    match = _DURATION.fullmatch(duration)
    seconds = int(match[1]) * _SECONDS[match[2]] if match else None
    return seconds if seconds is not None and seconds <= MAX_WAIT_SECONDS else None


def _gpu_step(memory: str) -> StepResources:
    return StepResources(
        accelerator_type="nvidia.com/gpu", accelerator_count=1, cpu="8", memory=memory,
        node_selector={"videostar.ai/pool": "gpu"},
        tolerations=[Toleration(key="nvidia.com/gpu")], shm_size="16Gi", retries=2,
    )


def _cpu_step() -> StepResources:
    return StepResources(cpu="2", memory="4Gi", node_selector={"videostar.ai/pool": "cpu"}, retries=1)


def watcher_step(res: StepResources) -> StepResources:
    """Where a step whose launcher is ``trainjob`` runs: it only stages files and waits for the
    job, so it takes the CPU pool and keeps its own retries and caching; the GPUs, node selector
    and tolerations of ``res`` go to the TrainJob's nodes."""
    return replace(_cpu_step(), retries=res.retries, backoff=res.backoff, cache=res.cache,
                   launcher=res.launcher)


def trainjob_resources(res: StepResources) -> dict[str, str]:
    """Each TrainJob node's resources: the launcher's, else ``procs_per_node`` of the step's
    accelerator with the step's CPU and memory."""
    if res.launcher.resources_per_node:
        return dict(res.launcher.resources_per_node)
    derived = {"cpu": res.cpu, "memory": res.memory}
    if res.accelerator_type:
        derived[res.accelerator_type] = str(res.launcher.procs_per_node)
    return {k: v for k, v in derived.items() if v}


@dataclass
class Images:
    """Step images (built from ``images/``): generation and training on GPU, the rest on CPU."""

    gpu: str = "ghcr.io/videostar/videostar-gpu:0.1.0"
    cpu: str = "ghcr.io/videostar/videostar-cpu:0.1.0"

    def validate(self, where: str) -> None:
        kube.image(where, "gpu", self.gpu)
        kube.image(where, "cpu", self.cpu)


@dataclass
class SecretEnv:
    """A Kubernetes Secret whose keys become environment variables of every step."""

    secret: str
    env: dict[str, str]

    def validate(self, where: str) -> None:
        kube.dns_subdomain(where, "secret", self.secret)
        require(where, "env", bool(self.env), "at least one ENV_NAME: secret-key entry")
        for name, key in self.env.items():
            kube.env_name(f"{where}.env", name, name)
            kube.secret_key(f"{where}.env", name, key)


@dataclass
class PipelineConfig:
    """The cyclic KFP pipeline: inputs, sharding, images and per-step scheduling.

    The cycles are unrolled at compile time up to ``decide.max_cycles``.
    """

    name: str = "videostar-self-training"
    """The pipeline's name in KFP."""
    base_model: str = ""
    """The base model's URI (e.g. ``s3://models/Qwen2.5-VL-7B-Instruct``); ``pipeline submit`` needs it."""
    dataset: str = ""
    """The records' URI (e.g. ``s3://datasets/k700/records.jsonl``); ``pipeline submit`` needs it."""
    num_shards: int = 2
    """Generation and rationalization run as this many parallel tasks."""
    experiment: str = "videostar"
    """The KFP experiment runs are submitted to."""
    pvc: str | None = None
    """A PersistentVolumeClaim mounted into every step: where the videos named in the records live."""
    pvc_mount: str = "/data"
    """Where ``pvc`` is mounted."""
    images: Images = field(default_factory=Images)
    secrets: list[SecretEnv] = field(default_factory=lambda: [
        SecretEnv("videostar-s3", {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
                                   "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
                                   "VIDEOSTAR_S3_ENDPOINT": "VIDEOSTAR_S3_ENDPOINT"}),
        SecretEnv("videostar-mlflow", {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}),
    ])
    generate: StepResources = field(default_factory=lambda: _gpu_step("64Gi"))
    rationalize: StepResources = field(default_factory=lambda: _gpu_step("64Gi"))
    sft: StepResources = field(default_factory=lambda: _gpu_step("128Gi"))
    preferences: StepResources = field(default_factory=lambda: _gpu_step("64Gi"))
    reward_model: StepResources = field(default_factory=lambda: _gpu_step("128Gi"))
    ppo: StepResources = field(default_factory=lambda: _gpu_step("128Gi"))
    verify: StepResources = field(default_factory=_cpu_step)
    decide: StepResources = field(default_factory=_cpu_step)

    def validate(self, where: str) -> None:
        require(where, "name", kube.KFP_PIPELINE_NAME.fullmatch(self.name) is not None,
                f"a KFP pipeline name: lower-case letters, digits and '-', at most 128, got {self.name!r}")
        _count(where, "num_shards", self.num_shards, 1, MAX_SHARDS)
        if self.pvc is not None:
            kube.dns_subdomain(where, "pvc", self.pvc)
        require(where, "pvc_mount", self.pvc_mount.startswith("/") and ":" not in self.pvc_mount,
                f"an absolute path without ':', got {self.pvc_mount!r}")
        for name in ("generate", "rationalize", "preferences", "verify", "decide"):
            require(f"{where}.{name}.launcher", "kind", getattr(self, name).launcher.kind == "local",
                    f"local (only {', '.join(TRAINING_STEPS)} train)")
        if "trainjob" in (getattr(self, name).launcher.kind for name in TRAINING_STEPS):
            require(where, "pvc", bool(self.pvc),
                    "a ReadWriteMany PVC when a launcher is trainjob (the job's inputs and outputs "
                    "pass through it)")



@dataclass
class TrackingConfig:
    """MLflow tracking and the object store for run outputs; off when no MLflow URI is known.

    Each cycle's SFT model is a version of ``registered_model``, the PPO policy of RLAIF a
    version of ``registered_policy``. ``mlflow_uri`` falls back to ``$MLFLOW_TRACKING_URI``; a
    ``sqlite:`` URI is the embedded default (artifacts then go to a folder beside the database).
    ``store`` is ``s3://bucket`` (credentials from the environment) or a local folder.
    """

    mlflow_uri: str = ""
    experiment: str = "videostar"
    registered_model: str = "videostar-sft"
    registered_policy: str = "videostar-policy"
    store: str = ""
    system_metrics: bool = True


