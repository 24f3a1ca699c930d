"""Context-aware AI preferences (VLM-RLAIF): a narrative of the video, two sampled responses,
and a judge that sees both in both orders.

The narrative joins captions of consecutive clips (three clips describe a video better than
one). The judge is the SFT model by default, prompted with the video, the narrative, the rules
and both responses; a pair is kept only when the verdicts of the two orders agree, which
removes the judge's position bias. The judge's raw outputs are kept with every pair.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from videostar.config import GenerateConfig, VerifyConfig
from videostar.data.records import Record
from videostar.errors import VideoError
from videostar.generation import generate_batch, row_seed
from videostar.model import LoadedModel
from videostar.prompts import CAPTION_PROMPT, judge_prompt
from videostar.verify import verify_record
from videostar.video import read_clips, read_frames

_VERDICT = re.compile(r"answer\s*([12])\b", re.IGNORECASE)

Judge = Callable[[list[str], list[np.ndarray]], list[str]]
"""Prompts + frames -> raw judgments; the default asks an LMM."""

PairJudge = Callable[[Record, str, np.ndarray, str, str], tuple[int | None, list[str]]]
"""(record, narrative, frames, a, b) -> (0 if a is better, 1 if b, None: no pair; raw outputs)."""


def narrative(lm: LoadedModel, video: str, cfg: GenerateConfig, num_clips: int = 3,
              frames_per_clip: int = 8, backend: str = "auto") -> str:
    """Caption every clip of the video with the model and join the captions in order."""
    clips = read_clips(video, num_clips, frames_per_clip, backend)
    captions = generate_batch(lm, [CAPTION_PROMPT] * len(clips), clips, cfg, seed=0)
    return " ".join(f"Clip {i + 1}: {c.strip()}" for i, c in enumerate(captions))


def verdict(text: str) -> int | None:
    """1 or 2 from a judgment: the last 'Answer N' it names; None when it names none."""
    found = _VERDICT.findall(text)
    return int(found[-1]) if found else None


def lmm_judge(lm: LoadedModel, cfg: GenerateConfig) -> Judge:
    """The default judge: the (SFT) model itself, greedy."""
    greedy = dataclasses.replace(cfg, temperature=0.0)
    return lambda prompts, frames: generate_batch(lm, prompts, frames, greedy, seed=0)


def label_judge(cfg: VerifyConfig) -> PairJudge:
    """The Parser-Verifier as judge: the sample that holds the record's labels wins; a pair
    where both or neither do is dropped. For labelled data and models too small to judge."""
    def decide(rec: Record, story: str, frames: np.ndarray, a: str, b: str
               ) -> tuple[int | None, list[str]]:
        verdicts = [verify_record(rec, x, cfg) for x in (a, b)]
        outputs = [f"answer {i + 1}: " + ("holds the labels" if v.passed else "; ".join(
            f"{lv.name}: {lv.reason}" for lv in v.labels if not lv.passed))
            for i, v in enumerate(verdicts)]
        if verdicts[0].passed == verdicts[1].passed:
            return None, outputs
        return (0 if verdicts[0].passed else 1), outputs
    return decide


def both_orders(judge: Judge) -> PairJudge:
    """An LMM judge asked twice, answers swapped; a pair survives only if both verdicts agree."""
    return lambda rec, story, frames, a, b: judge_pair(judge, rec, story, frames, a, b)


@dataclass
class PreferencePair:
    id: str
    video: str
    prompt: str
    chosen: str
    rejected: str
    narrative: str
    judge_outputs: list[str]
    start: float | None = None
    end: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def judge_pair(judge: Judge, rec: Record, story: str, frames: np.ndarray, a: str, b: str
               ) -> tuple[int | None, list[str]]:
    """Judge (a, b) and (b, a); returns 0 if a wins both, 1 if b wins both, None otherwise."""
    prompts = [judge_prompt(story, rec.question, x, y)
               for x, y in ((a, b), (b, a))]
    outputs = judge(prompts, [frames, frames])
    first, second = verdict(outputs[0]), verdict(outputs[1])
    if first is None or second is None or first == second:  # unparseable, or position bias
        return None, outputs
    return (0 if first == 1 else 1), outputs


def build_preferences(
    lm: LoadedModel, records: list[Record], cfg: GenerateConfig, judge: PairJudge | None = None,
    num_clips: int = 3, num_frames: int = 8, frames_per_clip: int = 8, progress: bool = False,
    prompt: Callable[[Record], str] | None = None, pairs_per_prompt: int = 1, backend: str = "auto",
) -> tuple[list[PreferencePair], dict[str, Any]]:
    """``pairs_per_prompt`` pairs of sampled responses per prompt, each judged (by default: the
    model itself, both orders).

    ``prompt`` turns a record into what the model is asked (default: its question); the SFT
    model's own prompt format keeps its samples in distribution. Responses are sampled at
    ``cfg.temperature`` (1.0 when it is 0: two greedy answers would be the same), all of a
    prompt's in one batch; captions and the default judge are greedy. A video that cannot be
    read is listed and skipped.
    """
    from tqdm import tqdm

    judge = judge or both_orders(lmm_judge(lm, cfg))
    sample = dataclasses.replace(cfg, temperature=cfg.temperature or 1.0)
    greedy = dataclasses.replace(cfg, temperature=0.0)  # captions: the model's best description
    pairs, counts = [], {"prompts": 0, "identical": 0, "disagreed": 0, "kept": 0, "video_errors": []}
    for rec in tqdm(records, desc="preferences", unit="prompt", disable=not progress):
        try:
            frames = read_frames(rec.video, num_frames, rec.start, rec.end, backend=backend)
            story = narrative(lm, rec.video, greedy, num_clips, frames_per_clip, backend)
        except VideoError as exc:
            counts["video_errors"].append({"id": rec.id, "video": rec.video, "reason": exc.cause})
            continue
        counts["prompts"] += 1
        asked = prompt(rec) if prompt else rec.question
        n = 2 * pairs_per_prompt
        responses = generate_batch(lm, [asked] * n, [frames] * n, sample,
                                   seed=[row_seed(cfg.seed, f"{rec.id}#{k}") for k in range(n)])
        for j, (a, b) in enumerate(zip(responses[::2], responses[1::2], strict=True)):
            if a == b:
                counts["identical"] += 1
                continue
            winner, outputs = judge(rec, story, frames, a, b)
            if winner is None:
                counts["disagreed"] += 1
                continue
            chosen, rejected = (a, b) if winner == 0 else (b, a)
            pair_id = f"{rec.id}/pair-{j}" if j else rec.id  # ids are unique in a pairs file
            pairs.append(PreferencePair(pair_id, rec.video, asked, chosen, rejected, story, outputs,
                                        rec.start, rec.end))
            counts["kept"] += 1
    return pairs, counts
