"""Typed run configuration: one source of truth for the CLI, the pipeline and its components.

A YAML file maps onto nested dataclasses, in three parts: the method's recipe
(:mod:`~videostar.config.recipe`), the RLAIF stage (:mod:`~videostar.config.rlaif`) and the
platform (:mod:`~videostar.config.platform`: pipeline, scheduling, tracking). Unknown fields and
wrong types are refused with a :class:`ConfigError` naming the dotted field, so a typo never
silently falls back to a default; each section's ``validate`` refuses values out of range.
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

from videostar.config.fields import numbers, placeholders, require
from videostar.config.platform import (
    Images,
    Launcher,
    PipelineConfig,
    SecretEnv,
    StepResources,
    Toleration,
    TrackingConfig,
)
from videostar.config.recipe import (
    EVAL_SUITES,
    DecideConfig,
    EvalSuite,
    EvaluateConfig,
    GenerateConfig,
    LoraConfig,
    RationalizeConfig,
    SFTConfig,
    VerifyConfig,
    VideoConfig,
)
from videostar.config.rlaif import GRPOConfig, PPOConfig, RewardModelConfig, RLAIFConfig
from videostar.config.scenegraph import ScenegraphConfig
from videostar.errors import ConfigError, first_line
from videostar.prompts import DEFAULT_TEMPLATES, TEMPLATE_FIELDS

__all__ = [
    "EVAL_SUITES", "DecideConfig", "EvaluateConfig", "EvalSuite", "GRPOConfig", "GenerateConfig", "Images",
    "Launcher",
    "LoraConfig", "PPOConfig", "PipelineConfig", "RLAIFConfig", "RationalizeConfig", "RewardModelConfig",
    "RunConfig", "SFTConfig", "ScenegraphConfig", "SecretEnv", "StepResources", "Toleration",
    "TrackingConfig",
    "VerifyConfig", "VideoConfig", "config_from_dict", "config_from_json", "config_to_json", "load_config",
]


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
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    rlaif: RLAIFConfig = field(default_factory=RLAIFConfig)
    scenegraph: ScenegraphConfig = field(default_factory=ScenegraphConfig)
    templates: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))

    def validate(self, where: str) -> None:
        self.decide.check_metric("decide", self.evaluate.suites)
        # the RL step is scheduled with pipeline.ppo's resources; GRPO runs in its step's process
        require("pipeline.ppo.launcher", "kind",
                self.rlaif.algorithm != "grpo" or self.pipeline.ppo.launcher.kind == "local",
                "local when rlaif.algorithm is grpo (GRPO runs in one process)")
        for task, options in self.templates.items():
            require("templates", task, bool(options), "at least one question template")
            for i, text in enumerate(options):
                placeholders("templates", f"{task}[{i}]", text, TEMPLATE_FIELDS.get(task, ()))


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
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where or 'config'}: {exc}") from exc
    numbers(obj, where)
    if hasattr(obj, "validate"):
        obj.validate(where)
    return obj


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a plain mapping into a :class:`RunConfig`."""
    return _build(RunConfig, data, "")


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"line {line}: duplicate key {key!r} (each field once)")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None) -> RunConfig:
    """Read a YAML run configuration; ``None`` gives the defaults."""
    if path is None:
        return RunConfig()
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a folder, not a config file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or first_line(exc)})"
                          ) from exc
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
