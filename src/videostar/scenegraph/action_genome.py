"""Action Genome -> STSGs: ``person_bbox.pkl`` + ``object_bbox_and_relationship.pkl``.

Both pickles are dicts keyed ``'VIDEO.mp4/FRAME.png'``; frame names are 1-based ``%06d`` at the
video's own fps (only sampled frames are labelled), so frame n is at ``(n - 1) / fps`` s. Object
entries carry ``bbox`` as ``(x, y, w, h)``, three relationship lists and ``metadata['set']``
(train/test); an invisible object has ``bbox`` and every relationship ``None``. Person boxes
are detector output, ``xyxy``, possibly zero rows.

Frames are read the way STTran's loader (the reference consumer) reads them: a frame's split is
its first object's ``metadata['set']``; a frame with no person box or no visible object is not
used; a visible object must have a bbox; a relationship's kind is its position in the class
list (3 attention, 6 spatial, 17 contacting), so a predicate under another kind's list is an
inconsistent frame. Every frame is checked against these rules and the companion files
(``frame_list.txt``, the class files) before anything of it is used; a frame that breaks one is
reported (file, video, frame, rule) and nothing of it is used, the video's other frames are.
Only objects visible on a used frame become entities. A relation holding on consecutive used
frames becomes one interval from its first to its last frame, directed per
:data:`~videostar.scenegraph.graph.PREDICATE_DIRECTION` (spatial: the object relative to the person).

``object_classes.txt`` / ``relationship_classes.txt`` spell some names without separators
(``closetcabinet``, ``lookingat``) where the pickles write ``closet/cabinet``, ``looking_at``:
names are compared with separators removed and kept as the pickles spell them.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videostar.data._common import find_video, index_videos, not_found, require_file
from videostar.data.numpy_pickle import load_numpy_pickle
from videostar.errors import RecordError, VideostarError
from videostar.scenegraph.graph import Entity, Relation, SceneGraph, oriented, show
from videostar.video import probe

PERSON = "person"
ATTENTION, SPATIAL, CONTACTING = RELATION_KINDS = (
    "attention_relationship", "spatial_relationship", "contacting_relationship")

RELATIONSHIP_CLASSES = (
    "looking_at", "not_looking_at", "unsure",
    "above", "beneath", "in_front_of", "behind", "on_the_side_of", "in",
    "carrying", "covered_by", "drinking_from", "eating", "have_it_on_the_back", "holding",
    "leaning_on", "lying_on", "not_contacting", "other_relationship", "sitting_on", "standing_on",
    "touching", "twisting", "wearing", "wiping", "writing_on",
)
"""The 26 relationship classes in the release's order (``relationship_classes.txt``)."""
KIND_OF = {name: (ATTENTION if i < 3 else SPATIAL if i < 9 else CONTACTING)
           for i, name in enumerate(RELATIONSHIP_CLASSES)}
"""Each relationship's kind, by its position in the class list as STTran splits it."""
OBJECT_CLASSES = (
    "person", "bag", "bed", "blanket", "book", "box", "broom", "chair", "closet/cabinet", "clothes",
    "cup/glass/bottle", "dish", "door", "doorknob", "doorway", "floor", "food", "groceries",
    "laptop", "light", "medicine", "mirror", "paper/notebook", "phone/camera", "picture", "pillow",
    "refrigerator", "sandwich", "shelf", "shoe", "sofa/couch", "table", "television", "towel",
    "vacuum", "window",
)
"""The 36 object classes of the release (``object_classes.txt``), as the pickles spell them."""
SPLITS = ("train", "test")
"""The values of ``metadata['set']``."""

_KEY = re.compile(r"^(?P<video>[^/\\\x00-\x1f]+)\.mp4/(?P<frame>[0-9]+)\.png$")
_WHAT = "Action Genome annotation pickles"
PERSON_FILE, OBJECT_FILE, FRAME_LIST = "person_bbox.pkl", "object_bbox_and_relationship.pkl", "frame_list.txt"


