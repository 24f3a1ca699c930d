"""Class labels (e.g. a Kinetics action): every content word in the answer, and the class told
apart from its sibling classes in the dataset."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from videostar.config import VerifyConfig
from videostar.verify.registry import Verifier, as_text, register
from videostar.verify.text import (
    STOPWORDS,
    answer_tokens,
    answer_vocab,
    best_match,
    find_item,
    label_words,
    tokens,
)

_ARTICLES = frozenset({"a", "an", "the"})


def match_class(label: str, answer: str, cfg: VerifyConfig) -> tuple[bool, str]:
    """Every content word of the label must fuzzily match an answer word.

    A label with no content word left (e.g. "up") must appear as a whole phrase instead.
    """
    words = label_words(label, cfg.class_min_token_len)
    if not words:
        phrase = " ".join(tokens(label))
        found = f" {phrase} " in f" {' '.join(answer_tokens(answer))} "
        return found, f"phrase '{phrase}' {'found' if found else 'not found'} (no content word)"
    vocab = answer_vocab(answer)
    for word in dict.fromkeys(words):
        ok, best, ratio = best_match(word, vocab, cfg.class_ratio)
        if not ok:
            near = f" (best '{best}' {ratio:.2f})" if best else ""
            return False, f"label word '{word}' not found{near}"
    return True, f"all label words found: {', '.join(dict.fromkeys(words))}"


def _content(label: str) -> frozenset[str]:
    return frozenset(t for t in tokens(label) if t not in STOPWORDS)


def class_siblings(classes: Iterable[str]) -> dict[str, list[str]]:
    """Each class's siblings in a dataset's class list: the classes whose stopword-free words
    contain its own or are contained in them ("tying tie" / "tying bow tie" / "tying knot
    (not on a tie)"; "... (in game)" / "... (not in game)"). The released rule cannot tell
    such classes apart: an answer naming one passes for the other. Classes without siblings
    are left out.
    """
    words = {c: _content(c) for c in dict.fromkeys(classes)}
    out: dict[str, list[str]] = {}
    for label, mine in words.items():
        sibs = [other for other, theirs in words.items()
                if other != label and mine and theirs and (mine <= theirs or theirs <= mine)]
        if sibs:
            out[label] = sibs
    return out


def _distinguishing(label: str, other: str) -> list[tuple[str, ...]]:
    """What ``label`` says that ``other`` does not: each of its words missing from ``other``
    (negations and qualifiers included, articles not), with the label word that follows it,
    so "not in game" must read "not ... in", not just contain a "not" somewhere."""
    theirs = set(tokens(other))
    words = [t for t in tokens(label) if t not in _ARTICLES]
    return [tuple(words[i : i + 2]) for i, w in enumerate(words) if w not in theirs]


@register("class")
class ClassVerifier(Verifier):
    """A class name (e.g. a Kinetics action): all its content words appear in the answer.

    With siblings (:func:`class_siblings`), the words that tell the label from each sibling
    must appear too, and the answer must not also say what tells the sibling from the label.
    """

    def parse(self, value: Any) -> str:
        return as_text(value)

    def judge(self, answer: str, value: str, name: str) -> tuple[bool, str]:
        return match_class(value, answer, self.cfg)

    def tell_apart(self, answer: str, value: str, siblings: Sequence[str], reason: str
                   ) -> tuple[bool, str]:
        toks, ratio = answer_tokens(answer), self.cfg.class_ratio

        def found(phrase: tuple[str, ...]) -> bool:
            return find_item(phrase, toks, 0, ratio) is not None

        for other in siblings:
            missing = next((p for p in _distinguishing(value, other) if not found(p)), None)
            if missing is not None:
                return False, (f"'{' '.join(missing)}' not found: it tells the label from "
                               f"its sibling class '{other}'")
            theirs = _distinguishing(other, value)
            if theirs and all(found(p) for p in theirs):
                said = ", ".join(" ".join(p) for p in theirs)
                return False, f"the answer describes sibling class '{other}' ({said})"
        return True, f"{reason}; told apart from {len(siblings)} sibling class(es)"
