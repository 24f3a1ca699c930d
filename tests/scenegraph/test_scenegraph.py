"""STEP: scene-graph adapters on fixtures in the real formats, graph-path questions, the
``graph_path`` verifier (table + properties) and the synthetic scene-graph videos."""

from __future__ import annotations

import _codecs
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from videostar.pipelines.submit import compile_pipeline

from videostar.cli import main
from videostar.config import RunConfig, ScenegraphConfig, VerifyConfig, config_from_dict, load_config
from videostar.data.records import Record, read_records
from videostar.errors import ConfigError, RecordError
from videostar.prompts import DEFAULT_TEMPLATES
from videostar.scenegraph.action_genome import (
    ATTENTION,
    CONTACTING,
    KIND_BY_SQUASHED,
    KIND_OF,
    RELATIONSHIP_CLASSES,
    SPATIAL,
    build_action_genome_graphs,
    squash,
)
from videostar.scenegraph.graph import SceneGraph, oriented, read_graphs
from videostar.scenegraph.questions import (
    LEAVES,
    Question,
    build_scenegraph_records,
    interactions,
    step_text,
    steps_of,
)
from videostar.scenegraph.synthetic import write_scene_videos
from videostar.scenegraph.vidor import build_vidor_graphs
from videostar.verify import tokens, verify_record
from videostar.video import probe, read_frames, write_video

pytestmark = pytest.mark.fast  # no model, no server

FPS = 8.0


def _mp4(path: Path, frames: int = 24, w: int = 64, h: int = 48) -> Path:
    return write_video(path, np.zeros((frames, h, w, 3), dtype=np.uint8), FPS)


# --------------------------------------------------------------------------- Action Genome


def _obj(cls, bbox=None, attention=(), spatial=(), contacting=(), visible=True, split="train"):
    rel = (lambda x: list(x)) if visible else (lambda x: None)
    return {"class": cls, "bbox": bbox, "attention_relationship": rel(attention),
            "spatial_relationship": rel(spatial), "contacting_relationship": rel(contacting),
            "metadata": {"tag": "x", "set": split}, "visible": visible}


def _invisible(cls, split="train"):
    return _obj(cls, visible=False, split=split)


def _person(rows):
    return {"bbox": np.asarray(rows, dtype=np.float32).reshape(-1, 4), "bbox_score": np.ones(len(rows)),
            "bbox_size": (64, 48), "bbox_mode": "xyxy"}


# The released class files, spelled as released (no separators).
AG_OBJECT_CLASSES = [
    "person", "bag", "bed", "blanket", "book", "box", "broom", "chair", "closetcabinet", "clothes",
    "cupglassbottle", "dish", "door", "doorknob", "doorway", "floor", "food", "groceries", "laptop",
    "light", "medicine", "mirror", "papernotebook", "phonecamera", "picture", "pillow",
    "refrigerator", "sandwich", "shelf", "shoe", "sofacouch", "table", "television", "towel",
    "vacuum", "window",
]
AG_RELATIONSHIP_CLASSES = [
    "lookingat", "notlookingat", "unsure", "above", "beneath", "infrontof", "behind", "onthesideof",
    "in", "carrying", "coveredby", "drinkingfrom", "eating", "haveitontheback", "holding",
    "leaningon", "lyingon", "notcontacting", "otherrelationship", "sittingon", "standingon",
    "touching", "twisting", "wearing", "wiping", "writingon",
]
CUP, CHAIR, CLOSET = "cup/glass/bottle", "chair", "closet/cabinet"
LEAKED = ("bed", "sofa/couch", "television", "laptop", "spaceship", "book", "pillow")
"""Objects only on inconsistent frames (or never visible): none may reach a graph or a record."""


def _write_ag(ann: Path, persons: dict, objects: dict, frame_list: bool = True) -> None:
    ann.mkdir(exist_ok=True)
    for name, obj in (("person_bbox.pkl", persons), ("object_bbox_and_relationship.pkl", objects)):
        (ann / name).write_bytes(pickle.dumps(obj, protocol=3 if "person" in name else 5))
    (ann / "object_classes.txt").write_text("\n".join(AG_OBJECT_CLASSES) + "\n")
    (ann / "relationship_classes.txt").write_text("\n".join(AG_RELATIONSHIP_CLASSES) + "\n")
    if frame_list:
        (ann / "frame_list.txt").write_text("".join(f"{k}\n" for k in sorted(objects)))


