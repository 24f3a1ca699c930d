"""Hostile input rows: each breaks the record schema in one way a careless or hostile user
would, with the reason the shared reader must give for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _row(good: dict[str, Any], **change: Any) -> bytes:
    return json.dumps({**good, **change}).encode() + b"\n"


def hostile_lines(good: dict[str, Any]) -> list[tuple[bytes, str]]:
    """(line, expected reason) per hostile row, all derived from one good record."""
    labelled = {"label": {"score": 1.0}, "label_type": ["float"]}
    return [
        (_row(good, id="h-video-num", video=7), "video must be a non-empty string"),
        (_row(good, id="h-video-null", video=None), "video must be a non-empty string"),
        (_row(good, id=42), "id must be a non-empty string"),
        (_row(good, id="h-start-text", start="soon"), "start must be a finite number"),
        (json.dumps({**good, "id": "h-start-nan", "start": float("nan")}).encode() + b"\n",
         "start must be a finite number"),
        (_row(good, id="h-huge", **labelled | {"label": {"score": 10**400}}),
         "expected a finite number"),
        (_row(good, id="h-range", label={"segment": ["a", None]}, label_type=["temporal_range"]),
         "expected a list of 2 finite numbers"),
        (_row(good, id="h-box", label={"box": [1, 2, 3]}, label_type=["bbox"]),
         "expected a list of 4 finite numbers"),
        (_row(good, id="h-class", label={"object": ["cube"]}, label_type=["class"]),
         "expected a string"),
        (_row(good, id="h-label", label="cube"), "label must be a non-empty object"),
        (_row(good, id="h-types", label_type="class"), "label_type must be a list"),
        (b"{not json\n", "not valid JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"id": "h-latin1", "question": "caf\xe9"}\n', "not UTF-8 text"),
    ]


TORN = b'{"id": "h-torn", "video": "v.mp4", "que'
"""A last line cut off by a killed writer (no newline)."""


def write_hostile(path: Path, good_rows: list[dict[str, Any]]) -> dict[int, str]:
    """Good rows with every hostile row between them and a torn last line; returns the
    expected reason per line number of each bad row."""
    lines = hostile_lines(good_rows[0])
    data, expected, lineno = b"", {}, 0
    for i, row in enumerate(good_rows):
        data += json.dumps(row).encode() + b"\n"
        lineno += 1
        if i == 0:
            for line, reason in lines:
                data += line
                lineno += 1
                expected[lineno] = reason
    path.write_bytes(data + TORN)
    expected[lineno + 1] = "torn last line"
    return expected


def assert_reported(path: Path, expected: dict[int, str], errors: list[str], stderr: str) -> None:
    """Every bad row is reported once as file:line: reason, in the errors and on stderr."""
    assert len(errors) == len(expected), errors
    for (lineno, reason), error in zip(sorted(expected.items()), errors, strict=True):
        assert error.startswith(f"{path}:{lineno}: "), error
        assert reason in error, (reason, error)
        assert f"bad row: {error}" in stderr


# --------------------------------------------------------------------------- scene-graph annotations
# Hostile Action Genome frames and VidOR/VidVRD files: each breaks the format in one way, with the
# rule the adapter must name. The adapters read them beside good data, which must come out whole.

AG_BOX = [[10, 5, 30, 40]]
"""The person box of every good frame (xyxy, inside the 64x48 frame)."""
MISSING = object()
"""A pickle without an entry for the frame."""


def ag_person(rows: Any = AG_BOX, size: Any = (64, 48)) -> dict[str, Any]:
    import numpy as np

    return {"bbox": np.asarray(rows, dtype=np.float32) if not isinstance(rows, str) else rows,
            "bbox_score": np.ones(1), "bbox_size": size, "bbox_mode": "xyxy"}


def ag_object(cls: str, bbox: Any, attention: Any = (), spatial: Any = (), contacting: Any = (),
              visible: Any = True, split: str = "train") -> dict[str, Any]:
    lists = [list(x) if isinstance(x, tuple) else x for x in (attention, spatial, contacting)]
    return {"class": cls, "bbox": bbox, "attention_relationship": lists[0], "spatial_relationship": lists[1],
            "contacting_relationship": lists[2], "metadata": {"tag": "x", "set": split}, "visible": visible}


def ag_hostile_frames() -> list[tuple[str, Any, Any, str, str]]:
    """(frame digits, person entry, objects, file holding the fault, expected rule) per hostile
    frame; every frame names a class used nowhere else ('bed'), so a leak is visible."""
    cls = "bed"
    look = (["looking_at"],)

    def obj(bbox: Any = (1, 1, 5, 5), **kw: Any) -> list[dict[str, Any]]:
        return [ag_object(kw.pop("cls", cls), bbox, *kw.pop("rel", look), **kw)]

    p, o = "person_bbox.pkl", "object_bbox_and_relationship.pkl"
    return [
        ("000002", ag_person(), obj((1, 2, 3)), o, "bbox (1, 2, 3) is not 4 finite numbers"),
        ("000003", ag_person(), obj("1,1,5,5"), o, "bbox '1,1,5,5' is not 4 finite numbers"),
        ("000004", ag_person(), obj((10**400, 1, 5, 5)), o, "is not 4 finite numbers"),
        ("000006", ag_person(size="64x48"), obj(), p, "bbox_size '64x48' is not 2 finite numbers"),
        ("000007", ag_person([1, 2, 3]), obj(), p, "bbox of shape (3,) is not rows of 4 numbers"),
        ("000008", ag_person(), obj(rel=([7],)), o, "attention_relationship holds 7, not a relationship"),
        ("000010", ag_person(), 5, o, "objects must be a list, not int"),
        ("1" * 5000, ag_person(), obj(), o, "frame number of 5000 digits is past the video's 24 frames"),
        ("000000", ag_person(), obj(), o, "frames are numbered from 1"),
        ("99999999", ag_person(), obj(), o, "past the video's 24 frames"),
        ("000011", ag_person(), obj((float("nan"), 1, 5, 5)), o, "is not 4 finite numbers"),
        ("000012", ag_person(), obj((-5, 1, 5, 5)), o, "is outside the 64x48 frame"),
        ("000014", ag_person(), obj((1, 1, 1e30, 5)), o, "is outside the 64x48 frame"),
        ("000015", ag_person([[float("inf"), 1, 2, 3]]), obj(), p, "bbox [inf, 1.0, 2.0, 3.0] is not 4"),
        ("000016", ag_person(), obj(None), o, "object 0 ('bed'): visible without a bbox"),
        ("000018", ag_person(), obj(rel=([], ["holding"])), o,
         "'holding' is a contacting relationship, listed under spatial_relationship"),
        ("000019", MISSING, obj(), p, "no entry in this file"),
        ("000020", ag_person(), obj(cls="spaceship"), o, "class not in object_classes.txt"),
        ("000021", ag_person(), obj(split="val"), o, "metadata['set'] 'val' is not train or test"),
        ("000022", ag_person(), obj(visible="yes"), o, "visible must be True or False"),
        ("000023", ag_person(), obj(rel=(None,)), o, "visible without a attention_relationship list"),
    ]


def vidor_hostile_files(good: dict[str, Any]) -> list[tuple[str, bytes, str]]:
    """(file name, content, expected reason) per hostile VidOR file, derived from one good
    annotation (frame_count 16, 64x48, tids 0/3/7). The file's video id is its name."""

    def doc(name: str, **change: Any) -> bytes:
        return json.dumps({**good, "video_id": name, **change}).encode()

    def rel(name: str, **change: Any) -> bytes:
        r = {**good["relation_instances"][0], **change}
        return doc(name, relation_instances=[*good["relation_instances"], r])

    def box(name: str, **change: Any) -> bytes:
        traj = [list(f) for f in good["trajectories"]]
        traj[0] = [*traj[0], {"tid": 0, "bbox": {"xmin": 1, "ymin": 1, "xmax": 5, "ymax": 5, **change}}]
        return doc(name, trajectories=traj)

    n = len(good["relation_instances"])
    return [
        ("truncated", doc("truncated")[:40], "not a VidOR annotation (JSONDecodeError"),
        ("garbage", b"\x89PNG\r\n\x1a\n\xff\xfe", "not a VidOR annotation (UnicodeDecodeError"),
        ("deep", b"[" * 100_000 + b"]" * 100_000, "not a VidOR annotation (RecursionError"),
        ("listed", b"[1, 2]", "not a VidOR annotation (TypeError"),
        ("fps-nan", doc("fps-nan", fps=float("nan")), "fps nan is not a finite number in [0.1, 1000]"),
        ("fps-tiny", doc("fps-tiny", fps=1e-300), "fps 1e-300 is not a finite number in [0.1, 1000]"),
        ("frames-neg", doc("frames-neg", frame_count=-16), "frame_count -16 is not an integer in [1, 1e+07]"),
        ("begin-huge", rel("begin-huge", begin_fid=10**400), f"relation_instances[{n}] (0 watch 3): empty"),
        ("begin-neg", rel("begin-neg", begin_fid=-3), f"relation_instances[{n}] (0 watch 3): begin_fid -3"),
        ("end-inf", rel("end-inf", end_fid="INF").replace(b'"INF"', b"1e400"), "end_fid inf are not"),
        ("end-past", rel("end-past", end_fid=17), "end_fid 17 is past frame_count 16"),
        ("empty", rel("empty", begin_fid=4, end_fid=4), "empty interval: end_fid 4 <= begin_fid 4"),
        ("xmin-huge", box("xmin-huge", xmin=10**400), "trajectories[0][3]: bbox"),
        ("box-nan", box("box-nan", xmax=float("nan")), "trajectories[0][3]: bbox"),
        ("box-neg", box("box-neg", xmin=-4), "is not xyxy inside the 64x48 frame"),
        ("traversal", doc("../../x"), "video_id '../../x' is not a file name"),
    ]
