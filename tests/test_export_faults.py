"""Fault suite: `videostar export` against hostile rows, missing and duplicated files, hostile
names and folders, and a kill while it overwrites an earlier export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hostile import hostile_lines

from videostar import layout
from videostar.cli import main
from videostar.export import MARKER

pytestmark = [pytest.mark.faults]

VERDICT = {"passed": True, "labels": {"object": {"passed": True, "reason": "names the cube"}}}
GOOD = {"id": "g0", "video": "/data/videos/v0.mp4", "question": "What shape is shown?",
        "task": "action_recognition", "label": {"object": "cube"}, "label_type": ["class"], "start": 0.5,
        "end": 2.0, "meta": {}, "answer": "A cube.", "prompt_kind": "answer", "verdict": VERDICT}


def good_rows(n: int, first: int = 0) -> list[dict]:
    return [{**GOOD, "id": f"g{i}", "video": f"/data/videos/v{i}.mp4"} for i in range(first, first + n)]


def _row(**change: object) -> bytes:
    return json.dumps({**GOOD, **change}).encode() + b"\n"


EXPORT_HOSTILE = [
    (_row(id="h-no-answer", answer=None), "answer must be a non-empty string"),
    (_row(id="h-answer-num", answer=3), "answer must be a non-empty string"),
    (_row(id="h-answer-blank", answer="  "), "answer must be a non-empty string"),
    (_row(id="h-no-verdict", verdict=None), "not a verified answer"),
    (_row(id="h-verdict-text", verdict="passed"), "not a verified answer"),
    (_row(id="h-passed-yes", verdict={"passed": "yes"}), "not a verified answer"),
    (_row(id="h-failed", verdict={"passed": False, "labels": {}}), "not a verified answer"),
    (_row(id="h-labels-list", verdict={"passed": True, "labels": ["object"]}), "verdict.labels must map"),
    (_row(id="h-label-text", verdict={"passed": True, "labels": {"object": "ok"}}),
     "verdict.labels must map"),
    (_row(id="h-reason-num", verdict={"passed": True, "labels": {"object": {"reason": 5}}}),
     "verdict.labels must map"),
    (_row(id="h-error-num", verdict={"passed": True, "error": 7}), "verdict.error must be a string"),
    (_row(id="h-kind", prompt_kind="hint"), "prompt_kind must be one of answer, rationalization"),
    (_row(id="h-kind-num", prompt_kind=5), "prompt_kind must be one of"),
    (_row(id="h-escape", video="/data/videos/../../../etc/passwd"), "leaves its folder"),
    (_row(id="h-backslash", video="/data/videos/..\\..\\secret.mp4"), "leaves its folder"),
    (b'{"id": "h-nan", "video": "/data/videos/n.mp4", "question": "q", "task": "t", "label": {"o": "c"}, '
     b'"label_type": ["class"], "answer": "a", "verdict": {"passed": true}, "rationale_steps": [NaN]}\n',
     "rationale_steps: Out of range float values are not JSON compliant"),
    (_row(id="g1"), "duplicate record id 'g1'"),
]
"""(line, reason) per row shape that only the export refuses: each a traceback, a torn export or
a path outside the videos' folder before."""

TORN = b'{"id": "h-torn", "video": "/data/videos/t.mp4", "que'


def write_training(path: Path, rows: list[dict], hostile: list[tuple[bytes, str]] = (),
                   torn: bool = False) -> dict[int, str]:
    """Good rows, the hostile lines after the second one, maybe a torn last line; the expected
    reason per line number of each bad line."""
    data, expected = b"", {}
    for i, row in enumerate(rows):
        data += json.dumps(row).encode() + b"\n"
        if i == 1:
            for line, reason in hostile:
                data += line
                expected[data.count(b"\n")] = reason
    if torn:
        data += TORN
        expected[data.count(b"\n") + 1] = "torn last line"
    path.write_bytes(data)
    return expected


