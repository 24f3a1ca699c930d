"""The verifier registry, the verdicts, and verifying records and answered rows.

A label family registers its verifier class with ``@register("type")``; the package's
``__init__`` imports every family and then checks that each label type has one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from videostar.config import VerifyConfig
from videostar.data.records import LABEL_TYPES, Record
from videostar.errors import RecordError
from videostar.verify.text import tokens


class MalformedLabel(ValueError):
    """A label value a verifier cannot use (wrong shape or type)."""


@dataclass
class LabelVerdict:
    """Whether one label was found in the answer, and a short human reason."""

    name: str
    type: str
    passed: bool
    reason: str


@dataclass
class Verdict:
    """An answer passes only when every label passes."""

    passed: bool
    labels: list[LabelVerdict] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "labels": {
                lv.name: {"type": lv.type, "passed": lv.passed, "reason": lv.reason}
                for lv in self.labels
            },
        }


@dataclass
class VerifyResult:
    """Rows split by verdict, plus the step's metrics."""

    passed: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    metrics: dict[str, Any]


# --------------------------------------------------------------------------- label values


def as_text(value: Any) -> str:
    if not isinstance(value, str) or not tokens(value):
        raise MalformedLabel(f"expected text with at least one word, got {value!r:.60}")
    return value


def as_texts(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise MalformedLabel(f"expected a non-empty list of text, got {value!r:.60}")
    return [as_text(v) for v in items]


def as_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MalformedLabel(f"expected a number, got {value!r:.60}")
    try:
        number = float(value)
    except ValueError:
        raise MalformedLabel(f"expected a number, got {value!r:.60}") from None
    if not math.isfinite(number):
        raise MalformedLabel(f"expected a finite number, got {value!r:.60}")
    return number


def as_numbers(value: Any, count: int) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != count:
        raise MalformedLabel(f"expected {count} numbers, got {value!r:.60}")
    return [as_number(v) for v in value]


def as_fraction(value: Any) -> float:
    number = as_number(value)
    if not 0 <= number <= 1:
        raise MalformedLabel(f"expected a normalized time in [0, 1], got {number}")
    return number


# --------------------------------------------------------------------------- registry


class Verifier:
    """One label type: ``parse`` validates the label value, ``judge`` reads the answer."""

    type_name: ClassVar[str] = ""

    def __init__(self, cfg: VerifyConfig) -> None:
        self.cfg = cfg

    def check(self, answer: str, value: Any, name: str, siblings: Sequence[str] = ()) -> LabelVerdict:
        """Verdict for one label; a malformed value fails with a reason instead of raising.

        ``siblings``: the dataset's classes this label must be told apart from (see
        :func:`~videostar.verify.classes.class_siblings`); an answer that passes is then held
        to :meth:`tell_apart`.
        """
        try:
            parsed = self.parse(value)
        except MalformedLabel as exc:
            return LabelVerdict(name, self.type_name, False, f"malformed label: {exc}")
        if not isinstance(answer, str):
            return LabelVerdict(name, self.type_name, False, "answer is not text")
        passed, reason = self.judge(answer, parsed, name)
        if passed and siblings:
            passed, reason = self.tell_apart(answer, parsed, siblings, reason)
        return LabelVerdict(name, self.type_name, passed, reason)

    def tell_apart(self, answer: str, value: Any, siblings: Sequence[str], reason: str
                   ) -> tuple[bool, str]:
        """Types without sibling values keep their verdict."""
        return True, reason

    def parse(self, value: Any) -> Any:
        return value

    def judge(self, answer: str, value: Any, name: str) -> tuple[bool, str]:
        raise NotImplementedError


VERIFIERS: dict[str, type[Verifier]] = {}


def register(type_name: str) -> Callable[[type[Verifier]], type[Verifier]]:
    """Class decorator adding a verifier for ``type_name`` to the registry."""

    def add(cls: type[Verifier]) -> type[Verifier]:
        cls.type_name = type_name
        VERIFIERS[type_name] = cls
        return cls

    return add


def get_verifier(type_name: str, cfg: VerifyConfig) -> Verifier:
    """The verifier for a label type, configured; an unknown type is a record error."""
    try:
        return VERIFIERS[type_name](cfg)
    except KeyError:
        known = ", ".join(sorted(VERIFIERS))
        raise RecordError(f"no verifier for label type {type_name!r} (known: {known})") from None


def check_registry() -> None:
    """Every label type a record may carry has a verifier (called once the families are imported)."""
    missing = set(LABEL_TYPES) - set(VERIFIERS)
    if missing:
        raise RuntimeError(f"label types without a verifier: {sorted(missing)}")


# --------------------------------------------------------------------------- records and rows


def verify_record(record: Record, answer: str, cfg: VerifyConfig) -> Verdict:
    """Check every label of the record; the answer passes only if all of them pass."""
    labels = [get_verifier(t, cfg).check(answer, v, n, record.siblings(n))
              for n, t, v in record.labels()]
    return Verdict(all(lv.passed for lv in labels), labels)


def _counter() -> dict[str, Any]:
    return {"total": 0, "passed": 0, "yield": 0.0}


def _count(table: dict[str, dict[str, Any]], key: str, passed: bool) -> None:
    entry = table.setdefault(key, _counter())
    entry["total"] += 1
    entry["passed"] += int(passed)
    entry["yield"] = entry["passed"] / entry["total"]


def _verify_row(row: Any, cfg: VerifyConfig, answer_key: str) -> tuple[Record, Verdict]:
    """Parse and verify one row; raises RecordError with the reason when it cannot."""
    try:
        record = Record.from_json(row)
    except (RecordError, TypeError) as exc:
        raise RecordError(f"not a valid record ({exc})") from None
    answer = row.get(answer_key)
    if not isinstance(answer, str):
        raise RecordError(f"no {answer_key!r} text to verify")
    return record, verify_record(record, answer, cfg)


def _record_metrics(metrics: dict[str, Any], record: Record, verdict: Verdict) -> None:
    """Per label type (once per type a row has: passed when all its labels of that type
    passed), per task, per group the adapter named (``meta.yield_groups``, e.g. STEP's
    ``path_length=3``), and the reasons of a rejection."""
    types: dict[str, bool] = {}
    for lv in verdict.labels:
        types[lv.type] = types.get(lv.type, True) and lv.passed
    for kind, ok in types.items():
        _count(metrics["per_label_type"], kind, ok)
    _count(metrics["per_task"], record.task, verdict.passed)
    for group in record.meta.get("yield_groups", []) if isinstance(record.meta, dict) else []:
        _count(metrics["per_group"], str(group), verdict.passed)
    if not verdict.passed:
        reasons = {lv.name: lv.reason for lv in verdict.labels if not lv.passed}
        metrics["rejects"].append({"id": record.id, "reasons": reasons})


def verify_rows(
    rows: list[dict[str, Any]], cfg: VerifyConfig, answer_key: str = "answer"
) -> VerifyResult:
    """Verify answered rows (``Record.to_json()`` plus an answer) into passed / rejected.

    Every output row is a copy with a ``verdict``. Rows that are not valid records or lack an
    answer are rejected with an ``error`` in their verdict and listed in ``metrics["errors"]``;
    they count in ``total`` but in no per-type or per-task table.
    """
    metrics: dict[str, Any] = {
        "step": "verify", "total": len(rows), "passed": 0, "yield": 0.0,
        "per_label_type": {}, "per_task": {}, "per_group": {}, "rejects": [], "errors": [],
    }
    passed: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        try:
            record, verdict = _verify_row(row, cfg, answer_key)
        except RecordError as exc:
            rid = row.get("id", f"#{i}") if isinstance(row, dict) else f"#{i}"
            metrics["errors"].append(f"{rid}: {exc}")
            out = dict(row) if isinstance(row, dict) else {"row": row}
            rejected.append({**out, "verdict": {"passed": False, "labels": {}, "error": str(exc)}})
            continue
        _record_metrics(metrics, record, verdict)
        (passed if verdict.passed else rejected).append({**row, "verdict": verdict.to_json()})
    metrics["passed"] = len(passed)
    metrics["yield"] = len(passed) / len(rows) if rows else 0.0
    return VerifyResult(passed, rejected, metrics)
