"""Synthetic scene-graph videos: coloured shapes that appear, touch, move past each other and
leave the view in sequence, written as real mp4s with their ground-truth STSG.

Each video is a few equal time slots around one focus shape in the middle lane: in every slot
one new shape appears, either touching the focus (same lane, side by side) or moving past it
(a neighbouring lane, sweeping across), and is gone at the slot's end; in half of the videos
the focus itself leaves before the last slot. The slots are as long as one temporal patch
of the tiny model (8 of 32 frames sampled, 2 per patch: one slot per patch), so what a
question asks -- which shape met the focus when, and how -- is visible at tiny size; denser
scenes (the previous design: five shapes bouncing around at random) gave relations lasting one
frame, never sampled.

The graph is read off the very trajectories that are drawn: two visible shapes in one lane
whose boxes meet are ``touching``; shapes in neighbouring lanes whose centres come within a
radius are ``moving past``; the faster shape is the subject (the focus, on a tie). Runs of
frames become intervals ``[first / fps, (last + 1) / fps]`` (VidOR's exclusive end). So every
question's path is checkable against what the video shows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videostar.data.synthetic import COLOURS, SHAPES, shape_mask
from videostar.scenegraph.graph import Entity, Relation, SceneGraph
from videostar.video import write_video

TOUCHING = "touching"
MOVING_PAST = "moving past"
P_TOUCH = 0.75
"""Share of slots where the new shape touches the focus (else it moves past)."""


@dataclass(frozen=True)
class Track:
    """One shape: its name, lane, x per frame (None: not visible)."""

    colour: str
    shape: str
    lane: int
    xs: tuple[float | None, ...]
    speed: float

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def _radius(size: int) -> float:
    return size / 8


def scene(rng: random.Random, frames: int, size: int, slots: int) -> list[Track]:
    """The focus (track 0) and one shape per slot (see the module docstring)."""
    kinds = rng.sample([(c, s) for c in COLOURS for s in SHAPES], slots + 1)
    radius, centre, length = _radius(size), size / 2, frames // slots
    leaves = rng.random() < 0.5
    focus_end = frames - length if leaves else frames
    tracks = [Track(*kinds[0], 1, tuple(centre if t < focus_end else None for t in range(frames)), 0.0)]
    for k, (colour, shape) in enumerate(kinds[1:]):
        first, side = k * length, rng.choice((-1, 1))
        xs: list[float | None] = [None] * frames
        if rng.random() < P_TOUCH:  # side by side with the focus: boxes meet
            lane, speed = 1, 0.0
            for t in range(first, first + length):
                xs[t] = centre + side * 2 * radius
        else:  # sweeps across a neighbouring lane, passing the focus mid-slot
            lane, speed = rng.choice((0, 2)), (size - 2 * radius) / (length - 1)
            for i, t in enumerate(range(first, first + length)):
                xs[t] = centre + side * (radius + i * speed - centre)
        tracks.append(Track(colour, shape, lane, tuple(xs), speed))
    return tracks


def lane_y(lane: int, size: int) -> float:
    return size * (0.22 + 0.28 * lane)


def render(tracks: list[Track], frames: int, size: int) -> np.ndarray:
    out = np.full((frames, size, size, 3), 30, dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for t in range(frames):
        for tr in tracks:
            if tr.xs[t] is not None:
                out[t][shape_mask(tr.shape, tr.xs[t], lane_y(tr.lane, size), _radius(size), xx, yy)] = (
                    COLOURS[tr.colour])
    return out


def scene_graph(video: str, tracks: list[Track], frames: int, size: int, fps: float) -> SceneGraph:
    """The ground truth of a rendered scene (see the module docstring)."""
    radius = _radius(size)
    graph = SceneGraph(video, frames / fps, width=float(size), height=float(size))
    for i, tr in enumerate(tracks):
        y = lane_y(tr.lane, size)
        graph.entities[f"s{i}"] = Entity(f"s{i}", tr.name, {
            t / fps: (x - radius, y - radius, x + radius, y + radius)
            for t, x in enumerate(tr.xs) if x is not None})
    runs: dict[tuple[str, str, str], list[list[int]]] = {}
    for t in range(frames):
        for i, a in enumerate(tracks):
            for j, b in enumerate(tracks[i + 1:], i + 1):
                xa, xb = a.xs[t], b.xs[t]
                if xa is None or xb is None:
                    continue
                gap, lanes = abs(xa - xb), abs(a.lane - b.lane)
                pred = (TOUCHING if lanes == 0 and gap <= 2 * radius + 1
                        else MOVING_PAST if lanes == 1 and gap <= radius else None)
                if pred is None:
                    continue
                s, o = (i, j) if a.speed >= b.speed else (j, i)
                spans = runs.setdefault((f"s{s}", pred, f"s{o}"), [])
                if spans and spans[-1][1] == t - 1:
                    spans[-1][1] = t
                else:
                    spans.append([t, t])
    graph.relations = [Relation(s, p, o, a / fps, (b + 1) / fps)
                       for (s, p, o), spans in runs.items() for a, b in spans]
    return graph


def write_scene_videos(out_dir: str | Path, count: int, seed: int = 0, frames: int = 32,
                       size: int = 64, fps: float = 8.0, slots: int = 4) -> list[SceneGraph]:
    """``count`` mp4s under ``out_dir/videos`` and their ground-truth scene graphs."""
    rng = random.Random(seed)
    graphs = []
    for i in range(count):
        tracks = scene(rng, frames, size, slots)
        path = write_video(Path(out_dir) / "videos" / f"scene_{seed}_{i:05d}.mp4",
                           render(tracks, frames, size), fps)
        graph = scene_graph(str(path), tracks, frames, size, fps)
        graph.clean()
        graphs.append(graph)
    return graphs
