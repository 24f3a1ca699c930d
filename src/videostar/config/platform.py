"""Where and how the pipeline runs: inputs, sharding, images, per-step Kubernetes scheduling,
secrets, and MLflow tracking with its object store. None of it changes what the method computes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from videostar.config.fields import at_least, require


@dataclass
class Toleration:
    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = "NoSchedule"


LAUNCHERS = ("local", "torchrun", "trainjob")
TRAINING_STEPS = ("sft", "reward", "ppo")
"""The pipeline steps that train, and so may run past one process (issue 12)."""


RUNTIMES = ("torch-distributed", "deepspeed-distributed")
"""The Kubeflow Trainer ClusterTrainingRuntimes a TrainJob may run on (installed by the operator)."""
KEEP = ("never", "failed", "always")


@dataclass
class Launcher:
    """How a training step runs: in the step's own process (``local``), as ``torchrun`` on the
    step's machine (one node, ``procs_per_node`` processes), or as a Kubeflow Trainer
    ``TrainJob`` of ``num_nodes`` x ``procs_per_node`` that the step creates and waits for.

    The rest is for ``trainjob`` only: the ClusterTrainingRuntime, each node's resources (empty:
    ``procs_per_node`` of the step's accelerator and the step's CPU and memory), which finished
    jobs to keep for their logs, how often the step polls the job, and the namespace (empty:
    the step pod's own).
    """

    kind: str = "local"
    num_nodes: int = 1
    procs_per_node: int = 1
    runtime: str = "torch-distributed"
    resources_per_node: dict[str, str] = field(default_factory=dict)
    keep: str = "failed"
    poll_seconds: float = 10.0
    namespace: str | None = None

    def validate(self, where: str) -> None:
        require(where, "kind", self.kind in LAUNCHERS, " | ".join(LAUNCHERS))
        at_least(where, "num_nodes", self.num_nodes, 1)
        at_least(where, "procs_per_node", self.procs_per_node, 1)
        require(where, "num_nodes", self.kind == "trainjob" or self.num_nodes == 1,
                "1 unless kind is trainjob (only a TrainJob spans nodes)")
        require(where, "runtime", self.runtime in RUNTIMES, " | ".join(RUNTIMES))
        require(where, "keep", self.keep in KEEP, " | ".join(KEEP))
        require(where, "poll_seconds", self.poll_seconds > 0, "a number of seconds > 0")


@dataclass
class StepResources:
    """Where and how one pipeline step runs on the cluster (ignored by the local runner)."""

    accelerator_type: str | None = None
    accelerator_count: int = 0
    cpu: str | None = None
    memory: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[Toleration] = field(default_factory=list)
    shm_size: str | None = None
    retries: int = 0
    backoff: str = "60s"
    cache: bool = True
    launcher: Launcher = field(default_factory=Launcher)

    def validate(self, where: str) -> None:
        at_least(where, "accelerator_count", self.accelerator_count, 0)
        at_least(where, "retries", self.retries, 0)


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


@dataclass
class SecretEnv:
    """A Kubernetes Secret whose keys become environment variables of every step."""

    secret: str
    env: dict[str, str]


@dataclass
class PipelineConfig:
    """The cyclic KFP pipeline: inputs, sharding, images and per-step scheduling.

    The cycles are unrolled at compile time up to ``decide.max_cycles``.
    """

    name: str = "videostar-self-training"
    base_model: str = ""
    dataset: str = ""
    num_shards: int = 2
    experiment: str = "videostar"
    pvc: str | None = None
    pvc_mount: str = "/data"
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
    reward: StepResources = field(default_factory=lambda: _gpu_step("128Gi"))
    ppo: StepResources = field(default_factory=lambda: _gpu_step("128Gi"))
    verify: StepResources = field(default_factory=_cpu_step)
    decide: StepResources = field(default_factory=_cpu_step)

    def validate(self, where: str) -> None:
        require(where, "num_shards", self.num_shards >= 1, ">= 1")
        for name in ("generate", "rationalize", "preferences", "verify", "decide"):
            require(f"{where}.{name}.launcher", "kind", getattr(self, name).launcher.kind == "local",
                    f"local (only {', '.join(TRAINING_STEPS)} train)")
        require(f"{where}.ppo.launcher", "kind", self.ppo.launcher.kind != "trainjob",
                "local or torchrun (PPO is not distributed across nodes)")
        if "trainjob" in (self.sft.launcher.kind, self.reward.launcher.kind):
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


