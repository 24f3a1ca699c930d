"""The one spatio-temporal scene graph (STSG) every STEP input becomes.

Entities have an id, a class and boxes per frame time; relations are
``(subject, predicate, object, [start, end])`` with times in seconds, so Action Genome (sampled
frames at the video's own fps) and VidOR (every frame, exclusive end frame) land in the same
shape and the question generator never sees a frame number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videostar.data.records import write_json

Box = tuple[float, float, float, float]
"""xyxy in pixels."""

PREDICATE_DIRECTION: dict[str, dict[str, tuple[str, str]]] = {
    # Attention and contacting say what the person does to the object (the person is holding
    # the cup); spatial relationships say where the object is relative to the person: the
    # release's (person, beneath, sofa) means the sofa is beneath the person.
    "action-genome": {"attention_relationship": ("person", "object"),
                      "spatial_relationship": ("object", "person"),
                      "contacting_relationship": ("person", "object")},
    # Every relation instance reads subject predicate object (the dog chases the ball).
    "vidor": {"relation_instances": ("subject", "object")},
}
"""Per dataset and relation kind, which annotated end a relation's subject is and which its
object, so ``subject predicate object`` reads as a true sentence in rationales."""

TRAINING_SPLITS = frozenset({"train", "training"})
"""Split names (Action Genome's and VidVRD's ``train``, VidOR's ``training``) whose videos a
held-out evaluation never sees."""


def show(value: Any, width: int = 60) -> str:
    """``repr`` cut to ``width`` for a report line; never fails (a 5000-digit int has no repr)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__} too large to print>"
    return text if len(text) <= width else text[: width - 3] + "..."


def oriented(dataset: str, kind: str, ends: dict[str, str]) -> tuple[str, str]:
    """(subject, object) of a relation of ``kind``, from its annotated ends by role name."""
    first, second = PREDICATE_DIRECTION[dataset][kind]
    return ends[first], ends[second]


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
    """A video's STSG. ``width``/``height`` (pixels) bound the boxes when known; ``split`` is
    the release's split of the video (None: the source has none)."""

    video: str
    duration: float
    entities: dict[str, Entity] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)
    width: float | None = None
    height: float | None = None
    split: str | None = None

    def clean(self) -> list[str]:
        """Drop what cannot be used and say why, one reason per item: a box that is not finite,
        not xyxy or outside the frame; a relation naming an unknown or never-boxed entity, or
        whose times are not finite, run backwards or leave ``[0, duration]``. Entities never
        boxed are no nodes (dropped without a word: the adapters report them). An empty graph
        is a problem too (and keeps nothing)."""
        problems: list[str] = []
        for ent in self.entities.values():
            for t, box in list(ent.boxes.items()):
                reason = self._box_problem(t, box)
                if reason:
                    problems.append(f"entity {ent.id} ({ent.category}) at {t:.2f}s: {reason}")
                    del ent.boxes[t]
        kept = []
        for rel in self.relations:
            unknown = [e for e in (rel.subject, rel.object) if e not in self.entities]
            unseen = [e for e in (rel.subject, rel.object)
                      if e in self.entities and not self.entities[e].boxes]
            what = f"relation {rel.subject} {rel.predicate} {rel.object}"
            if unknown:
                problems.append(f"{what}: unknown entity {unknown[0]}")
            elif unseen:
                problems.append(f"{what}: entity {unseen[0]} is never visible")
            elif not (math.isfinite(rel.start) and math.isfinite(rel.end)):
                problems.append(f"{what}: times {rel.start}-{rel.end} are not finite")
            elif rel.end < rel.start:
                problems.append(f"{what}: ends ({rel.end}) before it starts ({rel.start})")
            elif rel.start < 0 or rel.end > self.duration + 1e-6:
                problems.append(f"{what}: {rel.start:g}-{rel.end:g} s is outside the video's "
                                f"0-{self.duration:g} s")
            else:
                kept.append(rel)
        self.entities = {k: e for k, e in self.entities.items() if e.boxes}
        self.relations = sorted(set(kept), key=lambda r: (r.start, r.end, r.subject, r.predicate, r.object))
        if not self.relations:
            problems.append("empty graph: no usable relation")
        return problems

    def _box_problem(self, t: float, box: Box) -> str | None:
        x1, y1, x2, y2 = box
        if not all(map(math.isfinite, (t, *box))):
            return f"box {list(box)} at time {t} is not finite"
        if not 0 <= t <= self.duration + 1e-6:
            return f"time {t:g} s is outside the video's 0-{self.duration:g} s"
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
            "split": self.split,
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
                   data.get("width"), data.get("height"), data.get("split"))


def write_graphs(path: str | Path, graphs: list[SceneGraph]) -> Path:
    """All graphs of a dataset in one JSON file (``graphs.json`` beside the records)."""
    return write_json(path, [g.to_json() for g in graphs])


def read_graphs(path: str | Path) -> list[SceneGraph]:
    return [SceneGraph.from_json(d) for d in json.loads(Path(path).read_text())]
