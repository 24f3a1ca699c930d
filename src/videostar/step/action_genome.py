"""Action Genome -> STSGs: ``person_bbox.pkl`` + ``object_bbox_and_relationship.pkl``.

Both pickles are dicts keyed ``'VIDEO.mp4/FRAME.png'``; frame names are 1-based ``%06d`` at the
video's own fps (only sampled frames are labelled), so frame n is at ``(n - 1) / fps`` s. Object
entries carry ``bbox`` as ``(x, y, w, h)`` and three relationship lists; an invisible object has
``bbox`` and every relationship ``None``. Person boxes are detector output, ``xyxy``, possibly
zero rows. The person is the subject of every relation. A relation holding on consecutive
labelled frames becomes one interval from its first to its last frame.

``object_classes.txt`` / ``relationship_classes.txt`` spell some names without separators
(``closetcabinet``, ``lookingat``) where the pickles write ``closet/cabinet``, ``looking_at``:
names are compared with separators removed and kept as the pickles spell them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from videostar.data._common import find_video, index_videos, not_found
from videostar.data.numpy_pickle import load_numpy_pickle
from videostar.errors import VideostarError
from videostar.step.graph import Entity, Relation, SceneGraph
from videostar.video import probe

PERSON = "person"
RELATION_KINDS = ("attention_relationship", "spatial_relationship", "contacting_relationship")
_KEY = re.compile(r"^(?P<video>[^/]+)\.mp4/(?P<frame>\d+)\.png$")
_WHAT = "Action Genome annotation pickles"


def squash(name: str) -> str:
    """A vocabulary name without separators or case: how the class files spell it."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def read_classes(path: str | Path | None) -> frozenset[str] | None:
    """The squashed names of a class file (one per line), or None when no file is given."""
    if path is None:
        return None
    return frozenset(squash(line) for line in Path(path).read_text().split() if line.strip())


def build_action_genome_graphs(
    annotations: str | Path,
    videos: str | Path,
    problems: list[str],
    missing: list[str],
) -> list[SceneGraph]:
    """One STSG per video of the annotation folder; per-video problems go to ``problems``
    ('VIDEO: reason'), videos not on disk to ``missing``; neither stops the rest."""
    annotations = Path(annotations)
    persons = load_numpy_pickle(annotations / "person_bbox.pkl", _WHAT)
    objects = load_numpy_pickle(annotations / "object_bbox_and_relationship.pkl", _WHAT)
    object_classes = _optional(annotations / "object_classes.txt")
    relation_classes = _optional(annotations / "relationship_classes.txt")
    if not isinstance(persons, dict) or not isinstance(objects, dict):
        raise VideostarError(f"{annotations}: the annotation pickles must hold dicts")
    frames: dict[str, dict[int, tuple[Any, Any]]] = defaultdict(dict)
    for key in sorted(set(persons) | set(objects), key=str):
        m = _KEY.match(key) if isinstance(key, str) else None
        if m is None:
            problems.append(f"{annotations}: key {key!r:.80} is not 'VIDEO.mp4/FRAME.png'")
            continue
        frames[m["video"]][int(m["frame"])] = (persons.get(key), objects.get(key))
    index = index_videos(videos)
    graphs = []
    for video, labelled in frames.items():
        path = find_video(index, [video])
        if path is None:
            missing.append(not_found(f"{video}.mp4", videos))
            continue
        try:
            info = probe(path)
        except VideostarError as exc:
            problems.append(f"{video}: {exc}")
            continue
        if info.fps <= 0:
            problems.append(f"{video}: {path} has no frame rate")
            continue
        mine: list[str] = []
        graph = _graph(str(path), info.fps, info.duration, labelled, object_classes,
                       relation_classes, mine)
        mine += graph.clean()
        problems += [f"{video}: {p}" for p in mine]
        if graph.relations:
            graphs.append(graph)
    return graphs


def _optional(path: Path) -> frozenset[str] | None:
    return read_classes(path) if path.is_file() else None


def _graph(video: str, fps: float, duration: float, labelled: dict[int, tuple[Any, Any]],
           object_classes: frozenset[str] | None, relation_classes: frozenset[str] | None,
           problems: list[str]) -> SceneGraph:
    graph = SceneGraph(video, duration)
    graph.entities[PERSON] = Entity(PERSON, PERSON)
    holds: dict[tuple[str, str], list[float]] = defaultdict(list)  # (predicate, object) -> times
    times = sorted((n - 1) / fps for n in labelled)
    for number, (person, objs) in sorted(labelled.items()):
        t = (number - 1) / fps
        where = f"frame {number:06d}"
        if isinstance(person, dict):
            if person.get("bbox_size") is not None:
                graph.width, graph.height = map(float, person["bbox_size"])
            boxes = np.asarray(person.get("bbox", np.zeros((0, 4))), dtype=float).reshape(-1, 4)
            if len(boxes):  # detector output: the first (best) box; zero rows: no person found
                graph.entities[PERSON].boxes[t] = tuple(boxes[0])
        for obj in objs or []:
            if not isinstance(obj, dict) or not isinstance(obj.get("class"), str):
                problems.append(f"{where}: object entry without a class")
                continue
            name = obj["class"]
            if object_classes is not None and squash(name) not in object_classes:
                _once(problems, f"object class {name!r} not in object_classes.txt", where)
                continue
            ent = graph.entities.setdefault(name, Entity(name, name))
            if not obj.get("visible") or obj.get("bbox") is None:
                continue
            x, y, w, h = map(float, obj["bbox"])
            ent.boxes[t] = (x, y, x + w, y + h)
            for kind in RELATION_KINDS:
                for pred in obj.get(kind) or []:
                    if relation_classes is not None and squash(pred) not in relation_classes:
                        _once(problems, f"relationship {pred!r} not in relationship_classes.txt", where)
                        continue
                    holds[(pred, name)].append(t)
    for (pred, name), when in holds.items():
        graph.relations += [Relation(PERSON, pred, name, s, e) for s, e in _runs(when, times)]
    return graph


def _once(problems: list[str], reason: str, where: str) -> None:
    """A vocabulary problem is listed once per video, at its first frame (it recurs on each)."""
    if not any(p.endswith(reason) for p in problems):
        problems.append(f"{where}: {reason}")


def _runs(when: list[float], times: list[float]) -> list[tuple[float, float]]:
    """Maximal runs of consecutive labelled frames, as (first time, last time)."""
    pos = {t: i for i, t in enumerate(times)}
    runs: list[list[float]] = []
    for t in sorted(when):
        if runs and pos[t] == pos[runs[-1][1]] + 1:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return [(s, e) for s, e in runs]