@pytest.fixture
def action_genome(tmp_path: Path) -> dict[str, Path]:
    ann, videos = tmp_path / "annotations", tmp_path / "videos"
    _mp4(videos / "AB12C.mp4")  # 24 frames at 8 fps: 3 s
    _mp4(videos / "TEST1.mp4")
    box = [[10, 5, 30, 40]]
    persons = {f"AB12C.mp4/{n:06d}.png": _person(box) for n in (1, 3, 5, 7, 9, 13, 15, 19, 30)}
    persons["AB12C.mp4/000017.png"] = _person(np.zeros((0, 4)))  # the detector found no one
    persons["GONE1.mp4/000001.png"] = _person(box)
    persons |= {f"TEST1.mp4/{n:06d}.png": _person(box) for n in (1, 5)}
    objects = {
        "AB12C.mp4/000001.png": [_obj(CUP, (20, 10, 8, 8), ["looking_at"], ["in_front_of"], ["holding"]),
                                 _invisible(CHAIR), _invisible("pillow")],  # the pillow: never visible
        # the four inconsistent frames of the issue, and three more
        "AB12C.mp4/000003.png": [_obj("bed", None, ["looking_at"])],  # visible, no bbox
        "AB12C.mp4/000005.png": [_obj(CUP, (21, 10, 8, 8), ["unsure"], [], ["holding"]), _invisible(CHAIR)],
        "AB12C.mp4/000007.png": [_obj("sofa/couch", (1, 1, 9, 9), [], ["holding"])],  # contacting as spatial
        "AB12C.mp4/000009.png": [_invisible(CUP), _obj(CHAIR, (5, 20, 30, 20), ["not_looking_at"],
                                                        ["beneath"], ["sitting_on"])],
        "AB12C.mp4/000011.png": [_obj("television", (1, 1, 5, 5), ["looking_at"])],  # no person_bbox entry
        "AB12C.mp4/000013.png": [_obj(CLOSET, (40, 2, 20, 40), ["looking_at"]),
                                 _obj(CHAIR, (5, 20, 30, 20), [], [], ["sitting_on"])],
        "AB12C.mp4/000015.png": [_obj("spaceship", (1, 1, 2, 2), ["looking_at"])],  # not a class
        "AB12C.mp4/000017.png": [_obj(CHAIR, (5, 20, 30, 20), [], [], ["sitting_on"])],  # no person box
        "AB12C.mp4/000019.png": [_obj("book", (5, 20, 30, 30), ["looking_at"])],  # y2 50 > 48
        "AB12C.mp4/000030.png": [_obj("laptop", (1, 1, 2, 2), ["looking_at"])],  # past the 24 frames
        "GONE1.mp4/000001.png": [_obj(CUP, (1, 1, 2, 2), ["looking_at"])],
        "TEST1.mp4/000001.png": [_obj(CUP, (1, 1, 2, 2), ["looking_at"], [], [], split="test")],
        "TEST1.mp4/000005.png": [_obj(CUP, (1, 1, 2, 2), ["looking_at"], [], ["holding"], split="test")],
    }
    _write_ag(ann, persons, objects)
    return {"annotations": ann, "videos": videos}


def test_action_genome_graph(action_genome):
    problems, missing = [], []
    ann = action_genome["annotations"]
    graphs = build_action_genome_graphs(ann, action_genome["videos"], problems, missing)
    graph, test_graph = graphs
    assert missing == [f"GONE1.mp4: video not found under {action_genome['videos']}"]
    objects, persons = ann / "object_bbox_and_relationship.pkl", ann / "person_bbox.pkl"
    assert problems == [  # one line per inconsistent frame: file, video, frame, rule
        f"{objects}: AB12C: frame 000003: object 0 ('bed'): visible without a bbox",
        f"{objects}: AB12C: frame 000007: object 0 ('sofa/couch'): 'holding' is a contacting relationship, "
        "listed under spatial_relationship",
        f"{persons}: AB12C: frame 000011: no entry in this file",
        f"{objects}: AB12C: frame 000015: object 0 ('spaceship'): class not in object_classes.txt",
        f"{objects}: AB12C: frame 000019: object 0 ('book'): bbox [5.0, 20.0, 30.0, 30.0] (x, y, w, h) is "
        "outside the 64x48 frame",
        f"{objects}: AB12C: frame 000030: past the video's 24 frames",
        "AB12C: used 4 of 11 annotated frames (6 inconsistent, reported above; 1 without a person box or "
        "a visible object)"]
    assert graph.duration == 3.0 and (graph.width, graph.height) == (64.0, 48.0)
    assert (graph.split, test_graph.split) == ("train", "test")
    # Frame n (1-based) is at (n - 1) / fps; frame 17 (no person box) is not used.
    assert sorted(graph.entities["person"].boxes) == [0.0, 0.5, 1.0, 1.5]
    assert graph.entities[CUP].boxes == {0.0: (20, 10, 28, 18), 0.5: (21, 10, 29, 18)}
    assert graph.entities[CHAIR].span() == (1.0, 1.5)
    # Only entities visible on a used frame are nodes; nothing of a bad frame is used.
    assert set(graph.entities) == {"person", CUP, CHAIR, CLOSET}
    assert not set(LEAKED) & {e for g in graphs for e in g.entities}
    # Direction per kind: spatial relationships say where the object is relative to the person.
    assert sorted((r.subject, r.predicate, r.object, r.start, r.end) for r in graph.relations) == sorted([
        ("person", "holding", CUP, 0.0, 0.5),  # consecutive used frames (3 dropped): one run
        ("person", "looking_at", CUP, 0.0, 0.0), (CUP, "in_front_of", "person", 0.0, 0.0),
        ("person", "unsure", CUP, 0.5, 0.5), ("person", "not_looking_at", CHAIR, 1.0, 1.0),
        (CHAIR, "beneath", "person", 1.0, 1.0), ("person", "sitting_on", CHAIR, 1.0, 1.5),
        ("person", "looking_at", CLOSET, 1.5, 1.5)])


