"""Helpers the components call inside a step: metrics for the KFP UI, file conventions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videostar.data.records import write_json


def log_metrics(artifact: Any, metrics: dict[str, Any]) -> None:
    """Log the scalar numbers of a step's metrics to a KFP ``Metrics`` artifact."""
    for key, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            artifact.log_metric(key, float(value))


def records_file(path: str) -> str:
    """A dataset artifact is either a records.jsonl file or a folder holding one."""
    folder = Path(path)
    return str(folder / "records.jsonl") if folder.is_dir() else path


def read_history(previous_dir: str | None) -> list[dict[str, Any]]:
    """The summaries of all earlier cycles, carried from decision to decision."""
    return json.loads((Path(previous_dir) / "history.json").read_text()) if previous_dir else []


def write_decision(out_dir: str, summary: dict[str, Any], decision: dict[str, Any],
                   history: list[dict[str, Any]]) -> None:
    write_json(Path(out_dir) / "summary.json", summary)
    write_json(Path(out_dir) / "decision.json", decision)
    write_json(Path(out_dir) / "history.json", history)
