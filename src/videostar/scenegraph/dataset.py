"""A STEP dataset from any scene-graph source: the graphs (``graphs.json``) and the records."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from videostar.config import RunConfig
from videostar.data.records import AdapterResult, write_json
from videostar.scenegraph.graph import SceneGraph, write_graphs
from videostar.scenegraph.questions import GROUP, build_scenegraph_records

GRAPHS = "graphs.json"

SOURCES = ("action-genome", "vidor", "scenegraph-synthetic", "scenegraph-induce")
INDUCE_SUMMARY = "induce_summary.json"


def build_scenegraph_dataset(source: str, out: str | Path, cfg: RunConfig, annotations: str | None = None,
                       videos: str | None = None, count: int = 24, seed: int = 0,
                       model: str | None = None, clip_seconds: float = 1.0) -> AdapterResult:
    """Read (``scenegraph-synthetic``: write; ``scenegraph-induce``: induce with ``model``) the scene graphs,
    save them as ``out/graphs.json`` and turn them into graph-path records. ``cfg.scenegraph.split``
    keeps the videos of one release split (each record's ``meta['split']`` names its video's).
    Per-video problems and missing videos are listed in the result; they never stop the other
    videos."""
    problems: list[str] = []
    missing: list[str] = []
    graphs: list[SceneGraph]
    if source == "action-genome":
        from videostar.scenegraph.action_genome import build_action_genome_graphs

        graphs = build_action_genome_graphs(annotations, videos, problems, missing, cfg.scenegraph.split)
    elif source == "vidor":
        from videostar.scenegraph.vidor import build_vidor_graphs

        graphs = build_vidor_graphs(annotations, videos, problems, missing, cfg.scenegraph.split)
    elif source == "scenegraph-induce":
        from videostar.model import load_model
        from videostar.scenegraph.induce import induce_graphs

        graphs, stats = induce_graphs(load_model(model), videos, out, cfg.generate, cfg.video,
                                      clip_seconds)
        problems += stats["errors"]
        write_json(Path(out) / INDUCE_SUMMARY, stats)
        print(f"induced: {stats['clips']} clips, {stats['unparseable_clips']} without a parseable "
              f"triple, {stats['triples']} triples, {stats['graphs']} graphs")
    else:
        from videostar.scenegraph.synthetic import write_scene_videos

        graphs = write_scene_videos(out, count, seed)
    write_graphs(Path(out) / GRAPHS, graphs)
    result = build_scenegraph_records(graphs, cfg.scenegraph, cfg.templates)
    result.missing[:0] = missing
    result.errors[:0] = problems
    return result


def group_counts(result: AdapterResult) -> dict[str, int]:
    """Records per question type and path length, e.g. ``{"step_counting/3": 4}``."""
    counts = Counter(f"{r.task}/{r.meta[GROUP]}" for r in result.records)
    return dict(sorted(counts.items()))
