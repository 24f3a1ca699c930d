"""Typed run configuration: one source of truth for the CLI, the pipeline and its components.

A YAML file maps onto nested dataclasses. Unknown fields and wrong types are refused with a
:class:`ConfigError` naming the dotted field, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from videostar.errors import ConfigError

DEFAULT_TEMPLATES: dict[str, list[str]] = {
    "action_recognition": [
        "What is happening in this video?",
        "Describe what you see in this video.",
        "What is shown in this video?",
    ],
    "action_quality": [
        "How well is the action in this video performed? Give a score.",
        "Assess the quality of the performance in this video and give its score.",
    ],
    "dive_quality": [
        "Describe the dive in this video step by step, name its difficulty and give its score.",
        "Which moves make up this dive, how difficult is it, and what score does it earn?",
    ],
    "subaction_order": [
        "Which move comes {relation} the {anchor} in this dive?",
    ],
    "temporal_localization": [
        "When does the event described as '{query}' happen in this video?",
    ],
    "shape_timing": [
        "When is the shape visible in this video?",
    ],
}


@dataclass
class VideoConfig:
    """Frame sampling: ``num_frames`` uniform frames, or frames at ``fps`` when set."""

    num_frames: int = 8
    fps: float | None = None
    max_frames: int = 32


@dataclass
class GenerateConfig:
    """Answer generation (the released recipe: temperature 0.2, one sample, 1024 new tokens)."""

    temperature: float = 0.2
    max_new_tokens: int = 1024
    batch_size: int = 8
    seed: int = 0
    instruction: str = "Explain step by step."


@dataclass
class RationalizeConfig:
    """Label rationalization: the label is given as a hint, then the answer is verified."""

    hint: str = "Answer: {label}. Explain step by step how one arrives at this."


@dataclass
class VerifyConfig:
    """Parser-Verifier thresholds, per label type (DESIGN §3.2)."""

    class_ratio: float = 0.85
    class_min_token_len: int = 3
    sentence_threshold: float = 0.6
    sequence_threshold: float = 0.25
    float_rel_tol: float = 0.10
    timestamp_tol: float = 0.10
    range_iou: float = 0.5
    bbox_iou: float = 0.5
    bbox_format: str = "xyxy"
    sentence_model: str | None = None
    """A sentence-transformers model (folder or ``s3://`` prefix) for sentence similarity;
    None: the lexical fallback. The thresholds apply to whichever similarity is in use."""


@dataclass
class LoraConfig:
    enabled: bool = True
    r: int = 64
    alpha: int = 16
    dropout: float = 0.05
    targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class SFTConfig:
    """Instruction tuning, always from the base checkpoint (released: lr 2e-5, cosine, 1 epoch)."""

    lr: float = 2e-5
    epochs: float = 1.0
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    curriculum: bool = False
    deepspeed: str | None = None
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class RewardConfig:
    """Reward-model training on the preference pairs; ``heldout_fraction`` of the videos is kept
    out to measure pairwise accuracy."""

    lr: float = 2e-5
    epochs: float = 1.0
    batch_size: int = 4
    heldout_fraction: float = 0.1
    center_coef: float = 1e-3
    seed: int = 0
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class PPOConfig:
    """PPO knobs; defaults are the released VLM-RLAIF settings where the paper gives them.

    ``steps`` rollouts of ``batch_size`` prompts each, ``ppo_epochs`` passes of minibatch updates
    over every rollout; a checkpoint every ``save_every`` steps (0: only at the end).
    """

    steps: int = 100
    batch_size: int = 16
    lr: float = 1e-5
    kl_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 1.0
    clip: float = 0.2
    value_clip: float = 0.2
    value_coef: float = 0.1
    ppo_epochs: int = 2
    minibatch_size: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 256
    eos_penalty: float = 1.0
    length_penalty: float = 0.0
    whiten_advantages: bool = True
    max_grad_norm: float = 1.0
    save_every: int = 0
    heldout_samples: int = 2
    seed: int = 0
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class RLAIFConfig:
    """The VLM-RLAIF stage after the cycles (DESIGN §3.4): preferences, reward model, PPO.

    ``judge`` is ``sft`` (the SFT model judges its own samples, the paper's recipe), a model
    folder or ``s3://`` URI, or ``labels`` (the Parser-Verifier prefers the sample that holds the
    record's labels; for models too small to judge). ``sft_model`` is the starting point of a
    stand-alone RLAIF pipeline; the two responses per prompt are sampled at ``temperature``;
    ``quantize: 4bit`` loads the frozen bases 4-bit (QLoRA, GPU only).
    """

    enabled: bool = False
    sft_model: str = ""
    prompts: int | None = None
    num_clips: int = 3
    frames_per_clip: int = 8
    temperature: float = 1.0
    judge: str = "sft"
    quantize: str | None = None
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)


EVAL_SUITES = {
    "kinetics700": ("csv", "videos"),
    "tempcompass": ("data",),
    "finediving": ("root", "coarse", "fine", "split_keys", "subactions"),
}
"""Each suite and the data paths it needs (the same names as ``videostar eval`` options)."""


@dataclass
class EvalSuite:
    """One benchmark the pipeline runs on the base model and after every cycle."""

    name: str
    data: dict[str, str]
    split: str | None = None


@dataclass
class EvalConfig:
    """Benchmark generation (greedy, shorter than self-training's step-by-step answers), and
    the suites the pipeline evaluates every cycle on; ``decide.metric`` may name one of their
    numbers, e.g. ``eval.kinetics700.accuracy``."""

    temperature: float = 0.0
    max_new_tokens: int = 256
    limit: int | None = None
    suites: list[EvalSuite] = field(default_factory=list)


@dataclass
class DecideConfig:
    """When the cycle stops: budget reached, or the metric improved by less than ``min_delta``."""

    max_cycles: int = 3
    min_delta: float = 0.01
    metric: str = "total_yield"


@dataclass
class Toleration:
    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = "NoSchedule"


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


def _gpu_step(memory: str) -> StepResources:
    return StepResources(
        accelerator_type="nvidia.com/gpu", accelerator_count=1, cpu="8", memory=memory,
        node_selector={"videostar.ai/pool": "gpu"},
        tolerations=[Toleration(key="nvidia.com/gpu")], shm_size="16Gi", retries=2,
    )


def _cpu_step() -> StepResources:
    return StepResources(cpu="2", memory="4Gi", node_selector={"videostar.ai/pool": "cpu"}, retries=1)


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


@dataclass
class TrackingConfig:
    """MLflow tracking and the object store for run outputs; off when no MLflow URI is known.

    ``mlflow_uri`` falls back to ``$MLFLOW_TRACKING_URI``; a ``sqlite:`` URI is the embedded
    default (artifacts then go to a folder beside the database). ``store`` is ``s3://bucket``
    (credentials from the environment) or a local folder.
    """

    mlflow_uri: str = ""
    experiment: str = "videostar"
    registered_model: str = "videostar-sft"
    store: str = ""
    system_metrics: bool = True


@dataclass
class RunConfig:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    rationalize: RationalizeConfig = field(default_factory=RationalizeConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    decide: DecideConfig = field(default_factory=DecideConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    rlaif: RLAIFConfig = field(default_factory=RLAIFConfig)
    templates: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _check_type(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (tp in (int, float) and isinstance(value, bool)) or not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"{path}: unknown field (known: {', '.join(sorted(names))})")
        kwargs[key] = _check_type(value, hints[key], path)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a plain mapping into a :class:`RunConfig`."""
    cfg = _build(RunConfig, data, "")
    _validate_ranges(cfg)
    return cfg


def _validate_ranges(cfg: RunConfig) -> None:
    checks = [
        ("video.num_frames", cfg.video.num_frames >= 1),
        ("generate.temperature", cfg.generate.temperature >= 0),
        ("generate.max_new_tokens", cfg.generate.max_new_tokens >= 1),
        ("generate.batch_size", cfg.generate.batch_size >= 1),
        ("sft.lr", cfg.sft.lr > 0),
        ("sft.batch_size", cfg.sft.batch_size >= 1),
        ("sft.grad_accum", cfg.sft.grad_accum >= 1),
        ("sft.epochs", cfg.sft.epochs > 0),
        ("decide.max_cycles", cfg.decide.max_cycles >= 1),
        ("pipeline.num_shards", cfg.pipeline.num_shards >= 1),
        ("verify.bbox_format", cfg.verify.bbox_format in ("xyxy", "xywh")),
        ("rationalize.hint", "{label}" in cfg.rationalize.hint),
        ("rlaif.num_clips", cfg.rlaif.num_clips >= 1),
        ("rlaif.frames_per_clip", 1 <= cfg.rlaif.frames_per_clip <= 20),
        ("rlaif.judge", bool(cfg.rlaif.judge)),
        ("rlaif.quantize", cfg.rlaif.quantize in (None, "4bit")),
        ("rlaif.reward.heldout_fraction", 0 < cfg.rlaif.reward.heldout_fraction < 1),
        ("rlaif.reward.batch_size", cfg.rlaif.reward.batch_size >= 1),
        ("rlaif.ppo.steps", cfg.rlaif.ppo.steps >= 1),
        ("rlaif.ppo.batch_size", cfg.rlaif.ppo.batch_size >= 1),
        ("rlaif.ppo.minibatch_size", cfg.rlaif.ppo.minibatch_size >= 1),
        ("rlaif.ppo.temperature", cfg.rlaif.ppo.temperature > 0),
        ("rlaif.temperature", cfg.rlaif.temperature > 0),
    ]
    for name, ok in checks:
        if not ok:
            raise ConfigError(f"{name}: invalid value")
    for i, suite in enumerate(cfg.evaluation.suites):
        where = f"evaluation.suites[{i}]"
        if suite.name not in EVAL_SUITES:
            raise ConfigError(f"{where}.name: unknown suite {suite.name!r} (known: {', '.join(EVAL_SUITES)})")
        missing = [k for k in EVAL_SUITES[suite.name] if k not in suite.data]
        if missing:
            raise ConfigError(f"{where}.data: missing {', '.join(missing)}")


def load_config(path: str | Path | None) -> RunConfig:
    """Read a YAML run configuration; ``None`` gives the defaults."""
    if path is None:
        return RunConfig()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_to_json(cfg: RunConfig) -> str:
    """The whole configuration as one JSON string: how it travels to every pipeline step."""
    return json.dumps(config_to_dict(cfg), sort_keys=True)


def config_from_json(text: str) -> RunConfig:
    return config_from_dict(json.loads(text))
