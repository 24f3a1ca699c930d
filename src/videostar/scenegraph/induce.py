"""STEP's own mode: induce scene graphs from raw videos with the current model.

Each video is cut into clips of ``clip_seconds``; the model lists each clip's interactions as
``subject | relation | object`` lines (:data:`~videostar.prompts.INDUCE_PROMPT`); the lines are
parsed into triples, entities are linked across clips by their normalized name, and a triple
seen in consecutive clips becomes one relation spanning them. Clips are ordered in time, so the
graph's relations are too. Output that yields no triple is counted and kept (``induced.jsonl``)
for inspection; it never stops the run. Induced graphs have no boxes, so object-permanence
questions (which need an entity's last box) are not asked of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tqdm import tqdm

from videostar.config import GenerateConfig, VideoConfig
from videostar.data._common import index_videos
from videostar.data.records import write_jsonl
from videostar.errors import VideoError
from videostar.generation import generate_batch, row_seed
from videostar.model import LoadedModel
from videostar.prompts import INDUCE_PROMPT
from videostar.scenegraph.graph import Entity, Relation, SceneGraph
from videostar.video import probe, read_frames

INDUCED = "induced.jsonl"
_LINE = re.compile(r"^\s*(?:[-*\d.)]+\s*)?([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\.?\s*$")
_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)

Triple = tuple[str, str, str]


def entity_name(text: str) -> str:
    """How entities are linked across clips: lowercase, single spaces, no leading article."""
    return _ARTICLE.sub("", " ".join(text.lower().split()))


def parse_triples(text: str) -> tuple[list[Triple], list[str]]:
    """The ``subject | relation | object`` lines of a model output, and the other non-empty lines."""
    triples, rest = [], []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and all(entity_name(g) for g in m.groups()):
            s, p, o = (entity_name(g) for g in m.groups())
            if s != o:
                triples.append((s, p, o))
                continue
        if line.strip():
            rest.append(line.strip())
    return triples, rest


def link(video: str, duration: float, clips: list[tuple[float, float, list[Triple]]]) -> SceneGraph:
    """One STSG from per-clip triples (clips in time order)."""
    graph = SceneGraph(video, duration)
    open_runs: dict[Triple, list[float]] = {}
    for start, end, triples in clips:
        for name in dict.fromkeys(n for s, _, o in triples for n in (s, o)):  # ordered: no hash seed
            graph.entities.setdefault(name, Entity(name, name))
        for triple in dict.fromkeys(triples):
            run = open_runs.get(triple)
            if run is not None and run[1] == start:  # seen in the previous clip too: extend
                run[1] = end
            else:
                if run is not None:
                    graph.relations.append(Relation(*triple, *run))
                open_runs[triple] = [start, end]
    graph.relations += [Relation(*t, *run) for t, run in open_runs.items()]
    return graph


def induce_graphs(lm: LoadedModel, videos: str | Path, out_dir: str | Path, gen_cfg: GenerateConfig,
                  video_cfg: VideoConfig, clip_seconds: float = 1.0, progress: bool = True,
                  ) -> tuple[list[SceneGraph], dict[str, Any]]:
    """Induce a graph per video under ``videos``; every clip's raw output goes to
    ``out_dir/induced.jsonl``. Returns the graphs with a relation and the counts."""
    rows: list[dict[str, Any]] = []
    graphs, errors = [], []
    for name, path in tqdm(sorted(index_videos(videos).items()), desc="induce", disable=not progress):
        try:
            duration = probe(path, video_cfg.backend).duration
            bounds = [(k * clip_seconds, min((k + 1) * clip_seconds, duration))
                      for k in range(max(1, round(duration / clip_seconds)))]
            frames = [read_frames(path, video_cfg.num_frames, s, e, backend=video_cfg.backend)
                      for s, e in bounds]
        except VideoError as exc:
            errors.append(f"{name}: {exc.cause}")
            continue
        texts: list[str] = []
        for i in range(0, len(bounds), gen_cfg.batch_size):
            chunk = frames[i : i + gen_cfg.batch_size]
            seeds = [row_seed(gen_cfg.seed, f"{name}/{i + j}") for j in range(len(chunk))]
            texts += generate_batch(lm, [INDUCE_PROMPT] * len(chunk), chunk, gen_cfg, seeds)
        clips = []
        for k, ((s, e), text) in enumerate(zip(bounds, texts, strict=True)):
            triples, rest = parse_triples(text)
            rows.append({"video": str(path), "clip": k, "start": s, "end": e, "output": text,
                         "triples": [list(t) for t in triples], "unparsed_lines": rest})
            clips.append((s, e, triples))
        graph = link(str(path), duration, clips)
        if graph.relations:
            graphs.append(graph)
        else:
            errors.append(f"{name}: no relation induced from {len(bounds)} clip(s)")
    write_jsonl(Path(out_dir) / INDUCED, rows)
    stats = {"clips": len(rows), "unparseable_clips": sum(not r["triples"] for r in rows),
             "triples": sum(len(r["triples"]) for r in rows), "graphs": len(graphs),
             "errors": errors}
    return graphs, stats
