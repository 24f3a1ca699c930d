"""VidOR / VidVRD -> STSGs: one JSON annotation per video.

Fields: ``video_id``, ``frame_count``, ``fps``, ``width``, ``height``, ``subject/objects``
(``[{tid, category}]``, tids not necessarily contiguous), ``trajectories`` (one list per frame,
possibly empty, of ``{tid, bbox {xmin, ymin, xmax, ymax}, generated}``) and
``relation_instances`` (``[{subject_tid, object_tid, predicate, begin_fid, end_fid}]``,
``end_fid`` exclusive). Frame f is at ``f / fps`` s, so a relation spans
``[begin_fid / fps, end_fid / fps]``. The split is the release's folder: VidOR's
``training/`` / ``validation/``, VidVRD's ``train/`` / ``test/``.

Every item is checked before it is used: the video's fields (finite, in range), each
``subject/objects`` entry, each box of ``trajectories`` (frame within ``frame_count``, finite,
xyxy inside the frame) and each relation (known tids of entities that are ever boxed,
``0 <= begin_fid < end_fid <= frame_count``). A bad item is one line naming the file, the
video, the item's index and the rule; nothing of it is used, the video's other items are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videostar.data._common import find_video, index_videos, is_number, not_found
from videostar.scenegraph.graph import Entity, Relation, SceneGraph, oriented, show

SPLIT_FOLDERS = frozenset({"training", "validation", "train", "test"})
"""The releases' split folder names (VidOR: training, validation; VidVRD: train, test)."""
MIN_FPS, MAX_FPS = 0.1, 1000.0
MAX_FRAMES = 10**7
MAX_SIDE = 100_000
_SAFE_ID = frozenset("/\\\x00")


class BadItem(Exception):
    """An item breaks a rule of the format (the message is the rule)."""