def test_action_genome_splits(action_genome):
    """``metadata['set']`` of each frame's first object is the video's split; a video whose
    frames disagree is reported and not used (its split cannot be told)."""
    ann, videos = action_genome["annotations"], action_genome["videos"]
    for split, expected in (("train", ["AB12C"]), ("test", ["TEST1"])):
        graphs = build_action_genome_graphs(ann, videos, [], [], split=split)
        assert [Path(g.video).stem for g in graphs] == expected
    objects = pickle.loads((ann / "object_bbox_and_relationship.pkl").read_bytes())
    objects["TEST1.mp4/000005.png"][0]["metadata"]["set"] = "train"
    (ann / "object_bbox_and_relationship.pkl").write_bytes(pickle.dumps(objects))
    problems = []
    graphs = build_action_genome_graphs(ann, videos, problems, [])
    assert [Path(g.video).stem for g in graphs] == ["AB12C"]
    assert problems[-1] == (f"{ann / 'object_bbox_and_relationship.pkl'}: TEST1: frames disagree on "
                            "metadata['set'] (test: 1, train: 1); video not used")


def test_action_genome_relation_kinds_and_direction_follow_the_class_list(action_genome):
    """The kinds are the released class list's positions (3 attention, 6 spatial, 17
    contacting), as STTran splits it; spatial reads object -> person, the others person -> object."""
    kinds = [KIND_BY_SQUASHED[n] for n in AG_RELATIONSHIP_CLASSES]
    assert kinds == [ATTENTION] * 3 + [SPATIAL] * 6 + [CONTACTING] * 17
    assert [squash(n) for n in RELATIONSHIP_CLASSES] == AG_RELATIONSHIP_CLASSES
    ends = {"person": "p", "object": "o"}
    spatial = ("above", "beneath", "in_front_of", "behind", "on_the_side_of", "in")
    for name, kind in KIND_OF.items():
        expected = ("o", "p") if name in spatial else ("p", "o")
        assert oriented("action-genome", kind, ends) == expected, name
    assert oriented("vidor", "relation_instances", {"subject": "s", "object": "o"}) == ("s", "o")
    # A class file in another order would give the predicates other kinds: refused.
    path = action_genome["annotations"] / "relationship_classes.txt"
    path.write_text("\n".join(AG_RELATIONSHIP_CLASSES[1:] + AG_RELATIONSHIP_CLASSES[:1]))
    with pytest.raises(RecordError, match="not Action Genome's 26 relationship classes in the release order"):
        build_action_genome_graphs(action_genome["annotations"], action_genome["videos"], [], [])


def test_action_genome_questions_follow_the_person(action_genome):
    graphs = build_action_genome_graphs(action_genome["annotations"], action_genome["videos"], [], [],
                                        split="train")
    result = build_scenegraph_records(graphs, ScenegraphConfig(min_steps=3, max_steps=3), DEFAULT_TEMPLATES)
    by_task = {r.task: r for r in result.records}
    order = by_task["step_temporal_order"].label["path"]
    assert order["answer"] == CLOSET
    assert [s["object"] for s in order["steps"]] == [CUP, CHAIR, CLOSET]
    # The person's own relations with the cup on frame 1 state the first step (negatives skipped).
    assert order["steps"][0]["predicates"] == ["holding", "looking at"]
    perm = by_task["step_object_permanence"].label["path"]
    assert perm["answer"] == CLOSET and perm["steps"][-1]["predicates"][0] == LEAVES
    assert all(r.meta["split"] == "train" for r in result.records)
    text = json.dumps([r.to_json() for r in result.records])
    assert not [name for name in LEAKED if name in text]
    # A spatial step reads as the release means it: the chair is beneath the person.
    (beneath,) = [i for i in interactions(graphs[0], set()) if "beneath" in i.predicates]
    (step,) = steps_of(graphs[0], Question("x", (beneath,), "chair", {}))
    assert step_text(step) == "the chair beneath the person (1-1 s)"


