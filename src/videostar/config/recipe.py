"""The method's recipe: frame sampling, generation, rationalization, verification, SFT, the
cycle decision and evaluation (defaults: the released Video-STaR recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from videostar.config.fields import (
    at_least,
    finite,
    fraction,
    non_negative,
    placeholders,
    positive,
    require,
)
from videostar.config.scenegraph import QUESTION_TYPES
from videostar.prompts import HINT, INSTRUCTION
from videostar.video import BACKENDS as VIDEO_BACKENDS


@dataclass
class VideoConfig:
    """Frame sampling: ``num_frames`` uniform frames, or frames at ``fps`` when set."""

    num_frames: int = 8
    """Frames sampled uniformly from each video (or its segment) when ``fps`` is unset."""
    fps: float | None = None
    """Sample this many frames per second instead (None: ``num_frames`` uniform frames)."""
    max_frames: int = 32
    """The most frames ``fps`` sampling takes from one video."""
    max_pixels: int | None = None
    """Per-frame pixel cap: larger frames are downscaled (aspect kept), one line per video."""
    backend: str = "auto"
    """Decoder: torchcodec, decord or pyav; auto takes torchcodec where FFmpeg's libraries load."""

    def validate(self, where: str) -> None:
        at_least(where, "num_frames", self.num_frames, 1)
        require(where, "fps", self.fps is None or (finite(self.fps) and self.fps > 0),
                "a finite number > 0, or null")
        at_least(where, "max_frames", self.max_frames, 1)
        require(where, "max_pixels", self.max_pixels is None or self.max_pixels >= 1, ">= 1")
        require(where, "backend", self.backend in VIDEO_BACKENDS, f"one of {', '.join(VIDEO_BACKENDS)}")



GENERATION_BACKENDS = ("hf", "vllm")
"""``generate.backend``: transformers' ``generate`` (default) or vLLM (videostar.generation)."""


@dataclass
class GenerateConfig:
    """Answer generation (the released recipe: temperature 0.2, one sample, 1024 new tokens)."""

    temperature: float = 0.2
    """Sampling temperature (0: greedy)."""
    max_new_tokens: int = 1024
    batch_size: int = 8
    """Prompts answered together, in one left-padded batch."""
    seed: int = 0
    """Sampling is seeded per row from this and the row's id, so a rerun draws the same answers."""
    instruction: str = INSTRUCTION
    """Appended to every question (Video-STaR's step-by-step instruction)."""
    backend: str = "hf"
    """hf: transformers' generate; vllm: a vLLM engine (pip install 'videostar[vllm]', GPU)."""

    def validate(self, where: str) -> None:
        require(where, "backend", self.backend in GENERATION_BACKENDS,
                f"one of {', '.join(GENERATION_BACKENDS)}")
        non_negative(where, "temperature", self.temperature)
        at_least(where, "max_new_tokens", self.max_new_tokens, 1)
        at_least(where, "batch_size", self.batch_size, 1)
        at_least(where, "seed", self.seed, 0)



@dataclass
class RationalizeConfig:
    """Label rationalization: the label is given as a hint, then the answer is verified."""

    hint: str = HINT

    def validate(self, where: str) -> None:
        placeholders(where, "hint", self.hint, known=("label",), required=("label",))



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
        for name in ("class_ratio", "sentence_threshold", "sequence_threshold", "float_rel_tol",
                     "timestamp_tol", "range_iou", "bbox_iou"):
            fraction(where, name, getattr(self, name))
        at_least(where, "class_min_token_len", self.class_min_token_len, 1)
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
        at_least(where, "r", self.r, 1)
        positive(where, "alpha", self.alpha)
        fraction(where, "dropout", self.dropout, closed_top=False)
        require(where, "scope", self.scope in ("language", "all"), "language or all")


