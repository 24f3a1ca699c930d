"""Reading free answer text with rules only: word tokens, content words, numbers, sentences,
fuzzy word matches and the answer's conclusion. Shared by every verifier and by the
scene-graph questions, the answer-token loss weights and the evaluations.

Per-answer helpers are cached (a small LRU): one answer is read by every label of its record.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from rapidfuzz import fuzz, process

_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
ITEM_WORD_GAP = 3  # answer words allowed between two words of one sequence item

_TOKEN_RE = re.compile(r"[^\W_]+(?:\.\d+)*")
_NUMERIC_TOKEN_RE = re.compile(r"\d+(?:\.\d+)*")
_DROP_APOSTROPHES = str.maketrans("", "", "'\u2019`")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?;])\s+|\n+")
_GROUPED_NUMBER_RE = re.compile(
    r"(?<![\w.])(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+)(\s*%)?"
)
_PLAIN_NUMBER_RE = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?|-?\.\d+)(\s*%)?")
_FINAL_ANSWER_RE = re.compile(r"\banswer\b\s*(?:is\b|:)?", re.IGNORECASE)
_STEM_SUFFIXES = ("ing", "ed", "es", "s")


def tokens(text: str) -> tuple[str, ...]:
    """Lowercased word tokens; apostrophes vanish ("person's" -> "persons"), decimals stay."""
    return tuple(_TOKEN_RE.findall(text.casefold().translate(_DROP_APOSTROPHES)))


def is_numeric(token: str) -> bool:
    return token[0].isdigit() and _NUMERIC_TOKEN_RE.fullmatch(token) is not None


@lru_cache(maxsize=1 << 16)
def label_words(label: str, min_len: int) -> tuple[str, ...]:
    """Content words of a label, in order: no stopwords, no short words (numbers always kept).

    Cached: the same few thousand labels recur across a whole dataset.
    """
    return tuple(
        t for t in tokens(label)
        if is_numeric(t) or (t not in STOPWORDS and len(t) >= min_len)
    )


@lru_cache(maxsize=64)
def answer_tokens(answer: str) -> tuple[str, ...]:
    return tokens(answer)


@lru_cache(maxsize=64)
def answer_vocab(answer: str) -> frozenset[str]:
    return frozenset(answer_tokens(answer))


@lru_cache(maxsize=64)
def answer_numbers(answer: str, grouped: bool = True) -> tuple[tuple[float, int, int, bool], ...]:
    """(value, start, end, is_percent) of every number in the text.

    ``grouped``: "1,234.5" is one number (scores); otherwise commas separate numbers, as in
    box and range lists written without spaces ("[120,340,560,780]").
    """
    out = []
    for m in (_GROUPED_NUMBER_RE if grouped else _PLAIN_NUMBER_RE).finditer(answer):
        value = float(m.group(1).replace(",", ""))
        if math.isfinite(value):
            out.append((value, m.start(1), m.end(), m.group(2) is not None))
    return tuple(out)


def fractions(answer: str, grouped: bool = True) -> list[float]:
    """Numbers of the answer with percentages as fractions ("25%" -> 0.25)."""
    return [v / 100 if pct else v for v, _, _, pct in answer_numbers(answer, grouped)]


def stem(word: str) -> str:
    """A light suffix strip ("holding" -> "hold"), enough for fuzzy matching of content words."""
    for suffix in _STEM_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=64)
def sentence_texts(text: str) -> tuple[str, ...]:
    """The text's sentences (split after . ! ? ; and at line breaks), empty ones dropped."""
    return tuple(p for p in _SENTENCE_SPLIT_RE.split(text) if p.strip())


def final_answer(answer: str) -> str:
    """The answer's conclusion: what follows its last "answer (is|:)", else its last sentence."""
    cues = list(_FINAL_ANSWER_RE.finditer(answer))
    if cues:
        return answer[cues[-1].end():]
    sentences = sentence_texts(answer)
    return sentences[-1] if sentences else ""


def best_match(
    word: str, vocab: Iterable[str], threshold: float, explain: bool = True
) -> tuple[bool, str, float]:
    """Whether ``word`` matches some answer word (ratio > threshold), and that word and ratio.

    rapidfuzz's ``fuzz.ratio`` (the Indel similarity fuzzywuzzy uses with python-Levenshtein)
    over the whole vocabulary in C++; an exact hit short-cuts. On failure, with ``explain``,
    the nearest word is reported. A set is searched in sorted order: of words that tie, the
    one reported must not depend on the process's hash seed (it reaches rejected.jsonl).
    """
    if isinstance(vocab, frozenset | set):
        if threshold < 1 and word in vocab:
            return True, word, 1.0
        vocab = sorted(vocab)
    if is_numeric(word):
        return False, "", 0.0
    hit = process.extractOne(word, vocab, scorer=fuzz.ratio, score_cutoff=100 * threshold)
    if hit is not None and hit[1] > 100 * threshold:  # the cutoff keeps ==, the rule wants >
        return True, hit[0], hit[1] / 100
    near = process.extractOne(word, vocab, scorer=fuzz.ratio) if explain else None
    return (False, near[0], near[1] / 100) if near else (False, "", 0.0)


def word_matches(word: str, cand: str, threshold: float) -> bool:
    """Fuzzy for content words; a stopword ("not", "on") only as itself ("not" is no "knot")."""
    if word == cand:
        return threshold < 1
    if is_numeric(word) or word in STOPWORDS:
        return False
    return fuzz.ratio(word, cand) > 100 * threshold


def find_item(words: Sequence[str], toks: Sequence[str], start: int, ratio: float) -> int | None:
    """End position of the first occurrence of an item's words at or after ``start``, at most
    ``ITEM_WORD_GAP`` answer words apart."""
    for anchor in range(start, len(toks)):
        if not word_matches(words[0], toks[anchor], ratio):
            continue
        end: int | None = anchor
        for word in words[1:]:
            window = range(end + 1, min(end + 2 + ITEM_WORD_GAP, len(toks)))
            end = next((k for k in window if word_matches(word, toks[k], ratio)), None)
            if end is None:
                break
        if end is not None:
            return end
    return None
