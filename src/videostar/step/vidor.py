"""VidOR / VidVRD -> STSGs: one JSON annotation per video.

Fields: ``video_id``, ``frame_count``, ``fps``, ``width``, ``height``, ``subject/objects``
(``[{tid, category}]``, tids not necessarily contiguous), ``trajectories`` (one list per frame,
possibly empty, of ``{tid, bbox {xmin, ymin, xmax, ymax}, generated}``) and
``relation_instances`` (``[{subject_tid, object_tid, predicate, begin_fid, end_fid}]``,
``end_fid`` exclusive). Frame f is at ``f / fps`` s, so a relation spans
``[begin_fid / fps, end_fid / fps]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videostar.data._common import find_video, index_videos, not_found
from videostar.step.graph import Entity, Relation, SceneGraph


def build_vidor_graphs(
    annotations: str | Path, videos: str | Path, problems: list[str], missing: list[str]
) -> list[SceneGraph]:
    """One STSG per ``*.json`` under ``annotations`` (any depth); a file that cannot be read
    is listed in ``problems`` with its reason, a video not on disk in ``missing``."""
    index = index_videos(videos)
    graphs = []
    for file in sorted(Path(annotations).rglob("*.json")):
        try:
            data = json.loads(file.read_text())
            video_id = str(data["video_id"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{file}: not a VidOR annotation ({type(exc).__name__}: {exc})")
            continue
        path = find_video(index, [video_id])
        if path is None:
            missing.append(not_found(f"{video_id}.mp4", videos))
            continue
        mine: list[str] = []
        try:
            graph = _graph(str(path), data, mine)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            problems.append(f"{video_id}: malformed annotation ({type(exc).__name__}: {exc})")
            continue
        mine += graph.clean()
        problems += [f"{video_id}: {p}" for p in mine]
        if graph.relations:
            graphs.append(graph)
    return graphs


def _graph(video: str, data: dict[str, Any], problems: list[str]) -> SceneGraph:
    fps = float(data["fps"])
    if fps <= 0:
        raise ValueError(f"fps {fps}")
    graph = SceneGraph(video, int(data["frame_count"]) / fps, width=float(data["width"]),
                       height=float(data["height"]))
    for obj in data["subject/objects"]:
        tid = str(obj["tid"])
        graph.entities[tid] = Entity(tid, str(obj["category"]))
    for fid, boxes in enumerate(data["trajectories"]):
        for item in boxes:
            tid, b = str(item["tid"]), item["bbox"]
            if tid not in graph.entities:
                problems.append(f"frame {fid}: box of unknown tid {tid}")
                continue
            graph.entities[tid].boxes[fid / fps] = (float(b["xmin"]), float(b["ymin"]),
                                                    float(b["xmax"]), float(b["ymax"]))
    for rel in data["relation_instances"]:
        graph.relations.append(Relation(str(rel["subject_tid"]), str(rel["predicate"]),
                                        str(rel["object_tid"]), int(rel["begin_fid"]) / fps,
                                        int(rel["end_fid"]) / fps))
    return graph
