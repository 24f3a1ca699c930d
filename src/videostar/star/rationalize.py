"""Label rationalization: failed records get a second try with the label given as a hint.

The hint only ever appears in the generation prompt. The stored training example keeps the
original question, and a verbatim echo of the hint is removed from the answer, so the
fine-tuned model never learns to expect the label in its input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videostar.config import RunConfig
from videostar.data.records import Record, read_rows, write_jsonl
from videostar.model import LoadedModel
from videostar.star.generate import generate_answers
from videostar.star.verify import verify_rows


def label_text(rec: Record) -> str:
    """The labels written the way an answer would state them."""
    parts = []
    for name, kind, value in rec.labels():
        words = name.replace("_", " ")
        if kind in ("sequence", "sentence_sequence") and isinstance(value, list):
            parts.append(f"{words}: " + ", then ".join(map(str, value)))
        elif kind == "temporal_range" and isinstance(value, list) and len(value) == 2:
            parts.append(f"from {value[0]:.2f} to {value[1]:.2f}")
        elif kind in ("float", "timestamp") and isinstance(value, int | float):
            parts.append(f"{words} {value:g}")
        else:
            parts.append(str(value))
    return "; ".join(parts)


def hint_prompt(hint_template: str):
    """Question + hint, e.g. 'Answer: red circle. Explain step by step how one arrives at this.'"""
    return lambda rec: f"{rec.question} {hint_template.format(label=label_text(rec))}"


def strip_hint(answer: str, hint: str) -> str:
    """Remove a verbatim echo of the hint sentence from a rationale."""
    return answer.replace(hint, "").strip() if hint else answer


def rationalize(
    lm: LoadedModel,
    records: list[Record],
    out_dir: str | Path,
    cfg: RunConfig,
    progress: bool = True,
) -> dict[str, Any]:
    """Rationalize rejected records and keep the rationales that verify.

    Writes ``rationales.jsonl`` (all), ``verified.jsonl`` (passed) and ``rejected.jsonl`` into
    ``out_dir``; returns the metrics.
    """
    out_dir = Path(out_dir)
    for rec in records:
        rec.extra = {}  # drop the failed answer and its verdict
    prompt = hint_prompt(cfg.rationalize.hint)

    def annotate(rec: Record, text: str) -> dict[str, Any]:
        hint = cfg.rationalize.hint.format(label=label_text(rec))
        return {"answer": strip_hint(text, hint), "hint": hint}

    gen = generate_answers(lm, records, out_dir / "rationales.jsonl", cfg.generate, cfg.video,
                           prompt, kind="rationalization", annotate=annotate, progress=progress)
    result = verify_rows(read_rows(out_dir / "rationales.jsonl"), cfg.verify)
    write_jsonl(out_dir / "verified.jsonl", result.passed)
    write_jsonl(out_dir / "rejected.jsonl", result.rejected)
    return {**result.metrics, "step": "rationalize", "generation": gen, "inputs": len(records)}

