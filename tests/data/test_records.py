import json
from pathlib import Path

import pytest

from videostar.data.records import JsonlAppender, Record, read_records, write_jsonl
from videostar.errors import RecordError

pytestmark = pytest.mark.fast  # no model, no server: `make test-fast`


def _rec(i: int, **kw) -> Record:
    return Record(id=f"r{i}", video="v.mp4", question="What?", label={"action": "x"},
                  label_type=["class"], task="action_recognition", **kw)


def test_roundtrip_keeps_extra_fields(tmp_path: Path):
    rec = _rec(1, extra={"answer": "x", "verdict": {"passed": True}})
    write_jsonl(tmp_path / "a.jsonl", [rec])
    (back,) = read_records(tmp_path / "a.jsonl")
    assert back == rec and back.to_json()["answer"] == "x"


def test_malformed_records_are_listed_and_skipped(tmp_path: Path):
    good = _rec(1).to_json()
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "id": "r2", "label_type": ["class", "float"]}),
        json.dumps({**good, "id": "r3", "label_type": ["colour"]}),
        json.dumps({k: v for k, v in good.items() if k != "question"}),
        json.dumps(good),  # duplicate id
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    errors: list[str] = []
    records = read_records(tmp_path / "d.jsonl", errors)
    assert [r.id for r in records] == ["r1"]
    assert len(errors) == 5
    assert errors[0].startswith(f"{tmp_path / 'd.jsonl'}:2:")
    assert "1 labels but 2 label types" in errors[1]
    assert "unknown label type 'colour'" in errors[2]
    assert "missing field 'question'" in errors[3]
    assert "duplicate record id" in errors[4]
    with pytest.raises(RecordError):
        read_records(tmp_path / "d.jsonl")


def test_appender_resumes_and_drops_torn_line(tmp_path: Path):
    out = tmp_path / "answers.jsonl"
    app = JsonlAppender(out)
    app.write([{"id": "a"}, {"id": "b"}])
    app.close()  # crash before finish: only the partial file exists
    with open(app.partial, "a") as fh:
        fh.write('{"id": "c", "ans')  # torn write
    assert not out.exists()
    again = JsonlAppender(out)
    assert again.done_ids == {"a", "b"}
    again.write([{"id": "c"}])
    again.finish()
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a", "b", "c"]


def test_appender_on_finished_output_keeps_it_intact(tmp_path: Path):
    out = tmp_path / "answers.jsonl"
    write_jsonl(out, [{"id": "a"}])
    app = JsonlAppender(out)
    assert app.done_ids == {"a"}
    app.write([{"id": "b"}])
    app.close()
    assert out.read_text().count("\n") == 1  # published file untouched until finish
