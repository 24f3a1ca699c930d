"""Parser-Verifier: keep an answer only if it contains every label of its record.

A registry maps each label type to one small verifier class; adding a type is one class with
``@register("name")`` and its thresholds in :class:`~videostar.config.VerifyConfig`. Verifiers
parse free text with rules only (no model), never raise on arbitrary answer text, and turn a
malformed label value into a failed verdict whose reason says so.

Deliberate choices, relative to the released verifier:

- class words are matched with rapidfuzz's ``fuzz.ratio`` (> ``class_ratio``), the release's
  fuzzywuzzy ratio as a float. Numeric label tokens ("1.5") are kept however short and must
  match exactly.
- sentence similarity is the cosine of ``sentence_model`` embeddings (sentence-transformers,
  as the release's MiniLM) when one is configured; otherwise a *lexical fallback*: the fraction
  of the ground-truth sentence's content words (lightly stemmed) that fuzzily match a word of
  one answer sentence.
- sentence_sequence follows the release: every ground-truth sentence's best-matching answer
  sentence must reach ``sequence_threshold``, at non-decreasing answer positions.
- float judges only the value the answer gives for the labelled quantity (:func:`numbers_for`).
- bbox ``xywh`` means top-left corner plus size (torchvision's convention); ``cxcywh``
  (the release's centre format) is understood too.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
from rapidfuzz import fuzz, process

from videostar.config import VerifyConfig
from videostar.data.records import LABEL_TYPES, Record
from videostar.errors import RecordError, VideostarError, first_line

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
FLOAT_NAME_WINDOW = 40  # chars between a mention of the label's name and its number
ITEM_WORD_GAP = 3  # answer words allowed between two words of one sequence item

_TOKEN_RE = re.compile(r"[^\W_]+(?:\.\d+)*")
_NUMERIC_TOKEN_RE = re.compile(r"\d+(?:\.\d+)*")
_DROP_APOSTROPHES = str.maketrans("", "", "'\u2019`")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?;])\s+|\n+")
_GROUPED_NUMBER_RE = re.compile(
    r"(?<![\w.])(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+)(\s*%)?"
)
_PLAIN_NUMBER_RE = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?|-?\.\d+)(\s*%)?")
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
_STEM_SUFFIXES = ("ing", "ed", "es", "s")


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


# --------------------------------------------------------------------------- text parsing


def tokens(text: str) -> tuple[str, ...]:
    """Lowercased word tokens; apostrophes vanish ("person's" -> "persons"), decimals stay."""
    return tuple(_TOKEN_RE.findall(text.casefold().translate(_DROP_APOSTROPHES)))


def _is_numeric(token: str) -> bool:
    return token[0].isdigit() and _NUMERIC_TOKEN_RE.fullmatch(token) is not None


@lru_cache(maxsize=1 << 16)
def label_words(label: str, min_len: int) -> tuple[str, ...]:
    """Content words of a label, in order: no stopwords, no short words (numbers always kept).

    Cached: the same few thousand labels recur across a whole dataset.
    """
    return tuple(
        t for t in tokens(label)
        if _is_numeric(t) or (t not in STOPWORDS and len(t) >= min_len)
    )


@lru_cache(maxsize=64)
def _answer_tokens(answer: str) -> tuple[str, ...]:
    return tokens(answer)


@lru_cache(maxsize=64)
def _answer_vocab(answer: str) -> frozenset[str]:
    return frozenset(_answer_tokens(answer))


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


def _fractions(answer: str, grouped: bool = True) -> list[float]:
    """Numbers of the answer with percentages as fractions ("25%" -> 0.25)."""
    return [v / 100 if pct else v for v, _, _, pct in answer_numbers(answer, grouped)]


def _stem(word: str) -> str:
    for suffix in _STEM_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=1 << 14)
def _sentence_words(sentence: str, min_len: int) -> tuple[str, ...]:
    """Stemmed content words of a ground-truth sentence (all its words if none is content)."""
    words = label_words(sentence, min_len) or tokens(sentence)
    return tuple(dict.fromkeys(_stem(w) for w in words))


@lru_cache(maxsize=64)
def _answer_sentence_texts(answer: str) -> tuple[str, ...]:
    return tuple(p for p in _SENTENCE_SPLIT_RE.split(answer) if p.strip())


@lru_cache(maxsize=64)
def _answer_sentences(answer: str) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(_stem(w) for w in tokens(p)) for p in _answer_sentence_texts(answer))


# --------------------------------------------------------------------------- fuzzy words


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
    if _is_numeric(word):
        return False, "", 0.0
    hit = process.extractOne(word, vocab, scorer=fuzz.ratio, score_cutoff=100 * threshold)
    if hit is not None and hit[1] > 100 * threshold:  # the cutoff keeps ==, the rule wants >
        return True, hit[0], hit[1] / 100
    near = process.extractOne(word, vocab, scorer=fuzz.ratio) if explain else None
    return (False, near[0], near[1] / 100) if near else (False, "", 0.0)


def _word_matches(word: str, cand: str, threshold: float) -> bool:
    """Fuzzy for content words; a stopword ("not", "on") only as itself ("not" is no "knot")."""
    if word == cand:
        return threshold < 1
    if _is_numeric(word) or word in STOPWORDS:
        return False
    return fuzz.ratio(word, cand) > 100 * threshold


# --------------------------------------------------------------------------- value parsing


def _as_text(value: Any) -> str:
    if not isinstance(value, str) or not tokens(value):
        raise MalformedLabel(f"expected text with at least one word, got {value!r:.60}")
    return value


def _as_texts(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise MalformedLabel(f"expected a non-empty list of text, got {value!r:.60}")
    return [_as_text(v) for v in items]


def _as_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MalformedLabel(f"expected a number, got {value!r:.60}")
    try:
        number = float(value)
    except ValueError:
        raise MalformedLabel(f"expected a number, got {value!r:.60}") from None
    if not math.isfinite(number):
        raise MalformedLabel(f"expected a finite number, got {value!r:.60}")
    return number


def _as_numbers(value: Any, count: int) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != count:
        raise MalformedLabel(f"expected {count} numbers, got {value!r:.60}")
    return [_as_number(v) for v in value]


def _as_fraction(value: Any) -> float:
    number = _as_number(value)
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
        :func:`class_siblings`); an answer that passes is then held to :meth:`tell_apart`.
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


# --------------------------------------------------------------------------- verifiers


def match_class(label: str, answer: str, cfg: VerifyConfig) -> tuple[bool, str]:
    """Every content word of the label must fuzzily match an answer word.

    A label with no content word left (e.g. "up") must appear as a whole phrase instead.
    """
    words = label_words(label, cfg.class_min_token_len)
    if not words:
        phrase = " ".join(tokens(label))
        found = f" {phrase} " in f" {' '.join(_answer_tokens(answer))} "
        return found, f"phrase '{phrase}' {'found' if found else 'not found'} (no content word)"
    vocab = _answer_vocab(answer)
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


_ARTICLES = frozenset({"a", "an", "the"})


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
        return _as_text(value)

    def judge(self, answer: str, value: str, name: str) -> tuple[bool, str]:
        return match_class(value, answer, self.cfg)

    def tell_apart(self, answer: str, value: str, siblings: Sequence[str], reason: str
                   ) -> tuple[bool, str]:
        toks, ratio = _answer_tokens(answer), self.cfg.class_ratio

        def found(phrase: tuple[str, ...]) -> bool:
            return _find_item(phrase, toks, 0, ratio) is not None

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


def sentence_similarity(gt_words: Sequence[str], sentence: frozenset[str], ratio: float) -> float:
    """Lexical fallback for embedding similarity: share of gt words found in the sentence."""
    if not gt_words:
        return 0.0
    found = sum(best_match(w, sentence, ratio, explain=False)[0] for w in gt_words)
    return found / len(gt_words)


def _best_sentence(gt: str, answer: str, cfg: VerifyConfig) -> list[float]:
    """Similarity of a ground-truth sentence to each answer sentence, in answer order."""
    words = _sentence_words(gt, cfg.class_min_token_len)
    sentences = _answer_sentences(answer)
    return [sentence_similarity(words, s, cfg.class_ratio) for s in sentences]


@lru_cache(maxsize=4)
def sentence_encoder(uri: str) -> Any:
    """The sentence-transformers model at ``uri`` (a folder or an ``s3://`` prefix), loaded
    once per process; a folder that holds none is a one-line error."""
    from sentence_transformers import SentenceTransformer

    from videostar.model import resolve

    path = resolve(uri)
    try:
        return SentenceTransformer(str(path))
    except Exception as exc:  # the library raises many types for a folder it cannot load
        raise VideostarError(f"verify.sentence_model {uri}: not a sentence-transformers model "
                             f"({first_line(exc)})") from exc


def similarities(gts: Sequence[str], answer: str, cfg: VerifyConfig) -> list[list[float]]:
    """Similarity of each ground-truth sentence to each answer sentence, in answer order: the
    cosine of ``sentence_model`` embeddings (the release's MiniLM), else the lexical fallback."""
    if not cfg.sentence_model:
        return [_best_sentence(gt, answer, cfg) for gt in gts]
    parts = list(_answer_sentence_texts(answer))
    if not parts:
        return [[] for _ in gts]
    emb = sentence_encoder(cfg.sentence_model).encode(
        [*gts, *parts], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return (emb[: len(gts)] @ emb[len(gts) :].T).tolist()


def _similarity_kind(cfg: VerifyConfig) -> str:
    return "embedding" if cfg.sentence_model else "lexical"


@register("sentence")
class SentenceVerifier(Verifier):
    """Each ground-truth sentence is similar (>= sentence_threshold) to some answer sentence."""

    def parse(self, value: Any) -> list[str]:
        return _as_texts(value)

    def judge(self, answer: str, value: list[str], name: str) -> tuple[bool, str]:
        threshold, kind = self.cfg.sentence_threshold, _similarity_kind(self.cfg)
        for i, (gt, sims) in enumerate(zip(value, similarities(value, answer, self.cfg), strict=True), 1):
            best = max(sims, default=0.0)
            if best < threshold:
                return False, (f"sentence {i}/{len(value)} '{gt.strip():.50}' not found "
                               f"(best {kind} similarity {best:.2f} < {threshold})")
        return True, f"all {len(value)} sentences found ({kind} similarity >= {threshold})"


@register("sentence_sequence")
class SentenceSequenceVerifier(Verifier):
    """Ground-truth sentences appear in order, as in the release: each one's best-matching
    answer sentence reaches ``sequence_threshold`` and those positions never go backwards
    (ties resolve to the earliest position that keeps the order). A text value is split into
    its sentences.
    """

    def parse(self, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [part for part in _SENTENCE_SPLIT_RE.split(value) if part.strip()]
        return _as_texts(value)

    def judge(self, answer: str, value: list[str], name: str) -> tuple[bool, str]:
        threshold, pos = self.cfg.sequence_threshold, 0
        for i, (gt, sims) in enumerate(zip(value, similarities(value, answer, self.cfg), strict=True), 1):
            best = max(sims, default=0.0)
            where = f"sentence {i}/{len(value)} '{gt.strip():.50}'"
            if best < threshold or not sims:
                return False, f"{where} not found (best similarity {best:.2f} < {threshold})"
            tops = [j for j, s in enumerate(sims) if s == best]
            at = next((j for j in tops if j >= pos), tops[0])
            if at < pos:
                return False, f"{where} best matches answer sentence {at + 1}, before {pos + 1}"
            pos = at
        return True, f"all {len(value)} sentences found in order"


def _find_item(words: Sequence[str], toks: Sequence[str], start: int, ratio: float) -> int | None:
    """End position of the first occurrence of an item's words at or after ``start``."""
    for anchor in range(start, len(toks)):
        if not _word_matches(words[0], toks[anchor], ratio):
            continue
        end: int | None = anchor
        for word in words[1:]:
            window = range(end + 1, min(end + 2 + ITEM_WORD_GAP, len(toks)))
            end = next((k for k in window if _word_matches(word, toks[k], ratio)), None)
            if end is None:
                break
        if end is not None:
            return end
    return None


@register("sequence")
class SequenceVerifier(Verifier):
    """Class names (e.g. dive sub-actions, which repeat) found in the answer in this order."""

    def parse(self, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise MalformedLabel(f"expected a list of class names, got {value!r:.60}")
        return _as_texts(value)

    def judge(self, answer: str, value: list[str], name: str) -> tuple[bool, str]:
        toks, pos = _answer_tokens(answer), 0
        for i, item in enumerate(value, 1):
            words = label_words(item, self.cfg.class_min_token_len) or tokens(item)
            end = _find_item(words, toks, pos, self.cfg.class_ratio)
            if end is None:
                where = "in the answer" if i == 1 else f"after item {i - 1}"
                return False, f"item {i}/{len(value)} '{item}' not found {where}"
            pos = end + 1
        return True, f"all {len(value)} items found in order"


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
        return _as_number(value)

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
        return _as_fraction(value)

    def judge(self, answer: str, value: float, name: str) -> tuple[bool, str]:
        numbers = _fractions(answer)
        if not numbers:
            return False, "no number in the answer"
        closest = min(numbers, key=lambda x: abs(x - value))
        ok = abs(closest - value) <= self.cfg.timestamp_tol + 1e-12
        word = "within" if ok else "not within"
        return ok, f"found {closest:g} {word} {self.cfg.timestamp_tol:g} of {value:g}"


def interval_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """1-D IoU; two identical points count as a perfect match."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    if union <= 0:
        return 1.0 if tuple(a) == tuple(b) else 0.0
    return inter / union


@register("temporal_range")
class TemporalRangeVerifier(Verifier):
    """[start, end] normalized: some pair of consecutive answer numbers has IoU > range_iou."""

    def parse(self, value: Any) -> list[float]:
        start, end = _as_numbers(value, 2)
        if not 0 <= start <= end <= 1:
            raise MalformedLabel(f"expected 0 <= start <= end <= 1, got {value!r:.60}")
        return [start, end]

    def judge(self, answer: str, value: list[float], name: str) -> tuple[bool, str]:
        numbers = np.asarray(_fractions(answer, grouped=False), dtype=float)
        if len(numbers) < 2:
            return False, "fewer than two numbers in the answer"
        # Every consecutive pair at once (numpy: an answer may hold 10^5 numbers), the same
        # rule as interval_iou; argmax keeps the first best pair, as max() did.
        lo, hi = np.minimum(numbers[:-1], numbers[1:]), np.maximum(numbers[:-1], numbers[1:])
        inter = np.clip(np.minimum(hi, value[1]) - np.maximum(lo, value[0]), 0, None)
        union = np.maximum(hi, value[1]) - np.minimum(lo, value[0])
        same = (lo == value[0]) & (hi == value[1])
        ious = np.where(union > 0, inter / np.where(union > 0, union, 1), same.astype(float))
        k = int(np.argmax(ious))
        best, iou = (float(lo[k]), float(hi[k])), float(ious[k])
        ok = iou > self.cfg.range_iou
        shown = f"[{best[0]:g}, {best[1]:g}]"
        return ok, f"range {shown} has IoU {iou:.2f} with [{value[0]:g}, {value[1]:g}]"


def to_xyxy(box: Sequence[float], fmt: str) -> tuple[float, float, float, float]:
    """Corners of a box given as xyxy, xywh (top-left + size) or cxcywh (centre + size)."""
    a, b, c, d = box
    if fmt == "xywh":
        return a, b, a + c, b + d
    if fmt == "cxcywh":
        return a - c / 2, b - d / 2, a + c / 2, b + d / 2
    if fmt == "xyxy":
        return a, b, c, d
    raise MalformedLabel(f"unknown box format {fmt!r}")


@register("bbox")
class BoxVerifier(Verifier):
    """A box in ``bbox_format``: 4 consecutive answer numbers, read alike, with IoU > bbox_iou."""

    def parse(self, value: Any) -> tuple[float, float, float, float]:
        box = to_xyxy(_as_numbers(value, 4), self.cfg.bbox_format)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise MalformedLabel(f"box {value!r:.60} has no area in {self.cfg.bbox_format}")
        return box

    def judge(self, answer: str, value: tuple[float, ...], name: str) -> tuple[bool, str]:
        numbers = np.asarray([v for v, _, _, _ in answer_numbers(answer, grouped=False)], dtype=float)
        fmt = self.cfg.bbox_format
        if len(numbers) < 4:
            return False, "fewer than four numbers in the answer"
        # Every run of 4 consecutive numbers at once (numpy: an answer may hold 10^5 numbers),
        # IoU as torchvision's box_iou (a box without area has IoU 0); argmax keeps the first best.
        windows = np.lib.stride_tricks.sliding_window_view(numbers, 4)
        x0, y0, x1, y1 = to_xyxy(windows.T, fmt)
        inter = (np.clip(np.minimum(x1, value[2]) - np.maximum(x0, value[0]), 0, None)
                 * np.clip(np.minimum(y1, value[3]) - np.maximum(y0, value[1]), 0, None))
        area = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        union = area + (value[2] - value[0]) * (value[3] - value[1]) - inter
        ious = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        k = int(np.argmax(ious))
        best, iou = windows[k], float(ious[k])
        shown = ", ".join(f"{x:g}" for x in best)
        return iou > self.cfg.bbox_iou, f"box [{shown}] ({fmt}) has IoU {iou:.2f} with the label"


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


_FINAL_ANSWER_RE = re.compile(r"\banswer\b\s*(?:is\b|:)?", re.IGNORECASE)
_CLAUSE_SPLIT_RE = re.compile(r"[.!?;,\n]+|\bthen\b", re.IGNORECASE)
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                 "eleven", "twelve")


def final_answer(answer: str) -> str:
    """The answer's conclusion: what follows its last "answer (is|:)", else its last sentence."""
    cues = list(_FINAL_ANSWER_RE.finditer(answer))
    if cues:
        return answer[cues[-1].end():]
    sentences = _answer_sentence_texts(answer)
    return sentences[-1] if sentences else ""


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
    (fuzzy, lightly stemmed, as ``class``); a step may leave out its subject when that is the
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
            steps.append((_as_text(step.get("subject")), [_as_text(p) for p in preds],
                          None if obj is None else _as_text(obj)))
        return {"answer": _as_text(answer), "steps": steps}

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
        subject, predicates, obj = step
        return ((subject in known or self._has(subject, clause))
                and (obj is None or self._has(obj, clause))
                and any(self._has(p, clause) for p in predicates))

    def _has(self, phrase: str, clause: tuple[str, ...]) -> bool:
        words = label_words(phrase, self.cfg.class_min_token_len) or tokens(phrase)
        stems = [_stem(t) for t in clause]
        return all(any(_word_matches(_stem(w), s, self.cfg.class_ratio) for s in stems)
                   for w in words)


def _step_text(step: tuple[str, list[str], str | None]) -> str:
    subject, predicates, obj = step
    return " ".join(p for p in (subject, predicates[0], obj) if p)


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


def _check_registry() -> None:
    missing = set(LABEL_TYPES) - set(VERIFIERS)
    if missing:
        raise RuntimeError(f"label types without a verifier: {sorted(missing)}")


_check_registry()
