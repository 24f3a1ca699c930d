"""The record schema every step reads and writes, and atomic JSONL I/O.

A record is one question about one video with its ground-truth labels. Steps add fields
(``answer``, ``verdict``...) to the same JSON object, so a file can be traced end to end.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from videostar.errors import RecordError, VideostarError
from videostar.outputs import publish_mode

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
(:func:`videostar.verify.class_siblings`); written by adapters that know the class list."""


def _show(value: Any) -> str:
    """A value as a report shows it: its JSON type and a short repr."""
    return f"{type(value).__name__} {value!r:.40}"


def is_finite_number(value: Any) -> bool:
    """A real, finite number (bools and integers too large for a float are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _is_number(value: Any) -> bool:
    """What a verifier reads as a number: a finite number, or a string holding one."""
    if isinstance(value, str):
        try:
            return math.isfinite(float(value))
        except ValueError:
            return False
    return is_finite_number(value)


def _is_texts(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and bool(value)
                                      and all(isinstance(v, str) for v in value))


def _numbers(count: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) == count and all(_is_number(x) for x in v)


_LABEL_SHAPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "class": (lambda v: isinstance(v, str), "a string"),
    "sentence": (lambda v: isinstance(v, str), "a string"),
    "sentence_sequence": (_is_texts, "a string or a non-empty list of strings"),
    "sequence": (lambda v: isinstance(v, list) and _is_texts(v), "a non-empty list of strings"),
    "float": (_is_number, "a finite number"),
    "timestamp": (_is_number, "a finite number"),
    "temporal_range": (_numbers(2), "a list of 2 finite numbers"),
    "bbox": (_numbers(4), "a list of 4 finite numbers"),
    "yes_no": (lambda v: isinstance(v, bool | str), "a boolean or a string"),
    "multiple_choice": (lambda v: isinstance(v, str), "a string"),
    "graph_path": (lambda v: isinstance(v, dict) and isinstance(v.get("answer"), str | int)
                   and not isinstance(v.get("answer"), bool) and isinstance(v.get("steps"), list)
                   and bool(v["steps"]) and all(isinstance(s, dict) for s in v["steps"]),
                   "an object with an answer (text or count) and a non-empty list of steps"),
}
"""The JSON shape each label type's value must have; the verifiers judge the content (a range
inside [0, 1], a box with area), this only keeps values no verifier can read out of every step."""


def label_problem(kind: str, value: Any) -> str | None:
    """Why a label value cannot be of type ``kind`` (None when its shape is right)."""
    ok, shape = _LABEL_SHAPES[kind]
    return None if ok(value) else f"expected {shape}, got {_show(value)}"


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
        for name in ("id", "video"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise RecordError(f"{name} must be a non-empty string, got {_show(value)}")
        for name in ("question", "task"):
            if not isinstance(getattr(self, name), str):
                raise RecordError(f"record {self.id}: {name} must be a string, "
                                  f"got {_show(getattr(self, name))}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and not is_finite_number(value):
                raise RecordError(f"record {self.id}: {name} must be a finite number of seconds or "
                                  f"null, got {_show(value)}")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise RecordError(f"record {self.id}: end {self.end} is before start {self.start}")
        if not isinstance(self.label, dict) or not self.label:
            raise RecordError(f"record {self.id}: label must be a non-empty object")
        if not isinstance(self.label_type, list):
            raise RecordError(f"record {self.id}: label_type must be a list, got {_show(self.label_type)}")
        if len(self.label_type) != len(self.label):
            raise RecordError(
                f"record {self.id}: {len(self.label)} labels but {len(self.label_type)} label types"
            )
        unknown = [t for t in self.label_type if t not in LABEL_TYPES]
        if unknown:
            raise RecordError(f"record {self.id}: unknown label type {unknown[0]!r}")
        for (name, value), kind in zip(self.label.items(), self.label_type, strict=True):
            problem = label_problem(kind, value)
            if problem:
                raise RecordError(f"record {self.id}: label {name!r} ({kind}): {problem}")
        if not isinstance(self.meta, dict):
            raise RecordError(f"record {self.id}: meta must be an object, got {_show(self.meta)}")
        sibs = self.meta.get(SIBLINGS, {})
        if not (isinstance(sibs, dict) and all(
                isinstance(v, list) and all(isinstance(c, str) for c in v) for v in sibs.values())):
            raise RecordError(f"record {self.id}: meta.{SIBLINGS} must map label names to lists of "
                              "class names")

    def siblings(self, name: str) -> list[str]:
        """The classes label ``name`` must be told apart from (none unless an adapter set them)."""
        return self.meta.get(SIBLINGS, {}).get(name, [])

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
        publish_mode(tmp)
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
        publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) per non-empty line; a bad line raises with file:line."""
    for lineno, obj, problem in _lines(path):
        if problem:
            raise RecordError(f"{path}:{lineno}: {problem}")
        yield lineno, obj