DEEPSPEED_DIR = Path(__file__).resolve().parents[1] / "training" / "deepspeed"
"""The shipped DeepSpeed configs ``sft.deepspeed`` may name (as :mod:`videostar.star.sft`)."""


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
    gradient_checkpointing: bool | None = None
    """Recompute activations in backward (7B memory); the loss is unchanged. None: on GPU only."""
    checkpoint_steps: int = 50
    """A resumable checkpoint every this many optimizer steps (0: none). Under ``deepspeed``
    each rank keeps its optimizer shard, so such a checkpoint resumes on the same world size."""
    max_length: int | None = None
    """Cut answers so prompt + answer fit in this many tokens (one line per cut item)."""
    attn_implementation: str | None = None
    """transformers' attention kernel: sdpa, flash_attention_2, eager (None: its default)."""
    rationale_weight: float = 1.0
    """Loss weight of an answer's rationale tokens vs its final answer's (1: equal; STEP)."""
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self, where: str) -> None:
        positive(where, "lr", self.lr)
        at_least(where, "batch_size", self.batch_size, 1)
        at_least(where, "grad_accum", self.grad_accum, 1)
        positive(where, "epochs", self.epochs)
        fraction(where, "warmup_ratio", self.warmup_ratio, closed_top=False)
        non_negative(where, "weight_decay", self.weight_decay)
        positive(where, "max_grad_norm", self.max_grad_norm)
        at_least(where, "seed", self.seed, 0)
        at_least(where, "checkpoint_steps", self.checkpoint_steps, 0)
        require(where, "deepspeed", self.deepspeed is None or Path(self.deepspeed).is_file()
                or (DEEPSPEED_DIR / self.deepspeed).is_file(),
                f"an existing DeepSpeed JSON file, or one of "
                f"{', '.join(sorted(p.name for p in DEEPSPEED_DIR.glob('*.json')))}")
        require(where, "max_length", self.max_length is None or self.max_length >= 1, ">= 1")
        non_negative(where, "rationale_weight", self.rationale_weight)
        require(where, "attn_implementation", self.attn_implementation in
                (None, "sdpa", "flash_attention_2", "eager"), "sdpa, flash_attention_2 or eager")



EVAL_SUITES = {
    "kinetics700": ("csv", "videos"),
    "tempcompass": ("data",),
    "finediving": ("root", "coarse", "fine", "split_keys", "subactions"),
    "scenegraph": ("records",),
}
"""Each suite and the data paths it needs (the same names as ``videostar eval`` options)."""

CYCLE_METRICS = ("total_yield", "answer_yield", "rationalization_yield", "answered", "rationalized")
"""The numbers of a cycle's summary (:func:`videostar.star.decide.summarize_cycle`) that
``decide.metric`` may follow."""
EVAL_METRICS = {
    "kinetics700": ("accuracy", "mean_class_accuracy"),
    "tempcompass": ("accuracy", "accuracy_unscored_wrong",
                    *(f"accuracy/{t}" for t in ("multi-choice", "yes_no", "caption_matching", "captioning"))),
    "finediving": ("spearman", "sub_action_sequence_accuracy", "difficulty_accuracy"),
    "scenegraph": ("accuracy", "answer_accuracy", *(f"accuracy_steps_{b}" for b in ("1", "2", "3+")),
             *(f"accuracy.{t}" for t in QUESTION_TYPES)),
}
"""The headline numbers each suite's report gives (``summary``; a test holds them to the suites'
own task lists), where higher is better: decide continues while its metric rises."""
LOWER_IS_BETTER = {"finediving": ("relative_l2_x100", "mean_abs_error")}


def decide_metrics(suites: list[EvalSuite]) -> list[str]:
    """What ``decide.metric`` may name with these evaluation suites configured."""
    return [*CYCLE_METRICS, *(f"{s.prefix}.{s.name}.{m}" for s in suites for m in EVAL_METRICS[s.name])]


SUITE_ROLES = {"report": "eval", "validation": "val"}
"""A suite's role and the prefix of its numbers: reported held-out numbers (``eval.``) are never
used to choose anything; validation numbers (``val.``) choose the cycle (``decide.select``)."""


@dataclass
class EvalSuite:
    """One benchmark the pipeline runs on the base model and after every cycle."""

    name: str
    """The benchmark: a key of ``EVAL_SUITES``."""
    data: dict[str, str]
    """The benchmark's files, under the names ``EVAL_SUITES`` gives it (the ``videostar eval`` options)."""
    split: str | None = None
    """The benchmark split to evaluate, e.g. Kinetics-700's ``validate``."""
    role: str = "report"
    """``report``: the held-out numbers a run reports (``eval.<suite>.<metric>``), never used to
    choose anything; ``validation``: clips held apart from those, whose numbers
    (``val.<suite>.<metric>``) ``decide.select`` chooses the cycle by."""

    @property
    def prefix(self) -> str:
        """The prefix of this suite's numbers: ``eval`` or ``val``."""
        return SUITE_ROLES.get(self.role, "eval")


