"""STEP's settings: which graph-path questions are asked, and how long the paths are."""

from __future__ import annotations

from dataclasses import dataclass, field

from videostar.config.fields import at_least, require

QUESTION_TYPES = ("step_relation_chain", "step_temporal_order", "step_counting",
                  "step_object_permanence")
"""Each is also the records' ``task``, so its wording lives in ``templates``."""
RELEASE_SPLITS = ("train", "test", "training", "validation")
"""The scene-graph releases' split names (Action Genome and VidVRD: train/test; VidOR:
training/validation)."""


@dataclass
class ScenegraphConfig:
    """Question generation from scene-graph paths (STEP: three or more reasoning steps).

    ``min_steps``..``max_steps``: path lengths asked for (one edge of the graph per step);
    ``per_video``: questions at most per video; ``max_questions``: in all (None: no cap);
    ``skip_predicates``: relations never used as a step (Action Genome's negatives);
    ``split``: the release split whose videos the dataset reads (Action Genome ``train`` /
    ``test``, VidOR ``training`` / ``validation``, VidVRD ``train`` / ``test``; None: all of
    them, each record naming its video's split in ``meta['split']``).
    """

    min_steps: int = 3
    max_steps: int = 5
    question_types: list[str] = field(default_factory=lambda: list(QUESTION_TYPES))
    per_video: int = 8
    max_questions: int | None = None
    seed: int = 0
    skip_predicates: list[str] = field(default_factory=lambda: [
        "not_looking_at", "not_contacting", "unsure", "other_relationship"])
    split: str | None = None

    def validate(self, where: str) -> None:
        require(where, "min_steps", self.min_steps >= 1, ">= 1")
        require(where, "max_steps", self.max_steps >= self.min_steps, ">= min_steps")
        require(where, "per_video", self.per_video >= 1, ">= 1")
        at_least(where, "max_questions", self.max_questions, 1, optional=True)
        require(where, "question_types",
                bool(self.question_types) and set(self.question_types) <= set(QUESTION_TYPES),
                f"a non-empty subset of {', '.join(QUESTION_TYPES)}")
        require(where, "split", self.split is None or self.split in RELEASE_SPLITS,
                f"one of {', '.join(RELEASE_SPLITS)} (or unset: every split)")
