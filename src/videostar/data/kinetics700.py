"""Kinetics-700-2020 adapter: one action-recognition record per labeled clip.

Reads the official ``train.csv`` / ``validate.csv`` (``label,youtube_id,time_start,time_end,
split``). ``test.csv`` carries no labels, so it is refused with a clear error rather than
yielding records without supervision.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videostar.data._common import find_video, index_videos, not_found, require_file
from videostar.data.records import SIBLINGS, AdapterResult, Record
from videostar.errors import RecordError
from videostar.prompts import question_for
from videostar.verify import class_siblings

TASK = "action_recognition"
REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
_SECONDS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class _Clip:
    label: str
    youtube_id: str
    time_start: int
    time_end: int
    split: str | None

    @property
    def name(self) -> str:
        """The clip's file stem, as the official download scripts write it."""
        return f"{self.youtube_id}_{self.time_start:06d}_{self.time_end:06d}"


def build_kinetics700(
    csv_path: str | Path,
    video_root: str | Path,
    templates: dict[str, list[str]],
    split: str | None = None,
) -> AdapterResult:
    """Turn a Kinetics-700 CSV into ``action_recognition`` records.

    Clips are found by file name anywhere under ``video_root`` (flat, or ``<split>/<label>/``
    with whatever folder naming a download tool chose). ``split``, when given, keeps only rows
    whose ``split`` column equals it. Labels are kept exactly as written in the CSV.
    """
    csv_path = require_file(csv_path)
    header, rows = _read_csv(csv_path)
    columns = _check_header(csv_path, header, split)
    index = index_videos(video_root)
    # The class list is the whole file's labels, whatever the split or the clips on disk.
    label_col = columns["label"]
    siblings = class_siblings(row[label_col] for _, row in rows if len(row) == len(header))
    result = AdapterResult(records=[])
    first_line: dict[str, int] = {}
    for lineno, row in rows:
        where = f"{csv_path}:{lineno}"
        try:
            clip = _parse_row(row, columns, len(header))
        except ValueError as exc:
            result.errors.append(f"{where}: {exc}")
            continue
        if split is not None and clip.split != split:
            continue
        if clip.name in first_line:
            first = first_line[clip.name]
            result.errors.append(f"{where}: duplicate clip {clip.name} (first on line {first})")
            continue
        first_line[clip.name] = lineno
        path = find_video(index, [clip.name])
        if path is None:
            result.missing.append(not_found(f"{clip.name}.mp4", video_root))
            continue
        result.records.append(_record(clip, path, templates, siblings.get(clip.label, [])))
    return result


def _read_csv(csv_path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) per non-blank row; quoted labels are unquoted here."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RecordError(f"{csv_path}: not a readable CSV file ({exc})") from exc
    if header is None:
        raise RecordError(f"{csv_path}: empty file, expected a header row")
    return header, rows


def _check_header(csv_path: Path, header: list[str], split: str | None) -> dict[str, int]:
    """Column positions by name; a missing column is fatal since no row could be read."""
    columns = {name.strip(): i for i, name in enumerate(header)}
    needed = [*REQUIRED_COLUMNS, "split"] if split is not None else list(REQUIRED_COLUMNS)
    missing = [name for name in needed if name not in columns]
    if missing == ["label"]:
        raise RecordError(
            f"{csv_path}: no 'label' column; Kinetics test.csv has no labels and cannot "
            "supervise training (use train.csv or validate.csv)"
        )
    if missing:
        raise RecordError(
            f"{csv_path}: header lacks column(s) {', '.join(missing)} "
            "(expected label,youtube_id,time_start,time_end,split)"
        )
    return columns


def _parse_row(row: list[str], columns: dict[str, int], width: int) -> _Clip:
    if len(row) != width:
        raise ValueError(f"expected {width} columns, got {len(row)}")
    label = row[columns["label"]]
    youtube_id = row[columns["youtube_id"]].strip()
    if not label.strip():
        raise ValueError("empty label")
    if not youtube_id:
        raise ValueError("empty youtube_id")
    start = _seconds(row[columns["time_start"]], "time_start")
    end = _seconds(row[columns["time_end"]], "time_end")
    if end <= start:
        raise ValueError(f"time_end {end} is not after time_start {start}")
    split_col = columns.get("split")
    split = row[split_col].strip() if split_col is not None else None
    return _Clip(label, youtube_id, start, end, split)


def _seconds(text: str, column: str) -> int:
    if not _SECONDS.fullmatch(text.strip()):
        raise ValueError(f"{column} {text!r} is not a whole number of seconds")
    return int(text)


def _record(clip: _Clip, path: Path, templates: dict[str, list[str]], siblings: list[str]) -> Record:
    meta: dict[str, Any] = {
        "dataset": "kinetics700",
        "youtube_id": clip.youtube_id,
        "time_start": clip.time_start,
        "time_end": clip.time_end,
        "split": clip.split,
    }
    if siblings:
        meta[SIBLINGS] = {"action": siblings}
    return Record(
        id=f"k700/{clip.name}",
        video=str(path),
        question=question_for(templates, TASK, key=clip.name),
        label={"action": clip.label},
        label_type=["class"],
        task=TASK,
        meta=meta,
    )
