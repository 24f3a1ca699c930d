"""Instruction tuning on verified answers, always from the base checkpoint.

SFT's part of the training loop (:mod:`videostar.training.loop`): its examples and their
per-epoch order, its micro-batches (decoded videos, encoded question + answer) and its loss,
cross-entropy on answer tokens only, weighted by answer tokens over the accumulation window. The
loop runs it in one process, under ``torchrun``, or through a DeepSpeed engine (``sft.deepspeed``,
ZeRO configs in ``training/deepspeed/``); checkpoints every ``sft.checkpoint_steps`` optimizer
steps let a rerun continue."""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videostar.config import SFTConfig, VideoConfig
from videostar.data.records import Record, read_records
from videostar.errors import VideostarError
from videostar.families import freeze_for_full_finetune
from videostar.model import LoadedModel, add_lora, load_model, read_card, save_model
from videostar.prompts import answer_prompt
from videostar.resume import file_hash, model_content, published_result, stamp_digest
from videostar.store import resolve
from videostar.training import distributed as dist
from videostar.training import engine, loop
from videostar.training.checkpoints import Checkpoints, folder_for
from videostar.training.loop import MicroBatch, decode_batch


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


def epoch_batches(examples: list[Example], cfg: SFTConfig, epoch: int) -> list[list[Example]]:
    """The global micro-batches of ``epoch``: reshuffled each epoch (seeded by seed and epoch, so
    a resumed run sees the same order), or short answers first when the curriculum is on."""
    if cfg.curriculum:
        ordered = sorted(examples, key=lambda e: (len(e.answer), e.id))
    else:
        ordered = list(examples)
        random.Random(cfg.seed if epoch == 0 else f"{cfg.seed}:{epoch}").shuffle(ordered)
    return [ordered[i:i + cfg.batch_size] for i in range(0, len(ordered), cfg.batch_size)]


def answer_loss_sum(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """Summed cross-entropy over answer tokens (``labels != -100``; position ``i`` predicts
    ``i + 1``), each token times its ``weights`` entry when given (rationale vs final answer,
    ``encode_training(rationale_weight=)``). Summed, not averaged, so a window of micro-batches
    can share one denominator."""
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
        reduction="none")
    return (losses if weights is None else losses * weights[:, 1:].flatten()).sum()


