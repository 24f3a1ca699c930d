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
