"""Sentence labels (a caption, a rationale) matched by similarity, and ordered label lists:
sentences in order (sentence_sequence) and class names in order (sequence).

Similarity is the cosine of ``sentence_model`` embeddings when one is configured, else the
lexical fallback (:func:`sentence_similarity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from videostar.config import VerifyConfig
from videostar.errors import VideostarError, first_line
from videostar.verify.registry import MalformedLabel, Verifier, as_texts, register
from videostar.verify.text import (
    answer_tokens,
    best_match,
    find_item,
    label_words,
    sentence_texts,
    stem,
    tokens,
)


@lru_cache(maxsize=1 << 14)
def _sentence_words(sentence: str, min_len: int) -> tuple[str, ...]:
    """Stemmed content words of a ground-truth sentence (all its words if none is content)."""
    words = label_words(sentence, min_len) or tokens(sentence)
    return tuple(dict.fromkeys(stem(w) for w in words))


@lru_cache(maxsize=64)
def _answer_sentences(answer: str) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(stem(w) for w in tokens(p)) for p in sentence_texts(answer))


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
    # Imported here: verifying without a sentence model needs neither torch nor the S3 client.
    from sentence_transformers import SentenceTransformer

    from videostar.store import resolve

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
    parts = list(sentence_texts(answer))
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
        return as_texts(value)

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
            value = list(sentence_texts(value))
        return as_texts(value)

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


@register("sequence")
class SequenceVerifier(Verifier):
    """Class names (e.g. dive sub-actions, which repeat) found in the answer in this order."""

    def parse(self, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise MalformedLabel(f"expected a list of class names, got {value!r:.60}")
        return as_texts(value)

    def judge(self, answer: str, value: list[str], name: str) -> tuple[bool, str]:
        toks, pos = answer_tokens(answer), 0
        for i, item in enumerate(value, 1):
            words = label_words(item, self.cfg.class_min_token_len) or tokens(item)
            end = find_item(words, toks, pos, self.cfg.class_ratio)
            if end is None:
                where = "in the answer" if i == 1 else f"after item {i - 1}"
                return False, f"item {i}/{len(value)} '{item}' not found {where}"
            pos = end + 1
        return True, f"all {len(value)} items found in order"