def test_action_genome_refuses_a_malicious_pickle(action_genome, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (action_genome["annotations"] / "person_bbox.pkl").write_bytes(pickle.dumps({"k": Evil()}))
    with pytest.raises(RecordError, match=r"person_bbox\.pkl: refused to load global (posix|os|nt)\.system"):
        build_action_genome_graphs(action_genome["annotations"], action_genome["videos"], [], [])
    assert not marker.exists()


def test_action_genome_reads_protocol_2_pickles(action_genome):
    """Protocol 2 rebuilds array data through ``_codecs.encode`` (and ``b""``, a zero-row box
    array, through ``bytes()``): the same graph as from protocol 3/5 files."""
    ann = action_genome["annotations"]
    graphs = build_action_genome_graphs(ann, action_genome["videos"], [], [])
    for name in ("person_bbox.pkl", "object_bbox_and_relationship.pkl"):
        data = pickle.loads((ann / name).read_bytes())
        (ann / name).write_bytes(pickle.dumps(data, protocol=2))
    again = build_action_genome_graphs(ann, action_genome["videos"], [], [])
    assert [g.to_json() for g in again] == [g.to_json() for g in graphs] and graphs


@pytest.mark.parametrize(("call", "refused"), [
    ((_codecs.encode, ("print('x')", "rot13")), r"_codecs\.encode\(str, 'rot13'\)"),
    ((bytes, (10**12,)), r"bytes with 1 argument"),  # would allocate a terabyte
    ((os.system, ("true",)), r"(posix|os|nt)\.system"),
])
def test_protocol_2_bytes_builders_do_only_that(action_genome, call, refused):
    class Evil:
        def __reduce__(self):
            return call

    path = action_genome["annotations"] / "person_bbox.pkl"
    path.write_bytes(pickle.dumps({"k": Evil()}, protocol=2))
    with pytest.raises(RecordError, match=r"person_bbox\.pkl: refused to load global " + refused):
        build_action_genome_graphs(action_genome["annotations"], action_genome["videos"], [], [])


def test_numpy_pickle_bounds_arrays_and_returns_plain_ones(tmp_path):
    """Arrays come back as plain ndarrays wherever they sit; one past the element bound is
    refused before numpy builds it, even when the file carries its data."""
    from videostar.data.numpy_pickle import MAX_ARRAY_ELEMENTS, load_numpy_pickle

    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.zeros(2), (np.ones(1), [np.arange(3)])]
    data = {"a": np.zeros((2, 4), np.float32), "t": (np.ones(3),), "o": ragged, "n": np.int64(3)}
    path = tmp_path / "ok.pkl"
    for protocol in (2, 3, 5):
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        got = load_numpy_pickle(path, "test pickles")
        arrays = [got["a"], got["t"][0], got["o"], got["o"][0], got["o"][1][0], got["o"][1][1][0]]
        assert all(type(a) is np.ndarray for a in arrays), protocol
        assert got["a"].tolist() == data["a"].tolist() and got["n"] == 3
    path.write_bytes(pickle.dumps(np.zeros(MAX_ARRAY_ELEMENTS + 1, np.uint8), protocol=5))
    with pytest.raises(RecordError, match=f"refused to build an array of {MAX_ARRAY_ELEMENTS + 1} elements"):
        load_numpy_pickle(path, "test pickles")


# --------------------------------------------------------------------------- VidOR / VidVRD


def _vidor(video_id: str, relations: list[dict], boxes_at_5: list | None = None) -> dict:
    def at(fid: int) -> list[dict]:
        boxes = [{"tid": 0, "bbox": {"xmin": 1, "ymin": 1, "xmax": 20, "ymax": 30}, "generated": 0},
                 {"tid": 3, "bbox": {"xmin": 22, "ymin": 1, "xmax": 28, "ymax": 9}, "generated": 0},
                 {"tid": 7, "bbox": {"xmin": 30, "ymin": 5, "xmax": 50, "ymax": 25}, "generated": 1}]
        cat = {"tid": 11, "bbox": {"xmin": 52, "ymin": 5, "xmax": 60, "ymax": 15}}
        return boxes + ([cat] if fid >= 12 else [])

    traj = [at(fid) for fid in range(16)]
    traj[5] = boxes_at_5 or []  # a frame with no boxes
    return {"video_id": video_id, "frame_count": 16, "fps": FPS, "width": 64, "height": 48,
            "subject/objects": [{"tid": 0, "category": "adult"}, {"tid": 3, "category": "dog"},
                                {"tid": 7, "category": "ball"}, {"tid": 11, "category": "cat"},
                                {"tid": 12, "category": "bird"}],  # the bird is never boxed
            "trajectories": traj, "relation_instances": relations}


def _rel(s, p, o, b, e):
    return {"subject_tid": s, "object_tid": o, "predicate": p, "begin_fid": b, "end_fid": e}


