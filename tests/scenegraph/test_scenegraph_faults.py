"""Fault suite on the tiny model: hostile rows in every model step's input, generate killed
mid-run and resumed over a torn line, rationalize resumed over a torn line, and an output
folder reused with another model or input. Scene-graph input (no model): hostile Action Genome
frames and pickles, hostile VidOR files, beside good data that must come out whole."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG, colour_preferences
from hostile import (
    AG_BOX,
    MISSING,
    TORN,
    ag_hostile_frames,
    ag_object,
    ag_person,
    assert_reported,
    vidor_hostile_files,
    write_hostile,
)

from videostar.cli import main
from videostar.data.records import read_records, read_rows, write_jsonl

pytestmark = pytest.mark.faults


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    """The tiny recipe, one record per batch (so a kill lands between rows), no tracking."""
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg.pop("tracking")
    cfg["generate"] |= {"batch_size": 1, "max_new_tokens": 8}
    cfg["sft"] |= {"epochs": 1}
    cfg["rlaif"] |= {"num_clips": 1, "frames_per_clip": 2}
    cfg["rlaif"]["reward_model"] |= {"epochs": 1, "heldout_fraction": 0.5}
    cfg["rlaif"]["ppo"] |= {"steps": 1, "batch_size": 2, "minibatch_size": 2, "max_new_tokens": 4,
                            "heldout_samples": 1}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _good(synthetic_data: Path, n: int, **extra: object) -> list[dict]:
    recs = [r for r in read_records(synthetic_data) if r.task == "action_recognition"][:n]
    return [r.to_json() | extra for r in recs]


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_hostile_rows_in_every_model_step(tiny_base: Path, synthetic_data: Path, tmp_path: Path,
                                          config: Path, capsys):
    """generate, rationalize, sft, preferences, reward and ppo: each bad row is one line on
    stderr and in metrics.json, and the good rows are processed."""
    common = ["--config", str(config)]
    model = ["--model", str(tiny_base)]
    records = tmp_path / "records.jsonl"
    expected_records = write_hostile(records, _good(synthetic_data, 4))
    ids = [r["id"] for r in _good(synthetic_data, 4)]

    for step, option in (("generate", "--data"), ("rationalize", "--rejected")):
        out = tmp_path / step
        assert main([*common, step, *model, option, str(records), "--out", str(out)]) == 0
        assert_reported(records, expected_records, _metrics(out)["input_errors"], capsys.readouterr().err)
        produced = out / ("answers.jsonl" if step == "generate" else "rationales.jsonl")
        assert [r["id"] for r in read_rows(produced)] == ids

    verified = tmp_path / "verified.jsonl"
    expected = write_hostile(verified, _good(synthetic_data, 4, answer="I see a shape."))
    out = tmp_path / "sft"
    (tmp_path / "sft" / ".model.k1ll3d").mkdir(parents=True)  # a save killed last time
    assert main([*common, "sft", "--base-model", str(tiny_base), "--data", str(verified),
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"cleanup: removed the temp folder of an interrupted save: {out / '.model.k1ll3d'}" in err
    assert_reported(verified, expected, _metrics(out)["input_errors"], err)
    assert _metrics(out)["examples"] == 4 and not (out / ".model.k1ll3d").exists()

    prefs, rm, ppo = tmp_path / "prefs", tmp_path / "rm", tmp_path / "ppo"
    assert main([*common, "preferences", *model, "--records", str(records), "--out", str(prefs)]) == 0
    errors = _metrics(prefs)["input_errors"]
    assert_reported(records, expected_records, errors, capsys.readouterr().err)

    # The reward model's pairs: synthetic ones (the tiny judge keeps too few of 4 prompts), with
    # a hostile and a torn pair among them; held-out videos are others than the PPO prompts'.
    pairs = [dataclasses.asdict(p) for p in colour_preferences(synthetic_data)]
    train, heldout = pairs[4:8], pairs[8:10]
    folder = tmp_path / "pairs"
    write_jsonl(folder / "heldout.jsonl", heldout)
    (folder / "split.json").write_text(json.dumps({"heldout_videos": [p["video"] for p in heldout]}))
    bad = {**train[0], "id": "bad-pair", "video": 3}
    (folder / "pairs.jsonl").write_bytes(b"".join(json.dumps(p).encode() + b"\n" for p in [*train, bad])
                                         + b'{"id": "torn-pair", "vid')
    assert main([*common, "reward-model", *model, "--preferences", str(folder), "--out", str(rm)]) == 0
    errors = _metrics(rm)["input_errors"]
    assert [e.split(": ", 1)[0] for e in errors] == [f"{folder / 'pairs.jsonl'}:{n}" for n in (5, 6)]
    assert "video must be a string" in errors[0] and "torn last line" in errors[1]
    assert capsys.readouterr().err.count("bad row: ") == 2
    assert main([*common, "ppo", *model, "--reward-model", str(rm / "model"), "--records", str(records),
                 "--preferences", str(folder), "--out", str(ppo)]) == 0
    assert_reported(records, expected_records, _metrics(ppo)["input_errors"], capsys.readouterr().err)
    assert _metrics(ppo)["prompts"] == 4


def _killed_generate(args: list[str], partial: Path, rows: int) -> None:
    """Run generate in a child process and SIGKILL it once ``rows`` rows are on disk."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-m", "videostar.cli", *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and child.poll() is None:
        if partial.exists() and partial.read_bytes().count(b"\n") >= rows:
            break
        time.sleep(0.05)
    assert child.poll() is None, "generate finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()


