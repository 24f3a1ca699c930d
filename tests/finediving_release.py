"""A tiny FineDiving release in the real files' formats (pickles, frame folders), shared by the
adapter tests (tests/data) and the benchmark tests (tests/eval)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

EVENT = "FINADivingWorldCup2021_Men3m_final_r1"
TABLE = {1: "Forward", 2: "Back", 15: "2.5 Soms.Pike", 30: "1 Twist", 32: "2 Twists", 36: "Entry"}


def _dump(path: Path, obj, protocol: int = 3) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


def _frames(folder: Path, numbers: range) -> None:
    image = pytest.importorskip("PIL.Image")
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        image.new("RGB", (4, 4), (n % 256, 0, 0)).save(folder / f"{n:05d}.jpg")


def write_release(tmp_path: Path) -> dict:
    """Two good dives, one without frames, one with an empty folder, two broken entries."""
    root = tmp_path / "FineDiving"
    frames = root / "FINADiving_MTL_256s"
    # Dive crossing frame 99999 -> 100000; the pike comes back after the twist.
    _frames(frames / EVENT / "8", range(99997, 100004))
    _frames(frames / "01" / "1", range(10, 15))
    (frames / "01" / "3").mkdir(parents=True)
    keys = [(EVENT, 8), ("01", 1), ("01", 2), ("01", 3), ("02", 1), ("02", 2)]

    def coarse_entry(start, end, judges, score=81.6, difficulty=3.4):
        return {
            "action_type": "5253b",
            "start_frame": start,
            "end_frame": end,
            "dive_score": score,
            "difficulty": difficulty,
            "judge_scores": judges,
        }

    def fine_entry(labels, score=81.6, difficulty=3.4):
        labels = np.array(labels, dtype=np.int64)
        return {
            "action_type": "5253b",
            "dive_score": np.float64(score),
            "difficulty": np.float64(difficulty),
            "steps_transit_frames": np.flatnonzero(np.diff(labels)) + 1,
            "frames_labels": labels,
            "sub-action_types": {np.int64(i): TABLE[i] for i in set(labels.tolist()) if i in TABLE},
        }

    judges7 = np.array([7.5, 7.0, 8.0, 7.5, 8.0, 7.0, 7.5])
    coarse = {
        (EVENT, 8): coarse_entry(99997, 100003, judges7),
        ("01", 1): coarse_entry(10, 14, np.array([6.0, 6.5, 6.0, 6.5, 7.0]), 52.5, 2.0),
        ("01", 2): coarse_entry(0, 2, np.array([5.0, 5.5, 5.0])),
        ("01", 3): coarse_entry(0, 2, np.array([5.0, 5.5, 5.0])),
        ("02", 2): coarse_entry(0, 2, np.array([5.0, 5.5, 5.0])),
    }
    fine = {
        (EVENT, 8): fine_entry([1, 1, 15, 30, 30, 15, 36]),
        ("01", 1): fine_entry([2, 2, 32, 36, 36], 52.5, 2.0),
        ("01", 2): fine_entry([1, 15, 36]),
        ("01", 3): fine_entry([1, 15, 36]),
        ("02", 2): fine_entry([1, 99, 36]),
    }
    ann = tmp_path / "Annotations"
    ann.mkdir()
    return {
        "root": root,
        "frames": frames,
        "coarse_pkl": _dump(ann / "FineDiving_coarse_annotation.pkl", coarse),
        "fine_pkl": _dump(ann / "FineDiving_fine-grained_annotation.pkl", fine, protocol=5),
        "split_pkl": _dump(ann / "test_split.pkl", keys),
        "subaction_table_pkl": _dump(ann / "Sub_action_Types_Table.pkl", TABLE),
    }
