"""Context-aware AI preferences (VLM-RLAIF): a narrative of the video, two sampled responses,
and a judge that sees both in both orders.

The narrative joins captions of consecutive clips (three clips describe a video better than
one). The judge is the SFT model by default, prompted with the video, the narrative, the rules
and both responses; a pair is kept only when the verdicts of the two orders agree, which
removes the judge's position bias. The judge's raw outputs are kept with every pair.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from videostar.config import GenerateConfig
from videostar.data.records import Record
from videostar.errors import VideoError
from videostar.model import LoadedModel
from videostar.star.generate import batch_seed, generate_batch
from videostar.video import read_clips, read_frames

CAPTION_PROMPT = "Describe this video in detail."
JUDGE_RULES = (
    "You are judging two answers to a question about a video. A good answer is accurate, "
    "grounded in the video, helpful and concise. The video's clips are described as: {narrative}\n"
    "Question: {question}\nAnswer 1: {first}\nAnswer 2: {second}\n"
    "Which answer is better? Reply 'Answer 1' or 'Answer 2'."
)
_VERDICT = re.compile(r"answer\s*([12])\b", re.IGNORECASE)

Judge = Callable[[list[str], list[np.ndarray]], list[str]]
"""Prompts + frames -> raw judgments; the default asks an LMM."""


def narrative(lm: LoadedModel, video: str, cfg: GenerateConfig, num_clips: int = 3,
              frames_per_clip: int = 8) -> str:
    """Caption every clip of the video with the model and join the captions in order."""
    clips = read_clips(video, num_clips, frames_per_clip)
    captions = generate_batch(lm, [CAPTION_PROMPT] * len(clips), clips, cfg, seed=0)
    return " ".join(f"Clip {i + 1}: {c.strip()}" for i, c in enumerate(captions))


def verdict(text: str) -> int | None:
    """1 or 2 from a judgment: the last 'Answer N' it names; None when it names none."""
    found = _VERDICT.findall(text)
    return int(found[-1]) if found else None


def lmm_judge(lm: LoadedModel, cfg: GenerateConfig) -> Judge:
    """The default judge: the (SFT) model itself, greedy."""
    greedy = GenerateConfig(**{**cfg.__dict__, "temperature": 0.0})
    return lambda prompts, frames: generate_batch(lm, prompts, frames, greedy, seed=0)


@dataclass
class PreferencePair:
    id: str
    video: str
    prompt: str
    chosen: str
    rejected: str
    narrative: str
    judge_outputs: list[str]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def judge_pair(judge: Judge, rec: Record, story: str, frames: np.ndarray, a: str, b: str
               ) -> tuple[int | None, list[str]]:
    """Judge (a, b) and (b, a); returns 0 if a wins both, 1 if b wins both, None otherwise."""
    prompts = [JUDGE_RULES.format(narrative=story, question=rec.question, first=x, second=y)
               for x, y in ((a, b), (b, a))]
    outputs = judge(prompts, [frames, frames])
    first, second = verdict(outputs[0]), verdict(outputs[1])
    if first is None or second is None or first == second:  # unparseable, or position bias
        return None, outputs
    return (0 if first == 1 else 1), outputs


def build_preferences(
    lm: LoadedModel, records: list[Record], cfg: GenerateConfig, judge: Judge | None = None,
    num_clips: int = 3, num_frames: int = 8,
) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Two sampled responses per prompt, judged in both orders; agreeing pairs are kept."""
    judge = judge or lmm_judge(lm, cfg)
    sample = GenerateConfig(**{**cfg.__dict__, "temperature": cfg.temperature or 1.0})
    pairs, counts = [], {"prompts": 0, "identical": 0, "disagreed": 0, "kept": 0, "video_errors": []}
    for rec in records:
        try:
            frames = read_frames(rec.video, num_frames, rec.start, rec.end)
            story = narrative(lm, rec.video, cfg, num_clips)
        except VideoError as exc:
            counts["video_errors"].append({"id": rec.id, "video": rec.video, "reason": exc.cause})
            continue
        counts["prompts"] += 1
        a, b = generate_batch(lm, [rec.question] * 2, [frames, frames], sample,
                              seed=batch_seed(cfg.seed, [rec.id]))
        if a == b:
            counts["identical"] += 1
            continue
        winner, outputs = judge_pair(judge, rec, story, frames, a, b)
        if winner is None:
            counts["disagreed"] += 1
            continue
        chosen, rejected = (a, b) if winner == 0 else (b, a)
        pairs.append(PreferencePair(rec.id, rec.video, rec.question, chosen, rejected, story, outputs))
        counts["kept"] += 1
    return pairs, counts
