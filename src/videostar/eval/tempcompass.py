"""TempCompass: temporal perception over four task types and five temporal dimensions.

Reads the benchmark's own files: ``questions/{multi-choice,yes_no,caption_matching,captioning}.json``
(``{video_id: {dimension: [{question, answer}]}}``), ``meta_info.json`` (the fine-grained
dimension of each video, e.g. "camera motion") and ``videos/<video_id>.mp4``.

Prompts and scoring follow the official scripts (llyx97/TempCompass):

- the question is followed by the task's answer instruction (:data:`ANSWER_PROMPTS`); for
  captioning it is empty, because every captioning question already ends in
  "Generated Caption:";
- rule scoring (:func:`rule_rating`) is the official hand-written matching; an answer no rule
  matches is *unscored*. The official scripts then ask an LLM; here a :class:`Judge` can be
  plugged in and is off by default, so unscored answers are counted and reported instead;
- captioning has no rule: the official evaluation asks an LLM to answer the video's first
  multi-choice question of the same dimension from the generated caption. Without a judge,
  captions are unscored.

Accuracy is reported over scored answers, per task x dimension, per task, per task x
fine-grained dimension, per dimension and overall, with the unscored counts (and, for
comparison with the official ``--disable_llm`` numbers, accuracy counting unscored as wrong).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from videostar.config import GenerateConfig, VideoConfig
from videostar.data.records import Record, write_json
from videostar.errors import RecordError
from videostar.eval.report import (
    REPORT,
    SCORED,
    EvalReport,
    Rating,
    answer_items,
    finish_report,
    overall,
    tally,
    write_report,
)
from videostar.model import LoadedModel

SUITE = "tempcompass"
TASKS = ("multi-choice", "yes_no", "caption_matching", "captioning")
DIMENSIONS = ("action", "direction", "speed", "order", "attribute_change")
ANSWER_PROMPTS = {
    "multi-choice": "\nPlease directly give the best option:",
    "yes_no": "\nPlease answer yes or no:",
    "caption_matching": "\nPlease directly give the best option:",
    "captioning": "",  # the question already ends in "Generated Caption:"
}
"""Appended to the question verbatim, as the official inference scripts do."""

_LABEL_TYPES = {"multi-choice": "multiple_choice", "yes_no": "yes_no",
                "caption_matching": "sentence", "captioning": "sentence"}
_LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Question:
    """One benchmark question, located by task, video, dimension and position in its list."""

    task: str
    video_id: str
    dimension: str
    index: int
    question: str
    answer: str
    fine_dimension: str | None = None

    @property
    def id(self) -> str:
        return f"{SUITE}/{self.task}/{self.video_id}/{self.dimension}/{self.index}"


class Judge(Protocol):
    """An LLM judge, the official fallback (and captioning's only scorer); off by default.

    Called with the task, the question, its ground-truth answer and the model's prediction;
    for captioning the question and answer are the video's multi-choice question of the same
    dimension and the prediction is the caption (the judge answers the question from it).
    Returns True / False, or None when it cannot decide (the answer stays unscored).
    """

    def __call__(self, task: str, question: str, answer: str, prediction: str) -> bool | None: ...


# --------------------------------------------------------------------------- reading the files


@dataclass
class TempCompassData:
    questions: list[Question]
    errors: list[str]
    multi_choice: dict[tuple[str, str], Question]
    """The first multi-choice question per (video, dimension): what the captioning judge asks."""
    has_meta: bool


def _fine_dimension(meta: dict[str, Any], video_id: str, dimension: str) -> str | None:
    """The official fine-grained aspect: ``eval_dim[dimension].type``; order has no subtypes."""
    if dimension == "order":
        return "order"
    entry = meta.get(video_id, {}) if isinstance(meta, dict) else {}
    dims = entry.get("eval_dim") if isinstance(entry, dict) else None
    value = dims.get(dimension) if isinstance(dims, dict) else None
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else None


def _read_task(path: Path, task: str, meta: dict[str, Any], errors: list[str]) -> list[Question]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected {{video_id: {{dimension: [questions]}}}}")
    out: list[Question] = []
    for video_id, dims in data.items():
        if not isinstance(dims, dict):
            errors.append(f"{path}: {video_id}: expected {{dimension: [questions]}}")
            continue
        for dim, items in dims.items():
            if not isinstance(items, list):
                errors.append(f"{path}: {video_id}/{dim}: expected a list of questions")
                continue
            for i, item in enumerate(items):
                q, a = (item.get("question"), item.get("answer")) if isinstance(item, dict) else (None, None)
                if not (isinstance(q, str) and q.strip() and isinstance(a, str) and a.strip()):
                    errors.append(f"{path}: {video_id}/{dim}[{i}]: needs text 'question' and 'answer'")
                    continue
                out.append(Question(task, video_id, dim, i, q, a, _fine_dimension(meta, video_id, dim)))
    return out


def read_meta(root: Path) -> dict[str, Any]:
    """``root/meta_info.json`` (empty when absent: it only feeds the fine-grained breakdown)."""
    meta_path = root / "meta_info.json"
    if not meta_path.is_file():
        return {}
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{meta_path}: not a readable JSON file ({exc})") from exc


def load_tempcompass(root: str | Path, tasks: Iterable[str] | None = None) -> TempCompassData:
    """Questions of ``tasks`` (default: every task whose question file exists) under ``root``.

    A malformed question is listed in ``errors`` and skipped; a requested task without its
    file, or no question file at all, is an error. ``meta_info.json`` is optional (it only
    feeds the fine-grained breakdown).
    """
    root = Path(root)
    qdir = root / "questions"
    wanted = list(tasks) if tasks is not None else [t for t in TASKS if (qdir / f"{t}.json").is_file()]
    unknown = [t for t in wanted if t not in TASKS]
    if unknown:
        raise RecordError(f"unknown TempCompass task {unknown[0]!r} (known: {', '.join(TASKS)})")
    if not wanted:
        raise RecordError(f"{qdir}: no TempCompass question files ({', '.join(TASKS)}).json")
    missing = [t for t in wanted if not (qdir / f"{t}.json").is_file()]
    if missing:
        raise RecordError(f"{qdir / (missing[0] + '.json')}: question file not found")
    meta = read_meta(root)
    errors: list[str] = []
    questions = [q for t in wanted for q in _read_task(qdir / f"{t}.json", t, meta, errors)]
    multi_choice: dict[tuple[str, str], Question] = {}
    if "captioning" in wanted and (qdir / "multi-choice.json").is_file():
        pool = (questions if "multi-choice" in wanted
                else _read_task(qdir / "multi-choice.json", "multi-choice", meta, []))
        for q in pool:
            if q.task == "multi-choice":
                multi_choice.setdefault((q.video_id, q.dimension), q)
    return TempCompassData(questions, errors, multi_choice, bool(meta))


# --------------------------------------------------------------------------- rule scoring


def rate_multi_choice(prediction: str, answer: str) -> Rating:
    """Official rules, in their order: the whole answer line; a bare letter A-D; an ``X.`` or
    ``X)`` prefix (the letter decides). Letters are case-sensitive; "(B)" or "The answer is
    B" match no rule (unscored), exactly as in the official script."""
    if prediction == answer:
        return True
    if prediction in _LETTERS:
        return prediction == answer[0]
    for sep in (".", ")"):
        if any(prediction.startswith(letter + sep) for letter in _LETTERS):
            return prediction.split(sep)[0] == answer[0]
    return None


