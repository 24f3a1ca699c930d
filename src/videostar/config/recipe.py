"""The method's recipe: frame sampling, generation, rationalization, verification, SFT, the
cycle decision and evaluation (defaults: the released Video-STaR recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field

from videostar.config.fields import require
from videostar.prompts import HINT, INSTRUCTION


@dataclass
class VideoConfig:
    """Frame sampling: ``num_frames`` uniform frames, or frames at ``fps`` when set."""

    num_frames: int = 8
    fps: float | None = None
    max_frames: int = 32
    max_pixels: int | None = None
    """Per-frame pixel cap: larger frames are downscaled (aspect kept), one line per video."""

    def validate(self, where: str) -> None:
        require(where, "num_frames", self.num_frames >= 1, ">= 1")
        require(where, "max_pixels", self.max_pixels is None or self.max_pixels >= 1, ">= 1")



@dataclass
class GenerateConfig:
    """Answer generation (the released recipe: temperature 0.2, one sample, 1024 new tokens)."""

    temperature: float = 0.2
    max_new_tokens: int = 1024
    batch_size: int = 8
    seed: int = 0
    instruction: str = INSTRUCTION

    def validate(self, where: str) -> None:
        require(where, "temperature", self.temperature >= 0, ">= 0")
        require(where, "max_new_tokens", self.max_new_tokens >= 1, ">= 1")
        require(where, "batch_size", self.batch_size >= 1, ">= 1")



@dataclass
class RationalizeConfig:
    """Label rationalization: the label is given as a hint, then the answer is verified."""

    hint: str = HINT

    def validate(self, where: str) -> None:
        require(where, "hint", "{label}" in self.hint, "must contain {label}")



@dataclass
class VerifyConfig:
    """Parser-Verifier thresholds, per label type."""

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
    graph_path_steps: float = 1.0
    """``graph_path``: share of the path's steps the rationale must state, in order."""

    def validate(self, where: str) -> None:
        require(where, "bbox_format", self.bbox_format in ("xyxy", "xywh"), "xyxy or xywh")
        require(where, "graph_path_steps", 0 < self.graph_path_steps <= 1, "in (0, 1]")



@dataclass
class LoraConfig:
    enabled: bool = True
    r: int = 64
    alpha: int = 16
    dropout: float = 0.05
    targets: list[str] = field(default_factory=list)
    """Linear layers to adapt, by name; empty: the family's list (videostar.families)."""
    scope: str = "language"
    """``language``: the targets inside the language model only; ``all``: wherever their name is."""
    train_projector: bool = False
    """Train the vision-to-language projector in full (PEFT ``modules_to_save``)."""

    def validate(self, where: str) -> None:
        require(where, "scope", self.scope in ("language", "all"), "language or all")
        require(where, "dropout", 0 <= self.dropout < 1, "in [0, 1)")


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
    gradient_checkpointing: bool = False
    """Recompute activations in backward (7B memory); the loss is unchanged."""
    max_length: int | None = None
    """Cut answers so prompt + answer fit in this many tokens (one line per cut item)."""
    attn_implementation: str | None = None
    """transformers' attention kernel: sdpa, flash_attention_2, eager (None: its default)."""
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self, where: str) -> None:
        require(where, "lr", self.lr > 0, "> 0")
        require(where, "batch_size", self.batch_size >= 1, ">= 1")
        require(where, "grad_accum", self.grad_accum >= 1, ">= 1")
        require(where, "epochs", self.epochs > 0, "> 0")
        require(where, "max_length", self.max_length is None or self.max_length >= 1, ">= 1")
        require(where, "attn_implementation", self.attn_implementation in
                (None, "sdpa", "flash_attention_2", "eager"), "sdpa, flash_attention_2 or eager")



EVAL_SUITES = {
    "kinetics700": ("csv", "videos"),
    "tempcompass": ("data",),
    "finediving": ("root", "coarse", "fine", "split_keys", "subactions"),
    "step": ("records",),
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

    def validate(self, where: str) -> None:
        for i, suite in enumerate(self.suites):
            at = f"{where}.suites[{i}]"
            require(at, "name", suite.name in EVAL_SUITES, f"one of {', '.join(EVAL_SUITES)}")
            missing = [k for k in EVAL_SUITES[suite.name] if k not in suite.data]
            require(at, "data", not missing, f"missing {', '.join(missing)}")



@dataclass
class DecideConfig:
    """When the cycle stops: budget reached, or the metric improved by less than ``min_delta``."""

    max_cycles: int = 3
    min_delta: float = 0.01
    metric: str = "total_yield"

    def validate(self, where: str) -> None:
        require(where, "max_cycles", self.max_cycles >= 1, ">= 1")



