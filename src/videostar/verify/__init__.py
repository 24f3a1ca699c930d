"""Parser-Verifier: keep an answer only if it contains every label of its record.

A registry maps each label type to one small verifier class; adding a type is one class with
``@register("name")`` and its thresholds in :class:`~videostar.config.VerifyConfig`. Verifiers
parse free text with rules only (no model), never raise on arbitrary answer text, and turn a
malformed label value into a failed verdict whose reason says so.

Modules: :mod:`~videostar.verify.text` reads answer text (tokens, content words, numbers,
sentences, fuzzy word matches); :mod:`~videostar.verify.registry` holds the verifier base, the
registry, the verdicts and the per-row metrics; one module per label family registers its
verifiers: ``classes``, ``sentences`` (sentence, sentence_sequence, sequence), ``numbers``
(float, timestamp), ``ranges`` (temporal_range, bbox), ``choices`` (yes_no,
multiple_choice) and ``graph_paths``. Importing the package registers them all.

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
- float judges only the value the answer gives for the labelled quantity
  (:func:`~videostar.verify.numbers.numbers_for`).
- bbox ``xywh`` means top-left corner plus size (torchvision's convention); ``cxcywh``
  (the release's centre format) is understood too.
"""

# Each family module registers its verifiers when imported; check_registry() below checks them.
from videostar.verify import choices, classes, graph_paths, numbers, ranges, sentences  # noqa: F401
from videostar.verify.classes import class_siblings
from videostar.verify.graph_paths import GraphPathVerifier
from videostar.verify.numbers import FLOAT_NAME_WINDOW
from videostar.verify.ranges import interval_iou, to_xyxy
from videostar.verify.registry import (
    VERIFIERS,
    LabelVerdict,
    MalformedLabel,
    Verdict,
    Verifier,
    VerifyResult,
    check_registry,
    get_verifier,
    register,
    verify_record,
    verify_rows,
)
from videostar.verify.text import answer_numbers, best_match, final_answer, label_words, tokens

__all__ = [
    "FLOAT_NAME_WINDOW", "VERIFIERS", "GraphPathVerifier", "LabelVerdict", "MalformedLabel",
    "Verdict", "Verifier", "VerifyResult", "answer_numbers", "best_match", "class_siblings",
    "final_answer", "get_verifier", "interval_iou", "label_words", "register", "to_xyxy",
    "tokens", "verify_record", "verify_rows",
]

check_registry()