def squash(name: str) -> str:
    """A vocabulary name without separators or case: how the class files spell it."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


KIND_BY_SQUASHED = {squash(name): kind for name, kind in KIND_OF.items()}


class BadFrame(Exception):
    """A frame breaks a rule of the format: ``file`` (the annotation file that says so) and
    the rule, for the one report line."""

    def __init__(self, file: str, rule: str):
        super().__init__(rule)
        self.file, self.rule = file, rule


@dataclass
class _Object:
    name: str
    box: tuple[float, float, float, float]  # xyxy
    relations: list[tuple[str, str]]  # (kind, predicate)


@dataclass
class _Frame:
    """A frame that passed every rule; ``used`` when it has a person box and a visible object."""

    split: str | None
    person: tuple[float, float, float, float] | None
    size: tuple[float, float]
    objects: list[_Object]

    @property
    def used(self) -> bool:
        return self.person is not None and bool(self.objects)


def build_action_genome_graphs(annotations: str | Path, videos: str | Path, problems: list[str],
                               missing: list[str], split: str | None = None) -> list[SceneGraph]:
    """One STSG per video of the annotation folder (of ``split`` only, when given). Every
    inconsistent frame is one line in ``problems`` ('FILE: VIDEO: frame N: rule'), and one line
    per video says how many frames were dropped; videos not on disk go to ``missing``. None of
    them stops the rest. A file that cannot be read at all raises :class:`RecordError`."""
    annotations = Path(annotations)
    persons = load_numpy_pickle(annotations / PERSON_FILE, _WHAT)
    objects = load_numpy_pickle(annotations / OBJECT_FILE, _WHAT)
    if not isinstance(persons, dict) or not isinstance(objects, dict):
        raise RecordError(f"{annotations}: the annotation pickles must hold dicts")
    vocabulary = _object_vocabulary(annotations / "object_classes.txt")
    _check_relationship_classes(annotations / "relationship_classes.txt")
    listed = _frame_list(annotations / FRAME_LIST)
    names = {"person": str(annotations / PERSON_FILE), "object": str(annotations / OBJECT_FILE),
             "list": str(annotations / FRAME_LIST)}
    frames: dict[str, dict[str, str]] = defaultdict(dict)  # video -> frame digits -> key
    for key in sorted({*persons, *objects, *(listed or ())}, key=_sort_key):
        m = _KEY.match(key) if isinstance(key, str) else None
        if m is None or m["video"] in (".", ".."):
            where = (names["person"] if key in persons
                     else names["object"] if key in objects else names["list"])
            problems.append(f"{where}: key {show(key)} is not 'VIDEO.mp4/FRAME.png'")
            continue
        frames[m["video"]][m["frame"]] = key
    index = index_videos(videos)
    graphs = []
    for video, keys in frames.items():
        path = find_video(index, [video])
        if path is None:
            missing.append(not_found(f"{video}.mp4", videos))
            continue
        try:
            info = probe(path)
        except VideostarError as exc:
            problems.append(f"{video}: {exc}")
            continue
        if not (math.isfinite(info.fps) and info.fps > 0 and info.num_frames > 0):
            problems.append(f"{video}: {path} has no frame rate or no frames")
            continue
        good: dict[int, _Frame] = {}
        for digits, key in sorted(keys.items(), key=lambda kv: (len(kv[0]), kv[0])):
            try:
                number = _frame_number(digits, info.num_frames, names["object"])
                good[number] = _check_frame(key, persons, objects, listed, vocabulary, names)
            except BadFrame as bad:
                problems.append(f"{bad.file}: {video}: frame {digits:.12}: {bad.rule}")
        dropped = len(keys) - len(good)
        unused = sum(not f.used for f in good.values())
        if dropped or unused:
            problems.append(f"{video}: used {len(keys) - dropped - unused} of {len(keys)} annotated frames "
                            f"({dropped} inconsistent, reported above; {unused} without a person box "
                            "or a visible object)")
        sets = Counter(f.split for f in good.values() if f.split is not None)
        if len(sets) > 1:
            problems.append(f"{names['object']}: {video}: frames disagree on metadata['set'] "
                            f"({', '.join(f'{s}: {n}' for s, n in sorted(sets.items()))}); video not used")
            continue
        video_split = next(iter(sets), None)
        if split is not None and video_split != split:
            continue
        graph = _graph(str(path), info.fps, info.duration, {n: f for n, f in good.items() if f.used})
        graph.split = video_split
        problems += [f"{video}: {p}" for p in graph.clean()]
        if graph.relations:
            graphs.append(graph)
    return graphs


def _frame_number(digits: str, frame_count: int, file: str) -> int:
    if len(digits) > 9:
        raise BadFrame(file, f"frame number of {len(digits)} digits is past the video's {frame_count} frames")
    number = int(digits)
    if number < 1:
        raise BadFrame(file, "frames are numbered from 1")
    if number > frame_count:
        raise BadFrame(file, f"past the video's {frame_count} frames")
    return number


def _check_frame(key: str, persons: dict[Any, Any], objects: dict[Any, Any], listed: frozenset[str] | None,
                 vocabulary: frozenset[str], names: dict[str, str]) -> _Frame:
    """The frame as parsed, or :class:`BadFrame` naming the first rule it breaks."""
    if listed is not None and key not in listed:
        raise BadFrame(names["list"], f"not listed in {FRAME_LIST}")
    if key not in persons:
        raise BadFrame(names["person"], "no entry in this file")
    if key not in objects:
        raise BadFrame(names["object"], "no entry in this file")
    person, size = _person(persons[key], names["person"])
    objs = objects[key]
    if not isinstance(objs, list):
        raise BadFrame(names["object"], f"objects must be a list, not {type(objs).__name__}")
    split, seen, visible = None, set(), []
    for i, obj in enumerate(objs):
        where = f"object {i}"
        if not isinstance(obj, dict) or not isinstance(obj.get("class"), str):
            raise BadFrame(names["object"], f"{where} has no class name")
        name = obj["class"]
        where = f"object {i} ({name!r:.40})"
        if squash(name) not in vocabulary:
            raise BadFrame(names["object"], f"{where}: class not in object_classes.txt")
        if name in seen:
            raise BadFrame(names["object"], f"{where}: class listed twice")
        seen.add(name)
        if i == 0:  # STTran takes the frame's split from its first object
            meta = obj.get("metadata")
            split = meta.get("set") if isinstance(meta, dict) else None
            if not (isinstance(split, str) and split in SPLITS):
                raise BadFrame(names["object"], f"{where}: metadata['set'] {show(split)} is not "
                                                "train or test")
        flag = obj.get("visible")
        if not isinstance(flag, bool | np.bool_):
            raise BadFrame(names["object"], f"{where}: visible must be True or False")
        if not flag:
            if obj.get("bbox") is not None:
                raise BadFrame(names["object"], f"{where}: invisible but has a bbox")
            continue
        if obj.get("bbox") is None:
            raise BadFrame(names["object"], f"{where}: visible without a bbox")
        x, y, w, h = _numbers(obj["bbox"], 4, f"{where}: bbox", names["object"])
        box = (x, y, x + w, y + h)
        if w < 0 or h < 0 or x < 0 or y < 0 or box[2] > size[0] or box[3] > size[1]:
            raise BadFrame(names["object"], f"{where}: bbox {[x, y, w, h]} (x, y, w, h) is outside "
                                            f"the {size[0]:g}x{size[1]:g} frame")
        visible.append(_Object(name, box, _relations(obj, where, names["object"])))
    return _Frame(split, person, size, visible)


def _person(entry: Any, file: str) -> tuple[tuple[float, float, float, float] | None, tuple[float, float]]:
    """The best person box (None: the detector found no one) and the frame size."""
    if not isinstance(entry, dict):
        raise BadFrame(file, f"entry must be a dict, not {type(entry).__name__}")
    w, h = _numbers(entry.get("bbox_size"), 2, "bbox_size", file)
    if w <= 0 or h <= 0:
        raise BadFrame(file, f"bbox_size {[w, h]} is not a frame size")
    try:
        boxes = np.asarray(entry.get("bbox"), dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise BadFrame(file, f"bbox {show(entry.get('bbox'))} is not an array of numbers") from None
    if not boxes.size:
        return None, (w, h)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise BadFrame(file, f"bbox of shape {boxes.shape} is not rows of 4 numbers (xyxy)")
    x1, y1, x2, y2 = _numbers(boxes[0].tolist(), 4, "bbox", file)  # detector output: the first (best) box
    if not (0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h):
        raise BadFrame(file, f"bbox {[x1, y1, x2, y2]} is not xyxy inside the {w:g}x{h:g} frame")
    return (x1, y1, x2, y2), (w, h)


def _relations(obj: dict[str, Any], where: str, file: str) -> list[tuple[str, str]]:
    out = []
    for kind in RELATION_KINDS:
        preds = obj.get(kind)
        if not isinstance(preds, list):
            raise BadFrame(file, f"{where}: visible without a {kind} list")
        for pred in preds:
            if not isinstance(pred, str):
                raise BadFrame(file, f"{where}: {kind} holds {show(pred)}, not a relationship name")
            actual = KIND_BY_SQUASHED.get(squash(pred))
            if actual is None:
                raise BadFrame(file, f"{where}: {pred!r:.40} is not in relationship_classes.txt")
            if actual != kind:
                raise BadFrame(file, f"{where}: {pred!r} is a {actual.split('_')[0]} relationship, "
                                     f"listed under {kind}")
            out.append((kind, pred))
    return out


def _numbers(value: Any, n: int, what: str, file: str) -> tuple[float, ...]:
    """``n`` finite numbers (a list, tuple or array), or :class:`BadFrame`."""
    try:
        values = np.asarray(value, dtype=float).reshape(-1)
        ok = values.size == n and bool(np.isfinite(values).all()) and not isinstance(value, str | bytes)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise BadFrame(file, f"{what} {show(value)} is not {n} finite numbers")
    return tuple(float(v) for v in values)


def _sort_key(key: Any) -> tuple[bool, str]:
    return (not isinstance(key, str), key if isinstance(key, str) else type(key).__name__)


def _object_vocabulary(path: Path) -> frozenset[str]:
    """The squashed object classes: the class file's when there is one, else the release's."""
    if not path.exists():
        return frozenset(squash(c) for c in OBJECT_CLASSES)
    return frozenset(squash(line) for line in _lines(path))


def _check_relationship_classes(path: Path) -> None:
    """Relationship kinds are positions in this file, so it must be the release's list."""
    if not path.exists():
        return
    names = _lines(path)
    if [squash(n) for n in names] != [squash(n) for n in RELATIONSHIP_CLASSES]:
        raise RecordError(f"{path}: not Action Genome's {len(RELATIONSHIP_CLASSES)} relationship classes "
                          f"in the release order (their kinds are their positions: 3 attention, 6 spatial, "
                          f"17 contacting); it lists {len(names)}")