def make_run(root: Path, files: list[Path], cycle: int = 0) -> Path:
    """A run folder as decide leaves it: cycle.json naming the training files, and summary.json."""
    folder = root / "run" / f"decide-{cycle}"
    layout.write_decision(folder, {"cycle": cycle, "total_yield": 0.5, "answered": 1, "rationalized": 0},
                          {"continue": False}, [], {"cycle": cycle, "training_files": [str(f) for f in files],
                                                    "model": str(root / "model")})
    return root / "run"


def export_cli(run: Path, fmt: str, out: Path, *extra: str) -> int:
    return main(["export", "--run", str(run), "--format", fmt, "--out", str(out), *extra])


@pytest.mark.fast
def test_hostile_rows_are_each_reported_and_skipped(tmp_path: Path, capsys):
    """Every hostile shape (the shared reader's and the export's own) and a torn last line: one
    line each naming file:line and the reason; the good rows are exported, exit 0."""
    path = tmp_path / "verified.jsonl"
    shared = hostile_lines(GOOD)
    expected = write_training(path, good_rows(4), shared + EXPORT_HOSTILE, torn=True)
    assert len(expected) == len(shared) + len(EXPORT_HOSTILE) + 1 >= 13 + 1
    out = tmp_path / "llava"
    assert export_cli(make_run(tmp_path, [path]), "llava", out, "--video-root", "/mnt/v") == 0
    err = capsys.readouterr()
    assert "Traceback" not in err.err
    lines = [x.removeprefix("bad row: ") for x in err.err.splitlines() if x.startswith("bad row: ")]
    assert len(lines) == len(expected), lines
    for (lineno, reason), line in zip(sorted(expected.items()), lines, strict=True):
        assert line.startswith(f"{path}:{lineno}: ") and reason in line, (reason, line)
    assert f"4 verified rows of {tmp_path / 'run'}" in err.out and f"{len(expected)} left out" in err.out
    data = json.loads((out / "videostar_cycle0.json").read_text())
    assert [d["id"] for d in data] == ["g0", "g1", "g2", "g3"]
    assert all(d["video"].startswith("/mnt/v/") and ".." not in d["video"] for d in data)
    marker = json.loads((out / MARKER).read_text())
    assert marker["rows"] == 4 and len(marker["left_out"]) == len(expected)


@pytest.mark.fast
def test_missing_file_and_duplicates_across_files_are_named(tmp_path: Path, capsys):
    a, b, gone = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "gone.jsonl"
    write_training(a, good_rows(3))
    write_training(b, [{**good_rows(1, 2)[0], "answer": "the second copy"}] + good_rows(2, 3))
    out = tmp_path / "sharegpt"
    assert export_cli(make_run(tmp_path, [a, gone, b]), "sharegpt", out) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"skipped: {gone}: training file named in cycle.json is missing; its rows are not "
                   "exported", f"bad row: {b}:1: duplicate record id 'g2' (kept the row at {a}:3)"]
    data = json.loads((out / "videostar_cycle0.json").read_text())
    assert [d["id"] for d in data] == ["g0", "g1", "g2", "g3", "g4"]
    assert data[2]["messages"][1]["content"] == "A cube."  # the first file's row won


@pytest.mark.fast
def test_videos_of_another_root_are_skipped_not_joined(tmp_path: Path, capsys):
    path = tmp_path / "v.jsonl"
    write_training(path, good_rows(2) + [{**GOOD, "id": "rel", "video": "v9.mp4"},
                                          {**GOOD, "id": "s3", "video": "s3://b/v/v8.mp4"}])
    assert export_cli(make_run(tmp_path, [path]), "llava", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "record rel: video 'v9.mp4' is not under the same root" in err
    assert "record s3: video 's3://b/v/v8.mp4' is not under the same root" in err
    data = json.loads((tmp_path / "out" / "videostar_cycle0.json").read_text())
    assert [d["video"] for d in data] == ["v0.mp4", "v1.mp4"]


@pytest.mark.fast
@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", "a\\b", "..", ".", "", "x\ny: 1", "t\tab"])
def test_names_that_are_paths_are_refused_with_exit_2(tmp_path: Path, capsys, name: str):
    path = tmp_path / "v.jsonl"
    write_training(path, good_rows(2))
    run = make_run(tmp_path, [path])
    before = sorted(tmp_path.rglob("*"))
    assert export_cli(run, "sharegpt", tmp_path / "out", "--name", name) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"config error: --name {name!r}: not a file name")
    assert sorted(tmp_path.rglob("*")) == before and not Path("/tmp/abs.json").exists()


