"""Every text the model is shown, in one place: questions, the answer instruction, the
rationalization hint, clip captions and the preference judge.

The defaults here are the released recipes' wording; the run configuration may override the
question templates, the instruction and the hint (``templates``, ``generate.instruction``,
``rationalize.hint``). Benchmark prompts stay with their benchmark (``eval/``), worded as the
benchmark's official scripts word them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from videostar.data.records import Record
from videostar.errors import ConfigError

PromptFn = Callable[[Record], str]
"""A record -> the text of the user turn (the video goes before it)."""

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
    # STEP: each question is answered by following a path of the video's scene graph.
    "step_relation_chain": [
        "Start at the {start}. Follow its interactions forward in time, each time moving on to "
        "the object it interacts with next, for {steps} steps. Which object do you reach?",
    ],
    "step_temporal_order": [
        "Consider what happens to the {focus} in time order, beginning when it is {predicate} "
        "the {other}. Which object does it interact with {later} interactions later?",
    ],
    "step_counting": [
        "How many different objects is the {focus} {predicate} during the video?",
    ],
    "step_object_permanence": [
        "The {focus} leaves the view at some point. Which object did it interact with last "
        "before it left?",
    ],
}
"""Question wording per task; a template never names the label."""

TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "subaction_order": ("relation", "anchor"),
    "temporal_localization": ("query",),
    "step_relation_chain": ("start", "steps"),
    "step_temporal_order": ("focus", "predicate", "other", "later"),
    "step_counting": ("focus", "predicate"),
    "step_object_permanence": ("focus",),
}
"""The ``{fields}`` the adapters fill into each task's templates (other tasks: none)."""

INSTRUCTION = "Explain step by step."
"""Appended to every question when answers are generated (Video-STaR's CoT instruction)."""

HINT = "Answer: {label}. Explain step by step how one arrives at this."
"""Label rationalization: the labels as a hint after the question (never in training data)."""

INDUCE_PROMPT = (
    "List every interaction between objects in this clip, one per line, in the form "
    "'subject | relation | object', naming each object by its colour and kind."
)
"""STEP's induction from raw videos: each clip's entities and relations, in a parseable form."""

CAPTION_PROMPT = "Describe this video in detail."
"""VLM-RLAIF: what each clip is captioned with; the captions form the video's narrative."""

JUDGE_RULES = (
    "You are judging two answers to a question about a video. A good answer is accurate, "
    "grounded in the video, helpful and concise. The video's clips are described as: {narrative}\n"
    "Question: {question}\nAnswer 1: {first}\nAnswer 2: {second}\n"
    "Which answer is better? Reply 'Answer 1' or 'Answer 2'."
)
"""VLM-RLAIF: the context-aware judge's prompt."""


def question_for(templates: dict[str, list[str]], task: str, key: str, **fields: str) -> str:
    """Pick a template for ``task`` deterministically from ``key`` and fill in ``fields``.

    Deterministic so that rebuilding a dataset yields the same questions (and cache keys).
    """
    options = templates.get(task)
    if not options:
        raise ConfigError(f"templates.{task}: no question template for this task")
    digest = hashlib.sha1(key.encode()).digest()
    template = options[int.from_bytes(digest[:4], "big") % len(options)]
    try:
        return template.format(**fields)
    except KeyError as exc:
        raise ConfigError(f"templates.{task}: template needs field {exc}") from exc


def answer_prompt(instruction: str) -> PromptFn:
    """The answer-generation prompt: the question, then the step-by-step instruction."""
    return lambda rec: f"{rec.question} {instruction}".strip()


def label_text(rec: Record) -> str:
    """The labels written the way an answer would state them."""
    parts = []
    for name, kind, value in rec.labels():
        words = name.replace("_", " ")
        if kind in ("sequence", "sentence_sequence") and isinstance(value, list):
            parts.append(f"{words}: " + ", then ".join(map(str, value)))
        elif kind == "temporal_range" and isinstance(value, list) and len(value) == 2:
            parts.append(f"from {value[0]:.2f} to {value[1]:.2f}")
        elif kind == "graph_path" and isinstance(value, dict):
            parts.append(str(value.get("answer")))
        elif kind in ("float", "timestamp") and isinstance(value, int | float):
            parts.append(f"{words} {value:g}")
        else:
            parts.append(str(value))
    return "; ".join(parts)


def hint_prompt(hint_template: str) -> PromptFn:
    """Question + hint, e.g. 'Answer: red circle. Explain step by step how one arrives at this.'"""
    return lambda rec: f"{rec.question} {hint_template.format(label=label_text(rec))}"


def judge_prompt(narrative: str, question: str, first: str, second: str) -> str:
    """The judge's prompt for one order of a pair."""
    return JUDGE_RULES.format(narrative=narrative, question=question, first=first, second=second)
