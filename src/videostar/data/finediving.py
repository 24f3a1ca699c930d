"""FineDiving adapter: dive-quality and sub-action-order records from the released pickles.

Each dive is a folder of JPEG frames, ``FINADiving_MTL_256s/<event>/<index>/<frame>.jpg``; the
record's ``video`` is that folder. The annotation pickles are read with an unpickler that
admits only the numpy globals those files contain, because a pickle can run code when loaded.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videostar.data._common import is_number, not_found
from videostar.data.numpy_pickle import load_numpy_pickle
from videostar.data.records import AdapterResult, Record
from videostar.errors import RecordError
from videostar.prompts import question_for

FRAMES_DIR = "FINADiving_MTL_256s"
COARSE_FIELDS = ("start_frame", "end_frame", "dive_score", "difficulty", "judge_scores")
FINE_FIELDS = ("dive_score", "difficulty", "frames_labels")
_FRAME_FILE = re.compile(r"([0-9]+)\.jpe?g", re.IGNORECASE)

Key = tuple[str, int]


def _load_pickle(path: str | Path) -> Any:
    return load_numpy_pickle(path, "FineDiving annotation pickles")


@dataclass
class _Dive:
    event: str
    index: int
    action_type: str | None
    score: float
    difficulty: float
    judge_scores: list[float]
    start_frame: int
    end_frame: int
    transit_frames: list[int]
    sub_action_ids: list[int]
    sub_actions: list[str]

    @property
    def id(self) -> str:
        return f"finediving/{self.event}/{self.index}"


def build_finediving(
    root: str | Path,
    coarse_pkl: str | Path,
    fine_pkl: str | Path,
    split_pkl: str | Path,
    subaction_table_pkl: str | Path,
    templates: dict[str, list[str]],
) -> AdapterResult:
    """Records for every dive listed in ``split_pkl``.

    Per dive: one ``dive_quality`` record (sub-action sequence, difficulty, score) and
    ``subaction_order`` records asking which move comes after/before a move. ``root`` is the
    folder holding ``FINADiving_MTL_256s`` (or that folder itself).
    """
    root = Path(root)
    frames_root = root / FRAMES_DIR if (root / FRAMES_DIR).is_dir() else root
    coarse = _keyed(coarse_pkl, _load_pickle(coarse_pkl))
    fine = _keyed(fine_pkl, _load_pickle(fine_pkl))
    try:
        table = _names(_load_pickle(subaction_table_pkl))
    except ValueError as exc:
        raise RecordError(f"{subaction_table_pkl}: {exc}") from exc
    split = _load_pickle(split_pkl)
    if not isinstance(split, list | tuple):
        raise RecordError(f"{split_pkl}: expected a list of (event, index) keys")

    result = AdapterResult(records=[])
    seen: set[Key] = set()
    for raw in split:
        try:
            key = _key(raw)
        except ValueError as exc:
            result.errors.append(f"{split_pkl}: {exc}")
            continue
        where = f"{key[0]}/{key[1]}"
        if key in seen:
            result.errors.append(f"{split_pkl}: {where}: listed twice")
            continue
        seen.add(key)
        absent = [str(p) for p, data in ((coarse_pkl, coarse), (fine_pkl, fine)) if key not in data]
        if absent:
            result.errors.append(f"{where}: not in {', '.join(absent)}")
            continue
        try:
            dive = _parse_dive(key, coarse[key], fine[key], table)
        except (ValueError, TypeError) as exc:
            result.errors.append(f"{where}: {exc}")
            continue
        folder = frames_root / key[0] / str(key[1])
        if not folder.is_dir():
            result.missing.append(not_found(where, frames_root))
        elif frames := _frame_numbers(folder):
            result.records.extend(_records(dive, folder, frames, templates))
        else:
            result.missing.append(f"{where}: frame folder {folder} has no JPEG frames")
    return result


def _key(raw: Any) -> Key:
    if isinstance(raw, tuple | list) and len(raw) == 2:
        event, index = raw
        if isinstance(event, str) and _is_int(index):
            return event, int(index)
    raise ValueError(f"key {raw!r} is not an (event, index) pair")


def _keyed(path: str | Path, data: Any) -> dict[Key, dict[str, Any]]:
    """Annotations by normalized key; a file of the wrong shape is refused as a whole."""
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected a dict keyed by (event, index)")
    try:
        keyed = {_key(raw): value for raw, value in data.items()}
    except ValueError as exc:
        raise RecordError(f"{path}: {exc}") from exc
    for key, value in keyed.items():
        if not isinstance(value, dict):
            raise RecordError(
                f"{path}: annotation of {key[0]}/{key[1]} is a {type(value).__name__}, expected "
                "a dict of named fields (the coarse or fine-grained annotation file)"
            )
    return keyed


def _names(data: Any) -> dict[int, str]:
    """Sub-action id -> name; ids come as Python or numpy ints."""
    if not isinstance(data, dict) or not all(
        _is_int(k) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError("expected a dict of sub-action id -> name")
    return {int(k): v for k, v in data.items()}


def _parse_dive(
    key: Key, coarse: dict[str, Any], fine: dict[str, Any], table: dict[int, str]
) -> _Dive:
    for what, value, fields in (("coarse", coarse, COARSE_FIELDS), ("fine", fine, FINE_FIELDS)):
        absent = [f for f in fields if f not in value]
        if absent:
            raise ValueError(f"{what} annotation lacks {', '.join(absent)}")
    score = _float(fine["dive_score"], "dive_score")
    difficulty = _float(fine["difficulty"], "difficulty")
    for name, value in (("dive_score", score), ("difficulty", difficulty)):
        other = _float(coarse[name], name)
        if not math.isclose(value, other, abs_tol=1e-6):
            raise ValueError(f"{name} is {other} in the coarse file but {value} in the fine one")
    labels = np.asarray(fine["frames_labels"])
    if labels.ndim != 1 or labels.size == 0 or labels.dtype.kind not in "iu":
        raise ValueError("frames_labels is not a non-empty 1-D array of sub-action ids")
    names = {**table, **_names(fine.get("sub-action_types", {}))}
    ids = _subaction_sequence(labels)
    unknown = [i for i in ids if i not in names]
    if unknown:
        raise ValueError(f"sub-action id {unknown[0]} has no name in the sub-action table")
    start, end = (_int(coarse[f], f) for f in ("start_frame", "end_frame"))
    if end < start:
        raise ValueError(f"end_frame {end} is before start_frame {start}")
    action = coarse.get("action_type", fine.get("action_type"))
    return _Dive(
        event=key[0],
        index=key[1],
        action_type=None if action is None else str(action),
        score=score,
        difficulty=difficulty,
        judge_scores=[_float(s, "judge_scores") for s in np.ravel(coarse["judge_scores"])],
        start_frame=start,
        end_frame=end,
        transit_frames=[int(t) for t in np.ravel(fine.get("steps_transit_frames", []))],
        sub_action_ids=ids,
        sub_actions=[names[i] for i in ids],
    )


def _subaction_sequence(frames_labels: Any) -> list[int]:
    """Sub-action ids in the order they appear over the frames, runs collapsed to one.

    A sub-action may come back later (e.g. pike, twist, pike), so this is not a set.
    """
    ids = [int(x) for x in np.ravel(frames_labels)]
    return [x for i, x in enumerate(ids) if i == 0 or x != ids[i - 1]]


def _frame_numbers(folder: Path) -> list[int]:
    """Frame numbers of the JPEGs in ``folder``, numerically sorted (names grow past 5 digits)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := _FRAME_FILE.fullmatch(n)))


