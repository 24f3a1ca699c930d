"""FineDiving: action quality assessment (dive scores) and sub-action sequences.

The model answers each test dive's ``dive_quality`` question (records from the FineDiving
adapter, frames read from the JPEG folders). From each answer:

- the predicted score (:func:`parse_score`); answers without one are counted as
  ``unparseable`` and listed, and left out of the score metrics;
- Spearman's rank correlation (:func:`spearman`, ties get average ranks) and the relative L2
  distance of CoRe (2021) (:func:`relative_l2`), reported x100 as papers do;
- sub-action sequence accuracy: the sequence verifier of :mod:`videostar.verify` must
  find the dive's sub-actions in the answer in their order (a repeated move included);
- difficulty accuracy: the float verifier on the difficulty label.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videostar.config import GenerateConfig, VerifyConfig, VideoConfig
from videostar.data.finediving import build_finediving
from videostar.data.records import Record
from videostar.eval.report import answer_items, finish_report, overall
from videostar.model import LoadedModel
from videostar.prompts import DEFAULT_TEMPLATES, answer_prompt
from videostar.verify import FLOAT_NAME_WINDOW, answer_numbers, get_verifier

SUITE = "finediving"
TASK = "dive_quality"
_SCORE_WORD = re.compile(r"\bscor(?:e|es|ed)\b", re.IGNORECASE)


def parse_score(answer: str) -> float | None:
    """The predicted score: the number right after the last mention of "score" that has one
    (within a few words), else the last number of the answer; None when there is no number.

    The last mention wins because answers reason first and conclude last.
    """
    numbers = answer_numbers(answer)
    if not numbers:
        return None
    picked = None
    for m in _SCORE_WORD.finditer(answer):
        nxt = next(((v, start) for v, start, _, _ in numbers if start >= m.end()), None)
        if nxt is not None and nxt[1] - m.end() <= FLOAT_NAME_WINDOW:
            picked = nxt[0]
    return picked if picked is not None else numbers[-1][0]


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    a = np.asarray(values, dtype=float)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=float)
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and a[order[j + 1]] == a[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(pred: Sequence[float], true: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's correlation of the average ranks (as scipy computes it).

    None when it is undefined: fewer than two pairs, or all values of one side equal.
    """
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} predictions but {len(true)} true scores")
    if len(pred) < 2:
        return None
    rp, rt = average_ranks(pred), average_ranks(true)
    dp, dt = rp - rp.mean(), rt - rt.mean()
    denom = math.sqrt(float(dp @ dp) * float(dt @ dt))
    return float(dp @ dt) / denom if denom > 0 else None


def relative_l2(pred: Sequence[float], true: Sequence[float]) -> float | None:
    """CoRe's relative L2: mean of (|pred - true| / (max(true) - min(true)))^2, as a fraction.

    The range is that of the true scores evaluated (as in CoRe's test loop); None when it is
    zero or there are no pairs.
    """
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} predictions but {len(true)} true scores")
    if not len(true):
        return None
    p, t = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    span = float(t.max() - t.min())
    return float(np.mean((np.abs(p - t) / span) ** 2)) if span > 0 else None


def score_finediving(
    records: list[Record], answers: dict[str, str], cfg: VerifyConfig
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Per-answer rows, the score metrics, and the accuracy breakdowns (unanswered skipped)."""
    sequence = get_verifier("sequence", cfg)
    number = get_verifier("float", cfg)
    rows = []
    for rec in records:
        if rec.id not in answers:
            continue
        answer = answers[rec.id]
        seq = sequence.check(answer, rec.label["sub_actions"], "sub_actions")
        diff = number.check(answer, rec.label["difficulty"], "difficulty")
        rows.append({"id": rec.id, "true_score": float(rec.label["score"]),
                     "predicted_score": parse_score(answer), "sub_actions": rec.label["sub_actions"],
                     "sequence_correct": seq.passed, "sequence_reason": seq.reason,
                     "difficulty_correct": diff.passed, "prediction": answer})
    parsed = [r for r in rows if r["predicted_score"] is not None]
    pred = [r["predicted_score"] for r in parsed]
    true = [r["true_score"] for r in parsed]
    rl2 = relative_l2(pred, true)
    errors = np.abs(np.asarray(pred) - np.asarray(true)) if parsed else np.zeros(0)
    metrics = {
        "spearman": spearman(pred, true),
        "relative_l2_x100": None if rl2 is None else 100 * rl2,
        "mean_abs_error": float(errors.mean()) if parsed else None,
        "parsed": len(parsed),
        "unparseable": len(rows) - len(parsed),
        "unparseable_ids": [r["id"] for r in rows if r["predicted_score"] is None],
    }
    breakdowns = {
        "sub_action_sequence": {"all": overall(r["sequence_correct"] for r in rows)},
        "difficulty": {"all": overall(r["difficulty_correct"] for r in rows)},
    }
    return rows, metrics, breakdowns


def evaluate_finediving(
    lm: LoadedModel,
    root: str | Path,
    coarse_pkl: str | Path,
    fine_pkl: str | Path,
    split_pkl: str | Path,
    subaction_table_pkl: str | Path,
    out_dir: str | Path,
    gen_cfg: GenerateConfig,
    video_cfg: VideoConfig,
    verify_cfg: VerifyConfig,
    *,
    templates: dict[str, list[str]] | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Answer the dives of ``split_pkl`` (the test split) and write ``out_dir/report.json``;
    returns the report. Arguments as for :func:`videostar.data.finediving.build_finediving`.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    built = build_finediving(root, coarse_pkl, fine_pkl, split_pkl, subaction_table_pkl,
                             templates or DEFAULT_TEMPLATES)
    records = [r for r in built.records if r.task == TASK]
    records = records[:limit] if limit is not None else records
    answers, gen = answer_items(lm, records, out_dir, gen_cfg, video_cfg,
                                answer_prompt(gen_cfg.instruction), gen_cfg.instruction,
                                f"eval-{SUITE}", progress)
    rows, metrics, breakdowns = score_finediving(records, answers, verify_cfg)
    seq = breakdowns["sub_action_sequence"]["all"]
    counts = {
        "items": len(records), "answered": len(rows), "video_errors": len(gen["video_errors"]),
        "missing_videos": len(built.missing), "malformed_dives": len(built.errors),
        "parsed_scores": metrics["parsed"], "unparseable_scores": metrics["unparseable"],
    }
    summary = {
        "spearman": metrics["spearman"], "relative_l2_x100": metrics["relative_l2_x100"],
        "mean_abs_error": metrics["mean_abs_error"], "sub_action_sequence_accuracy": seq["accuracy"],
        "difficulty_accuracy": breakdowns["difficulty"]["all"]["accuracy"],
    }
    inputs = {"root": str(root), "coarse": str(coarse_pkl), "fine": str(fine_pkl),
              "split": str(split_pkl), "subaction_table": str(subaction_table_pkl), "limit": limit}
    return finish_report(SUITE, lm, out_dir, inputs=inputs, counts=counts, summary=summary,
                         breakdowns=breakdowns, scored_rows=rows, gen_metrics=gen, gen_cfg=gen_cfg,
                         video_cfg=video_cfg, input_errors=built.missing + built.errors,
                         started=started, details={"unparseable_ids": metrics["unparseable_ids"]})