def _lines(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed JSON, None) per non-empty line, or (line number, None, why not).

    Read as bytes and decoded per line, so one line of another encoding is one bad line; a last
    line without its newline that does not parse is a torn write (a writer killed mid-row).
    """
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw.decode("utf-8")), None
            except UnicodeDecodeError:
                yield lineno, None, "not UTF-8 text"
            except json.JSONDecodeError as exc:
                torn = "torn last line (no newline at its end)" if not raw.endswith(b"\n") else ""
                yield lineno, None, torn or f"not valid JSON ({exc.msg})"


def report_bad_row(message: str, errors: list[str]) -> None:
    """A bad input row: one line on stderr now, and kept for the step's ``metrics.json``."""
    print(f"bad row: {message}", file=sys.stderr)
    errors.append(message)


Paths = str | Path | Sequence[str | Path]


def read_valid(paths: Paths, parse: Callable[[Any], Any], errors: list[str] | None = None,
               ) -> list[Any]:
    """The one reader of every step's input rows: each line of each file through ``parse``.

    A line that is not JSON, is torn, or that ``parse`` refuses (RecordError, TypeError,
    ValueError) is reported as ``file:line: reason`` (:func:`report_bad_row`) and skipped, and
    the rest is read; with ``errors=None`` the first one raises instead. Ids are unique across
    all files: the first row of an id wins, a later one is a bad row. A missing file raises.
    """
    files = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Any] = []
    seen: dict[str, str] = {}
    for path in files:
        if not Path(path).is_file():
            raise VideostarError(f"{path}: input file does not exist")
        for lineno, obj, problem in _lines(path):
            where = f"{path}:{lineno}"
            try:
                if problem:
                    raise RecordError(problem)
                item = parse(obj)
                rid = getattr(item, "id", None)
                if rid in seen:
                    raise RecordError(f"duplicate record id {rid!r} (kept the row at {seen[rid]})")
            except (RecordError, TypeError, ValueError) as exc:
                if errors is None:
                    raise RecordError(f"{where}: {exc}") from exc
                report_bad_row(f"{where}: {exc}", errors)
                continue
            if rid is not None:
                seen[rid] = where
            out.append(item)
    return out


def read_records(paths: Paths, errors: list[str] | None = None,
                 text_fields: tuple[str, ...] = ()) -> list[Record]:
    """Records of one or more files, each row through the schema (:func:`read_valid`);
    ``text_fields``: fields a step adds (``answer``) that must be present and text."""
    def parse(obj: Any) -> Record:
        rec = Record.from_json(obj)
        for name in text_fields:
            if not isinstance(rec.extra.get(name), str):
                raise RecordError(f"record {rec.id}: {name} must be a string, "
                                  f"got {_show(rec.extra.get(name))}")
        return rec

    return read_valid(paths, parse, errors)


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
            lineno = data.count(b"\n") + 1
            print(f"bad row: {self.partial}:{lineno}: torn last line (no newline at its end); "
                  "dropped, its record is generated again", file=sys.stderr)
            self.partial.write_bytes(data[: data.rfind(b"\n") + 1])

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.done_ids.add(row["id"])
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def finish(self) -> Path:
        self._fh.close()
        publish_mode(self.partial)
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