@dataclass
class EvaluateConfig:
    """Benchmark generation (greedy, shorter than self-training's step-by-step answers), and
    the suites the pipeline evaluates every cycle on; ``decide.metric`` may name one of their
    numbers, e.g. ``eval.kinetics700.accuracy``."""

    temperature: float = 0.0
    """Sampling temperature (0: greedy)."""
    max_new_tokens: int = 256
    limit: int | None = None
    """Evaluate only each suite's first this many records (smoke runs; None: all)."""
    suites: list[EvalSuite] = field(default_factory=list)

    def validate(self, where: str) -> None:
        non_negative(where, "temperature", self.temperature)
        at_least(where, "max_new_tokens", self.max_new_tokens, 1)
        at_least(where, "limit", self.limit, 1, optional=True)
        for i, suite in enumerate(self.suites):
            at = f"{where}.suites[{i}]"
            require(at, "name", suite.name in EVAL_SUITES, f"one of {', '.join(EVAL_SUITES)}")
            require(at, "role", suite.role in SUITE_ROLES, f"one of {', '.join(SUITE_ROLES)}")
            twin = [j for j, other in enumerate(self.suites[:i]) if (other.prefix, other.name) == (
                suite.prefix, suite.name)]
            require(at, "name", not twin, f"suites[{twin[0] if twin else 0}] is already {suite.name} "
                    f"with role {suite.role} (their numbers would share names)")
            missing = [k for k in EVAL_SUITES[suite.name] if k not in suite.data]
            require(at, "data", not missing, f"missing {', '.join(missing)}")



@dataclass
class DecideConfig:
    """When the cycles stop and which cycle is handed on.

    They stop at the budget, when ``metric`` improved by less than ``min_delta``, or, with
    ``select`` set, when the validation number has not improved for ``patience`` cycles. The
    cycle handed on (the model the next cycle generates with, the RLAIF stage starts from and
    the registry's ``champion`` alias names) is the best on ``select`` (ties: the earlier), else
    the last: yield is measured on the training questions and keeps rising while accuracy on
    unseen videos can fall.
    """

    max_cycles: int = 3
    """The cycle budget: the pipeline is unrolled to this many cycles."""
    min_delta: float = 0.01
    metric: str = "total_yield"
    """A number of the cycle's summary, or ``eval.<suite>.<metric>`` / ``val.<suite>.<metric>`` of a
    configured suite (one that rises as the model improves)."""
    select: str | None = None
    """``val.<suite>.<metric>`` of a suite with ``role: validation``: chooses the cycle handed on
    and stops the cycles when it stops improving. None: the last cycle is handed on."""
    patience: int = 1
    """Cycles without a new best on ``select`` before the cycles stop."""

    def validate(self, where: str) -> None:
        at_least(where, "max_cycles", self.max_cycles, 1)
        non_negative(where, "min_delta", self.min_delta)
        at_least(where, "patience", self.patience, 1)

    def check_metric(self, where: str, suites: list[EvalSuite]) -> None:
        """``metric`` and ``select`` are numbers the cycles produce with these ``suites``
        (checked at load, not at the first decide after a whole cycle)."""
        allowed = decide_metrics(suites)
        for key, value in (("metric", self.metric), ("select", self.select)):
            if value is None:
                continue
            prefix, _, rest = value.partition(".")
            suite, _, name = rest.partition(".")
            scored = prefix in SUITE_ROLES.values()
            if scored and name in LOWER_IS_BETTER.get(suite, ()):
                require(where, key, False, f"{value} falls as a model improves; decide "
                        f"follows a metric that rises (e.g. {prefix}.{suite}.spearman)")
            if scored and suite in EVAL_METRICS and value not in allowed:
                role = next(r for r, p in SUITE_ROLES.items() if p == prefix)
                require(where, key, False, f"{value} needs the {suite} suite with role {role} "
                        f"in evaluate.suites")
            require(where, key, value in allowed, f"one of {', '.join(allowed)}, got {value!r}")
        if self.select is not None:
            require(where, "select", self.select.startswith("val."),
                    f"a validation number (val.<suite>.<metric>), got {self.select!r}: the "
                    f"reported held-out numbers (eval.) never choose")



