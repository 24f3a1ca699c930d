"""Synthetic labeled videos: large coloured shapes, written as real mp4 files.

Every record family the verifiers know is exercised by one of three tasks on the same video:
recognition (class label: colour + shape), quality (float score, a fixed function of colour
and shape, so it is learnable) and timing (temporal range in which the shape is visible).
Colour and shape are learnable by a tiny model; motion direction is not, so it is not a label.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videostar.data.records import AdapterResult, Record
from videostar.prompts import question_for
from videostar.video import write_video

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 240),
    "yellow": (240, 220, 40),
}
SHAPES = ("circle", "square", "triangle")
SEGMENTS = ((0.0, 0.5), (0.5, 1.0), (0.25, 0.75), (0.0, 1.0))
SYNTHETIC_TASKS = ("action_recognition", "action_quality", "shape_timing")
SYNTHETIC_TEMPLATES = {
    "action_quality": ["How well is the shape in this video drawn? Give a score."],
}


@dataclass(frozen=True)
class ShapeVideo:
    colour: str
    shape: str
    segment: tuple[float, float]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def score(self) -> float:
        return float(20 * (list(COLOURS).index(self.colour) + 1) + 5 * SHAPES.index(self.shape) + 3)


def reference_answer(task: str, video: ShapeVideo) -> str:
    """The answer a perfect model would give; used to pretrain the tiny base model."""
    if task == "action_recognition":
        return f"I see a {video.name} on a dark background. The answer is a {video.name}."
    if task == "action_quality":
        return f"The {video.name} is drawn well. Its score is {video.score:.0f}."
    s, e = video.segment
    return f"The {video.shape} is visible from {s:.2f} to {e:.2f} of the video."


def render(video: ShapeVideo, frames: int = 16, size: int = 64, seed: int = 0) -> np.ndarray:
    """Frames of one shape drifting slowly across a dark background, shown during its segment."""
    rng = np.random.default_rng(seed)
    out = np.full((frames, size, size, 3), 30, dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    radius = size * 0.3
    cx0, cy0 = rng.uniform(size * 0.4, size * 0.6, 2)
    dx, dy = rng.uniform(-0.6, 0.6, 2)
    s, e = video.segment
    for t in range(frames):
        if not s <= (t + 0.5) / frames <= e:
            continue
        out[t][shape_mask(video.shape, cx0 + dx * t, cy0 + dy * t, radius, xx, yy)] = COLOURS[video.colour]
    return out


def shape_mask(shape: str, cx: float, cy: float, radius: float, xx: np.ndarray, yy: np.ndarray
               ) -> np.ndarray:
    """Pixels of a circle, square or triangle centred at (cx, cy) on the grid ``xx``/``yy``."""
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    if shape == "square":
        return (abs(xx - cx) <= radius * 0.85) & (abs(yy - cy) <= radius * 0.85)
    return (yy >= cy - radius) & (yy <= cy + radius) & (abs(xx - cx) <= (yy - cy + radius) / 2)


def sample_videos(count: int, seed: int) -> list[ShapeVideo]:
    rng = random.Random(seed)
    return [
        ShapeVideo(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(SEGMENTS))
        for _ in range(count)
    ]


def build_synthetic(
    out_dir: str | Path,
    count: int,
    templates: dict[str, list[str]],
    seed: int = 0,
    tasks: tuple[str, ...] = SYNTHETIC_TASKS,
    frames: int = 16,
    size: int = 64,
    fps: float = 8.0,
) -> AdapterResult:
    """Write ``count`` mp4s under ``out_dir/videos`` and one record per (video, task)."""
    out_dir = Path(out_dir)
    templates = {**SYNTHETIC_TEMPLATES, **templates}
    records = []
    for i, video in enumerate(sample_videos(count, seed)):
        path = write_video(out_dir / "videos" / f"shape_{seed}_{i:05d}.mp4",
                           render(video, frames, size, seed * 100_003 + i), fps)
        for task in tasks:
            rid = f"synthetic/{seed}/{i:05d}/{task}"
            label, types = _label(task, video)
            records.append(Record(
                id=rid, video=str(path), question=question_for(templates, task, rid),
                label=label, label_type=types, task=task,
                meta={"colour": video.colour, "shape": video.shape, "segment": list(video.segment),
                      "reference": reference_answer(task, video)},
            ))
    return AdapterResult(records)


def _label(task: str, video: ShapeVideo) -> tuple[dict, list[str]]:
    if task == "action_recognition":
        return {"object": video.name}, ["class"]
    if task == "action_quality":
        return {"score": video.score}, ["float"]
    return {"segment": list(video.segment)}, ["temporal_range"]


def write_kinetics_split(out_dir: str | Path, count: int, seed: int, split: str = "validate",
                         frames: int = 16, size: int = 64, fps: float = 8.0) -> Path:
    """Held-out shape videos laid out as Kinetics-700 ships them (``<split>.csv`` + clips), so the
    Kinetics700-QA suite can evaluate the tiny model exactly as it would a real one."""
    import csv

    out_dir = Path(out_dir)
    rows = []
    for i, video in enumerate(sample_videos(count, seed)):
        youtube_id, start, end = f"shape{seed}x{i:05d}", 0, int(frames / fps)
        write_video(out_dir / "videos" / f"{youtube_id}_{start:06d}_{end:06d}.mp4",
                    render(video, frames, size, seed * 100_003 + i), fps)
        rows.append([video.name, youtube_id, start, end, split])
    path = out_dir / f"{split}.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        writer.writerows(rows)
    return path
