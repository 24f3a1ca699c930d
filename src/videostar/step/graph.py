"""The one spatio-temporal scene graph (STSG) every STEP input becomes.

Entities have an id, a class and boxes per frame time; relations are
``(subject, predicate, object, [start, end])`` with times in seconds, so Action Genome (sampled
frames at the video's own fps) and VidOR (every frame, exclusive end frame) land in the same
shape and the question generator never sees a frame number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videostar.data.records import write_json

Box = tuple[float, float, float, float]
"""xyxy in pixels."""


@dataclass
class Entity:
    """One tracked object; ``boxes`` maps a frame time (s) to its xyxy box there."""

    id: str
    category: str
    boxes: dict[float, Box] = field(default_factory=dict)

    def span(self) -> tuple[float, float] | None:
        """First and last time the entity is seen (None: never boxed)."""
        return (min(self.boxes), max(self.boxes)) if self.boxes else None


@dataclass(frozen=True)
class Relation:
    """``subject`` ``predicate`` ``object`` (entity ids) holding from ``start`` to ``end`` s."""

    subject: str
    predicate: str
    object: str
    start: float
    end: float


@dataclass
class SceneGraph:
    """A video's STSG. ``width``/``height`` (pixels) bound the boxes when known."""

    video: str
    duration: float
    entities: dict[str, Entity] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)
    width: float | None = None
    height: float | None = None

    def clean(self) -> list[str]:
        """Drop what cannot be used and say why, one reason per item: a relation naming an
        unknown entity or running backwards, a box outside the frame; an empty graph is a
        problem too (and keeps nothing)."""
        problems: list[str] = []
        for ent in self.entities.values():
            for t, box in list(ent.boxes.items()):
                reason = self._box_problem(box)
                if reason:
                    problems.append(f"entity {ent.id} ({ent.category}) at {t:.2f}s: {reason}")
                    del ent.boxes[t]
        kept = []
        for rel in self.relations:
            unknown = [e for e in (rel.subject, rel.object) if e not in self.entities]
            if unknown:
                problems.append(f"relation {rel.subject} {rel.predicate} {rel.object}: "
                                f"unknown entity {unknown[0]}")
            elif rel.end < rel.start:
                problems.append(f"relation {rel.subject} {rel.predicate} {rel.object}: "
                                f"ends ({rel.end}) before it starts ({rel.start})")
            else:
                kept.append(rel)
        self.relations = sorted(set(kept), key=lambda r: (r.start, r.end, r.subject, r.predicate, r.object))
        if not self.relations:
            problems.append("empty graph: no usable relation")
        return problems

    def _box_problem(self, box: Box) -> str | None:
        x1, y1, x2, y2 = box
        if not x1 <= x2 or not y1 <= y2:
            return f"box {list(box)} is not xyxy"
        w, h = self.width, self.height
        if x1 < 0 or y1 < 0 or (w is not None and x2 > w) or (h is not None and y2 > h):
            return f"box {list(box)} outside the {w}x{h} frame"
        return None

    def name(self, entity_id: str) -> str:
        return self.entities[entity_id].category

    def to_json(self) -> dict[str, Any]:
        return {
            "video": self.video, "duration": self.duration, "width": self.width, "height": self.height,
            "entities": [{"id": e.id, "category": e.category,
                          "boxes": [[t, *b] for t, b in sorted(e.boxes.items())]}
                         for e in self.entities.values()],
            "relations": [[r.subject, r.predicate, r.object, r.start, r.end] for r in self.relations],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SceneGraph:
        entities = {e["id"]: Entity(e["id"], e["category"],
                                    {float(b[0]): tuple(map(float, b[1:5])) for b in e["boxes"]})
                    for e in data["entities"]}
        relations = [Relation(s, p, o, float(a), float(b)) for s, p, o, a, b in data["relations"]]
        return cls(data["video"], float(data["duration"]), entities, relations,
                   data.get("width"), data.get("height"))


def write_graphs(path: str | Path, graphs: list[SceneGraph]) -> Path:
    """All graphs of a dataset in one JSON file (``graphs.json`` beside the records)."""
    return write_json(path, [g.to_json() for g in graphs])


def read_graphs(path: str | Path) -> list[SceneGraph]:
    return [SceneGraph.from_json(d) for d in json.loads(Path(path).read_text())]
