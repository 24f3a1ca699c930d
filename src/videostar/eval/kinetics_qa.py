"""Kinetics700-QA: action recognition on a held-out split, scored by the class verifier.

Records come from the Kinetics-700 adapter (the same CSV + clip reading as training data) on a
split never used for self-training, e.g. ``validate.csv``. The model is asked the record's
question with the generation instruction, as during Video-STaR's own answer generation, and
an answer is right when the class verifier finds the label in it: the same
criterion that decided which answers became training data.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from videostar.config import GenerateConfig, VerifyConfig, VideoConfig
from videostar.data.kinetics700 import build_kinetics700
from videostar.data.records import Record
from videostar.eval.report import answer_items, finish_report, overall, tally
from videostar.model import LoadedModel
from videostar.prompts import DEFAULT_TEMPLATES, answer_prompt
from videostar.verify import verify_record

SUITE = "kinetics700"


def score_kinetics(
    records: list[Record], answers: dict[str, str], cfg: VerifyConfig
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-answer verdicts, overall and per-class accuracy; unanswered records are skipped."""
    rows = []
    for rec in records:
        if rec.id not in answers:
            continue
        verdict = verify_record(rec, answers[rec.id], cfg)
        reason = "; ".join(lv.reason for lv in verdict.labels)
        rows.append({"id": rec.id, "label": rec.label["action"], "prediction": answers[rec.id],
                     "rating": verdict.passed, "reason": reason})
    per_class = tally((r["label"], r["rating"]) for r in rows)
    return rows, {"overall": {"all": overall(r["rating"] for r in rows)}, "per_class": per_class}


def mean_class_accuracy(per_class: dict[str, dict[str, Any]]) -> float | None:
    """Unweighted mean over classes with at least one answer: frequent classes do not dominate."""
    values = [c["accuracy"] for c in per_class.values() if c["accuracy"] is not None]
    return sum(values) / len(values) if values else None


def evaluate_kinetics(
    lm: LoadedModel,
    csv_path: str | Path,
    video_root: str | Path,
    out_dir: str | Path,
    gen_cfg: GenerateConfig,
    video_cfg: VideoConfig,
    verify_cfg: VerifyConfig,
    *,
    templates: dict[str, list[str]] | None = None,
    split: str | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Answer the labeled clips of ``csv_path`` (rows of ``split`` only, when given) and write
    ``out_dir/report.json``; returns the report.

    Clips missing on disk are counted (``missing_videos``) and listed in ``input_errors``;
    unreadable ones in ``video_errors``. ``limit`` keeps the first records (smoke runs).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    built = build_kinetics700(csv_path, video_root, templates or DEFAULT_TEMPLATES, split=split)
    records = built.records[:limit] if limit is not None else built.records
    answers, gen = answer_items(lm, records, out_dir, gen_cfg, video_cfg,
                                answer_prompt(gen_cfg.instruction), gen_cfg.instruction,
                                f"eval-{SUITE}", progress)
    rows, breakdowns = score_kinetics(records, answers, verify_cfg)
    totals = breakdowns["overall"]["all"]
    counts = {
        "items": len(records), "answered": len(rows), "video_errors": len(gen["video_errors"]),
        "missing_videos": len(built.missing), "malformed_rows": len(built.errors),
        "correct": totals["correct"], "classes": len(breakdowns["per_class"]),
    }
    summary = {"accuracy": totals["accuracy"],
               "mean_class_accuracy": mean_class_accuracy(breakdowns["per_class"])}
    inputs = {"csv": str(csv_path), "video_root": str(video_root), "split": split, "limit": limit,
              "verify": {"class_ratio": verify_cfg.class_ratio,
                         "class_min_token_len": verify_cfg.class_min_token_len}}
    return finish_report(SUITE, lm, out_dir, inputs=inputs, counts=counts, summary=summary,
                         breakdowns=breakdowns, scored_rows=rows, gen_metrics=gen, gen_cfg=gen_cfg,
                         video_cfg=video_cfg, input_errors=built.missing + built.errors,
                         started=started)