def _records(
    dive: _Dive, folder: Path, frames: list[int], templates: dict[str, list[str]]
) -> list[Record]:
    meta = {
        "dataset": "finediving",
        "event": dive.event,
        "index": dive.index,
        "action_type": dive.action_type,
        "judge_scores": dive.judge_scores,
        "start_frame": dive.start_frame,
        "end_frame": dive.end_frame,
        "frame_range": [frames[0], frames[-1]],
        "num_frames": len(frames),
        "steps_transit_frames": dive.transit_frames,
        "sub_action_ids": dive.sub_action_ids,
    }
    records = [
        Record(
            id=dive.id,
            video=str(folder),
            question=question_for(templates, "dive_quality", key=dive.id),
            label={
                "sub_actions": dive.sub_actions,
                "difficulty": dive.difficulty,
                "score": dive.score,
            },
            label_type=["sequence", "float", "float"],
            task="dive_quality",
            meta=meta,
        )
    ]
    seq = dive.sub_actions
    for i, (first, second) in enumerate(zip(seq, seq[1:], strict=False)):
        # A move that occurs twice has no single neighbour, so it is never the anchor.
        for relation, anchor, answer in (("after", first, second), ("before", second, first)):
            if seq.count(anchor) != 1:
                continue
            rid = f"{dive.id}/{relation}/{i}"
            question = question_for(
                templates, "subaction_order", key=rid, relation=relation, anchor=anchor
            )
            if answer.lower() in question.lower():
                continue  # the question would give the answer away
            records.append(
                Record(
                    id=rid,
                    video=str(folder),
                    question=question,
                    label={"sub_action": answer},
                    label_type=["class"],
                    task="subaction_order",
                    meta={**meta, "relation": relation, "anchor": anchor, "position": i},
                )
            )
    return records


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _int(value: Any, name: str) -> int:
    if not _is_int(value):
        raise ValueError(f"{name} {value!r} is not an integer")
    return int(value)


def _float(value: Any, name: str) -> float:
    if not is_number(value):
        raise ValueError(f"{name} {value!r} is not a finite number")
    return float(value)