def test_vidor_graphs_and_bad_input(tmp_path):
    ann, videos = tmp_path / "ann" / "training" / "0001", tmp_path / "videos"
    ann.mkdir(parents=True)
    for vid in ("v1", "v3", "v4"):
        _mp4(videos / "0001" / f"{vid}.mp4", frames=16)
    outside = [{"tid": 3, "bbox": {"xmin": 50, "ymin": 1, "xmax": 80, "ymax": 9}, "generated": 0}]
    good = _vidor("v1", [_rel(0, "watch", 3, 0, 4), _rel(3, "chase", 7, 4, 8), _rel(0, "hold", 7, 8, 12),
                         _rel(0, "feed", 11, 12, 14), _rel(3, "next_to", 9, 0, 2),  # 9: no such tid
                         _rel(0, "watch", 12, 0, 4),  # the bird is never visible
                         _rel(0, "hold", 3, 10, 20), _rel(0, "hold", 3, 6, 6)], outside)
    (ann / "v1.json").write_text(json.dumps(good))
    (ann / "v2.json").write_text(json.dumps(_vidor("v2", [_rel(0, "watch", 3, 0, 4)])))  # no video
    (ann / "v3.json").write_text("{not json")
    (ann / "v4.json").write_text(json.dumps(_vidor("v4", [])))
    problems, missing = [], []
    (graph,) = build_vidor_graphs(tmp_path / "ann", videos, problems, missing)
    assert missing == [f"v2.mp4: video not found under {videos}"]
    v1 = f"{ann / 'v1.json'}: v1"
    assert problems.pop(-2).startswith(f"{ann / 'v3.json'}: not a VidOR annotation")
    assert problems == [  # one line per bad item: file, video, item index, rule
        f"{v1}: trajectories[5][0]: bbox [50.0, 1.0, 80.0, 9.0] is not xyxy inside the 64x48 frame",
        f"{v1}: relation_instances[4] (3 next_to 9): object_tid 9 is not in subject/objects",
        f"{v1}: relation_instances[5] (0 watch 12): object_tid 12 (bird) has no box in trajectories",
        f"{v1}: relation_instances[6] (0 hold 3): end_fid 20 is past frame_count 16",
        f"{v1}: relation_instances[7] (0 hold 3): empty interval: end_fid 6 <= begin_fid 6 "
        "(end_fid is exclusive)",
        f"{v1}: dropped 5 of 63 items (each reported above)",
        f"{ann / 'v4.json'}: v4: empty graph: no usable relation"]
    assert graph.split == "training"  # VidOR's folder split
    assert set(graph.entities) == {"0", "3", "7", "11"}  # tids need not be contiguous; only boxed ones
    assert 5 / FPS not in graph.entities["0"].boxes  # the empty frame
    # end_fid is exclusive: frames 4..7 are [0.5, 1.0) s.
    assert [(r.subject, r.predicate, r.object, r.start, r.end) for r in graph.relations] == [
        ("0", "watch", "3", 0.0, 0.5), ("3", "chase", "7", 0.5, 1.0), ("0", "hold", "7", 1.0, 1.5),
        ("0", "feed", "11", 1.5, 1.75)]
    result = build_scenegraph_records([graph], ScenegraphConfig(min_steps=3, max_steps=3), DEFAULT_TEMPLATES)
    (order,) = result.records
    assert order.task == "step_temporal_order" and order.label["path"]["answer"] == "cat"
    assert order.meta["split"] == "training"
    assert [s["object"] for s in order.label["path"]["steps"]] == ["dog", "ball", "cat"]
    assert "adult" in order.question and "watch" in order.question and "cat" not in order.question
    assert build_vidor_graphs(tmp_path / "ann", videos, [], [], split="validation") == []


# --------------------------------------------------------------------------- questions