def rate_yes_no(prediction: str, answer: str) -> Rating:
    """Official rule: the lowercased reply starts with "yes" or "no" (so "Nope" is a no),
    compared with the ground truth as written."""
    reply = prediction.lower()
    if reply.startswith("yes"):
        pred = "yes"
    elif reply.startswith("no"):
        pred = "no"
    else:
        return None
    return pred == answer


_INDEX_WORDS = ("Sentence ", "Option ", "Caption ")
"""Header words the official script strips to get a bare option index ("Caption A" -> "A")."""


def _field(text: str, sep: str, i: int) -> str | None:
    """``text.split(sep)[i]``, or None where the official script would raise IndexError."""
    parts = text.split(sep)
    return parts[i] if i < len(parts) else None


def rate_caption_matching(prediction: str, question: str, answer: str) -> Rating:
    """Official rules, each overriding the one before when several match:

    1. the whole option line ("Caption A: The man walks left.");
    2. its sentence, alone or after an ``X) `` prefix (the piece after the first ``) ``);
    3. its index, with the header ("Caption A", "Option 1", "Sentence B") or bare ("A", "1"),
       every ``.`` of the prediction removed first ("Caption A." and "A." count).

    The match is right when it equals the answer line, its index with or without the header,
    or its sentence. Option lines are the question's lines after the first; a line without
    ``": "`` (on which the official script would crash) offers nothing.
    """
    options = [line for line in question.split("\n")[1:] if ": " in line]
    sentences = [opt.split(": ")[1] for opt in options]
    indices = [opt.split(": ")[0] for opt in options]
    bare = list(indices)
    for word in _INDEX_WORDS:
        bare = [ind.replace(word, "") for ind in bare]
    pred = None
    for opt in options:
        if opt == prediction:
            pred = opt
    after_paren = _field(prediction, ") ", 1) if ") " in prediction else None
    for sent in sentences:
        if sent in (prediction, after_paren):
            pred = sent
    no_dots = prediction.replace(".", "")
    for ind in indices + bare:
        if ind in (prediction, no_dots):
            pred = ind
    if pred is None:
        return None
    head = answer.split(": ")[0].split()
    accepted = (answer, answer.split(":")[0], _field(answer, ": ", 1), head[1] if len(head) > 1 else None)
    return pred in accepted


