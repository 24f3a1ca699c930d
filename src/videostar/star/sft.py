"""Instruction tuning on verified answers, always from the base checkpoint.

A plain PyTorch loop (AdamW, warmup + cosine) in one process or under ``torchrun`` (each rank
takes every world-size-th example of each micro-batch; see :mod:`videostar.training.distributed`); with
``sft.deepspeed`` set it runs through a DeepSpeed engine instead (ZeRO configs in
``training/deepspeed/``). The loss covers answer tokens only. Checkpoints every
``sft.checkpoint_steps`` optimizer steps let a rerun continue (:mod:`videostar.training.checkpoints`).

Why not HF ``Trainer``/``accelerate`` (evaluated for issue 12): its checkpoints are pickles
(``optimizer.pt``, ``scheduler.pt``, ``rng_state_N.pth``, ``training_args.bin``) loaded with
``torch.load``, which our shared output folders refuse (:mod:`videostar.training.state`);
its schedule gives the first step lr 0 (see :func:`warmup_cosine`); and the video decoding with
skip reasons, the answer-only token-weighted loss over the accumulation window and the global
batch would all come back as a collator, a ``compute_loss`` and callbacks: no fewer lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from videostar.config import SFTConfig, VideoConfig
from videostar.config.recipe import DEEPSPEED_DIR
from videostar.data.records import Record, read_records
from videostar.errors import VideoError, VideostarError
from videostar.families import freeze_for_full_finetune
from videostar.model import LoadedModel, add_lora, load_model, read_card, save_model
from videostar.prompts import answer_prompt
from videostar.resume import file_hash, model_content, published_result, stamp_digest
from videostar.store import resolve
from videostar.training import distributed as dist
from videostar.training import state as state
from videostar.training.checkpoints import Checkpoints, folder_for, load_shard, trainable
from videostar.video import read_frames


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


def decode_batch(batch: list[Any], video: VideoConfig, skipped: list[dict[str, str]]):
    """Frames for each item (anything with id, video, start, end); unreadable ones are listed in
    ``skipped`` and left out, so one bad video never stops a training run."""
    kept, frames = [], []
    for ex in batch:
        try:
            frames.append(read_frames(ex.video, video.num_frames, ex.start, ex.end,
                                      video.fps, video.max_frames, video.max_pixels, video.backend))
            kept.append(ex)
        except VideoError as exc:
            skipped.append({"id": ex.id, "video": ex.video, "reason": exc.cause})
    return kept, frames


def _deepspeed_engine(lm: LoadedModel, cfg: SFTConfig, optim: torch.optim.Optimizer, sched: Any):
    """A DeepSpeed engine around ``lm.model`` that trains exactly as the plain loop does.

    It gets the plain loop's own AdamW and LambdaLR (the schedule whose first step learns;
    DeepSpeed's ``WarmupCosineLR`` gives the first steps lr 0), and unmanaged gradient
    accumulation: :func:`train` decides the windows (a partial last one included) and calls
    ``step()`` once at the end of each, so DeepSpeed never counts micro-steps of its own.
    ``train_micro_batch_size_per_gpu`` is only DeepSpeed's bookkeeping: ``batch_size`` is the
    global micro-batch, split over the ranks by :func:`train`.
    """
    import deepspeed

    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),  # alone: rank 0 of 1
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29511")):
        os.environ.setdefault(key, value)
    path = Path(cfg.deepspeed)
    if not path.exists():
        path = DEEPSPEED_DIR / cfg.deepspeed
    ds_cfg = json.loads(path.read_text())
    ds_cfg.update({
        "bf16": {"enabled": torch.cuda.is_available()},
        "train_micro_batch_size_per_gpu": max(1, math.ceil(cfg.batch_size / dist.world_size())),
        "gradient_accumulation_steps": cfg.grad_accum,
        "managed_gradient_accumulation": False,
        "gradient_clipping": cfg.max_grad_norm,
        "zero_allow_untested_optimizer": True,  # torch's AdamW, as the plain loop
    })
    engine, _, _, _ = deepspeed.initialize(model=lm.model, optimizer=optim, lr_scheduler=sched,
                                           config=ds_cfg)
    return engine


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR factor of optimizer step ``step`` (0-based): linear warmup that starts above 0 (the
    first step learns; ``get_cosine_schedule_with_warmup`` gives it lr 0), then cosine to 0 at
    ``total`` (the last step still has lr > 0)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule(optim: torch.optim.Optimizer, warmup_ratio: float, total_steps: int) -> Any:
    """The one learning-rate schedule of every trainer here (SFT on either engine, the reward
    model): :func:`warmup_cosine` over ``total_steps`` optimizer steps, the first
    ``warmup_ratio`` of them warming up."""
    from torch.optim.lr_scheduler import LambdaLR

    warmup = int(warmup_ratio * total_steps)
    return LambdaLR(optim, lambda s: warmup_cosine(s, warmup, total_steps))


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


def fp32_master(lm: LoadedModel) -> torch.dtype | None:
    """Trainable weights in float32 (the optimizer's master copy); returns the dtype they were
    in (to autocast the forward to) or None when they already were float32.

    AdamW on bf16 weights rounds most small updates away (lr 2e-5: 4 % of weights moved vs
    91 % in fp32); LoRA adapters are float32 already (PEFT upcasts them).
    """
    low = {p.dtype for p in lm.model.parameters() if p.requires_grad} - {torch.float32}
    if not low:
        return None
    for p in lm.model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return low.pop()


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
    """Fine-tune ``lm.model`` in place on ``examples``; returns loss history and timings.

    The loss of an optimizer step is token-weighted over its whole accumulation window (sum of
    answer-token losses / answer tokens in the window): exactly the loss of one batch holding
    the window's examples, so 4x1, 2x2 and 1x4 train the same objective, and a partial last
    window is scaled by its own tokens. Token-weighting (not per-example) is what the
    un-accumulated batch loss of transformers computes, and what HF Trainer does since 4.46.

    ``batch_size`` x ``grad_accum`` examples make one optimizer step whatever the world size:
    under ``torchrun`` rank ``r`` of ``W`` takes examples ``r, r+W, ...`` of each micro-batch,
    the window's token count is summed over the ranks, and so are the gradients, so W ranks
    compute the single-process step (up to float rounding). With ``checkpoints`` it resumes
    from the newest one and writes one every ``checkpoints.every`` steps.
    """
    rank, world = dist.rank(), dist.world_size()
    torch.manual_seed(cfg.seed + rank)  # per rank: dropout masks differ across ranks
    per_epoch = math.ceil(len(examples) / cfg.batch_size)
    epochs = functools.lru_cache(maxsize=2)(lambda e: epoch_batches(examples, cfg, e))
    micro_steps = max(1, math.ceil(per_epoch * cfg.epochs))
    windows = [range(i, min(i + cfg.grad_accum, micro_steps))
               for i in range(0, micro_steps, cfg.grad_accum)]
    total_steps = len(windows)
    if gradient_checkpointing(cfg):
        enable_checkpointing(lm)
    autocast = None if cfg.deepspeed else fp32_master(lm)  # DeepSpeed keeps its own fp32 master
    params = [p for p in lm.model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = schedule(optim, cfg.warmup_ratio, total_steps)
    engine = _deepspeed_engine(lm, cfg, optim, sched) if cfg.deepspeed else None
    if engine is None:
        dist.broadcast_parameters(params)
    lm.model.train()
    losses: list[float] = []
    skipped: list[dict[str, str]] = []
    clipped: list[str] = []
    first, tokens, seconds = 0, 0, 0.0
    resume = None
    if checkpoints is not None:
        checkpoints.claim()
        resume = checkpoints.latest()
        if resume is not None:
            meta = _load_checkpoint(checkpoints, resume, lm, optim, sched, engine)
            first, losses, seconds = meta["step"], meta["losses"], meta["seconds"]
            if dist.is_main():  # rank 0 holds every rank's lists (gathered at each save)
                skipped, clipped, tokens = meta["video_errors"], meta["clipped"], meta["tokens"]
    filler: list[dict[str, Any]] = []

    def prepare(k: int) -> tuple[list[tuple[dict[str, Any], float]], list[dict[str, str]], list[str]]:
        """Step ``k``'s encoded micro-batches with their loss weights (1; 0 for a filler), and
        what it skipped and clipped. Under DeepSpeed a rank with nothing readable in the window
        still gets one filler micro-batch: the engine's collectives run inside every forward
        and backward, so every rank must run them, and a weight of 0 adds nothing."""
        encoded, skipped_k, clipped_k = [], [], []
        for step in windows[k]:
            batch = epochs(step // per_epoch)[step % per_epoch]
            kept, frames = decode_batch(batch[rank::world], video, skipped_k)
            if kept:
                encoded.append((lm.encode_training(
                    [e.question for e in kept], [e.answer for e in kept], frames,
                    cfg.max_length, [e.id for e in kept], clipped_k, cfg.rationale_weight), 1.0))
        if engine is not None and not encoded:
            if not filler:
                for ex in examples:  # the first readable one, decoded once
                    kept, frames = decode_batch([ex], video, [])
                    if kept:
                        filler.append(lm.encode_training([ex.question], [ex.answer], frames, cfg.max_length,
                                                         rationale_weight=cfg.rationale_weight))
                        break
            encoded = [(filler[0], 0.0)] if filler else []
        return encoded, skipped_k, clipped_k

    # Decoding and encoding the next step (half of a small model's step time) overlap with this
    # step's forward and backward, as a DataLoader worker would: one thread, one step ahead
    # (decoders, the tokenizer and torch release the GIL). The data order and every tensor are
    # those of the plain loop, so results are identical.
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sft-data")
    upcoming = prefetch.submit(prepare, first) if first < total_steps else None
    started = time.perf_counter()
    try:
        for k in tqdm(range(first, total_steps), desc="sft", disable=not progress or not dist.is_main(),
                      unit="step", initial=first, total=total_steps):
            encoded, skipped_k, clipped_k = upcoming.result()
            skipped += skipped_k
            clipped += clipped_k
            upcoming = prefetch.submit(prepare, k + 1) if k + 1 < total_steps else None
            n_tokens = dist.all_sum([sum(answer_tokens(x["labels"], x.get("loss_weights"))
                                         for x, weight in encoded if weight)])[0]
            if n_tokens == 0:  # nothing readable in the window on any rank
                continue
            if engine is not None:  # every rank runs as many passes as the busiest one
                most = dist.all_min_max(len(encoded))[1]
                encoded += [(encoded[-1][0], 0.0)] * (most - len(encoded))
            window_loss = 0.0
            for inputs, weight in encoded:
                labels, token_weights = inputs["labels"], inputs.get("loss_weights")
                batch = {key: value for key, value in inputs.items() if key not in ("labels", "loss_weights")}
                tokens += int(batch["attention_mask"].sum()) if weight else 0
                with torch.autocast(lm.device.type, dtype=autocast, enabled=autocast is not None):
                    logits = (engine or lm.model)(**batch, use_cache=False).logits
                loss = answer_loss_sum(logits, labels, token_weights) * weight / n_tokens
                if engine is not None:  # the engine averages the gradients over the ranks
                    engine.backward(loss * world, scale_wrt_gas=False)
                else:
                    loss.backward()
                window_loss += float(loss.detach())
            if engine is not None:
                engine.step()  # the window's end: reduce, clip, AdamW and the schedule, once
            else:
                dist.sum_gradients(params)
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optim.step()
                sched.step()
                optim.zero_grad(set_to_none=True)
            losses.append(dist.all_sum([window_loss])[0])
            if checkpoints is not None and checkpoints.due(k + 1, total_steps):
                _save_checkpoint(checkpoints, k + 1, lm, optim, sched, engine, {
                    "losses": losses, "seconds": seconds + time.perf_counter() - started,
                    **_gathered(skipped, clipped, tokens)})
    finally:
        prefetch.shutdown(cancel_futures=True)
    lm.model.eval()
    seconds += time.perf_counter() - started
    gathered = _gathered(skipped, clipped, tokens)
    tail = losses[-max(1, len(losses) // 4):] if losses else []
    return {
        "examples": len(examples),
        "micro_steps": micro_steps,
        "optimizer_steps": total_steps,
        "world_size": world,
        "resumed_from": int(resume.name[5:]) if resume is not None else None,
        "train_loss": float(np.mean(tail)) if tail else None,
        "first_loss": losses[0] if losses else None,
        "loss_history": [round(x, 5) for x in losses],
        "tokens": gathered["tokens"],
        "video_errors": gathered["video_errors"],
        "clipped": gathered["clipped"],
        "seconds": round(seconds, 3),
        "engine": "deepspeed" if engine is not None else "torch",
    }


@contextlib.contextmanager
def _zero_parts(engine: Any) -> Iterator[tuple[list[torch.Tensor], torch.optim.Optimizer]]:
    """A DeepSpeed engine's fp32 master partitions on this rank (ZeRO-1/2 and ZeRO-3 name them
    differently), and the torch optimizer stepping them, its groups holding them: ZeRO-3 empties
    the groups between steps, which ``state_dict`` and ``load_state_dict`` need."""
    opt = engine.optimizer
    inner = getattr(opt, "optimizer", opt)
    flats = getattr(opt, "fp32_partitioned_groups_flat", None)
    if flats is None:
        yield list(getattr(opt, "single_partition_of_fp32_groups", None) or []), inner
        return
    emptied = [group["params"] for group in inner.param_groups]
    for sub, flat in enumerate(flats):
        inner.param_groups[opt.sub_group_to_group_id[sub]]["params"] = [
            *inner.param_groups[opt.sub_group_to_group_id[sub]]["params"], flat]
    try:
        yield list(flats), inner
    finally:
        for group, params in zip(inner.param_groups, emptied, strict=True):
            group["params"] = params


def _save_checkpoint(checkpoints: Checkpoints, step: int, lm: LoadedModel, optim: torch.optim.Optimizer,
                     sched: Any, engine: Any, meta: dict[str, Any]) -> None:
    """A checkpoint of either path: under DeepSpeed the weights gathered whole and each rank's
    fp32 master and optimizer partition in its own part (safetensors, not DeepSpeed's pickles)."""
    if engine is None:
        checkpoints.save(step, trainable(lm.model), optim, sched, meta)
        return
    with _zero_parts(engine) as (masters, inner):
        optim_tensors, optim_meta = state.pack_optimizer(inner.state_dict())
    shard = ({**{f"master.{i}": m for i, m in enumerate(masters)},
              **{f"optimizer.{k}": v for k, v in optim_tensors.items()}}, {"optimizer": optim_meta})
    with dist.full_weights(lm.model):
        checkpoints.save(step, trainable(lm.model), None, sched, meta, shard)


def _load_checkpoint(checkpoints: Checkpoints, path: Path, lm: LoadedModel, optim: torch.optim.Optimizer,
                     sched: Any, engine: Any) -> dict[str, Any]:
    """Restore what :func:`_save_checkpoint` wrote; returns its metadata."""
    if engine is None:
        return checkpoints.load(path, trainable(lm.model), optim, sched)
    with dist.full_weights(lm.model, modify=True):
        meta = checkpoints.load(path, trainable(lm.model), None, sched)
    if meta["world_size"] != dist.world_size():
        raise VideostarError(f"{path}: a DeepSpeed checkpoint of {meta['world_size']} rank(s) resumes "
                             f"on as many, not {dist.world_size()} (its optimizer is sharded)")
    tensors, shard_meta = load_shard(path)
    with _zero_parts(engine) as (masters, inner):
        with torch.no_grad():
            for i, master in enumerate(masters):
                master.copy_(tensors[f"master.{i}"])
        inner.load_state_dict(state.unpack_optimizer(state.prefixed(tensors, "optimizer"),
                                                     shard_meta["optimizer"]))
    return meta


def _gathered(skipped: list[dict[str, str]], clipped: list[str], tokens: int) -> dict[str, Any]:
    """Every rank's skip lists and token count, as one (rank 0 reports them)."""
    parts = dist.gather_objects((skipped, clipped, tokens))
    return {"video_errors": [x for s, _, _ in parts for x in s],
            "clipped": [x for _, c, _ in parts for x in c], "tokens": sum(t for *_, t in parts)}


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


def sft(
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
