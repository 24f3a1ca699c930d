"""What the evaluation suites share: accuracy tallies, answer generation, the report and its table.

Every suite writes the same layout into its output folder, so reports compare across suites
and an interrupted evaluation resumes where it stopped:

- ``predictions.jsonl``: one generated answer per item (the resumable generation step's file);
- ``generation.json``: the model and settings those answers came from; a rerun with another
  model or other settings is refused instead of silently mixing answers;
- ``scored.jsonl``: one verdict per answered item (why an item counted as right, wrong or
  unscored);
- ``report.json``: counts, headline metrics and per-breakdown metrics (:class:`EvalReport`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videostar.config import GenerateConfig, VideoConfig
from videostar.data.records import Record, read_rows, write_json, write_jsonl
from videostar.errors import VideostarError
from videostar.generation import generate_answers
from videostar.model import LoadedModel
from videostar.prompts import PromptFn
from videostar.resume import model_content

PREDICTIONS = "predictions.jsonl"
GENERATION = "generation.json"
SCORED = "scored.jsonl"
REPORT = "report.json"

Rating = bool | None
"""True / False when an answer could be scored, None when no rule (or judge) could score it."""


@dataclass
class Accuracy:
    """Right / wrong / unscored counts of one slice; accuracy is over scored answers only."""

    correct: int = 0
    scored: int = 0
    unscored: int = 0

    def add(self, rating: Rating) -> None:
        if rating is None:
            self.unscored += 1
        else:
            self.scored += 1
            self.correct += int(rating)

    def to_json(self) -> dict[str, Any]:
        total = self.scored + self.unscored
        return {
            "total": total,
            "scored": self.scored,
            "correct": self.correct,
            "unscored": self.unscored,
            "accuracy": self.correct / self.scored if self.scored else None,
            # Unscored counted as wrong: what benchmark scripts report with their LLM judge off.
            "accuracy_unscored_wrong": self.correct / total if total else None,
        }


def tally(pairs: Iterable[tuple[str, Rating]], order: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Accuracy per key; keys named in ``order`` come first in that order, the rest sorted."""
    slices: dict[str, Accuracy] = {}
    for key, rating in pairs:
        slices.setdefault(key, Accuracy()).add(rating)
    first = [k for k in order if k in slices]
    keys = first + sorted(k for k in slices if k not in first)
    return {k: slices[k].to_json() for k in keys}


def overall(ratings: Iterable[Rating]) -> dict[str, Any]:
    acc = Accuracy()
    for rating in ratings:
        acc.add(rating)
    return acc.to_json()


# --------------------------------------------------------------------------- generation


def _fingerprint(lm: LoadedModel, gen_cfg: GenerateConfig, video_cfg: VideoConfig,
                 prompt: str) -> dict[str, Any]:
    """What decides the answers: the model's content (a model replaced at the same path is
    another model), the settings and the prompt; batch size does not (rows have their own seeds)."""
    gen = {k: v for k, v in dataclasses.asdict(gen_cfg).items() if k != "batch_size"}
    return {"model": model_content(lm.source), "base": model_content(lm.tuned_from), "generate": gen,
            "video": dataclasses.asdict(video_cfg), "prompt": prompt}