def rule_rating(task: str, question: str, answer: str, prediction: str) -> Rating:
    """The official rule score of one prediction (``</s>`` removed, then stripped, as the
    official scripts do); None when no rule applies (always for captioning)."""
    prediction = prediction.replace("</s>", "").strip()
    if task == "multi-choice":
        return rate_multi_choice(prediction, answer)
    if task == "yes_no":
        return rate_yes_no(prediction, answer)
    if task == "caption_matching":
        return rate_caption_matching(prediction, question, answer)
    return None


def rate(q: Question, prediction: str | None, judge: Judge | None = None,
         multi_choice: Question | None = None) -> tuple[Rating, str]:
    """Rating of one prediction and what gave it: "rule", "judge", "unscored", or "refusal"
    (a null prediction: the official scripts rate it 0 without asking the judge)."""
    if prediction is None:
        return False, "refusal"
    rating = rule_rating(q.task, q.question, q.answer, prediction)
    if rating is not None:
        return rating, "rule"
    if judge is None:
        return None, "unscored"
    if q.task == "captioning":
        # The official judge answers the video's multi-choice question from the caption; the
        # captioning item itself (options as "Information X") stands in when that file is absent.
        ref = multi_choice or q
        rating = judge(q.task, ref.question, ref.answer, prediction)
    else:
        rating = judge(q.task, q.question, q.answer, prediction)
    return (None, "unscored") if rating is None else (bool(rating), "judge")


