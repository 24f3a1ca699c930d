"""Supervision adapters on tiny fixtures written in the real dataset file formats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from finediving_release import EVENT, _dump

from videostar.config import VerifyConfig
from videostar.data import kinetics700
from videostar.data.activitynet import build_activitynet
from videostar.data.finediving import build_finediving
from videostar.data.kinetics700 import build_kinetics700
from videostar.data.records import AdapterResult, read_records, write_jsonl
from videostar.errors import RecordError, VideoError
from videostar.prompts import DEFAULT_TEMPLATES
from videostar.verify import verify_record

pytestmark = pytest.mark.fast  # no model, no server: `make test-fast`

TEMPLATES = DEFAULT_TEMPLATES


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _by_id(result: AdapterResult) -> dict:
    return {r.id: r for r in result.records}


def _roundtrip(result: AdapterResult, tmp_path: Path) -> None:
    """Records (meta included) must survive JSONL: no numpy values may leak out."""
    path = write_jsonl(tmp_path / "out.jsonl", result.records)
    assert [r.to_json() for r in read_records(path)] == [r.to_json() for r in result.records]


# --- Kinetics-700 ---------------------------------------------------------------------------

K700_CSV = """label,youtube_id,time_start,time_end,split
"passing American football (in game)",abc123,14,24,train
"massaging person's head",-xyz_9,0,10,train
abseiling,flat1,100,110,train
"Bowling (Ten Pin)",gone1,5,15,train
"bad row",bad1,x,10,train
"",empty1,0,10,train
too,few,columns
"dancing ballet",val1,3,13,val
"""


@pytest.fixture
def k700(tmp_path: Path) -> tuple[Path, Path]:
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(K700_CSV)
    root = tmp_path / "k700"
    # Folder names rewritten the way some download tools do; the CSV label must still win.
    _touch(root / "train" / "passing_american_football_in_game" / "abc123_000014_000024.mp4")
    _touch(root / "train" / "massaging_persons_head" / "-xyz_9_000000_000010.mp4")
    _touch(root / "flat1_000100_000110.mp4")
    _touch(root / "val" / "dancing ballet" / "val1_000003_000013.mp4")
    return csv_path, root


def test_kinetics_labels_exact_and_videos_found_anywhere(k700, tmp_path):
    csv_path, root = k700
    result = build_kinetics700(csv_path, root, TEMPLATES)
    recs = _by_id(result)
    assert {k: r.label["action"] for k, r in recs.items()} == {
        "k700/abc123_000014_000024": "passing American football (in game)",
        "k700/-xyz_9_000000_000010": "massaging person's head",
        "k700/flat1_000100_000110": "abseiling",
        "k700/val1_000003_000013": "dancing ballet",
    }
    football = recs["k700/abc123_000014_000024"]
    assert football.video == str(
        root / "train" / "passing_american_football_in_game" / "abc123_000014_000024.mp4"
    )
    assert recs["k700/flat1_000100_000110"].video == str(root / "flat1_000100_000110.mp4")
    assert football.task == "action_recognition"
    assert football.label_type == ["class"]
    assert football.meta["time_start"] == 14 and football.meta["time_end"] == 24
    for r in result.records:
        assert r.question in TEMPLATES["action_recognition"]
        assert r.label["action"].lower() not in r.question.lower()
    assert result.missing == [f"gone1_000005_000015.mp4: video not found under {root}"]
    assert result.errors == [
        f"{csv_path}:6: time_start 'x' is not a whole number of seconds",
        f"{csv_path}:7: empty label",
        f"{csv_path}:8: expected 5 columns, got 3",
    ]
    _roundtrip(result, tmp_path)


def test_kinetics_records_carry_their_sibling_classes_from_the_whole_file(k700):
    """The class list is every label of the CSV, whatever the split or the clips on disk."""
    csv_path, root = k700
    csv_path.write_text(K700_CSV + '"passing American football (not in game)",nig1,0,10,val\n'
                        '"tying tie",tt1,0,10,val\n"tying bow tie",tb1,0,10,val\n')
    _touch(root / "tt1_000000_000010.mp4")
    recs = _by_id(build_kinetics700(csv_path, root, TEMPLATES))
    football = recs["k700/abc123_000014_000024"]
    assert football.siblings("action") == ["passing American football (not in game)"]
    assert recs["k700/tt1_000000_000010"].siblings("action") == ["tying bow tie"]
    assert recs["k700/flat1_000100_000110"].siblings("action") == []
    assert "class_siblings" not in recs["k700/flat1_000100_000110"].meta
    cfg = VerifyConfig()
    assert verify_record(football, "They are passing an American football in a game.", cfg).passed
    assert not verify_record(football, "Passing an American football, not in a game.", cfg).passed
    assert not verify_record(recs["k700/tt1_000000_000010"], "He is tying a bow tie.", cfg).passed


def test_kinetics_split_filter(k700):
    csv_path, root = k700
    result = build_kinetics700(csv_path, root, TEMPLATES, split="val")
    assert [r.id for r in result.records] == ["k700/val1_000003_000013"]
    assert result.missing == []


def test_kinetics_walks_video_tree_once(k700, monkeypatch):
    csv_path, root = k700
    calls = []
    real = kinetics700.index_videos
    monkeypatch.setattr(kinetics700, "index_videos", lambda r: calls.append(r) or real(r))
    build_kinetics700(csv_path, root, TEMPLATES)
    assert calls == [root]


def test_kinetics_test_csv_has_no_labels(tmp_path):
    csv_path = tmp_path / "test.csv"
    csv_path.write_text("youtube_id,time_start,time_end,split\nabc,0,10,test\n")
    with pytest.raises(RecordError, match=r"test\.csv.*no labels"):
        build_kinetics700(csv_path, tmp_path, TEMPLATES)


def test_kinetics_missing_header_column(tmp_path):
    csv_path = tmp_path / "odd.csv"
    csv_path.write_text("label,youtube_id,time_start\nabseiling,abc,0\n")
    with pytest.raises(RecordError, match=r"odd\.csv: header lacks column\(s\) time_end"):
        build_kinetics700(csv_path, tmp_path, TEMPLATES)


def test_kinetics_missing_inputs(tmp_path):
    with pytest.raises(RecordError, match="nope.csv"):
        build_kinetics700(tmp_path / "nope.csv", tmp_path, TEMPLATES)
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(K700_CSV)
    with pytest.raises(VideoError, match="no_videos"):
        build_kinetics700(csv_path, tmp_path / "no_videos", TEMPLATES)


# --- FineDiving -----------------------------------------------------------------------------

def _build(fx: dict, **override) -> AdapterResult:
    args = {k: fx[k] for k in ("root", "coarse_pkl", "fine_pkl", "split_pkl")}
    args["subaction_table_pkl"] = fx["subaction_table_pkl"]
    args.update(override)
    return build_finediving(**args, templates=TEMPLATES)


def test_finediving_dive_quality(finediving, tmp_path):
    result = _build(finediving)
    recs = _by_id(result)
    dive = recs[f"finediving/{EVENT}/8"]
    assert dive.task == "dive_quality"
    assert dive.video == str(finediving["frames"] / EVENT / "8")
    assert dive.label == {
        "sub_actions": ["Forward", "2.5 Soms.Pike", "1 Twist", "2.5 Soms.Pike", "Entry"],
        "difficulty": 3.4,
        "score": 81.6,
    }
    assert dive.label_type == ["sequence", "float", "float"]
    assert dive.question in TEMPLATES["dive_quality"]
    assert dive.meta["judge_scores"] == [7.5, 7.0, 8.0, 7.5, 8.0, 7.0, 7.5]
    assert dive.meta["frame_range"] == [99997, 100003]  # numeric order, not by file name
    assert (dive.meta["start_frame"], dive.meta["end_frame"]) == (99997, 100003)
    assert dive.meta["sub_action_ids"] == [1, 15, 30, 15, 36]
    other = recs["finediving/01/1"]
    assert other.label == {
        "sub_actions": ["Back", "2 Twists", "Entry"],
        "difficulty": 2.0,
        "score": 52.5,
    }
    assert len(other.meta["judge_scores"]) == 5
    _roundtrip(result, tmp_path)


def test_finediving_subaction_order(finediving):
    recs = _by_id(_build(finediving))
    base = f"finediving/{EVENT}/8"
    order = {k.removeprefix(base + "/"): r for k, r in recs.items() if k.startswith(base + "/")}
    # The pike occurs twice, so it is never an anchor: "after the pike" has no single answer.
    assert {k: (r.question, r.label["sub_action"]) for k, r in order.items()} == {
        "after/0": ("Which move comes after the Forward in this dive?", "2.5 Soms.Pike"),
        "before/1": ("Which move comes before the 1 Twist in this dive?", "2.5 Soms.Pike"),
        "after/2": ("Which move comes after the 1 Twist in this dive?", "2.5 Soms.Pike"),
        "before/3": ("Which move comes before the Entry in this dive?", "2.5 Soms.Pike"),
    }
    simple = sorted(k for k in recs if k.startswith("finediving/01/1/"))
    assert simple == [f"finediving/01/1/{d}/{i}" for d in ("after", "before") for i in (0, 1)]
    assert recs["finediving/01/1/before/0"].label == {"sub_action": "Back"}
    for r in recs.values():
        if r.task == "subaction_order":
            assert r.label_type == ["class"]
            assert r.label["sub_action"].lower() not in r.question.lower()


def test_finediving_missing_and_errors(finediving):
    result = _build(finediving)
    frames = finediving["frames"]
    assert result.missing == [
        f"01/2: video not found under {frames}",
        f"01/3: frame folder {frames / '01' / '3'} has no JPEG frames",
    ]
    assert result.errors == [
        f"02/1: not in {finediving['coarse_pkl']}, {finediving['fine_pkl']}",
        "02/2: sub-action id 99 has no name in the sub-action table",
    ]


def test_finediving_root_may_be_the_frames_folder(finediving):
    result = _build(finediving, root=finediving["frames"])
    assert len([r for r in result.records if r.task == "dive_quality"]) == 2


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_finediving_refuses_malicious_pickle(finediving, tmp_path):
    marker = tmp_path / "pwned"
    evil = _dump(tmp_path / "evil.pkl", {(EVENT, 8): _Evil(marker)})
    with pytest.raises(
        RecordError, match=r"evil\.pkl: refused to load global (posix|os|nt)\.system"
    ):
        _build(finediving, coarse_pkl=evil)
    assert not marker.exists()
    sneaky = _dump(tmp_path / "sneaky.pkl", [(EVENT, 8), _Evil(marker)])
    with pytest.raises(RecordError, match="sneaky.pkl: refused"):
        _build(finediving, split_pkl=sneaky)
    assert not marker.exists()


def test_finediving_refuses_per_dive_tuples(finediving, tmp_path):
    # fine-grained_annotation_aqa.pkl stores tuples; it is not the fine-grained file.
    aqa = _dump(tmp_path / "aqa.pkl", {(EVENT, 8): ("5253b", 81.6, 3.4, np.array([2, 4]))})
    with pytest.raises(RecordError, match=r"aqa\.pkl: annotation of .*/8 is a tuple"):
        _build(finediving, fine_pkl=aqa)


# --- ActivityNet Captions -------------------------------------------------------------------

ANET = {
    "v_abc": {
        "duration": 100.0,
        "timestamps": [[0.0, 25.0], [50.0, 120.0]],
        "sentences": [" A man walks into the room.", "  He sits down on a chair. "],
    },
    "v_bare": {"duration": 10, "timestamps": [[-1, 5]], "sentences": ["A dog runs."]},
    "v_gone": {"duration": 10, "timestamps": [[0, 5]], "sentences": ["Nothing."]},
    "v_badlen": {"duration": 10, "timestamps": [[0, 5], [5, 6]], "sentences": ["One."]},
    "v_zero": {"duration": 0, "timestamps": [[0, 5]], "sentences": ["Zero."]},
    "v_rev": {"duration": 40, "timestamps": [[30, 20], [10, 20]], "sentences": ["Rev.", " Ok."]},
}


@pytest.fixture
def anet(tmp_path: Path) -> tuple[Path, Path]:
    json_path = tmp_path / "val_1.json"
    json_path.write_text(json.dumps(ANET))
    root = tmp_path / "videos"
    _touch(root / "v_abc.mp4")
    _touch(root / "bare.mkv")  # id without the v_ prefix, another container
    _touch(root / "v_rev.webm")
    _touch(root / "v_badlen.mp4")
    _touch(root / "v_zero.mp4")
    return json_path, root


def test_activitynet_segments(anet, tmp_path):
    json_path, root = anet
    result = build_activitynet(json_path, root, TEMPLATES)
    recs = _by_id(result)
    assert {k: r.label["segment"] for k, r in recs.items()} == {
        "anet/v_abc/0": [0.0, 0.25],
        "anet/v_abc/1": [0.5, 1.0],  # 120 s in a 100 s video is clamped
        "anet/v_bare/0": [0.0, 0.5],
        "anet/v_rev/1": [0.25, 0.5],
    }
    first = recs["anet/v_abc/0"]
    assert first.question == (
        "When does the event described as 'A man walks into the room.' happen in this video?"
    )
    assert recs["anet/v_abc/1"].meta["sentence"] == "He sits down on a chair."
    assert first.video == str(root / "v_abc.mp4")
    assert recs["anet/v_bare/0"].video == str(root / "bare.mkv")
    assert first.task == "temporal_localization" and first.label_type == ["temporal_range"]
    assert result.missing == [f"v_gone.mp4: video not found under {root}"]
    assert result.errors == [
        f"{json_path}:v_badlen: 2 timestamps but 1 sentences",
        f"{json_path}:v_zero: duration 0 is not a positive number",
        f"{json_path}:v_rev[0]: end 20.0 is before start 30.0",
    ]
    _roundtrip(result, tmp_path)


def test_activitynet_rejects_non_mapping(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[1, 2]")
    with pytest.raises(RecordError, match=r"bad\.json: expected an object"):
        build_activitynet(path, tmp_path, TEMPLATES)
