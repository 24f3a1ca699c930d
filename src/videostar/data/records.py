"""The record schema every step reads and writes, and atomic JSONL I/O.

A record is one question about one video with its ground-truth labels. Steps add fields
(``answer``, ``verdict``...) to the same JSON object, so a file can be traced end to end.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from videostar.errors import RecordError

LABEL_TYPES = (
    "class",
    "sentence",
    "sentence_sequence",
    "sequence",
    "float",
    "timestamp",
    "temporal_range",
    "bbox",
    "yes_no",
    "multiple_choice",
    "graph_path",
)


SIBLINGS = "class_siblings"
"""``meta`` key: label name -> the dataset's classes the verifier must tell that label from
(:func:`videostar.star.verify.class_siblings`); written by adapters that know the class list."""


@dataclass
class Record:
    """One question about one video, with the labels an answer must contain.

    ``label`` maps a label name to its value; ``label_type`` gives, in the same order, the
    verifier family of each label. ``start``/``end`` (seconds) restrict the video to a segment.
    Fields added by later steps (answer, verdict, ...) live in ``extra``.
    """

    id: str
    video: str
    question: str
    label: dict[str, Any]
    label_type: list[str]
    task: str
    start: float | None = None
    end: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise RecordError("record has an empty id")
        if not isinstance(self.label, dict) or not self.label:
            raise RecordError(f"record {self.id}: label must be a non-empty object")
        if len(self.label_type) != len(self.label):
            raise RecordError(
                f"record {self.id}: {len(self.label)} labels but {len(self.label_type)} label types"
            )
        unknown = [t for t in self.label_type if t not in LABEL_TYPES]
        if unknown:
            raise RecordError(f"record {self.id}: unknown label type {unknown[0]!r}")
        sibs = self.meta.get(SIBLINGS, {}) if isinstance(self.meta, dict) else {}
        if not (isinstance(sibs, dict) and all(
                isinstance(v, list) and all(isinstance(c, str) for c in v) for v in sibs.values())):
            raise RecordError(f"record {self.id}: meta.{SIBLINGS} must map label names to lists of "
                              "class names")

    def siblings(self, name: str) -> list[str]:
        """The classes label ``name`` must be told apart from (none unless an adapter set them)."""
        return self.meta.get(SIBLINGS, {}).get(name, []) if isinstance(self.meta, dict) else []

    def labels(self) -> list[tuple[str, str, Any]]:
        """(name, type, value) per label, in order."""
        return [(n, t, v) for (n, v), t in zip(self.label.items(), self.label_type, strict=True)]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data.update(extra)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        if not isinstance(data, dict):
            raise RecordError("record is not a JSON object")
        known = {"id", "video", "question", "label", "label_type", "task", "start", "end", "meta"}
        missing = [k for k in ("id", "video", "question", "label", "label_type", "task") if k not in data]
        if missing:
            raise RecordError(f"record {data.get('id', '?')}: missing field {missing[0]!r}")
        core = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**core, extra=extra)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any] | Record]) -> Path:
    """Write all rows to ``path`` atomically: readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                obj = row.to_json() if isinstance(row, Record) else row
                fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Write one JSON document atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) per non-empty line; a bad line raises with file:line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc


def read_records(path: str | Path, errors: list[str] | None = None) -> list[Record]:
    """Read records; a malformed one is reported in ``errors`` (file:line: reason) and skipped.

    With ``errors=None`` the first malformed record raises instead.
    """
    records: list[Record] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        lines = list(enumerate(fh, 1))
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            rec = Record.from_json(json.loads(line))
            if rec.id in seen:
                raise RecordError(f"duplicate record id {rec.id!r}")
        except (json.JSONDecodeError, RecordError, TypeError) as exc:
            msg = f"{path}:{lineno}: {exc}"
            if errors is None:
                raise RecordError(msg) from exc
            errors.append(msg)
            continue
        seen.add(rec.id)
        records.append(rec)
    return records


class JsonlAppender:
    """Append rows durably to a partial file, for steps that must resume after a crash.

    Rows go to ``<path>.partial`` and are flushed per call; :meth:`finish` atomically
    publishes the partial file as ``path``. ``done_ids`` lists ids already written by a
    previous (interrupted or finished) run, so a rerun skips them.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not self.partial.exists():
            # A finished output: continue from a copy so the published file stays intact.
            self.partial.write_bytes(self.path.read_bytes())
        self.done_ids: set[str] = set()
        if self.partial.exists():
            self._truncate_torn_tail()
            self.done_ids = {obj["id"] for _, obj in iter_jsonl(self.partial)}
        self._fh = open(self.partial, "a", encoding="utf-8")  # noqa: SIM115

    def _truncate_torn_tail(self) -> None:
        """Drop a last line cut short by a crash mid-write."""
        data = self.partial.read_bytes()
        if data and not data.endswith(b"\n"):
            self.partial.write_bytes(data[: data.rfind(b"\n") + 1])

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.done_ids.add(row["id"])
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def finish(self) -> Path:
        self._fh.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


@dataclass
class AdapterResult:
    """What an adapter produced, and what it could not use (each entry: 'where: why')."""

    records: list[Record]
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "records": len(self.records),
            "missing_videos": len(self.missing),
            "missing": self.missing,
            "malformed": len(self.errors),
            "errors": self.errors,
        }


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """All JSON objects of a JSONL file (an absent file has none)."""
    path = Path(path)
    return [obj for _, obj in iter_jsonl(path)] if path.exists() else []