def answer_tokens(labels: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    """The loss's denominator: answer tokens, or their summed weights (a weighted mean)."""
    mask = labels[:, 1:] != -100
    return float(mask.sum() if weights is None else weights[:, 1:][mask].sum())


def enable_checkpointing(lm: LoadedModel) -> None:
    """Gradient checkpointing: activations are recomputed in backward instead of kept (the 7B
    memory lever); inputs get grads so checkpointed blocks behind a frozen embedding train."""
    lm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(lm.model, "enable_input_require_grads"):
        lm.model.enable_input_require_grads()


def train(
    lm: LoadedModel, examples: list[Example], cfg: SFTConfig, video: VideoConfig,
    progress: bool = True, checkpoints: Checkpoints | None = None,
) -> dict[str, Any]:
    """Fine-tune ``lm.model`` in place on ``examples`` through the training loop; returns loss
    history and timings.

    The loss of an optimizer step is token-weighted over its whole accumulation window (sum of
    answer-token losses / answer tokens in the window): exactly the loss of one batch holding
    the window's examples. Token-weighting (not per-example) is what the un-accumulated batch
    loss of transformers computes, and what HF Trainer does since 4.46. ``batch_size`` x
    ``grad_accum`` examples make one optimizer step whatever the world size: under ``torchrun``
    rank ``r`` of ``W`` takes examples ``r, r+W, ...`` of each micro-batch.
    """
    rank, world = dist.rank(), dist.world_size()
    per_epoch = math.ceil(len(examples) / cfg.batch_size)
    epochs = functools.lru_cache(maxsize=2)(lambda e: epoch_batches(examples, cfg, e))

    @functools.cache
    def filler() -> MicroBatch | None:
        """A DeepSpeed rank with nothing readable still runs every pass (the engine's collectives
        run inside each forward and backward): the first readable example, decoded once."""
        for ex in examples:
            kept, frames = decode_batch([ex], video, [])
            if kept:
                return MicroBatch(lm.encode_training([ex.question], [ex.answer], frames, cfg.max_length,
                                                     rationale_weight=cfg.rationale_weight), 0.0)
        return None

    def micro_batch(step: int, skipped: list[dict[str, str]], clipped: list[str]) -> MicroBatch | None:
        batch = epochs(step // per_epoch)[step % per_epoch]
        kept, frames = decode_batch(batch[rank::world], video, skipped)
        if not kept:
            return filler() if cfg.deepspeed else None
        inputs = lm.encode_training([e.question for e in kept], [e.answer for e in kept], frames,
                                    cfg.max_length, [e.id for e in kept], clipped, cfg.rationale_weight)
        return MicroBatch(inputs, answer_tokens(inputs["labels"], inputs.get("loss_weights")),
                          int(inputs["attention_mask"].sum()))

    def loss(forward: Callable[..., Any], inputs: dict[str, Any], tokens: float) -> torch.Tensor:
        batch = {key: value for key, value in inputs.items() if key not in ("labels", "loss_weights")}
        logits = forward(**batch, use_cache=False).logits
        return answer_loss_sum(logits, inputs["labels"], inputs.get("loss_weights")) / tokens

    if gradient_checkpointing(cfg):
        enable_checkpointing(lm)
    micro_steps = max(1, math.ceil(per_epoch * cfg.epochs))
    trained = loop.run(
        lm.model, micro_batch, loss, micro_steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed,
        grad_accum=cfg.grad_accum, checkpoints=checkpoints, progress=progress, desc="sft",
        deepspeed=engine.config(cfg.deepspeed, cfg.batch_size, cfg.grad_accum) if cfg.deepspeed else None)
    return {"examples": len(examples), "micro_steps": micro_steps, "optimizer_steps": trained.steps,
            **trained.curve(), "tokens": trained.tokens, "video_errors": trained.video_errors,
            "clipped": trained.clipped, "seconds": round(trained.seconds, 3), "engine": trained.engine}


def gradient_checkpointing(cfg: SFTConfig) -> bool:
    """On when asked, or by default on GPU (where the 7B activations are the memory limit)."""
    if cfg.gradient_checkpointing is None:
        return torch.cuda.is_available()
    return cfg.gradient_checkpointing


def sft_stamp(base: str, data_paths: list[str | Path], cfg: SFTConfig, video: VideoConfig,
              instruction: str) -> dict[str, Any]:
    """What decides the trained weights (a checkpoint resumes only the same run): the base, the
    data's bytes and the settings; the checkpoint interval only says how often."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "checkpoint_steps"}
    return {"step": "sft", "base": model_content(base), "inputs": [file_hash(p) for p in data_paths],
            "sft": settings, "video": dataclasses.asdict(video), "instruction": instruction}


def train_sft(
    base: str, data_paths: list[str | Path], out: str | Path, cfg: SFTConfig, video: VideoConfig,
    instruction: str, progress: bool = True,
) -> dict[str, Any]:
    """Instruction-tune a fresh copy of ``base`` on the verified rows and save it to ``out``.

    Always from the base checkpoint (the Video-STaR paper, section 3): a model card naming a different base is
    refused, so a cycle can never silently build on the previous cycle's weights. A finished
    ``out`` is refused; an unfinished one continues from its newest checkpoint (in
    ``<out>-checkpoints``, removed once the model is saved). Under ``torchrun`` every rank
    calls this; rank 0 alone saves. A model this same run saved before it was killed
    (:func:`videostar.resume.published_result`) is its result; another run's is refused.
    """
    stamp = sft_stamp(base, data_paths, cfg, video, instruction)
    done = published_result(out, stamp)
    if done is not None:
        shutil.rmtree(folder_for(out), ignore_errors=True)  # a kill may have spared them
        return done
    dist.init()
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
    lm = load_model(base, attn_implementation=cfg.attn_implementation)
    torch.manual_seed(cfg.seed)  # the adapter's initial weights are part of the recipe
    if cfg.lora.enabled:
        lm = add_lora(lm, cfg.lora)
    else:
        freeze_for_full_finetune(lm.model)
    checkpoints = (Checkpoints(folder_for(out), stamp, cfg.checkpoint_steps)
                   if cfg.checkpoint_steps else None)
    metrics = train(lm, examples, cfg, video, progress, checkpoints)
    kind = "lora" if cfg.lora.enabled else "full"
    result = {"step": "sft", "model": str(out), "kind": kind, **metrics, "input_errors": errors}
    with dist.full_weights(lm.model):  # ZeRO-3: every rank joins the gather, rank 0 saves
        if dist.is_main():
            save_model(lm, out, kind, {"train_loss": metrics["train_loss"], "examples": len(examples),
                                       "fingerprint": stamp_digest(stamp), "result": result})
    if dist.is_main() and checkpoints is not None:  # the model is whole: its checkpoints are spent
        shutil.rmtree(checkpoints.folder, ignore_errors=True)
    return result
