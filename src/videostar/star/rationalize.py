"""Label rationalization: failed records get a second try with the label given as a hint.

The hint only ever appears in the generation prompt. The stored training example keeps the
original question, and a verbatim echo of the hint is removed from the answer, so the
fine-tuned model never learns to expect the label in its input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videostar.config import RunConfig
from videostar.data.records import Record, read_records, write_jsonl
from videostar.layout import RATIONALES, REJECTED, VERIFIED
from videostar.model import LoadedModel
from videostar.prompts import hint_prompt, label_text
from videostar.star.generate import generate_answers
from videostar.star.verify import verify_rows


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

    gen = generate_answers(lm, records, out_dir / RATIONALES, cfg.generate, cfg.video,
                           prompt, kind="rationalization", annotate=annotate, progress=progress)
    errors: list[str] = []
    rows = [r.to_json() for r in read_records(out_dir / RATIONALES, errors)]
    result = verify_rows(rows, cfg.verify)
    write_jsonl(out_dir / VERIFIED, result.passed)
    write_jsonl(out_dir / REJECTED, result.rejected)
    return {**result.metrics, "step": "rationalize", "generation": gen, "inputs": len(records),
            "video_errors": gen["video_errors"], "output_errors": errors}

