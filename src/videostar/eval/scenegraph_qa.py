"""Multi-step reasoning on held-out scene-graph questions (STEP): accuracy by number of steps.

The records are STEP records (``videostar data scenegraph-synthetic|action-genome|vidor``) of videos
never used for self-training; a record of a training-split video (``meta['split']``) is reported
and never scored. Two ratings per answer: ``answer`` (the final answer is the
graph's) and ``path`` (the ``graph_path`` verdict: the answer and the path's steps in order).
Both are broken down by steps (1, 2, 3+, as STEP reports) and by question type.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from videostar.config import GenerateConfig, VerifyConfig, VideoConfig
from videostar.data.records import Record, read_records
from videostar.eval.report import answer_items, finish_report, overall, tally
from videostar.model import LoadedModel
from videostar.prompts import answer_prompt
from videostar.scenegraph.graph import TRAINING_SPLITS
from videostar.scenegraph.questions import GROUP, SPLIT
from videostar.verify import GraphPathVerifier, MalformedLabel, final_answer, verify_record

SUITE = "scenegraph"
BUCKETS = ("1", "2", "3+")


def steps_bucket(n: int) -> str:
    return str(n) if n < 3 else "3+"


def score_step(records: list[Record], answers: dict[str, str], cfg: VerifyConfig
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-answer ratings and their breakdowns; unanswered records are skipped."""
    answer_check = GraphPathVerifier(cfg)
    rows = []
    for rec in records:
        if rec.id not in answers or rec.label_type != ["graph_path"]:
            continue
        text = answers[rec.id]
        verdict = verify_record(rec, text, cfg)
        try:
            answer = answer_check.parse(next(iter(rec.label.values())))["answer"]
        except MalformedLabel:  # the verdict says why; the answer cannot be right either
            answer = None
        rows.append({"id": rec.id, "task": rec.task, "steps": rec.meta.get(GROUP, 0),
                     "answer": answer, "prediction": text,
                     "answer_rating": answer is not None
                     and answer_check.answer_matches(final_answer(text), answer)[0],
                     "rating": verdict.passed, "reason": verdict.labels[0].reason})
    breakdowns = {
        "overall": {"path": overall(r["rating"] for r in rows),
                    "answer": overall(r["answer_rating"] for r in rows)},
        "per_steps": tally(((steps_bucket(r["steps"]), r["rating"]) for r in rows), BUCKETS),
        "per_steps_answer": tally(((steps_bucket(r["steps"]), r["answer_rating"]) for r in rows), BUCKETS),
        "per_question_type": tally((r["task"], r["rating"]) for r in rows),
    }
    return rows, breakdowns


def held_out(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """The records a held-out evaluation may score, and those of training-split videos (the
    release's own split, ``meta['split']``), which it never sees."""
    trained = [r for r in records if r.meta.get(SPLIT) in TRAINING_SPLITS]
    return [r for r in records if r.meta.get(SPLIT) not in TRAINING_SPLITS], trained


def evaluate_scenegraph(lm: LoadedModel, records_path: str | Path, out_dir: str | Path,
                  gen_cfg: GenerateConfig, video_cfg: VideoConfig, verify_cfg: VerifyConfig, *,
                  limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Answer the held-out STEP records and write ``out_dir/report.json``; returns the report."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    errors: list[str] = []
    records = read_records(records_path, errors)
    records, trained = held_out(records)
    errors += [f"{records_path}: {r.id}: {r.video} is a {r.meta[SPLIT]}-split video; never evaluated"
               for r in trained]
    records = records[:limit] if limit is not None else records
    answers, gen = answer_items(lm, records, out_dir, gen_cfg, video_cfg,
                                answer_prompt(gen_cfg.instruction), gen_cfg.instruction,
                                f"eval-{SUITE}", progress)
    rows, breakdowns = score_step(records, answers, verify_cfg)
    per_steps = breakdowns["per_steps"]
    summary = {"accuracy": breakdowns["overall"]["path"]["accuracy"],
               "answer_accuracy": breakdowns["overall"]["answer"]["accuracy"],
               **{f"accuracy_steps_{b}": per_steps[b]["accuracy"] for b in per_steps},
               **{f"accuracy.{t}": v["accuracy"] for t, v in breakdowns["per_question_type"].items()}}
    counts = {"items": len(records), "training_split_records": len(trained), "answered": len(rows),
              "video_errors": len(gen["video_errors"]), "malformed_rows": len(errors) - len(trained),
              "correct": breakdowns["overall"]["path"]["correct"]}
    inputs = {"records": str(records_path), "limit": limit,
              "verify": {"graph_path_steps": verify_cfg.graph_path_steps}}
    return finish_report(SUITE, lm, out_dir, inputs=inputs, counts=counts, summary=summary,
                         breakdowns=breakdowns, scored_rows=rows, gen_metrics=gen, gen_cfg=gen_cfg,
                         video_cfg=video_cfg, input_errors=errors, started=started)