@pytest.mark.fast
def test_hf_name_is_quoted_in_the_card_and_types_are_kept(tmp_path: Path):
    """A name YAML would read as more keys stays one value of pretty_name; every column keeps its
    type when read back."""
    from datasets import load_from_disk

    path = tmp_path / "v.jsonl"
    rows = good_rows(3)
    rows[0]["rationale_steps"] = {"x": 1}
    rows[1]["rationale_steps"] = ["step one", "step two"]
    write_training(path, rows)
    name = 'mine: {"license": "mit"} # "quoted"'
    assert export_cli(make_run(tmp_path, [path]), "hf", tmp_path / "hf", "--name", name) == 0
    card = (tmp_path / "hf" / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["pretty_name"] == name and front["license"] == "unknown"
    assert set(front) == {"license", "task_categories", "tags", "pretty_name"}
    ds = load_from_disk(str(tmp_path / "hf"))
    steps = [None if s is None else json.loads(s) for s in ds["rationale_steps"]]
    assert steps == [{"x": 1}, ["step one", "step two"], None]
    assert ds["start"] == [0.5] * 3 and ds["label_types"] == [["class"]] * 3


@pytest.mark.fast
def test_folders_that_are_not_exports_are_never_replaced(tmp_path: Path, capsys):
    path = tmp_path / "v.jsonl"
    write_training(path, good_rows(2))
    run = make_run(tmp_path, [path])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert export_cli(run, "llava", mine) == 1
    assert "holds files that are not a videostar export; not replaced" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    out = tmp_path / "out"
    assert export_cli(run, "llava", out) == 0
    write_training(path, [{**GOOD, "verdict": {"passed": False}}])
    assert export_cli(run, "llava", out) == 1  # nothing left to export: the earlier export stays
    assert "no verified rows to export (1 left out)" in capsys.readouterr().err
    assert len(json.loads((out / "videostar_cycle0.json").read_text())) == 2


ROWS = 3000
"""Enough rows that writing them takes longer than the test takes to see the temp folder and kill."""
CLI = "import sys; from videostar.cli import main; sys.exit(main(sys.argv[1:]))"


def _started(out: Path) -> bool:
    return any(p.name.startswith(f".{out.name}.part-") for p in out.parent.iterdir())


@pytest.mark.parametrize("fmt", ["hf", "llava"])  # two child processes killed: `make test`, not the fast tier
def test_killed_export_leaves_the_earlier_one_whole(tmp_path: Path, fmt: str, capsys):
    """SIGKILL while the new export is being written over an earlier one: the earlier export is
    still there, whole; the next export sweeps the temp folder and replaces it."""
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    write_training(small, good_rows(3))
    write_training(big, good_rows(ROWS))
    out = tmp_path / "out"
    assert export_cli(make_run(tmp_path / "a", [small]), fmt, out) == 0
    earlier = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    args = ["export", "--run", str(make_run(tmp_path / "b", [big])), "--format", fmt, "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not _started(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the export finished before it could be killed"
    assert sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file()) == earlier
    if fmt == "hf":
        from datasets import load_from_disk

        assert len(load_from_disk(str(out))) == 3
    assert main(args) == 0
    assert "cleanup: removed the temp folder of an interrupted save" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert json.loads((out / MARKER).read_text())["rows"] == ROWS
