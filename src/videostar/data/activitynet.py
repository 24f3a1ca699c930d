"""ActivityNet Captions adapter: one temporal-localization record per captioned segment.

Input is the released JSON, ``{"v_<id>": {"duration", "timestamps": [[s, e], ...],
"sentences": [...]}}``. Times become fractions of the video's duration, clamped to [0, 1], the
scale the temporal-range verifier compares on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videostar.data._common import find_video, index_videos, is_number, not_found, require_file
from videostar.data.records import AdapterResult, Record
from videostar.errors import RecordError
from videostar.prompts import question_for

TASK = "temporal_localization"


def build_activitynet(
    json_path: str | Path, video_root: str | Path, templates: dict[str, list[str]]
) -> AdapterResult:
    """Turn an ActivityNet-Captions-style JSON into ``temporal_localization`` records.

    The video of ``v_<id>`` is ``v_<id>`` or ``<id>`` with suffix .mp4, .mkv or .webm, anywhere
    under ``video_root``. A malformed video entry or segment is reported in ``errors`` and
    skipped; the record id keeps the segment's position in the file (``anet/v_<id>/<j>``).
    """
    json_path = require_file(json_path)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{json_path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RecordError(f"{json_path}: expected an object mapping video ids to annotations")
    index = index_videos(video_root)
    result = AdapterResult(records=[])
    for key, entry in data.items():
        where = f"{json_path}:{key}"
        try:
            duration, pairs = _parse_entry(entry)
        except ValueError as exc:
            result.errors.append(f"{where}: {exc}")
            continue
        bare = key.removeprefix("v_")
        path = find_video(index, [key, bare, f"v_{bare}"])
        if path is None:
            result.missing.append(not_found(f"{key}.mp4", video_root))
            continue
        for j, (stamp, sentence) in enumerate(pairs):
            try:
                segment, query = _segment(stamp, sentence, duration)
            except ValueError as exc:
                result.errors.append(f"{where}[{j}]: {exc}")
                continue
            rid = f"anet/{key}/{j}"
            result.records.append(
                Record(
                    id=rid,
                    video=str(path),
                    question=question_for(templates, TASK, key=rid, query=query),
                    label={"segment": segment},
                    label_type=["temporal_range"],
                    task=TASK,
                    meta={
                        "dataset": "activitynet_captions",
                        "duration": duration,
                        "timestamp": [float(t) for t in stamp],
                        "sentence": query,
                    },
                )
            )
    return result


def _parse_entry(entry: Any) -> tuple[float, list[tuple[Any, Any]]]:
    """Duration and (timestamp, sentence) pairs; faults that spoil the whole video raise."""
    if not isinstance(entry, dict):
        raise ValueError("entry is not an object")
    absent = [f for f in ("duration", "timestamps", "sentences") if f not in entry]
    if absent:
        raise ValueError(f"entry lacks {', '.join(absent)}")
    duration = entry["duration"]
    if not is_number(duration) or duration <= 0:
        raise ValueError(f"duration {duration!r} is not a positive number")
    stamps, sentences = entry["timestamps"], entry["sentences"]
    if not isinstance(stamps, list) or not isinstance(sentences, list):
        raise ValueError("timestamps and sentences must be lists")
    if len(stamps) != len(sentences):
        raise ValueError(f"{len(stamps)} timestamps but {len(sentences)} sentences")
    return float(duration), list(zip(stamps, sentences, strict=True))


def _segment(stamp: Any, sentence: Any, duration: float) -> tuple[list[float], str]:
    """Normalized, clamped [start, end] and the cleaned sentence for one caption."""
    if not (isinstance(stamp, list) and len(stamp) == 2 and all(is_number(t) for t in stamp)):
        raise ValueError(f"timestamp {stamp!r} is not a [start, end] pair of numbers")
    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError("empty sentence")
    start, end = (float(t) for t in stamp)
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    lo, hi = (min(max(t / duration, 0.0), 1.0) for t in (start, end))
    if hi <= lo:
        raise ValueError(f"segment [{start}, {end}] is empty within duration {duration}")
    return [lo, hi], sentence.strip()
