"""Number labels: a float (a dive score) read only where the answer gives the labelled
quantity, and a normalized timestamp."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from videostar.verify.registry import Verifier, as_fraction, as_number, register
from videostar.verify.text import STOPWORDS, answer_numbers, fractions

FLOAT_NAME_WINDOW = 40  # chars between a mention of the label's name and its number

QUANTITY_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "score": (("score", "scores", "scored", "scoring"), ("points", "point", "pts", "marks", "mark")),
    "difficulty": (("difficulty", "dd"), ()),
}
"""Known quantities: words that introduce their value ("scored 85") and words that follow it
("85 points"). A label named for one of them only takes numbers tied to it."""

_LINK_WORDS = (
    "is was are were be been of at to about around approximately roughly nearly almost just "
    "only exactly equals equal final total overall its his her their a an the"
)
_DIRECT_GAP_RE = re.compile(rf"(?:[\s:=\-]|\b(?:{'|'.join(_LINK_WORDS.split())})\b)*", re.I)
_NEXT_WORD_RE = re.compile(r"[ \t]*-?[ \t]*([^\W\d_]+)")
_NOT_UNITS = frozenset(["overall", "total", "exactly", "approximately", "roughly", "altogether"])


@lru_cache(maxsize=256)
def _quantity(name: str) -> tuple[re.Pattern[str] | None, frozenset[str], bool]:
    """A label name's mention pattern, the words that follow its value ("85 points", "3.2
    difficulty"), and whether it is a known quantity. The name counts with any ending."""
    words = re.findall(r"[^\W_]+", name.lower())
    known = [QUANTITY_WORDS[w] for w in words if w in QUANTITY_WORDS]
    before = {w for pre, _ in known for w in pre}
    after = frozenset(w for _, post in known for w in post) | before | set(words)
    parts = [r"[\s_-]*".join(map(re.escape, words))] if words else []
    parts += [re.escape(w) + r"\b" for w in sorted(before)]
    pattern = re.compile(r"\b(?:" + "|".join(parts) + ")", re.I) if parts else None
    return pattern, after, bool(known)


@dataclass(frozen=True)
class _Number:
    value: float
    start: int
    glued: bool
    """Part of an identifier ("5253B", "10m"): never a value."""
    unit: str | None
    """The word right after it ("74 frames", "10 m", "2 twists"), unless a filler word."""


@lru_cache(maxsize=64)
def _numbers_with_units(answer: str) -> tuple[_Number, ...]:
    out = []
    for value, start, end, pct in answer_numbers(answer):
        glued = not pct and end < len(answer) and answer[end].isalpha()
        m = None if pct or glued else _NEXT_WORD_RE.match(answer, end)
        word = m.group(1).lower() if m else None
        unit = word if word and word not in STOPWORDS and word not in _NOT_UNITS else None
        out.append(_Number(value, start, glued, unit))
    return tuple(out)


def numbers_for(answer: str, name: str) -> tuple[list[float], bool]:
    """The values the answer gives for the quantity ``name``, and whether any is tied to it.

    Tied: the first number after a mention of the name (or of its verbs, "scored"), within
    ``FLOAT_NAME_WINDOW`` characters, that follows the mention directly ("score: 85",
    "score is about 85") or carries no unit of its own; and any number followed by the
    quantity's own words ("85 points"). Identifiers ("5253B") never count. A known quantity
    takes tied numbers only; another name falls back to the numbers without a unit.
    """
    pattern, after, known = _quantity(name)
    numbers = [n for n in _numbers_with_units(answer) if not n.glued]
    starts = [n.start for n in numbers]  # increasing: numbers come in text order
    tied = [n for n in numbers if n.unit in after]
    for m in pattern.finditer(answer) if pattern else ():
        # Only the numbers inside the window after this mention (found by bisection): linear
        # in the answer's length, where scanning every number per mention was quadratic.
        first = bisect.bisect_left(starts, m.end())
        last = bisect.bisect_right(starts, m.end() + FLOAT_NAME_WINDOW)
        for n in numbers[first:last]:
            direct = _DIRECT_GAP_RE.fullmatch(answer, m.end(), n.start) is not None
            if direct or n.unit is None:
                tied.append(n)
                break
    if tied or known:
        return [n.value for n in tied], True
    return [n.value for n in numbers if n.unit is None], False


@register("float")
class FloatVerifier(Verifier):
    """A number (e.g. a dive score) within ``float_rel_tol`` relative error of the label.

    Stricter than the release, which takes any number: only the value the answer gives for
    the labelled quantity is judged (:func:`numbers_for`), so neither "74 frames", "10 m",
    "5253B" nor "difficulty 3.5" can pass a score of 74 or 3.5.
    """

    def parse(self, value: Any) -> float:
        return as_number(value)

    def judge(self, answer: str, value: float, name: str) -> tuple[bool, str]:
        numbers, tied = numbers_for(answer, name)
        scope = f" for '{name.replace('_', ' ')}'" if tied else ""
        if not numbers:
            return False, f"no number{scope or ' without a unit'} in the answer"
        tol = self.cfg.float_rel_tol
        closest = min(numbers, key=lambda x: abs(x - value))
        allowed = tol * abs(value) if value else tol
        verdict = "within" if abs(closest - value) <= allowed + 1e-12 else "not within"
        return verdict == "within", f"found {closest}{scope} {verdict} {tol:.0%} of {value}"


@register("timestamp")
class TimestampVerifier(Verifier):
    """A normalized time: some number of the answer (or percentage) within ``timestamp_tol``."""

    def parse(self, value: Any) -> float:
        return as_fraction(value)

    def judge(self, answer: str, value: float, name: str) -> tuple[bool, str]:
        numbers = fractions(answer)
        if not numbers:
            return False, "no number in the answer"
        closest = min(numbers, key=lambda x: abs(x - value))
        ok = abs(closest - value) <= self.cfg.timestamp_tol + 1e-12
        word = "within" if ok else "not within"
        return ok, f"found {closest:g} {word} {self.cfg.timestamp_tol:g} of {value:g}"