def build_vidor_graphs(annotations: str | Path, videos: str | Path, problems: list[str], missing: list[str],
                       split: str | None = None) -> list[SceneGraph]:
    """One STSG per ``*.json`` under ``annotations`` (any depth; of ``split`` only, when
    given). A file that cannot be read, and every bad item, is one line in ``problems``; one
    line per video says how many items were dropped; a video not on disk goes to ``missing``."""
    annotations = Path(annotations)
    index = index_videos(videos)
    graphs = []
    for file in sorted(annotations.rglob("*.json")):
        file_split = split_of(file, annotations)
        if split is not None and file_split != split:
            continue
        if not file.is_file():  # a FIFO would hang the reader
            problems.append(f"{file}: not a regular file; annotations are read from regular files only")
            continue
        try:
            data = json.loads(file.read_bytes())
            video_id = data["video_id"]
            if not isinstance(video_id, str) or not video_id or video_id in (".", "..") or \
                    _SAFE_ID & set(video_id):
                raise BadItem(f"video_id {show(video_id)} is not a file name")
        except (OSError, ValueError, KeyError, TypeError, RecursionError, BadItem) as exc:
            problems.append(f"{file}: not a VidOR annotation ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        path = find_video(index, [video_id])
        if path is None:
            missing.append(not_found(f"{video_id}.mp4", videos))
            continue
        mine: list[str] = []
        try:
            graph = _graph(str(path), data, mine)
        except BadItem as exc:
            problems.append(f"{file}: {video_id}: {exc}; video not used")
            continue
        graph.split = file_split
        problems += [f"{file}: {video_id}: {p}" for p in mine]
        items = sum(len(data.get(k) or []) for k in ("subject/objects", "relation_instances")) + sum(
            len(f) for f in data["trajectories"] if isinstance(f, list))
        if mine:
            problems.append(f"{file}: {video_id}: dropped {len(mine)} of {items} items (each reported above)")
        problems += [f"{file}: {video_id}: {p}" for p in graph.clean()]
        if graph.relations:
            graphs.append(graph)
    return graphs


def split_of(file: Path, root: Path) -> str | None:
    """The nearest folder above ``file``, up to ``root`` itself, named as a release split."""
    for folder in file.relative_to(root).parents:
        if (root / folder).name in SPLIT_FOLDERS:
            return (root / folder).name
    return None


def _field(data: dict[str, Any], key: str, low: float, high: float, integer: bool = False) -> float:
    value = data.get(key)
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else is_number(value)
    if not ok or not low <= value <= high:
        kind = "an integer" if integer else "a finite number"
        raise BadItem(f"{key} {show(value)} is not {kind} in [{low:g}, {high:g}]")
    return value


def _tid(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadItem(f"{key} {show(value)} is not an integer")
    return str(value)


def _graph(video: str, data: dict[str, Any], problems: list[str]) -> SceneGraph:
    """The graph of a parsed file; the video's own fields must hold (else :class:`BadItem`),
    each bad item is one line in ``problems`` and is left out."""
    fps = _field(data, "fps", MIN_FPS, MAX_FPS)
    frames = _field(data, "frame_count", 1, MAX_FRAMES, integer=True)
    width, height = (_field(data, k, 1, MAX_SIDE) for k in ("width", "height"))
    lists = {k: data.get(k) for k in ("subject/objects", "trajectories", "relation_instances")}
    for key, value in lists.items():
        if not isinstance(value, list):
            raise BadItem(f"{key} is not a list")
    graph = SceneGraph(video, frames / fps, width=float(width), height=float(height))
    for i, obj in enumerate(lists["subject/objects"]):
        try:
            if not isinstance(obj, dict):
                raise BadItem("not an object")
            tid = _tid(obj, "tid")
            if not isinstance(obj.get("category"), str) or not obj["category"]:
                raise BadItem(f"category {show(obj.get('category'))} is not a name")
            if tid in graph.entities:
                raise BadItem(f"tid {tid} declared twice")
        except BadItem as exc:
            problems.append(f"subject/objects[{i}]: {exc}")
            continue
        graph.entities[tid] = Entity(tid, obj["category"])
    for fid, boxes in enumerate(lists["trajectories"]):
        if not isinstance(boxes, list):
            problems.append(f"trajectories[{fid}]: not a list of boxes")
            continue
        for j, item in enumerate(boxes):
            try:
                if fid >= frames:
                    raise BadItem(f"frame {fid} is past frame_count {frames}")
                tid, box = _box(item, graph)
            except BadItem as exc:
                problems.append(f"trajectories[{fid}][{j}]: {exc}")
                continue
            graph.entities[tid].boxes[fid / fps] = box
    for i, rel in enumerate(lists["relation_instances"]):
        try:
            graph.relations.append(_relation(rel, graph, frames, fps))
        except BadItem as exc:
            problems.append(f"relation_instances[{i}]{_label(rel)}: {exc}")
    return graph


def _box(item: Any, graph: SceneGraph) -> tuple[str, tuple[float, float, float, float]]:
    if not isinstance(item, dict) or not isinstance(item.get("bbox"), dict):
        raise BadItem("not a {tid, bbox} object")
    tid = _tid(item, "tid")
    if tid not in graph.entities:
        raise BadItem(f"tid {tid} is not in subject/objects")
    b = item["bbox"]
    values = [b.get(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    if not all(is_number(v) for v in values):
        raise BadItem(f"bbox {show(b)} is not 4 finite numbers")
    x1, y1, x2, y2 = (float(v) for v in values)
    assert graph.width is not None and graph.height is not None
    if not (0 <= x1 <= x2 <= graph.width and 0 <= y1 <= y2 <= graph.height):
        raise BadItem(f"bbox {[x1, y1, x2, y2]} is not xyxy inside the "
                      f"{graph.width:g}x{graph.height:g} frame")
    return tid, (x1, y1, x2, y2)


def _relation(rel: Any, graph: SceneGraph, frames: int, fps: float) -> Relation:
    if not isinstance(rel, dict):
        raise BadItem("not an object")
    ends = {"subject": _tid(rel, "subject_tid"), "object": _tid(rel, "object_tid")}
    for role, tid in ends.items():
        if tid not in graph.entities:
            raise BadItem(f"{role}_tid {tid} is not in subject/objects")
        if not graph.entities[tid].boxes:
            raise BadItem(f"{role}_tid {tid} ({graph.entities[tid].category}) has no box in trajectories")
    pred = rel.get("predicate")
    if not isinstance(pred, str) or not pred:
        raise BadItem(f"predicate {show(pred)} is not a name")
    begin, end = (rel.get(k) for k in ("begin_fid", "end_fid"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (begin, end)):
        raise BadItem(f"begin_fid {show(begin, 30)} / end_fid {show(end, 30)} are not integers")
    if begin < 0:
        raise BadItem(f"begin_fid {begin} is negative")
    if end > frames:
        raise BadItem(f"end_fid {show(end, 30)} is past frame_count {frames}")
    if end <= begin:
        raise BadItem(f"empty interval: end_fid {end} <= begin_fid {show(begin, 30)} (end_fid is exclusive)")
    subject, obj = oriented("vidor", "relation_instances", ends)
    return Relation(subject, pred, obj, begin / fps, end / fps)


def _label(rel: Any) -> str:
    """' (subject predicate object)' of a relation, as far as it has them, for its report line."""
    if not isinstance(rel, dict):
        return ""
    parts = [rel.get(k) for k in ("subject_tid", "predicate", "object_tid")]
    return " (" + " ".join(show(p, 30) if not isinstance(p, str) else p[:30] for p in parts) + ")"