def _is_path(rec: Record, graph: SceneGraph) -> bool:
    """Every step is an edge of the graph, steps run forward in time, consecutive steps share
    an entity; a relation chain moves on from the entity the last step reached."""
    steps = rec.label["path"]["steps"]
    rels = {(graph.name(r.subject), r.predicate.replace("_", " "), graph.name(r.object), round(r.start, 3))
            for r in graph.relations}
    edges = [s for s in steps if s["object"] is not None]
    ok = all((s["subject"], p, s["object"], s["start"]) in rels for s in edges for p in s["predicates"])
    ok &= all(a["start"] <= b["start"] for a, b in zip(steps, steps[1:], strict=False))
    ok &= all({a["subject"], a["object"]} & {b["subject"], b["object"]}
              for a, b in zip(steps, steps[1:], strict=False))
    return ok and len(steps) == rec.meta["path_length"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[SceneGraph]:
    return write_scene_videos(tmp_path_factory.mktemp("scenes"), 12, seed=3)


@pytest.mark.parametrize("k", [1, 2, 3, 4])  # the synthetic scenes have four slots
def test_paths_are_valid_and_of_the_asked_length(scenes, k):
    result = build_scenegraph_records(scenes, ScenegraphConfig(min_steps=k, max_steps=k), DEFAULT_TEMPLATES)
    assert result.records
    graphs = {g.video: g for g in scenes}
    for rec in result.records:
        assert rec.meta["path_length"] == k and _is_path(rec, graphs[rec.video]), rec.id
        # The template never contains the answer; the reference states it and passes.
        answer = rec.label["path"]["answer"]
        assert not set(tokens(answer)) <= set(tokens(rec.question))
        assert verify_record(rec, rec.meta["reference"], VerifyConfig()).passed


def test_records_are_balanced_over_types_and_lengths(scenes):
    def per_group(records: list[Record]) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for rec in records:
            key = (rec.task, rec.meta["path_length"])
            out[key] = out.get(key, 0) + 1
        return out

    available = per_group(build_scenegraph_records(scenes, ScenegraphConfig(), DEFAULT_TEMPLATES).records)
    limited = ScenegraphConfig(max_questions=24)
    got = per_group(build_scenegraph_records(scenes, limited, DEFAULT_TEMPLATES).records)
    assert sum(got.values()) == 24 and set(got) == set(available)
    # Round-robin: a group falls behind the others only when it has nothing left.
    assert all(n == available[g] or n >= max(got.values()) - 1 for g, n in got.items())


def test_a_graph_without_long_paths_gives_no_question():
    graph = SceneGraph.from_json({"video": "v.mp4", "duration": 4, "entities": [
        {"id": "a", "category": "red circle", "boxes": [[0, 1, 1, 2, 2]]},
        {"id": "b", "category": "blue square", "boxes": [[0, 1, 1, 2, 2]]}],
        "relations": [["a", "touching", "b", 0, 1]]})
    result = build_scenegraph_records([graph], ScenegraphConfig(), DEFAULT_TEMPLATES)
    assert result.records == []
    assert result.errors == ["v.mp4: no path of 3-5 steps for any question type"]
    assert len(interactions(graph, set())) == 1


# --------------------------------------------------------------------------- graph_path verifier


STEPS = [
    {"subject": "red circle", "predicates": ["touching"], "object": "blue square"},
    {"subject": "blue square", "predicates": ["moving past"], "object": "green triangle"},
    {"subject": "green triangle", "predicates": ["touching"], "object": "yellow circle"},
]


def _rec(answer: str = "yellow circle", steps: list | None = None) -> Record:
    return Record(id="q", video="v.mp4", question="?", task="step_relation_chain",
                  label={"path": {"answer": answer, "steps": steps or STEPS}}, label_type=["graph_path"])


S1 = "First the red circle touches the blue square."
S2 = "Then the blue square moves past the green triangle."
S3 = "Next the green triangle is touching the yellow circle."
END = "The answer is the yellow circle."


@pytest.mark.parametrize(("answer", "passed", "reason"), [
    (f"{S1} {S2} {S3} {END}", True, "answer 'yellow circle' found; 3/3 steps in order"),
    (f"{S1} {S2.replace('green', 'red')} {S3} {END}", False, "step 2/3 'blue square moving past green "
     "triangle' not found after the previous step"),
    (f"{S1} {S3} {END}", False, "step 2/3 'blue square moving past green triangle' not found"),
    (f"{S2} {S1} {S3} {END}", False, "step 2/3"),
    (f"{S1} {S2} {S3} The answer is the blue square.", False, "final answer: label word 'yellow'"),
    (f"{S1}, then the blue square passes by the green triangle, then the green triangle touches the "
     "yellow circle. So the answer: yellow circle", False, "step 2/3"),  # "passes by" is no "moving past"
    (f"{S1}, then the blue square is moving past the green triangle, then the green triangle touches "
     "the yellow circle. Answer: yellow circle", True, "3/3 steps in order"),
    ("", False, "final answer"),
])
def test_graph_path_table(answer, passed, reason):
    verdict = verify_record(_rec(), answer, VerifyConfig()).labels[0]
    assert verdict.passed is passed
    assert reason in verdict.reason


def test_graph_path_share_of_steps():
    text = f"{S1} {S3} {END}"
    assert verify_record(_rec(), text, VerifyConfig(graph_path_steps=0.6)).passed
    lenient = verify_record(_rec(), f"{S3} {END}", VerifyConfig(graph_path_steps=0.6)).labels[0]
    assert not lenient.passed and lenient.reason.startswith("1/3 steps stated, 2 needed; step 1/3")


def test_graph_path_a_word_names_one_entity():
    """The subject's words cannot state the object too: a wrong shape beside the focus is wrong."""
    steps = [{"subject": "red circle", "predicates": ["touching"], "object": "yellow circle"}]
    end = "The answer is the yellow circle."
    for text, passed in [(f"The red circle touches the yellow circle. {end}", True),
                         (f"The yellow circle touches the red circle. {end}", True),  # either side
                         (f"The red circle touches the yellow square. {end}", False),
                         (f"The red square touches the yellow circle. {end}", False)]:
        assert verify_record(_rec("yellow circle", steps), text, VerifyConfig()).passed is passed, text


def test_graph_path_counting_and_malformed_labels():
    steps = [{"subject": "red circle", "predicates": ["touching"], "object": o}
             for o in ("blue square", "green triangle", "yellow circle")]
    text = ("The red circle is touching the blue square, then touching the green triangle, then "
            "touching the yellow circle. The answer is {}.")
    assert verify_record(_rec("3", steps), text.format(3), VerifyConfig()).passed
    assert verify_record(_rec("3", steps), text.format("three"), VerifyConfig()).passed
    assert not verify_record(_rec("3", steps), text.format(4), VerifyConfig()).passed
    bad = verify_record(_rec("3", [{"subject": "x"}]), text.format(3), VerifyConfig()).labels[0]
    assert not bad.passed and bad.reason.startswith("malformed label: step 1 needs")
    with pytest.raises(RecordError, match="unknown label type"):
        Record(id="q", video="v", question="?", task="t", label={"a": 1}, label_type=["graph_paths"])


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_graph_path_never_raises(text):
    verify_record(_rec(), text, VerifyConfig())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([S1, S2, "The answer is", "blue", "circle", "red triangle", ",",
                                 "then", "Answer:", "\n", "the square touches it"]), max_size=12),
       st.text(alphabet="xqz019 .,:\n", max_size=40))