def test_generate_killed_mid_run_resumes_over_a_torn_line(tiny_base: Path, synthetic_data: Path,
                                                          tmp_path: Path, config: Path, capsys):
    good = _good(synthetic_data, 6)
    records = tmp_path / "records.jsonl"
    write_jsonl(records, good)
    out = tmp_path / "gen"
    args = ["--config", str(config), "generate", "--model", str(tiny_base), "--data", str(records),
            "--out", str(out)]
    partial = out / "answers.jsonl.partial"
    _killed_generate(args, partial, rows=2)
    kept = partial.read_bytes()
    kept = kept[: kept.rfind(b"\n") + 1]
    partial.write_bytes(kept + TORN)  # the kill cut a row in half
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "torn last line (no newline at its end); dropped" in err
    rows = read_rows(out / "answers.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in good]  # each once, in order
    assert (out / "answers.jsonl").read_bytes().startswith(kept)  # finished rows kept as they were
    assert _metrics(out)["skipped_existing"] == kept.count(b"\n")


def test_rationalize_resumes_over_a_torn_line(tiny_base: Path, synthetic_data: Path, tmp_path: Path,
                                              config: Path, capsys):
    rejected = tmp_path / "rejected.jsonl"
    write_jsonl(rejected, _good(synthetic_data, 4))
    out = tmp_path / "rat"
    args = ["--config", str(config), "rationalize", "--model", str(tiny_base), "--rejected",
            str(rejected), "--out", str(out)]
    assert main(args) == 0
    full = (out / "rationales.jsonl").read_bytes().splitlines(keepends=True)
    # as a kill would leave it: two rows, a torn third, no published outputs
    for name in ("rationales.jsonl", "verified.jsonl", "rejected.jsonl"):
        (out / name).unlink()
    (out / "rationales.jsonl.partial").write_bytes(b"".join(full[:2]) + full[2][:25])
    capsys.readouterr()
    assert main(args) == 0
    assert "torn last line" in capsys.readouterr().err
    again = (out / "rationales.jsonl").read_bytes().splitlines(keepends=True)
    assert again[:2] == full[:2] and [json.loads(r)["id"] for r in again] == [
        json.loads(r)["id"] for r in full]
    assert _metrics(out)["generation"]["skipped_existing"] == 2


def test_folder_of_other_work_is_refused_unless_fresh(tiny_base: Path, synthetic_data: Path,
                                                      tmp_path: Path, config: Path, capsys):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(first, _good(synthetic_data, 3))
    write_jsonl(second, _good(synthetic_data, 5)[3:])
    same_model = tmp_path / "same-model"  # the same content at another path: the same work
    same_model.symlink_to(tiny_base, target_is_directory=True)
    other_model = tmp_path / "other-model"  # other content (one setting of its config)
    shutil.copytree(tiny_base, other_model)
    config_json = other_model / "config.json"
    config_json.write_text(json.dumps(json.loads(config_json.read_text()) | {"_edited": True}))
    out = tmp_path / "gen"

    def generate(model: Path, data: Path, *more: str) -> int:
        return main(["--config", str(config), "generate", "--model", str(model), "--data", str(data),
                     "--out", str(out), *more])

    assert generate(tiny_base, first) == 0
    before = (out / "answers.jsonl").read_bytes()
    assert generate(same_model, first) == 0
    capsys.readouterr()
    for model, data, what in ((other_model, first, "different model"),
                              (tiny_base, second, "different inputs")):
        assert generate(model, data) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line == (f"error: {out}: holds the output of other work ({what}); use another folder, "
                        "or pass --fresh to discard it")
        assert (out / "answers.jsonl").read_bytes() == before  # nothing mixed in, nothing lost
    assert generate(tiny_base, second, "--fresh") == 0
    new_ids = [r["id"] for r in _good(synthetic_data, 5)[3:]]
    assert [r["id"] for r in read_rows(out / "answers.jsonl")] == new_ids
    assert "fresh: removed the earlier outputs" in capsys.readouterr().err
    assert generate(tiny_base, second) == 0  # the same work: resumes (nothing left to do)
    assert _metrics(out)["skipped_existing"] == 2


# --------------------------------------------------------------------------- scene-graph input

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
