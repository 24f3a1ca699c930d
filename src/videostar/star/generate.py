"""Answer generation: batched, left-padded, resumable.

Rows are written as they are produced to a partial file, so an interrupted run resumes where
it stopped; a video that cannot be read is reported with its reason and skipped. Sampling draws
from one random stream per row, seeded by the row's id: a row's answer does not depend on the
rows batched with it, so a run resumed after a torn batch writes what an uninterrupted one
would have.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from videostar.config import GenerateConfig, VideoConfig
from videostar.data.records import JsonlAppender, Record
from videostar.errors import VideoError
from videostar.model import LoadedModel
from videostar.prompts import PromptFn
from videostar.video import read_frames

if TYPE_CHECKING:
    from videostar.generation import Generator


def _batches(
    records: list[Record], video: VideoConfig, size: int, errors: list[dict[str, str]]
) -> Iterator[list[tuple[Record, np.ndarray]]]:
    """Decode frames record by record; unreadable videos go to ``errors`` instead of a batch."""
    batch: list[tuple[Record, np.ndarray]] = []
    for rec in records:
        try:
            frames = read_frames(rec.video, video.num_frames, rec.start, rec.end,
                                 video.fps, video.max_frames, video.max_pixels, video.backend)
        except VideoError as exc:
            errors.append({"id": rec.id, "video": rec.video, "reason": exc.cause})
            continue
        batch.append((rec, frames))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def row_seed(seed: int, key: str) -> int:
    """A row's sampling seed from the run's seed and the row's key (its id)."""
    digest = hashlib.sha1(f"{key}#{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class RowSampler(LogitsProcessor):
    """Temperature sampling with one generator per row (the Gumbel-max trick: the argmax of
    ``logits / T + Gumbel noise`` is a sample of ``softmax(logits / T)``), applied as a logits
    processor under greedy search. ``generate``'s own sampling draws from one global stream,
    so a row's answer would depend on its batch-mates and a resumed run would differ."""

    def __init__(self, seeds: Sequence[int], temperature: float):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab = scores.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g, dtype=torch.float64)
                               for g in self.generators]).clamp_(1e-300, 1.0)
        gumbel = -torch.log(-torch.log(uniform))
        logp = torch.log_softmax(scores.double() / self.temperature, dim=-1)
        return (logp + gumbel.to(scores.device)).to(scores.dtype)


@torch.inference_mode()
def generate_batch(
    lm: LoadedModel, prompts: list[str], videos: list[np.ndarray], cfg: GenerateConfig,
    seed: int | Sequence[int],
) -> list[str]:
    """One left-padded batch through ``model.generate``; returns the decoded new text.

    Sampling follows ``cfg`` alone (:meth:`LoadedModel.generation_config`), never the
    checkpoint's own generation settings. ``seed``: each row's sampling seed, or one seed
    from which row ``i`` gets ``row_seed(seed, str(i))``.
    """
    seeds = [row_seed(seed, str(i)) for i in range(len(prompts))] if isinstance(seed, int) else seed
    inputs = lm.encode_prompts(prompts, videos)
    sampler = [RowSampler(seeds, cfg.temperature)] if cfg.temperature > 0 else []
    out = lm.model.generate(
        **inputs, generation_config=lm.generation_config(0.0, cfg.max_new_tokens),
        logits_processor=LogitsProcessorList(sampler),
    )
    new_tokens = out[:, inputs["input_ids"].shape[1]:]
    texts = lm.processor.batch_decode(new_tokens, skip_special_tokens=True)
    return [t.strip() for t in texts]


def generate_answers(
    lm: LoadedModel | Generator,
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
    fields. Ids already in ``out_path`` (or its partial file) are skipped. ``lm``: a loaded model
    (HF ``generate``) or any :class:`videostar.generation.Generator` (e.g. vLLM).
    """
    from videostar.generation import as_generator  # it builds on generate_batch, defined here

    generator = as_generator(lm, cfg)
    appender = JsonlAppender(out_path)
    todo = [r for r in records if r.id not in appender.done_ids]
    errors: list[dict[str, str]] = []
    started = time.perf_counter()
    generated = 0
    try:
        with tqdm(total=len(todo), desc=f"generate[{kind}]", disable=not progress, unit="q") as bar:
            for batch in _batches(todo, video, cfg.batch_size, errors):
                recs = [r for r, _ in batch]
                texts = generator.generate([prompt_fn(r) for r in recs], [f for _, f in batch],
                                           [row_seed(cfg.seed, r.id) for r in recs])
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
    return {
        "step": "generate" if kind == "answer" else kind,
        "backend": generator.backend,
        "generation_config": generator.settings(),
        "records": len(records),
        "skipped_existing": len(records) - len(todo),
        "generated": generated,
        "video_errors": errors,
        "seconds": round(seconds, 3),
        "answers_per_s": round(generated / seconds, 3) if seconds > 0 else None,
    }
