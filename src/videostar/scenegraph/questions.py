"""Graph-path questions: STEP's multi-step questions, each answered by walking a path of the
video's scene graph, with the path as the rationale (one step per edge, in order).

Four question types, one walk each; every walk is deterministic given what the question names,
so the graph determines the answer:

- ``step_relation_chain``: from an entity, move to the entity it interacts with next, k times;
- ``step_temporal_order``: the focus entity's k-th interaction counted from a named one;
- ``step_counting``: how many different entities the focus has one relation with (k of them);
- ``step_object_permanence``: the focus's last k-1 interactions before it leaves the view.

A walk stops where "next" is ambiguous (two different entities at the same time); where the
entity has relations both ways with its partner at once (Action Genome: the person holds the
cup, the cup is in front of the person), the step is the entity's own. Entities are
named by class, so only entities whose class is unique in the video take part. A question whose
text would contain its answer is never asked. Records are balanced round-robin over
(question type, path length) groups.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videostar.config.scenegraph import ScenegraphConfig
from videostar.data.records import AdapterResult, Record
from videostar.prompts import question_for
from videostar.scenegraph.graph import SceneGraph
from videostar.verify import label_words, tokens

LEAVES = "leaves the view"
"""The predicate of an object-permanence path's last step (the focus's last box)."""
LEAVE_MARGIN = 1.0
"""Seconds before the video's end that an entity's last box must be to count as leaving."""
GROUP = "path_length"
"""``meta`` key: the path length, also the records' yield group ``path_length=<k>``."""
SPLIT = "split"
"""``meta`` key: the release split of the record's video (Action Genome train/test, VidOR
training/validation, VidVRD train/test), when the source has splits."""


@dataclass(frozen=True)
class Interaction:
    """Relations between two entities starting together, merged: any of the predicates states
    the step (Action Genome labels looking at, holding and in front of on the same frame)."""

    subject: str
    object: str
    predicates: tuple[str, ...]
    start: float
    end: float

    def other(self, entity: str) -> str:
        return self.object if entity == self.subject else self.subject


@dataclass(frozen=True)
class Question:
    """One question about one graph: its type, the path, the answer and the template fields."""

    qtype: str
    path: tuple[Interaction, ...]
    answer: str
    fields: dict[str, str]
    leaves: str | None = None  # object permanence: the entity whose leaving ends the path


def interactions(graph: SceneGraph, skip: set[str]) -> list[Interaction]:
    """The graph's relations between uniquely named entities, merged per (pair, start)."""
    counts: dict[str, int] = defaultdict(int)
    for ent in graph.entities.values():
        counts[ent.category] += 1
    named = {e for e, ent in graph.entities.items() if counts[ent.category] == 1}
    merged: dict[tuple[str, str, float], list[Any]] = {}
    for rel in graph.relations:
        if rel.predicate in skip or rel.subject == rel.object or not {rel.subject, rel.object} <= named:
            continue
        entry = merged.setdefault((rel.subject, rel.object, rel.start), [[], rel.end])
        entry[0].append(rel.predicate)
        entry[1] = max(entry[1], rel.end)
    return sorted((Interaction(s, o, tuple(sorted(set(p))), t, e) for (s, o, t), (p, e) in merged.items()),
                  key=lambda i: (i.start, i.subject, i.object))


def _next(items: list[Interaction], entity: str, after: float) -> Interaction | None:
    """The entity's first interaction starting after ``after``; None when there is none or
    when two different partners start at that same time (the next one is then ambiguous)."""
    mine = [i for i in items if entity in (i.subject, i.object) and i.start > after]
    if not mine:
        return None
    first = sorted((i for i in mine if i.start == mine[0].start), key=lambda i: i.subject != entity)
    return first[0] if len({i.other(entity) for i in first}) == 1 else None


def _timeline(items: list[Interaction], entity: str) -> list[Interaction] | None:
    """The entity's interactions in time order, one per start time (None if a start time has
    two different partners)."""
    out: list[Interaction] = []
    for i in items:
        if entity not in (i.subject, i.object):
            continue
        if out and out[-1].start == i.start:
            if out[-1].other(entity) != i.other(entity):
                return None
            if i.subject == entity:  # the entity's own relation states the step
                out[-1] = i
            continue
        out.append(i)
    return out


def relation_chains(graph: SceneGraph, items: list[Interaction], k: int) -> Iterator[Question]:
    for start in graph.entities:
        path, at, t = [], start, float("-inf")
        while len(path) < k:
            step = _next(items, at, t)
            if step is None:
                break
            path.append(step)
            at, t = step.other(at), step.start
        if len(path) == k:
            yield Question("step_relation_chain", tuple(path), graph.name(at),
                           {"start": graph.name(start), "steps": str(k)})


def temporal_orders(graph: SceneGraph, items: list[Interaction], k: int) -> Iterator[Question]:
    for focus in graph.entities:
        line = _timeline(items, focus) or []
        for i in range(len(line) - k + 1):
            path = tuple(line[i : i + k])
            first = path[0]
            yield Question("step_temporal_order", path, graph.name(path[-1].other(focus)), {
                "focus": graph.name(focus), "predicate": _words(first.predicates[0]),
                "other": graph.name(first.other(focus)), "later": str(k - 1)})


