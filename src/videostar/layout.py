"""The names of the files each step writes into its output folder, and the tag its run is found by.

One contract for the library (which writes them), the components (which hand folders from step
to step), the local runner and the export (which find a run's results by these names, never by
the names KFP gives task folders) and the tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videostar.data.records import write_json

RECORDS = "records.jsonl"
"""A dataset: one question per line (``data`` adapters; a dataset artifact may be its folder)."""
ANSWERS = "answers.jsonl"
"""generate: one answer per record of its shard (``.partial`` while running, so a rerun resumes)."""
RATIONALES = "rationales.jsonl"
"""rationalize: one hinted answer per rejected record of its shard."""
VERIFIED = "verified.jsonl"
"""verify and rationalize: the rows whose answer holds every label (the cycle's training data)."""
REJECTED = "rejected.jsonl"
"""verify and rationalize: the other rows, each with the verifier's reason per label."""
METRICS = "metrics.json"
"""every step: counts, yields, timings, input errors; ``step`` names the step that wrote it."""
SUMMARY = "summary.json"
"""decide: the cycle's yields and evaluation scores (what MLflow logs per cycle)."""
DECISION = "decision.json"
"""decide: whether another cycle runs, and why."""
HISTORY = "history.json"
"""decide: the summaries of this and every earlier cycle (start writes the empty history)."""
CYCLE = "cycle.json"
"""decide: where the cycle's model and training data are, so a run can be read back."""
SCORES = "scores.json"
"""evaluate: the headline numbers of every suite, with the stage they belong to."""
PAIRS = "pairs.jsonl"
"""preferences: the judged pairs of the training videos."""
HELDOUT = "heldout.jsonl"
"""preferences: the judged pairs of the held-out videos."""
SPLIT = "split.json"
"""preferences: which videos are held out (reward accuracy and PPO's held-out reward)."""

MODEL_CARD = "videostar_model.json"
"""Next to every checkpoint videostar saves: its kind and the model it was tuned from (``base``)."""

CYCLE_TAG = "videostar.cycle"
"""The MLflow tag on a cycle's run and models: its cycle number (tracking writes it, export reads
runs back by it)."""

BASELINE, CYCLE_STAGE, RLAIF = "baseline", "cycle", "rlaif"
"""The stages a model is evaluated at: the base model, a cycle's SFT model, the PPO policy."""
STAGES = (BASELINE, CYCLE_STAGE, RLAIF)


def records_file(path: str | Path) -> str:
    """A dataset artifact is either a records file or a folder holding ``records.jsonl``."""
    folder = Path(path)
    return str(folder / RECORDS) if folder.is_dir() else str(path)


def read_json(folder: str | Path, name: str) -> Any:
    return json.loads((Path(folder) / name).read_text())


def read_history(folder: str | Path) -> list[dict[str, Any]]:
    """The summaries of all earlier cycles, carried from decision to decision."""
    path = Path(folder) / HISTORY
    return json.loads(path.read_text()) if path.exists() else []


def write_decision(folder: str | Path, summary: dict[str, Any], decision: dict[str, Any],
                   history: list[dict[str, Any]], produced: dict[str, Any]) -> None:
    """What decide leaves behind: the cycle's summary, decision, history and outputs."""
    write_json(Path(folder) / SUMMARY, summary)
    write_json(Path(folder) / DECISION, decision)
    write_json(Path(folder) / HISTORY, history)
    write_json(Path(folder) / CYCLE, produced)
