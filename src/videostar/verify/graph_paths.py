"""Scene-graph path labels (STEP): the final answer is the graph's, and the rationale states
the path's steps in order, one clause each."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from videostar.verify.classes import match_class
from videostar.verify.registry import MalformedLabel, Verifier, as_text, register
from videostar.verify.text import ITEM_WORD_GAP, final_answer, label_words, stem, tokens, word_matches

_CLAUSE_SPLIT_RE = re.compile(r"[.!?;,\n]+|\bthen\b", re.IGNORECASE)
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                 "eleven", "twelve")


def _clauses(answer: str) -> list[tuple[str, ...]]:
    """The answer's clauses (sentences cut at commas and "then"), as word tokens: a rationale
    states one step per clause, so steps are ordered by clause."""
    return [t for t in (tokens(c) for c in _CLAUSE_SPLIT_RE.split(answer)) if t]


@register("graph_path")
class GraphPathVerifier(Verifier):
    """STEP: the final answer is the graph's and the rationale states the path's steps in order.

    Value: ``{"answer": text or number, "steps": [{"subject", "predicates": [...], "object"}]}``
    (``object`` None for a one-entity step). A step is stated when one clause of the answer
    holds the subject's words, the words of one of its predicates and the object's words
    (fuzzy, lightly stemmed, as ``class``; each entity's words near one another and no answer
    word counted for both entities); a step may leave out its subject when that is the
    previous step's subject or object ("..., then touching the cube"). Step i must sit in a
    later clause than step i-1.
    ``graph_path_steps`` of the steps must be stated; the first one missing is named.
    """

    def parse(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict) or not isinstance(value.get("steps"), list) or not value["steps"]:
            raise MalformedLabel(f"expected {{answer, steps: [...]}}, got {value!r:.60}")
        answer = value.get("answer")
        answer = str(answer) if isinstance(answer, int) and not isinstance(answer, bool) else answer
        steps = []
        for i, step in enumerate(value["steps"], 1):
            preds = step.get("predicates") if isinstance(step, dict) else None
            obj = step.get("object") if isinstance(step, dict) else None
            if not (isinstance(preds, list) and preds and (obj is None or isinstance(obj, str))):
                raise MalformedLabel(f"step {i} needs subject, predicates and object: {step!r:.60}")
            steps.append((as_text(step.get("subject")), [as_text(p) for p in preds],
                          None if obj is None else as_text(obj)))
        return {"answer": as_text(answer), "steps": steps}

    def judge(self, answer: str, value: dict[str, Any], name: str) -> tuple[bool, str]:
        ok, reason = self.answer_matches(final_answer(answer), value["answer"])
        if not ok:
            return False, f"final answer: {reason}"
        steps, clauses = value["steps"], _clauses(answer)
        required = math.ceil(self.cfg.graph_path_steps * len(steps) - 1e-9)
        at, found, missing = -1, 0, None
        for i, step in enumerate(steps, 1):
            known = steps[i - 2][0::2] if i > 1 else ()
            hit = next((j for j in range(at + 1, len(clauses))
                        if self._states(step, clauses[j], known)), None)
            if hit is None:
                where = "in the rationale" if at < 0 else "after the previous step"
                missing = missing or f"step {i}/{len(steps)} '{_step_text(step)}' not found {where}"
                if required == len(steps):
                    return False, missing
                continue
            at, found = hit, found + 1
        if found < required:
            return False, f"{found}/{len(steps)} steps stated, {required} needed; {missing}"
        return True, f"answer '{value['answer']}' found; {found}/{len(steps)} steps in order"

    def answer_matches(self, final: str, value: str) -> tuple[bool, str]:
        """Whether the conclusion gives the answer (a count may be written as a word)."""
        if value.isdigit() and int(value) < len(_NUMBER_WORDS):
            word = _NUMBER_WORDS[int(value)]
            if word in tokens(final):
                return True, f"'{word}' found"
        return match_class(value, final, self.cfg)

    def _states(self, step: tuple[str, list[str], str | None], clause: tuple[str, ...],
                known: Sequence[str | None]) -> bool:
        """The subject and the object each stated by their own words: a word of the answer names
        one entity, so "the blue triangle touching the red square" does not state the blue
        triangle touching the red *triangle* (a word bag let the subject's "triangle" name the
        object too, and half the demo's verified paths named a wrong shape)."""
        subject, predicates, obj = step
        stems = [stem(t) for t in clause]
        said = self._place(subject, stems, frozenset())
        if said is None and subject not in known:
            return False
        return ((obj is None or self._place(obj, stems, said or frozenset()) is not None)
                and any(self._place(p, stems, frozenset()) is not None for p in predicates))

    def _place(self, phrase: str, stems: list[str], taken: frozenset[int]) -> frozenset[int] | None:
        """Positions of the phrase's words in the clause, in order and at most ``ITEM_WORD_GAP``
        words apart, none of them ``taken``; None where the clause does not state it."""
        words = [stem(w) for w in label_words(phrase, self.cfg.class_min_token_len) or tokens(phrase)]
        if not words:
            return frozenset()
        ratio = self.cfg.class_ratio
        for anchor in range(len(stems)):
            if anchor in taken or not word_matches(words[0], stems[anchor], ratio):
                continue
            at = [anchor]
            for word in words[1:]:
                window = range(at[-1] + 1, min(at[-1] + 2 + ITEM_WORD_GAP, len(stems)))
                free = (k for k in window if k not in taken)
                nxt = next((k for k in free if word_matches(word, stems[k], ratio)), None)
                if nxt is None:
                    break
                at.append(nxt)
            if len(at) == len(words):
                return frozenset(at)
        return None


def _step_text(step: tuple[str, list[str], str | None]) -> str:
    subject, predicates, obj = step
    return " ".join(p for p in (subject, predicates[0], obj) if p)