def countings(graph: SceneGraph, items: list[Interaction], k: int) -> Iterator[Question]:
    for focus in graph.entities:
        predicates = sorted({p for i in items if i.subject == focus for p in i.predicates})
        for pred in predicates:
            firsts: dict[str, Interaction] = {}
            for i in items:
                if i.subject == focus and pred in i.predicates:
                    firsts.setdefault(i.object, i)
            if len(firsts) == k:
                path = tuple(Interaction(i.subject, i.object, (pred,), i.start, i.end)
                             for i in sorted(firsts.values(), key=lambda i: i.start))
                yield Question("step_counting", path, str(k),
                               {"focus": graph.name(focus), "predicate": _words(pred)})


def permanences(graph: SceneGraph, items: list[Interaction], k: int) -> Iterator[Question]:
    for focus, ent in graph.entities.items():
        span = ent.span()
        if span is None or span[1] > graph.duration - LEAVE_MARGIN:
            continue
        line = [i for i in _timeline(items, focus) or [] if i.start <= span[1]]
        if len(line) < k - 1 or k < 2:
            continue
        path = tuple(line[len(line) - (k - 1):])
        yield Question("step_object_permanence", path, graph.name(path[-1].other(focus)),
                       {"focus": graph.name(focus)}, leaves=focus)


WALKS = {
    "step_relation_chain": relation_chains,
    "step_temporal_order": temporal_orders,
    "step_counting": countings,
    "step_object_permanence": permanences,
}


def _words(name: str) -> str:
    """A vocabulary name as words: ``looking_at`` -> ``looking at``."""
    return name.replace("_", " ")


def steps_of(graph: SceneGraph, q: Question) -> list[dict[str, Any]]:
    """The rationale: one step per edge, in order (entity names, the predicates any of which
    states it, and when it holds)."""
    steps = [{"subject": graph.name(i.subject), "predicates": [_words(p) for p in i.predicates],
              "object": graph.name(i.object), "start": round(i.start, 3), "end": round(i.end, 3)}
             for i in q.path]
    if q.leaves is not None:
        span = graph.entities[q.leaves].span()
        assert span is not None  # permanences() only picks entities with boxes
        steps.append({"subject": graph.name(q.leaves), "predicates": [LEAVES], "object": None,
                      "start": round(span[1], 3), "end": round(span[1], 3)})
    return steps


def step_text(step: dict[str, Any]) -> str:
    obj = f" the {step['object']}" if step.get("object") else ""
    return f"the {step['subject']} {step['predicates'][0]}{obj} ({step['start']:g}-{step['end']:g} s)"


def reference_answer(steps: list[dict[str, Any]], answer: str) -> str:
    """The answer a perfect model would give: the path's steps in order, then the answer."""
    lines = [f"Step {n}: {step_text(s)}." for n, s in enumerate(steps, 1)]
    return " ".join([*lines, f"The answer is {answer}."])


def _mentions(question: str, answer: str) -> bool:
    words = label_words(answer, 1) or tokens(answer)
    return bool(words) and set(words) <= set(tokens(question))


def build_scenegraph_records(graphs: list[SceneGraph], cfg: ScenegraphConfig, templates: dict[str, list[str]]
                       ) -> AdapterResult:
    """STEP records from scene graphs, balanced over (question type, path length).

    Per (video, type, length) one candidate is drawn (seeded); then the groups are visited
    round-robin, so each type and length gets as many records as the others until it runs out;
    ``per_video`` and ``max_questions`` cap the result. ``errors`` lists videos that gave no
    question.
    """
    rng = random.Random(cfg.seed)
    groups: dict[tuple[str, int], list[Record]] = defaultdict(list)
    errors = []
    for gi, graph in enumerate(graphs):
        items = interactions(graph, set(cfg.skip_predicates))
        found = 0
        for qtype in cfg.question_types:
            for k in range(cfg.min_steps, cfg.max_steps + 1):
                options = []
                rid = f"step/{gi:05d}-{Path(graph.video).stem}/{qtype}/{k}"
                for q in WALKS[qtype](graph, items, k):
                    text = question_for(templates, qtype, f"{rid}/{len(options)}", **q.fields)
                    if not _mentions(text, q.answer):
                        options.append((q, text))
                if options:
                    q, text = rng.choice(options)
                    groups[(qtype, k)].append(_record(graph, q, text, rid))
                    found += 1
        if not found:
            errors.append(f"{graph.video}: no path of {cfg.min_steps}-{cfg.max_steps} steps "
                          "for any question type")
    for recs in groups.values():
        rng.shuffle(recs)
    return AdapterResult(_round_robin(groups, cfg), errors=errors)


def _round_robin(groups: dict[tuple[str, int], list[Record]], cfg: ScenegraphConfig) -> list[Record]:
    out: list[Record] = []
    per_video: dict[str, int] = defaultdict(int)
    queues = [list(groups[key]) for key in sorted(groups)]
    cap = cfg.max_questions if cfg.max_questions is not None else sum(map(len, queues))
    while len(out) < cap and any(queues):
        for queue in queues:
            while queue and per_video[queue[0].video] >= cfg.per_video:
                queue.pop(0)
            if queue and len(out) < cap:
                rec = queue.pop(0)
                per_video[rec.video] += 1
                out.append(rec)
    return out


def _record(graph: SceneGraph, q: Question, question: str, rid: str) -> Record:
    steps = steps_of(graph, q)
    k = len(steps)
    return Record(
        id=rid, video=graph.video, question=question,
        label={"path": {"answer": q.answer, "steps": steps}}, label_type=["graph_path"],
        task=q.qtype,
        meta={GROUP: k, "yield_groups": [f"{GROUP}={k}"],
              "rationale": [step_text(s) for s in steps],
              "reference": reference_answer(steps, q.answer),
              **({SPLIT: graph.split} if graph.split is not None else {})},
    )