def score_tempcompass(
    questions: list[Question], predictions: dict[str, str | None], judge: Judge | None = None,
    multi_choice: dict[tuple[str, str], Question] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-answer verdicts and the breakdowns; questions without a prediction are skipped."""
    multi_choice = multi_choice or {}
    rows: list[dict[str, Any]] = []
    for q in questions:
        if q.id not in predictions:
            continue
        rating, method = rate(q, predictions[q.id], judge, multi_choice.get((q.video_id, q.dimension)))
        rows.append({"id": q.id, "task": q.task, "video_id": q.video_id, "dimension": q.dimension,
                     "fine_dimension": q.fine_dimension, "answer": q.answer,
                     "prediction": predictions[q.id], "rating": rating, "scored_by": method})
    per_task_dim: dict[str, dict[str, Any]] = {}
    per_task_fine: dict[str, dict[str, Any]] = {}
    for task in TASKS:
        mine = [r for r in rows if r["task"] == task]
        if not mine:
            continue
        per_task_dim[task] = tally(((r["dimension"], r["rating"]) for r in mine), DIMENSIONS)
        fine = [(r["fine_dimension"], r["rating"]) for r in mine if r["fine_dimension"]]
        if fine:
            per_task_fine[task] = tally(fine)
    breakdowns = {
        "per_task_dimension": per_task_dim,
        "per_task": tally(((r["task"], r["rating"]) for r in rows), TASKS),
        "per_dimension": tally(((r["dimension"], r["rating"]) for r in rows), DIMENSIONS),
        "per_task_fine_dimension": per_task_fine,
    }
    return rows, breakdowns


def write_prediction_files(questions: list[Question], predictions: dict[str, str],
                           out_dir: Path) -> dict[str, str]:
    """``predictions/{task}.json`` in the official layout: the question files plus ``prediction``
    (null when the video could not be read), so the official scripts can score them too."""
    files: dict[str, str] = {}
    for task in TASKS:
        mirror: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for q in (q for q in questions if q.task == task):
            mirror.setdefault(q.video_id, {}).setdefault(q.dimension, []).append(
                {"question": q.question, "answer": q.answer, "prediction": predictions.get(q.id)}
            )
        if mirror:
            files[task] = str(write_json(out_dir / "predictions" / f"{task}.json", mirror))
    return files


def _totals(questions: list[Question], rows: list[dict[str, Any]]
            ) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """Overall accuracy, the headline numbers and the counts of a scored run."""
    totals = overall(r["rating"] for r in rows)
    per_task = tally(((r["task"], r["rating"]) for r in rows), TASKS)
    summary = {
        "accuracy": totals["accuracy"],
        "accuracy_unscored_wrong": totals["accuracy_unscored_wrong"],
        **{f"accuracy/{task}": acc["accuracy"] for task, acc in per_task.items()},
    }
    counts = {
        "items": len(questions), "answered": len(rows),
        "scored": totals["scored"], "unscored": totals["unscored"], "correct": totals["correct"],
        **{f"scored_by_{how}": sum(r["scored_by"] == how for r in rows)
           for how in ("rule", "judge", "refusal")},
        "videos": len({q.video_id for q in questions}),
    }
    return totals, summary, counts


# --------------------------------------------------------------------------- scoring only


def read_predictions(pred_dir: str | Path, meta: dict[str, Any] | None = None
                     ) -> tuple[list[Question], dict[str, str | None], list[str]]:
    """Questions and predictions of an official predictions folder (``<task>.json`` per task:
    the question file's layout plus ``prediction``, or ``response`` as some models write it).

    ``null`` is a refusal. An item without text question/answer, or without a prediction
    key, is listed in the errors (``file: video/dimension[i]: why``) and skipped.
    """
    pred_dir = Path(pred_dir)
    files = [t for t in TASKS if (pred_dir / f"{t}.json").is_file()]
    if not files:
        raise RecordError(f"{pred_dir}: no TempCompass prediction files ({', '.join(TASKS)}).json")
    questions: list[Question] = []
    predictions: dict[str, str | None] = {}
    errors: list[str] = []
    for task in files:
        path = pred_dir / f"{task}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(f"{path}: not a readable JSON file ({exc})") from exc
        if not isinstance(data, dict):
            raise RecordError(f"{path}: expected {{video_id: {{dimension: [predictions]}}}}")
        items = [(vid, dim, i, item) for vid, dims in data.items() if isinstance(dims, dict)
                 for dim, lst in dims.items() if isinstance(lst, list) for i, item in enumerate(lst)]
        errors += [f"{path}: {vid}: expected {{dimension: [predictions]}}"
                   for vid, dims in data.items() if not isinstance(dims, dict)]
        for vid, dim, i, item in items:
            where = f"{path}: {vid}/{dim}[{i}]"
            item = item if isinstance(item, dict) else {}
            q, a = item.get("question"), item.get("answer")
            key = "prediction" if "prediction" in item else "response"
            pred = item.get(key)
            if not (isinstance(q, str) and q.strip() and isinstance(a, str) and a.strip()):
                errors.append(f"{where}: needs text 'question' and 'answer'")
            elif key not in item or not (pred is None or isinstance(pred, str)):
                errors.append(f"{where}: needs a 'prediction' (or 'response'): text, or null for a refusal")
            else:
                question = Question(task, vid, dim, i, q, a, _fine_dimension(meta or {}, vid, dim))
                questions.append(question)
                predictions[question.id] = pred
    return questions, predictions, errors


def score_predictions(pred_dir: str | Path, out_dir: str | Path, *, data: str | Path | None = None,
                      judge: Judge | None = None) -> dict[str, Any]:
    """Score an existing predictions folder (``predictions/<model>/``) without a model, as
    the official scripts do; ``data`` (optional) holds ``meta_info.json`` for the fine-grained
    breakdown. Writes ``out_dir/scored.jsonl`` and ``out_dir/report.json``; returns the report.
    """
    started = time.perf_counter()
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    meta = read_meta(Path(data)) if data is not None else {}
    questions, predictions, errors = read_predictions(pred_dir, meta)
    captioning_refs = {}
    for q in questions:
        if q.task == "multi-choice":
            captioning_refs.setdefault((q.video_id, q.dimension), q)
    rows, breakdowns = score_tempcompass(questions, predictions, judge, captioning_refs)
    totals, summary, counts = _totals(questions, rows)
    report = EvalReport(
        suite=SUITE, model=pred_dir.name, base="", counts=counts, summary=summary,
        inputs={"predictions": str(pred_dir), "meta_info": bool(meta),
                "tasks": sorted({q.task for q in questions}, key=TASKS.index),
                "judge": None if judge is None else type(judge).__name__},
        breakdowns={"overall": {"all": totals}, **breakdowns},
        files={"report": str(out_dir / REPORT), "scored": str(out_dir / SCORED)},
        settings={"scoring_only": True}, input_errors=errors,
        seconds=round(time.perf_counter() - started, 3),
    )
    return write_report(out_dir, report, rows)


# --------------------------------------------------------------------------- entry point


def _record(q: Question, video_dir: Path) -> Record:
    return Record(
        id=q.id, video=str(video_dir / f"{q.video_id}.mp4"), question=q.question,
        label={"answer": q.answer}, label_type=[_LABEL_TYPES[q.task]], task=q.task,
        meta={"dataset": SUITE, "video_id": q.video_id, "dimension": q.dimension,
              "index": q.index, "fine_dimension": q.fine_dimension},
    )


def _prompt(rec: Record) -> str:
    return rec.question + ANSWER_PROMPTS[rec.task]


def evaluate_tempcompass(
    lm: LoadedModel,
    root: str | Path,
    out_dir: str | Path,
    gen_cfg: GenerateConfig,
    video_cfg: VideoConfig,
    *,
    tasks: Iterable[str] | None = None,
    video_dir: str | Path | None = None,
    judge: Judge | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Answer TempCompass, score it with the official rules (and ``judge`` if given), and
    write ``out_dir/report.json`` plus ``out_dir/predictions/{task}.json``; returns the report.

    ``root`` holds ``questions/`` and ``meta_info.json``; videos are ``video_dir/<id>.mp4``
    (default ``root/videos``). ``limit`` keeps the first questions of each task (smoke runs).
    """
    started = time.perf_counter()
    root, out_dir = Path(root), Path(out_dir)
    video_dir = Path(video_dir) if video_dir is not None else root / "videos"
    data = load_tempcompass(root, tasks)
    questions = data.questions
    if limit is not None:
        questions = [q for t in TASKS for q in [q for q in questions if q.task == t][:limit]]
    records = [_record(q, video_dir) for q in questions]
    predictions, gen = answer_items(lm, records, out_dir, gen_cfg, video_cfg, _prompt,
                                    json.dumps(ANSWER_PROMPTS, sort_keys=True), f"eval-{SUITE}",
                                    progress)
    rows, breakdowns = score_tempcompass(questions, predictions, judge, data.multi_choice)
    totals, summary, counts = _totals(questions, rows)
    counts["video_errors"] = len(gen["video_errors"])
    files = {"predictions_by_task": write_prediction_files(questions, predictions, out_dir)}
    inputs = {"root": str(root), "video_dir": str(video_dir),
              "tasks": sorted({q.task for q in data.questions}, key=TASKS.index), "limit": limit,
              "judge": None if judge is None else type(judge).__name__,
              "meta_info": data.has_meta}
    return finish_report(SUITE, lm, out_dir, inputs=inputs, counts=counts, summary=summary,
                         breakdowns={"overall": {"all": totals}, **breakdowns}, scored_rows=rows,
                         gen_metrics=gen, gen_cfg=gen_cfg, video_cfg=video_cfg,
                         input_errors=data.errors, started=started, extra_files=files)