def test_graph_path_never_accepts_without_the_answer(parts, noise):
    text = " ".join(parts) + noise  # "yellow" appears nowhere
    assert not verify_record(_rec(), text, VerifyConfig()).passed


# --------------------------------------------------------------------------- synthetic + CLI + config


def test_synthetic_scene_videos_match_their_graphs(scenes):
    graph = scenes[0]
    info = probe(graph.video)
    assert (info.num_frames, info.fps) == (32, 8.0)
    frames = read_frames(graph.video, num_frames=32)
    for ent in graph.entities.values():
        t, (x1, y1, x2, y2) = next(iter(ent.boxes.items()))
        cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
        assert frames[int(round(t * 8))][cy, cx].max() > 100  # a shape is drawn where the box is
    for rel in graph.relations:  # both ends visible when a relation starts
        assert all(rel.start in graph.entities[e].boxes for e in (rel.subject, rel.object))


def test_cli_step_synthetic(tmp_path, capsys):
    assert main(["data", "scenegraph-synthetic", "--count", "4", "--seed", "1", "--out", str(tmp_path)]) == 0
    records = read_records(tmp_path / "records.jsonl")
    graphs = read_graphs(tmp_path / "graphs.json")
    assert records and len(graphs) == 4
    assert all(r.label_type == ["graph_path"] for r in records)
    assert "questions per type/path length" in capsys.readouterr().out


def test_cli_action_genome(action_genome, tmp_path, capsys):
    out = tmp_path / "ag"
    assert main(["data", "action-genome", "--annotations", str(action_genome["annotations"]),
                 "--videos", str(action_genome["videos"]), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing_videos"] == 1 and summary["records"] >= 2
    assert "spaceship" in capsys.readouterr().err


def test_cli_split_option_and_config_key(action_genome, tmp_path, capsys):
    """``--split`` (or ``scenegraph.split`` in the config) keeps one release split; the records
    carry it, and a held-out evaluation never scores a training-split record."""
    from videostar.eval.scenegraph_qa import held_out

    common = ["--annotations", str(action_genome["annotations"]), "--videos", str(action_genome["videos"])]
    out = tmp_path / "train"
    assert main(["data", "action-genome", *common, "--split", "train", "--out", str(out)]) == 0
    records = read_records(out / "records.jsonl")
    assert records and {(Path(r.video).stem, r.meta["split"]) for r in records} == {("AB12C", "train")}
    assert [Path(g.video).stem for g in read_graphs(out / "graphs.json")] == ["AB12C"]
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"scenegraph": {"split": "test", "min_steps": 1, "max_steps": 1}}))
    data = ["--config", str(config), "data", "action-genome", *common, "--out"]
    assert main([*data, str(tmp_path / "t")]) == 0
    tested = read_records(tmp_path / "t" / "records.jsonl")
    assert tested and {(Path(r.video).stem, r.meta["split"]) for r in tested} == {("TEST1", "test")}
    kept, trained = held_out([*tested, *records])
    assert kept == tested and trained == records
    config.write_text(yaml.safe_dump({"scenegraph": {"split": "dev"}}))
    capsys.readouterr()
    assert main([*data, str(tmp_path / "x")]) == 2
    assert "scenegraph.split" in capsys.readouterr().err


def test_step_config_is_validated():
    with pytest.raises(ConfigError, match="scenegraph.max_steps: invalid value"):
        config_from_dict({"scenegraph": {"min_steps": 4, "max_steps": 3}})
    with pytest.raises(ConfigError, match="scenegraph.question_types"):
        config_from_dict({"scenegraph": {"question_types": ["step_riddles"]}})
    with pytest.raises(ConfigError, match="verify.graph_path_steps"):
        config_from_dict({"verify": {"graph_path_steps": 0}})
    assert RunConfig().scenegraph.min_steps == 3


