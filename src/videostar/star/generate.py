"""Answer generation: batched, left-padded, resumable.

Rows are written as they are produced to a partial file, so an interrupted run resumes where
it stopped; a video that cannot be read is reported with its reason and skipped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from videostar.config import GenerateConfig, VideoConfig
from videostar.data.records import JsonlAppender, Record
from videostar.errors import VideoError
from videostar.model import LoadedModel
from videostar.prompts import PromptFn
from videostar.video import read_frames


def _batches(
    records: list[Record], video: VideoConfig, size: int, errors: list[dict[str, str]]
) -> Iterator[list[tuple[Record, np.ndarray]]]:
    """Decode frames record by record; unreadable videos go to ``errors`` instead of a batch."""
    batch: list[tuple[Record, np.ndarray]] = []
    for rec in records:
        try:
            frames = read_frames(rec.video, video.num_frames, rec.start, rec.end,
                                 video.fps, video.max_frames, video.max_pixels)
        except VideoError as exc:
            errors.append({"id": rec.id, "video": rec.video, "reason": exc.cause})
            continue
        batch.append((rec, frames))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def batch_seed(seed: int, ids: list[str]) -> int:
    """A seed per batch from its ids, so a resumed run samples what a full run would have."""
    digest = hashlib.sha1(("|".join(ids) + f"#{seed}").encode()).digest()
    return int.from_bytes(digest[:4], "big")


@torch.inference_mode()
def generate_batch(
    lm: LoadedModel, prompts: list[str], videos: list[np.ndarray], cfg: GenerateConfig, seed: int
) -> list[str]:
    """One left-padded batch through ``model.generate``; returns the decoded new text.

    Sampling follows ``cfg`` alone (:meth:`LoadedModel.generation_config`), never the
    checkpoint's own generation settings.
    """
    inputs = lm.encode_prompts(prompts, videos)
    torch.manual_seed(seed)
    out = lm.model.generate(
        **inputs, generation_config=lm.generation_config(cfg.temperature, cfg.max_new_tokens)
    )
    new_tokens = out[:, inputs["input_ids"].shape[1]:]
    texts = lm.processor.batch_decode(new_tokens, skip_special_tokens=True)
    return [t.strip() for t in texts]


def generate_answers(
    lm: LoadedModel,
    records: list[Record],
    out_path: str | Path,
    cfg: GenerateConfig,
    video: VideoConfig,
    prompt_fn: PromptFn,
    kind: str = "answer",
    annotate: Callable[[Record, str], dict[str, Any]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate one answer per record into ``out_path`` (JSONL); returns the step's metrics.

    Each output row is the record plus ``answer`` and ``prompt_kind``; ``annotate`` may add
    fields. Ids already in ``out_path`` (or its partial file) are skipped.
    """
    appender = JsonlAppender(out_path)
    todo = [r for r in records if r.id not in appender.done_ids]
    errors: list[dict[str, str]] = []
    started = time.perf_counter()
    generated = 0
    try:
        with tqdm(total=len(todo), desc=f"generate[{kind}]", disable=not progress, unit="q") as bar:
            for batch in _batches(todo, video, cfg.batch_size, errors):
                recs = [r for r, _ in batch]
                seed = batch_seed(cfg.seed, [r.id for r in recs])
                texts = generate_batch(lm, [prompt_fn(r) for r in recs],
                                       [f for _, f in batch], cfg, seed)
                rows = []
                for rec, text in zip(recs, texts, strict=True):
                    row = rec.to_json() | {"answer": text, "prompt_kind": kind}
                    rows.append(row | (annotate(rec, text) if annotate else {}))
                appender.write(rows)
                generated += len(rows)
                bar.update(len(rows))
            appender.finish()
    finally:
        appender.close()
    seconds = time.perf_counter() - started
    sampling = lm.generation_config(cfg.temperature, cfg.max_new_tokens).to_diff_dict()
    return {
        "step": "generate" if kind == "answer" else kind,
        "generation_config": sampling,
        "records": len(records),
        "skipped_existing": len(records) - len(todo),
        "generated": generated,
        "video_errors": errors,
        "seconds": round(seconds, 3),
        "answers_per_s": round(generated / seconds, 3) if seconds > 0 else None,
    }