def _frame_list(path: Path) -> frozenset[str] | None:
    return frozenset(_lines(path)) if path.exists() else None


def _lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in require_file(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: unreadable ({exc})") from None


def _graph(video: str, fps: float, duration: float, used: dict[int, _Frame]) -> SceneGraph:
    graph = SceneGraph(video, duration)
    graph.entities[PERSON] = Entity(PERSON, PERSON)
    holds: dict[tuple[str, str, str], list[float]] = defaultdict(list)  # (kind, predicate, object)
    times = [(n - 1) / fps for n in sorted(used)]
    for number, frame in sorted(used.items()):
        t = (number - 1) / fps
        graph.width, graph.height = frame.size
        assert frame.person is not None  # used frames have one
        graph.entities[PERSON].boxes[t] = frame.person
        for obj in frame.objects:
            graph.entities.setdefault(obj.name, Entity(obj.name, obj.name)).boxes[t] = obj.box
            for kind, pred in obj.relations:
                holds[(kind, pred, obj.name)].append(t)
    for (kind, pred, name), when in holds.items():
        subject, obj = oriented("action-genome", kind, {"person": PERSON, "object": name})
        graph.relations += [Relation(subject, pred, obj, s, e) for s, e in _runs(when, times)]
    return graph


def _runs(when: list[float], times: list[float]) -> list[tuple[float, float]]:
    """Maximal runs of consecutive used frames, as (first time, last time)."""
    pos = {t: i for i, t in enumerate(times)}
    runs: list[list[float]] = []
    for t in sorted(when):
        if runs and pos[t] == pos[runs[-1][1]] + 1:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return [(s, e) for s, e in runs]