def test_step_config_compiles(tmp_path):
    """configs/scenegraph-tiny.yaml compiles to the same cyclic pipeline, carrying its STEP settings."""
    cfg = load_config(Path(__file__).parents[2] / "configs" / "scenegraph-tiny.yaml")
    cfg.scenegraph.split = "training"  # the split the pipeline's dataset was read with
    spec, _ = yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text())
    config = json.loads(spec["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"])
    assert config["scenegraph"]["split"] == "training"
    assert config["scenegraph"]["max_questions"] == 853 and config["verify"]["graph_path_steps"] == 1.0
    # held-out videos reported by steps; validation videos choose the cycle handed on
    assert [(s["name"], s["role"]) for s in config["evaluate"]["suites"]] == [
        ("scenegraph", "report"), ("scenegraph", "validation")]
    assert config["decide"]["select"] == "val.scenegraph.accuracy"
    assert "step_relation_chain" in config["templates"]
    names = [t["taskInfo"]["name"] for c in spec["components"].values() if "dag" in c
             for t in c["dag"]["tasks"].values()]
    assert {"cycle-0-verify", "cycle-1-verify"} <= set(names) and not any("rlaif" in n for n in names)


def test_step_eval_scores_by_number_of_steps():
    from videostar.eval.scenegraph_qa import score_step

    two = [*STEPS[:1], {"subject": "blue square", "predicates": ["moving past"], "object": "green triangle"}]
    recs = [_rec(), Record(id="q2", video="v.mp4", question="?", task="step_temporal_order",
                           label={"path": {"answer": "green triangle", "steps": two}},
                           label_type=["graph_path"], meta={"path_length": 2})]
    recs[0].meta["path_length"] = 3
    answers = {"q": f"{S1} {S3} {END}",  # right answer, middle step missing
               "q2": f"{S1} {S2} The answer is the green triangle."}
    rows, b = score_step(recs, answers, VerifyConfig())
    assert [(r["answer_rating"], r["rating"]) for r in rows] == [(True, False), (True, True)]
    assert b["per_steps"]["3+"]["accuracy"] == 0.0 and b["per_steps"]["2"]["accuracy"] == 1.0
    assert b["per_steps_answer"]["3+"]["accuracy"] == 1.0
    assert set(b["per_question_type"]) == {"step_relation_chain", "step_temporal_order"}


def test_induced_triples_are_parsed_and_linked_across_clips():
    from videostar.scenegraph.induce import link, parse_triples

    triples, rest = parse_triples("1. The red circle | touching | blue square\nI see shapes.\n"
                                  "- red circle | moving past | the Green  Triangle.\nred | red\n"
                                  "blue square | touching | blue square")
    assert triples == [("red circle", "touching", "blue square"),
                       ("red circle", "moving past", "green triangle")]
    assert rest == ["I see shapes.", "red | red", "blue square | touching | blue square"]
    touch = ("red circle", "touching", "blue square")
    graph = link("v.mp4", 4.0, [(0.0, 1.0, [touch]), (1.0, 2.0, [touch]), (2.0, 3.0, []),
                                (3.0, 4.0, [touch])])
    assert set(graph.entities) == {"red circle", "blue square"}
    assert [(r.start, r.end) for r in graph.relations] == [(0.0, 2.0), (3.0, 4.0)]


def test_yields_per_question_type_and_path_length(scenes):
    """verify -> summarize -> the numbers logged per cycle: STEP's types and path lengths."""
    from mlflow.utils.validation import validate_param_and_metric_name

    from videostar.star.decide import summarize_cycle
    from videostar.tracking import cycle_metrics
    from videostar.verify import verify_rows

    records = build_scenegraph_records(scenes, ScenegraphConfig(max_questions=12), DEFAULT_TEMPLATES).records
    # Even rows answer with the reference, odd rows with the answer alone (no path: rejected).
    rows = [r.to_json() | {"answer": r.meta["reference"] if i % 2 == 0
                           else f"The answer is {r.label['path']['answer']}."}
            for i, r in enumerate(records)]
    result = verify_rows(rows, VerifyConfig())
    assert result.metrics["passed"] == 6
    recovered = verify_rows([rows[1] | {"answer": records[1].meta["reference"]}], VerifyConfig())
    summary = summarize_cycle(0, result.metrics, [recovered.metrics])
    k = records[1].meta["path_length"]
    group = summary["per_group"][f"path_length={k}"]
    expected = sum(1 for i, r in enumerate(records) if i % 2 == 0 and r.meta["path_length"] == k)
    assert group["answer_yield"] == expected / group["total"]
    assert group["total_yield"] == (expected + 1) / group["total"]
    metrics = cycle_metrics(summary, {"train_loss": 1.0, "examples": 7})
    assert metrics[f"total_yield.path_length_{k}"] == group["total_yield"]  # as MLflow takes it
    assert all(validate_param_and_metric_name(key) for key in metrics)
    assert metrics[f"answer_yield.{records[0].task}"] == summary["per_task"][records[0].task]["answer_yield"]
