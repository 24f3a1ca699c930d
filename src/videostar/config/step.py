"""STEP's settings: which graph-path questions are asked, and how long the paths are."""

from __future__ import annotations

from dataclasses import dataclass, field

from videostar.config.fields import require

QUESTION_TYPES = ("step_relation_chain", "step_temporal_order", "step_counting",
                  "step_object_permanence")
"""Each is also the records' ``task``, so its wording lives in ``templates``."""


@dataclass
class StepConfig:
    """Question generation from scene-graph paths (STEP: three or more reasoning steps).

    ``min_steps``..``max_steps``: path lengths asked for (one edge of the graph per step);
    ``per_video``: questions at most per video; ``max_questions``: in all (None: no cap);
    ``skip_predicates``: relations never used as a step (Action Genome's negatives).
    """

    min_steps: int = 3
    max_steps: int = 5
    question_types: list[str] = field(default_factory=lambda: list(QUESTION_TYPES))
    per_video: int = 8
    max_questions: int | None = None
    seed: int = 0
    skip_predicates: list[str] = field(default_factory=lambda: [
        "not_looking_at", "not_contacting", "unsure", "other_relationship"])

    def validate(self, where: str) -> None:
        require(where, "min_steps", self.min_steps >= 1, ">= 1")
        require(where, "max_steps", self.max_steps >= self.min_steps, ">= min_steps")
        require(where, "per_video", self.per_video >= 1, ">= 1")
        require(where, "question_types",
                bool(self.question_types) and set(self.question_types) <= set(QUESTION_TYPES),
                f"a non-empty subset of {', '.join(QUESTION_TYPES)}")
