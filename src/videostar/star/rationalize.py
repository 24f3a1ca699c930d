"""Label rationalization: failed records get a second try with the label given as a hint.

The hint only ever appears in the generation prompt. The stored training example keeps the
original question, and a rationale that echoes the hint in any form is rejected with the
reason, so the fine-tuned model never learns to expect the label in its input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from videostar.config import RunConfig
from videostar.data.records import Record, read_records, write_jsonl
from videostar.generation import Generator, generate_answers
from videostar.layout import RATIONALES, REJECTED, VERIFIED
from videostar.model import LoadedModel
from videostar.prompts import hint_prompt, label_text
from videostar.verify import verify_rows

ECHO_SIMILARITY = 90.0
"""rapidfuzz ``partial_ratio`` from which an answer is taken to repeat a fixed part of the hint."""


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w.]+", " ", text.lower()).split())


def hint_echo(answer: str, template: str, label: str) -> str | None:
    """Why ``answer`` echoes the hint (``template`` filled with ``label``), or None.

    An echo in any form is caught, not only the verbatim sentence: the hint's lead-in with the
    label ("Answer: yellow square", in any case or spacing), or any fixed part of the hint
    ("Explain step by step how one arrives at this") nearly verbatim. Such a rationale restates
    its input instead of reasoning from the video, and cannot be trained on without the hint.
    """
    head, _, tail = template.partition("{label}")
    said = _norm(answer)
    lead = _norm(head + label)
    if head.strip() and lead in said:
        return f"echoes the hint ({head.strip()} {label})"
    from rapidfuzz import fuzz

    for part in (head, tail):
        fixed = _norm(part).strip(" .")
        if len(fixed) >= 12 and fuzz.partial_ratio(fixed, said) >= ECHO_SIMILARITY:
            return f"echoes the hint ({part.strip(' .')})"
    return None


def rationalize(
    lm: LoadedModel | Generator,
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
        label = label_text(rec)
        return {"hint": cfg.rationalize.hint.format(label=label),
                "echo": hint_echo(text, cfg.rationalize.hint, label)}

    gen = generate_answers(lm, records, out_dir / RATIONALES, cfg.generate, cfg.video,
                           prompt, kind="rationalization", annotate=annotate, progress=progress)
    errors: list[str] = []
    rows = [r.to_json() for r in read_records(out_dir / RATIONALES, errors)]
    echoes = [{**r, "verdict": {"passed": False, "labels": {}, "error": r["echo"]}}
              for r in rows if r.get("echo")]
    result = verify_rows([r for r in rows if not r.get("echo")], cfg.verify)
    result.metrics["total"] = len(rows)
    result.metrics["yield"] = len(result.passed) / len(rows) if rows else 0.0
    write_jsonl(out_dir / VERIFIED, result.passed)
    write_jsonl(out_dir / REJECTED, result.rejected + echoes)
    return {**result.metrics, "step": "rationalize", "generation": gen, "inputs": len(records),
            "hint_echoes": [f"{r['id']}: {r['echo']}" for r in echoes],
            "video_errors": gen["video_errors"], "output_errors": errors}

