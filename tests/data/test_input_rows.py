"""Fault suite: hostile input rows through the one shared reader, and the model-free verify step
(ids across shards, missing inputs, reuse of its folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile import assert_reported, write_hostile

from videostar.cli import main
from videostar.data.records import read_records
from videostar.rlaif.reward_model import read_pairs

pytestmark = [pytest.mark.fast, pytest.mark.faults]

GOOD = {"id": "g0", "video": "v0.mp4", "question": "What shape is shown?", "task": "action_recognition",
        "label": {"object": "cube"}, "label_type": ["class"], "start": 0.5, "end": 2.0, "meta": {}}


def _good(n: int, **extra: object) -> list[dict]:
    return [{**GOOD, "id": f"g{i}", "video": f"v{i}.mp4", **extra} for i in range(n)]


def test_records_reader_reports_each_bad_row_and_keeps_the_rest(tmp_path: Path, capsys):
    path = tmp_path / "records.jsonl"
    expected = write_hostile(path, _good(3))
    errors: list[str] = []
    records = read_records(path, errors)
    assert [r.id for r in records] == ["g0", "g1", "g2"]
    assert_reported(path, expected, errors, capsys.readouterr().err)


def test_answer_rows_need_their_answer_text(tmp_path: Path, capsys):
    path = tmp_path / "verified.jsonl"
    rows = _good(2, answer="a cube") + [{**GOOD, "id": "no-answer"}, {**GOOD, "id": "num", "answer": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    errors: list[str] = []
    assert [r.id for r in read_records(path, errors, text_fields=("answer",))] == ["g0", "g1"]
    assert [e.split(": ", 1)[0] for e in errors] == [f"{path}:3", f"{path}:4"]
    assert all("answer must be a string" in e for e in errors)
    assert capsys.readouterr().err.count("bad row:") == 2


def test_pairs_reader_reports_bad_pairs(tmp_path: Path, capsys):
    good = {"id": "p0", "video": "v.mp4", "prompt": "q", "chosen": "a", "rejected": "b"}
    path = tmp_path / "pairs.jsonl"
    lines = [good, {**good, "id": "p1", "chosen": None}, {**good, "id": "p2", "start": "x"},
             {**good, "id": "p3", "end": 10**400}, {"id": "p4"}, {**good, "id": "p5"}]
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in lines) + b'{"id": "p6", "vi')
    errors: list[str] = []
    assert [p.id for p in read_pairs(path, errors)] == ["p0", "p5"]
    reasons = ["chosen must be a string", "start must be a finite number", "end must be a finite number",
               "lacks 'video'", "torn last line"]
    for lineno, reason, error in zip((2, 3, 4, 5, 7), reasons, errors, strict=True):
        assert error.startswith(f"{path}:{lineno}: ") and reason in error
    assert capsys.readouterr().err.count("bad row:") == 5


def test_verify_step_skips_bad_rows_and_dedups_shards(tmp_path: Path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    expected = write_hostile(a, _good(3, answer="I see a cube."))
    b.write_text("".join(json.dumps(r) + "\n" for r in
                         [{**GOOD, "id": "g1", "answer": "a sphere, second copy"},
                          {**GOOD, "id": "g9", "answer": "no idea"}]))
    out = tmp_path / "verify"
    assert main(["verify", "--answers", str(a), str(b), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["total"] == 4 and metrics["passed"] == 3  # g0-g2 pass, g9 is rejected
    dup = f"{b}:1: duplicate record id 'g1' (kept the row at {a}:"
    assert metrics["input_errors"][-1].startswith(dup) and f"bad row: {dup}" in err
    assert_reported(a, expected, metrics["input_errors"][:-1], err)
    verified = [json.loads(x) for x in (out / "verified.jsonl").read_text().splitlines()]
    assert [r["id"] for r in verified] == ["g0", "g1", "g2"]
    assert verified[1]["answer"] == "I see a cube."  # the first shard's row won


def test_verify_missing_input_is_one_line_and_exit_1(tmp_path: Path, capsys):
    out = tmp_path / "verify"
    assert main(["verify", "--answers", str(tmp_path / "gone.jsonl"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'gone.jsonl'}: input file does not exist"]
    assert not (out / "verified.jsonl").exists()


def test_verify_refuses_to_replace_another_result(tmp_path: Path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({**GOOD, "answer": "a cube"}) + "\n")
    b.write_text(json.dumps({**GOOD, "answer": "a sphere"}) + "\n")
    out = tmp_path / "verify"
    assert main(["verify", "--answers", str(a), "--out", str(out)]) == 0
    assert main(["verify", "--answers", str(a), "--out", str(out)]) == 0  # the same work again
    capsys.readouterr()
    assert main(["verify", "--answers", str(b), "--out", str(out)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {out}: holds the output of other work (different inputs)")
    assert json.loads((out / "metrics.json").read_text())["passed"] == 1  # untouched
    assert main(["verify", "--answers", str(b), "--out", str(out), "--fresh"]) == 0
    assert json.loads((out / "metrics.json").read_text())["passed"] == 0
    assert "fresh: removed the earlier outputs" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"{oops", b"\xff\xfe", None])
def test_unreadable_metrics_file_is_one_line_exit_1(tmp_path: Path, capsys, content):
    path = tmp_path / "metrics.json"
    if content is None:
        path.mkdir()  # a folder where a file belongs
    else:
        path.write_bytes(content)
    assert main(["summarize", "--cycle", "0", "--verify", str(path), "--out", str(tmp_path / "s.json")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
