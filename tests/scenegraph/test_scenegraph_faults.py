"""Fault suite of the scene-graph adapters (no model): hostile Action Genome frames and pickles,
hostile VidOR files, beside good data that must come out whole."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hostile import (
    AG_BOX,
    MISSING,
    ag_hostile_frames,
    ag_object,
    ag_person,
    vidor_hostile_files,
)

from videostar.cli import main
from videostar.data.records import read_rows

pytestmark = pytest.mark.faults


FPS = 8.0
CUP, CHAIR, CLOSET = "cup/glass/bottle", "chair", "closet/cabinet"


def _mp4(path: Path, frames: int = 24) -> None:
    import numpy as np

    from videostar.video import write_video

    write_video(path, np.zeros((frames, 48, 64, 3), dtype=np.uint8), FPS)


def _good_frames(video: str) -> dict[str, tuple[dict, list]]:
    """Four frames whose graph asks 3-step questions (see tests/scenegraph/test_scenegraph.py)."""
    return {f"{video}.mp4/{n:06d}.png": (ag_person(), objs) for n, objs in (
        (1, [ag_object(CUP, (20, 10, 8, 8), ["looking_at"], ["in_front_of"], ["holding"])]),
        (5, [ag_object(CUP, (21, 10, 8, 8), ["unsure"], [], ["holding"])]),
        (9, [ag_object(CHAIR, (5, 20, 30, 20), ["not_looking_at"], ["beneath"], ["sitting_on"])]),
        (13, [ag_object(CLOSET, (40, 2, 20, 40), ["looking_at"]),
              ag_object(CHAIR, (5, 20, 30, 20), [], [], ["sitting_on"])]))}


def _write_ag(ann: Path, frames: dict[str, tuple]) -> None:
    import pickle

    ann.mkdir(parents=True, exist_ok=True)
    persons = {k: p for k, (p, _) in frames.items() if p is not MISSING}
    objects = {k: o for k, (_, o) in frames.items() if o is not MISSING}
    (ann / "person_bbox.pkl").write_bytes(pickle.dumps(persons, protocol=3))
    (ann / "object_bbox_and_relationship.pkl").write_bytes(pickle.dumps(objects, protocol=5))


def _data(source: str, ann: Path, videos: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(["data", source, "--annotations", str(ann), "--videos", str(videos), "--out", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _strict(path: Path) -> object:
    """JSON without the non-standard NaN/Infinity tokens."""
    return json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"{path}: {token}"))


def _within(graphs: list[dict]) -> None:
    for g in graphs:
        times = [r[3:5] for r in g["relations"]] + [[b[0]] for e in g["entities"] for b in e["boxes"]]
        assert all(0 <= t <= g["duration"] for ts in times for t in ts), g["video"]


@pytest.mark.fast
@pytest.mark.parametrize("class_files", [True, False])
def test_hostile_action_genome_frames(tmp_path: Path, capsys, class_files: bool):
    """Every hostile frame is one line (file, video, frame, rule), nothing of it is used, and the
    good frames of the same video and the other videos give the same graphs and records as
    without them; also a unicode video id, a path-traversal key and a missing video."""
    videos, ann = tmp_path / "videos", tmp_path / "ann"
    for name in ("GOOD1", "vidéo✓"):
        _mp4(videos / f"{name}.mp4")
    good = {**_good_frames("GOOD1"), **_good_frames("vidéo✓"), **_good_frames("GONE1")}
    if class_files:  # as released; without them the release's own lists apply
        from test_scenegraph import AG_OBJECT_CLASSES, AG_RELATIONSHIP_CLASSES

        ann.mkdir()
        (ann / "object_classes.txt").write_text("\n".join(AG_OBJECT_CLASSES))
        (ann / "relationship_classes.txt").write_text("\n".join(AG_RELATIONSHIP_CLASSES))
    _write_ag(ann, good)
    assert _data("action-genome", ann, videos, tmp_path / "clean", capsys)[0] == 0

    hostile = ag_hostile_frames()
    frames = {**good, **{f"GOOD1.mp4/{digits}.png": (p, o) for digits, p, o, _, _ in hostile}}
    frames["../../x.mp4/000001.png"] = (ag_person(AG_BOX), [ag_object(CUP, (1, 1, 2, 2), ["looking_at"])])
    _write_ag(ann, frames)
    out = tmp_path / "out"
    code, err = _data("action-genome", ann, videos, out, capsys)
    assert code == 0
    lines = [line for line in err.splitlines() if "GOOD1: frame" in line]
    assert len(lines) == len(hostile), err
    for (digits, _, _, file, rule), line in zip(sorted(hostile, key=lambda h: (len(h[0]), h[0])), lines,
                                               strict=True):
        assert line.startswith(f"malformed: {ann / file}: GOOD1: frame {digits:.12}: "), line
        assert rule in line, (rule, line)
    assert f"GOOD1: used 4 of {4 + len(hostile)} annotated frames ({len(hostile)} inconsistent" in err
    assert "key '../../x.mp4/000001.png' is not 'VIDEO.mp4/FRAME.png'" in err
    assert "missing video: GONE1.mp4: video not found" in err
    graphs, clean = _strict(out / "graphs.json"), _strict(tmp_path / "clean" / "graphs.json")
    assert graphs == clean and len(graphs) == 2  # GOOD1 and the unicode video, as without the faults
    _within(graphs)
    assert "bed" not in json.dumps(graphs) and "bed" not in (out / "records.jsonl").read_text()
    assert (out / "records.jsonl").read_bytes() == (tmp_path / "clean" / "records.jsonl").read_bytes()


def _huge(how: str) -> bytes:
    """A pickle that asks numpy for 10**10 float64s (74.5 GiB) in a few hundred bytes."""
    import pickle

    import numpy as np
    from numpy._core.multiarray import _reconstruct

    class Huge:
        def __reduce__(self):
            if how == "shape":
                return (_reconstruct, (np.ndarray, (10**10,), b"f8"))
            return (_reconstruct, (np.ndarray, (0,), b"b"), (1, (10**10,), np.dtype("O"), False, []))

    return pickle.dumps({"GOOD1.mp4/000001.png": {"bbox": Huge()}}, protocol=3)


@pytest.mark.fast
@pytest.mark.parametrize(("content", "reason"), [
    (b"\x80\x04\x95", "not a readable pickle"),
    (b"garbage, not a pickle at all", "not a readable pickle"),
    ("global", "refused to load global posix.system"),
    ("shape", "refused to build an array of 10000000000 elements"),
    ("state", "refused to build an array of 10000000000 elements"),
    ("fifo", "not a regular file"),
])
def test_hostile_action_genome_pickles(tmp_path: Path, capsys, content: bytes | str, reason: str):
    """A pickle that cannot be read safely is one line and exit 1; an earlier dataset in the
    output folder is left as it was."""
    videos, ann, out = tmp_path / "videos", tmp_path / "ann", tmp_path / "out"
    _mp4(videos / "GOOD1.mp4")
    _write_ag(ann, _good_frames("GOOD1"))
    assert _data("action-genome", ann, videos, out, capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    target = ann / "person_bbox.pkl"
    target.unlink()
    if content == "fifo":
        os.mkfifo(target)
    elif content == "global":
        target.write_bytes(b"cposix\nsystem\n(S'true'\ntR.")
    elif isinstance(content, str):
        target.write_bytes(_huge(content))
        assert len(target.read_bytes()) < 400
    else:
        target.write_bytes(content)
    code, err = _data("action-genome", ann, videos, out, capsys)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {target}: ") and reason in line, line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.fast
def test_hostile_vidor_files(tmp_path: Path, capsys):
    """Each hostile file or item is one line naming the file (and the item), a FIFO is refused
    without hanging, and the good videos come out as without them."""
    from test_scenegraph import _rel, _vidor

    ann, videos = tmp_path / "ann" / "training", tmp_path / "videos"
    ann.mkdir(parents=True)
    good = _vidor("v1", [_rel(0, "watch", 3, 0, 4), _rel(3, "chase", 7, 4, 8), _rel(0, "hold", 7, 8, 12),
                         _rel(0, "feed", 11, 12, 14)])
    for name, doc in (("v1", good), ("vidéo✓", {**good, "video_id": "vidéo✓"}),
                      ("gone", {**good, "video_id": "gone"})):
        (ann / f"{name}.json").write_text(json.dumps(doc))
        if name != "gone":
            _mp4(videos / f"{name}.mp4", frames=16)
    assert _data("vidor", tmp_path / "ann", videos, tmp_path / "clean", capsys)[0] == 0
    hostile = vidor_hostile_files(good)
    for name, content, _ in hostile:
        (ann / f"{name}.json").write_bytes(content)
        _mp4(videos / f"{name}.mp4", frames=16)
    os.mkfifo(ann / "fifo.json")
    out = tmp_path / "out"
    code, err = _data("vidor", tmp_path / "ann", videos, out, capsys)
    assert code == 0
    for name, _, reason in [*hostile, ("fifo", b"", "not a regular file")]:
        (line,) = [ln for ln in err.splitlines() if ln.startswith(f"malformed: {ann / name}.json: ")
                   and "dropped" not in ln]
        assert reason in line, (reason, line)
    assert "missing video: gone.mp4: video not found" in err
    graphs, clean = _strict(out / "graphs.json"), _strict(tmp_path / "clean" / "graphs.json")
    by_video = {Path(g["video"]).stem: g for g in graphs}
    assert [g for g in graphs if Path(g["video"]).stem in ("v1", "vidéo✓")] == clean
    assert set(by_video) - {"v1", "vidéo✓"} <= {name for name, _, _ in hostile}  # their good items only
    _within(graphs)
    def videos_of(path: Path) -> set[str]:
        return {Path(r["video"]).stem for r in read_rows(path)}

    assert videos_of(tmp_path / "clean" / "records.jsonl") == {"v1", "vidéo✓"}
    assert {"v1", "vidéo✓"} <= videos_of(out / "records.jsonl")