def answer_items(
    lm: LoadedModel, records: list[Record], out_dir: Path, gen_cfg: GenerateConfig,
    video_cfg: VideoConfig, prompt_fn: PromptFn, prompt: str, kind: str, progress: bool = True,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Answers by record id, and the generation metrics (``video_errors`` among them).

    Reuses answers already in ``out_dir`` when they came from the same model, settings and
    prompt (``prompt`` names it, e.g. the instruction text); otherwise refuses, so one report
    never mixes two models' answers.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = out_dir / PREDICTIONS
    stamp = _fingerprint(lm, gen_cfg, video_cfg, prompt)
    sidecar = out_dir / GENERATION
    started = predictions.exists() or predictions.with_name(PREDICTIONS + ".partial").exists()
    if started and sidecar.exists() and json.loads(sidecar.read_text()) != stamp:
        raise VideostarError(
            f"{out_dir}: holds answers of another model or other generation settings "
            f"(see {sidecar}); evaluate into a new folder"
        )
    write_json(sidecar, stamp)
    metrics = generate_answers(lm, records, predictions, gen_cfg, video_cfg, prompt_fn,
                               kind=kind, progress=progress)
    wanted = {r.id for r in records}
    answers = {row["id"]: row["answer"] for row in read_rows(predictions) if row["id"] in wanted}
    return answers, metrics


# --------------------------------------------------------------------------- the report


@dataclass
class EvalReport:
    """One suite's result, as written to ``report.json``.

    ``counts`` always holds ``items`` (questions asked), ``answered`` and ``video_errors``
    (unreadable videos: listed in ``video_errors``, never fatal); ``summary`` holds the
    headline numbers; ``breakdowns`` maps a name to ``{key: accuracy}`` or
    ``{row: {column: accuracy}}`` (the shape :meth:`Accuracy.to_json` gives); ``details``
    holds suite-specific lists (e.g. the ids of unparseable answers).
    """

    suite: str
    model: str
    base: str
    inputs: dict[str, Any]
    counts: dict[str, int]
    summary: dict[str, Any]
    breakdowns: dict[str, Any]
    files: dict[str, Any]
    settings: dict[str, Any]
    video_errors: list[dict[str, str]] = field(default_factory=list)
    input_errors: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def finish_report(
    suite: str, lm: LoadedModel, out_dir: Path, *, inputs: dict[str, Any], counts: dict[str, int],
    summary: dict[str, Any], breakdowns: dict[str, Any], scored_rows: list[dict[str, Any]],
    gen_metrics: dict[str, Any], gen_cfg: GenerateConfig, video_cfg: VideoConfig,
    input_errors: list[str], started: float, extra_files: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``scored.jsonl`` and ``report.json`` (atomically) and return the report."""
    report = EvalReport(
        suite=suite, model=lm.source, base=lm.tuned_from, inputs=inputs, counts=counts,
        summary=summary, breakdowns=breakdowns,
        files={"report": str(out_dir / REPORT), "predictions": str(out_dir / PREDICTIONS),
               "scored": str(out_dir / SCORED), **(extra_files or {})},
        settings={"generate": dataclasses.asdict(gen_cfg), "video": dataclasses.asdict(video_cfg),
                  "generated_now": gen_metrics["generated"],
                  "reused_answers": gen_metrics["skipped_existing"]},
        video_errors=gen_metrics["video_errors"], input_errors=input_errors, details=details or {},
        seconds=round(time.perf_counter() - started, 3),
    )
    return write_report(out_dir, report, scored_rows)


def write_report(out_dir: Path, report: EvalReport, scored_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``scored.jsonl`` and ``report.json`` (atomically); returns the report as JSON."""
    write_jsonl(out_dir / SCORED, scored_rows)
    data = report.to_json()
    write_json(out_dir / REPORT, data)
    return data


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _is_accuracy(value: Any) -> bool:
    return isinstance(value, dict) and "accuracy" in value and "scored" in value


def print_report(report: dict[str, Any], console: Any = None, max_rows: int = 30) -> None:
    """Print a report as rich tables: counts and headline numbers, then each breakdown.

    A breakdown with more than ``max_rows`` rows (e.g. 700 Kinetics classes) is cut, saying
    how many rows are left out; the JSON report has them all.
    """
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"{report['suite']}: {report['model']}")
    head = Table(title=report["suite"], show_header=False)
    for key, value in {**report["counts"], **report["summary"]}.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        head.add_row(key, "-" if value is None else str(value))
    console.print(head)
    for name, breakdown in report["breakdowns"].items():
        if not breakdown:
            continue
        rows = list(breakdown.items())
        if all(_is_accuracy(v) for _, v in rows):
            table = Table(title=name)
            for col in ("", "acc %", "correct", "scored", "unscored"):
                table.add_column(col, justify="left" if not col else "right")
            for key, acc in rows[:max_rows]:
                table.add_row(key, _pct(acc["accuracy"]), str(acc["correct"]), str(acc["scored"]),
                              str(acc["unscored"]))
        else:
            columns = list(dict.fromkeys(c for _, cells in rows for c in cells))
            table = Table(title=name)
            table.add_column("acc % (scored/total)")
            for col in columns:
                table.add_column(col, justify="right")
            for key, cells in rows[:max_rows]:
                table.add_row(key, *(
                    f"{_pct(c['accuracy'])} ({c['scored']}/{c['total']})" if (c := cells.get(col))
                    else "" for col in columns
                ))
        if len(rows) > max_rows:
            table.caption = f"{len(rows) - max_rows} more rows in {report['files']['report']}"
        console.print(table)
    if report["video_errors"]:
        console.print(f"{len(report['video_errors'])} unreadable videos (listed in the report)")
