"""Synthetic scene-graph videos: coloured shapes that appear, touch, move past each other and
leave the view in sequence, written as real mp4s with their ground-truth STSG.

The graph is read off the very trajectories that are drawn: two visible shapes in one lane
whose boxes meet are ``touching``; shapes in neighbouring lanes whose centres come within a
radius are ``moving past``; the faster shape is the subject. Runs of frames become intervals
``[first / fps, (last + 1) / fps]`` (VidOR's exclusive end). So every question's path is
checkable against what the video shows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videostar.data.synthetic import COLOURS, SHAPES, shape_mask
from videostar.step.graph import Entity, Relation, SceneGraph
from videostar.video import write_video

TOUCHING = "touching"
MOVING_PAST = "moving past"


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


def scene(rng: random.Random, frames: int, size: int, shapes: int) -> list[Track]:
    """``shapes`` distinct shapes: staggered entrances, constant speeds bouncing off the walls,
    the first ones leaving the view one after another while the last stay to the end."""
    kinds = rng.sample([(c, s) for c in COLOURS for s in SHAPES], shapes)
    radius = size / 10
    tracks = []
    for i, (colour, shape) in enumerate(kinds):
        appear = rng.randrange(0, frames // 4)
        leave = frames // 2 + i * frames // (2 * shapes) if i < shapes - 2 else frames
        x, v = rng.uniform(radius, size - radius), rng.choice((-1, 1)) * rng.uniform(0.8, 2.5)
        xs: list[float | None] = []
        for t in range(frames):
            xs.append(x if appear <= t < leave else None)
            x += v
            if not radius <= x <= size - radius:  # bounce, staying inside the frame
                v, x = -v, min(max(x, radius), size - radius)
        tracks.append(Track(colour, shape, rng.randrange(3), tuple(xs), abs(v)))
    return tracks


def lane_y(lane: int, size: int) -> float:
    return size * (0.22 + 0.28 * lane)


def render(tracks: list[Track], frames: int, size: int) -> np.ndarray:
    out = np.full((frames, size, size, 3), 30, dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for t in range(frames):
        for tr in tracks:
            if tr.xs[t] is not None:
                out[t][shape_mask(tr.shape, tr.xs[t], lane_y(tr.lane, size), size / 10, xx, yy)] = (
                    COLOURS[tr.colour])
    return out


def scene_graph(video: str, tracks: list[Track], frames: int, size: int, fps: float) -> SceneGraph:
    """The ground truth of a rendered scene (see the module docstring)."""
    radius = size / 10
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
                       size: int = 64, fps: float = 8.0, shapes: int = 5) -> list[SceneGraph]:
    """``count`` mp4s under ``out_dir/videos`` and their ground-truth scene graphs."""
    rng = random.Random(seed)
    graphs = []
    for i in range(count):
        tracks = scene(rng, frames, size, shapes)
        path = write_video(Path(out_dir) / "videos" / f"scene_{seed}_{i:05d}.mp4",
                           render(tracks, frames, size), fps)
        graph = scene_graph(str(path), tracks, frames, size, fps)
        graph.clean()
        graphs.append(graph)
    return graphs
