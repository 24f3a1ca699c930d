"""Instruction tuning on verified answers, always from the base checkpoint.

A plain PyTorch loop (AdamW, warmup + cosine) on CPU or one GPU; with ``sft.deepspeed`` set it
runs through a DeepSpeed engine instead (ZeRO configs in ``train/deepspeed/``). The loss
covers answer tokens only.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from videostar.config import SFTConfig, VideoConfig
from videostar.data.records import Record, read_records
from videostar.errors import VideoError, VideostarError
from videostar.model import LoadedModel, add_lora, load_model, read_card, resolve, save_model
from videostar.prompts import answer_prompt
from videostar.video import read_frames

DEEPSPEED_DIR = Path(__file__).parent / "deepspeed"


@dataclass
class Example:
    """One training pair: the question (never a hint) and the verified answer for a video."""

    id: str
    video: str
    question: str
    answer: str
    start: float | None = None
    end: float | None = None


def examples_from_rows(rows: list[dict[str, Any]], instruction: str) -> list[Example]:
    """Training pairs from verified rows (answers and rationales alike).

    The prompt is the one answer generation uses (question + instruction), so the next
    cycle's model is tuned on exactly what it will be asked; a rationale's hint is never in it.
    """
    prompt = answer_prompt(instruction)
    out = []
    for row in rows:
        rec = Record.from_json(row)
        out.append(Example(rec.id, rec.video, prompt(rec), row["answer"], rec.start, rec.end))
    return out


def _order(examples: list[Example], cfg: SFTConfig) -> list[Example]:
    """Shuffled, or short answers first when the curriculum is on."""
    if cfg.curriculum:
        return sorted(examples, key=lambda e: (len(e.answer), e.id))
    shuffled = list(examples)
    random.Random(cfg.seed).shuffle(shuffled)
    return shuffled


def decode_batch(batch: list[Any], video: VideoConfig, skipped: list[dict[str, str]]):
    """Frames for each item (anything with id, video, start, end); unreadable ones are listed in
    ``skipped`` and left out, so one bad video never stops a training run."""
    kept, frames = [], []
    for ex in batch:
        try:
            frames.append(read_frames(ex.video, video.num_frames, ex.start, ex.end,
                                      video.fps, video.max_frames))
            kept.append(ex)
        except VideoError as exc:
            skipped.append({"id": ex.id, "video": ex.video, "reason": exc.cause})
    return kept, frames


def _deepspeed_engine(lm: LoadedModel, cfg: SFTConfig, total_steps: int):
    import deepspeed

    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29511")):
        os.environ.setdefault(key, value)
    path = Path(cfg.deepspeed)
    if not path.exists():
        path = DEEPSPEED_DIR / cfg.deepspeed
    ds_cfg = json.loads(path.read_text())
    ds_cfg.update({
        "bf16": {"enabled": torch.cuda.is_available()},
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.max_grad_norm,
        "optimizer": {"type": "AdamW", "params": {"lr": cfg.lr, "weight_decay": cfg.weight_decay}},
        "scheduler": {"type": "WarmupCosineLR", "params": {
            "total_num_steps": total_steps,
            "warmup_num_steps": max(1, int(cfg.warmup_ratio * total_steps))}},
    })
    params = [p for p in lm.model.parameters() if p.requires_grad]
    engine, _, _, _ = deepspeed.initialize(model=lm.model, model_parameters=params, config=ds_cfg)
    return engine


def train(
    lm: LoadedModel, examples: list[Example], cfg: SFTConfig, video: VideoConfig,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``lm.model`` in place on ``examples``; returns loss history and timings."""
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    ordered = _order(examples, cfg)
    batches = [ordered[i:i + cfg.batch_size] for i in range(0, len(ordered), cfg.batch_size)]
    micro_steps = max(1, math.ceil(len(batches) * cfg.epochs))
    total_steps = max(1, math.ceil(micro_steps / cfg.grad_accum))
    engine = _deepspeed_engine(lm, cfg, total_steps) if cfg.deepspeed else None
    if engine is None:
        params = [p for p in lm.model.parameters() if p.requires_grad]
        optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = get_cosine_schedule_with_warmup(optim, max(1, int(cfg.warmup_ratio * total_steps)),
                                                total_steps)
    lm.model.train()
    losses: list[float] = []
    skipped: list[dict[str, str]] = []
    started = time.perf_counter()
    for step in tqdm(range(micro_steps), desc="sft", disable=not progress, unit="batch"):
        kept, frames = decode_batch(batches[step % len(batches)], video, skipped)
        if not kept:
            continue
        inputs = lm.encode_training([e.question for e in kept], [e.answer for e in kept], frames)
        loss = (engine or lm.model)(**inputs).loss
        if engine is not None:
            engine.backward(loss)
            engine.step()
        else:
            (loss / cfg.grad_accum).backward()
            if (step + 1) % cfg.grad_accum == 0 or step + 1 == micro_steps:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optim.step()
                sched.step()
                optim.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    lm.model.eval()
    seconds = time.perf_counter() - started
    tail = losses[-max(1, len(losses) // 4):] if losses else []
    return {
        "examples": len(examples),
        "micro_steps": micro_steps,
        "optimizer_steps": total_steps,
        "train_loss": float(np.mean(tail)) if tail else None,
        "first_loss": losses[0] if losses else None,
        "loss_history": [round(x, 5) for x in losses],
        "video_errors": skipped,
        "seconds": round(seconds, 3),
        "engine": "deepspeed" if engine is not None else "torch",
    }


def sft(
    base: str, data_paths: list[str | Path], out: str | Path, cfg: SFTConfig, video: VideoConfig,
    instruction: str, progress: bool = True,
) -> dict[str, Any]:
    """Instruction-tune a fresh copy of ``base`` on the verified rows and save it to ``out``.

    Always from the base checkpoint (Video-STaR §3): a model card naming a different base is
    refused, so a cycle can never silently build on the previous cycle's weights.
    """
    if Path(out).exists():
        raise VideostarError(f"{out}: already exists; refusing to overwrite a saved model")
    errors: list[str] = []
    rows = [r.to_json() for r in read_records(data_paths, errors, text_fields=("answer",))]
    examples = examples_from_rows(rows, instruction)
    if not examples:
        raise VideostarError(f"no verified examples in {', '.join(map(str, data_paths))}")
    card = read_card(resolve(base))
    if card["kind"] != "pretrained":
        raise VideostarError(
            f"{base}: is a fine-tuned model of {card['base']}; SFT starts from the base checkpoint"
        )
    lm = load_model(base)
    torch.manual_seed(cfg.seed)  # the adapter's initial weights are part of the recipe
    if cfg.lora.enabled:
        lm = add_lora(lm, cfg.lora)
    metrics = train(lm, examples, cfg, video, progress)
    kind = "lora" if cfg.lora.enabled else "full"
    save_model(lm, out, kind, {"train_loss": metrics["train_loss"], "examples": len(examples)})
    return {"step": "sft", "model": str(out), "kind": kind, **metrics, "input_errors": errors}
