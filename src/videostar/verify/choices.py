"""Choice labels: a yes/no decision and a multiple-choice option letter, each the last one the
answer makes (a rationale may weigh the alternatives before it decides)."""

from __future__ import annotations

import re
from typing import Any

from videostar.verify.registry import MalformedLabel, Verifier, register

_YES_NO_RE = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_NO_DECISION_BEFORE_RE = re.compile(r"(?:^|[.!?:;\n\"(]|\banswer(?:\s+is)?|\bsay)\s*$", re.I)
_NO_DECISION_AFTER_RE = re.compile(
    r"\s*(?:[^\w\s-]|$)|\s+(?:because|since|but|so|as|it|they|he|she|this|that|i|we)\b", re.I
)
_CHOICE_RE = re.compile(
    r"\(([A-Z])\)"
    r"|(?i:\b(?:option|choice|answer(?:\s+is)?)\s*[:\-]?\s*)\(?([A-Z])\b"
    r"|\b([A-E])[.)](?!\w)"
    r"|\b([B-E])\b"
    r"|\b(A)\b(?!\s+(?!(?:is|was)\b)[a-z])"
)
_OPTION_VALUE_RE = re.compile(r"\s*\(?([A-Za-z])(?:[.):\]]|\s|$)")


def last_yes_no(answer: str) -> str | None:
    """The last yes/no decision: every "yes"; a "no" only when it is not a determiner.

    "No" counts at a sentence start, after "answer is"/"say", or before punctuation or a
    clause ("no, ...", "no because ..."); "there is no dog" is not a decision.
    """
    decision = None
    for m in _YES_NO_RE.finditer(answer):
        word = m.group(1).lower()
        if (
            word == "yes"
            or _NO_DECISION_BEFORE_RE.search(answer, max(0, m.start() - 30), m.start())
            or _NO_DECISION_AFTER_RE.match(answer, m.end())
        ):
            decision = word
    return decision


@register("yes_no")
class YesNoVerifier(Verifier):
    """The last yes/no decision in the answer agrees with the label."""

    def parse(self, value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, str) and value.strip().lower() in ("yes", "no"):
            return value.strip().lower()
        raise MalformedLabel(f"expected yes/no, got {value!r:.60}")

    def judge(self, answer: str, value: str, name: str) -> tuple[bool, str]:
        decision = last_yes_no(answer)
        if decision is None:
            return False, "no yes/no decision in the answer"
        return decision == value, f"last decision is '{decision}', label is '{value}'"


def last_choice(answer: str) -> str | None:
    """The last option letter chosen: "(B)", "B.", "B)", "option B", "answer is B", bare "B".

    A bare "A" followed by a lowercase word is the article, not option A.
    """
    letter = None
    for m in _CHOICE_RE.finditer(answer):
        letter = next(g for g in m.groups() if g)
    return letter


@register("multiple_choice")
class MultipleChoiceVerifier(Verifier):
    """The last option letter chosen in the answer is the label's ("B" or "B. text")."""

    def parse(self, value: Any) -> str:
        m = _OPTION_VALUE_RE.match(value) if isinstance(value, str) else None
        if m is None:
            raise MalformedLabel(f"expected an option letter like 'B', got {value!r:.60}")
        return m.group(1).upper()

    def judge(self, answer: str, value: str, name: str) -> tuple[bool, str]:
        choice = last_choice(answer)
        if choice is None:
            return False, "no option letter chosen in the answer"
        return choice == value, f"last choice is '{choice}', label is '{value}'"
