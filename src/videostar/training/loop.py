"""The one training loop of SFT and the reward model, read top to bottom.

A trainer brings what differs: ``micro_batch(s)``, its part of micro-step ``s`` on this rank,
decoded and encoded, with its size (answer tokens, pairs); and ``loss``, that part's summed
loss over the size of the whole window on all ranks. Everything else is here: windows of
``grad_accum`` micro-steps, the loss normalised by the window's global size (so 4x1, 2x2 and
1x4 micro-batches train one objective, a partial last window by its own size, and W ranks the
single-process step), the rank-aware gradient sum (:mod:`videostar.training.distributed`), fp32
master weights, clipping, AdamW under :func:`schedule`, checkpoints every N steps that resume
bit for bit (:mod:`videostar.training.checkpoints`), and the DeepSpeed engine when asked
(:mod:`videostar.training.engine`).

Why not HF ``Trainer``/``accelerate`` (evaluated for issue 12): its checkpoints are pickles
loaded with ``torch.load``, which our shared output folders refuse
(:mod:`videostar.training.state`); its schedule gives the first step lr 0 (see
:func:`warmup_cosine`); and the video decoding with skip reasons, the size-weighted loss over
the accumulation window and the global batch would all come back as a collator, a
``compute_loss`` and callbacks: no fewer lines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from videostar.config import VideoConfig
from videostar.errors import VideoError
from videostar.training import distributed as dist
from videostar.training import engine as ds
from videostar.training.checkpoints import Checkpoints
from videostar.video import read_frames


@dataclass
class MicroBatch:
    """One micro-step's part on this rank. ``size`` 0 makes it a filler: it runs (every rank
    joins a DeepSpeed engine's or the loss's collectives) and adds nothing."""

    inputs: Any
    size: float
    """Its share of the window's loss denominator: answer tokens (SFT), pairs (reward model)."""
    tokens: int = 0
    """Input tokens it trains on (reported)."""


MicroBatchFn = Callable[[int, list[dict[str, str]], list[str]], MicroBatch | None]
"""``(micro-step, skipped, clipped)`` -> its part on this rank, noting unreadable videos in
``skipped`` and cut answers in ``clipped``; None: nothing to run. Under DeepSpeed, or with a
loss that joins a collective, it returns a (filler) micro-batch for every micro-step."""

LossFn = Callable[[Callable[..., Any], Any, float], torch.Tensor | None]
"""``(forward, inputs, window size)`` -> this rank's summed loss of ``inputs`` over the window's
size on all ranks (None: nothing to backpropagate). ``forward`` is the model (or its DeepSpeed
engine) under the loop's autocast."""


@dataclass
class Trained:
    """What the loop did; rank 0 holds every rank's lists and token count."""

    steps: int
    losses: list[float]
    resumed_from: int | None
    tokens: int
    video_errors: list[dict[str, str]]
    clipped: list[str]
    seconds: float
    world_size: int
    engine: str

    def curve(self) -> dict[str, Any]:
        """The loss curve as every trainer reports it: the last quarter's mean, the first, all."""
        tail = self.losses[-max(1, len(self.losses) // 4):]
        return {"world_size": self.world_size, "resumed_from": self.resumed_from,
                "train_loss": float(np.mean(tail)) if tail else None,
                "first_loss": self.losses[0] if self.losses else None,
                "loss_history": [round(x, 5) for x in self.losses]}


def run(
    model: torch.nn.Module, micro_batch: MicroBatchFn, loss: LossFn, micro_steps: int, *, lr: float,
    weight_decay: float, warmup_ratio: float, max_grad_norm: float, seed: int, grad_accum: int = 1,
    deepspeed: dict[str, Any] | None = None, checkpoints: Checkpoints | None = None,
    progress: bool = True, desc: str = "train",
) -> Trained:
    """Train ``model``'s trainable parameters in place over ``micro_steps`` micro-steps,
    ``grad_accum`` to an optimizer step; ``deepspeed`` is an engine config
    (:func:`videostar.training.engine.config`). With ``checkpoints`` it resumes from the newest
    one and writes one every ``checkpoints.every`` steps."""
    rank, world = dist.rank(), dist.world_size()
    torch.manual_seed(seed + rank)  # per rank: dropout masks differ across ranks
    windows = [range(i, min(i + grad_accum, micro_steps)) for i in range(0, micro_steps, grad_accum)]
    total_steps = len(windows)
    autocast = None if deepspeed else fp32_master(model)  # DeepSpeed keeps its own fp32 master
    device = next(model.parameters()).device.type
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = schedule(optim, warmup_ratio, total_steps)
    engine = ds.engine(model, optim, sched, deepspeed, max_grad_norm) if deepspeed else None
    if engine is None:
        dist.broadcast_parameters(params)
    model.train()
    losses: list[float] = []
    skipped: list[dict[str, str]] = []
    clipped: list[str] = []
    first, tokens, seconds = 0, 0, 0.0
    resume = None
    if checkpoints is not None:
        checkpoints.claim()
        resume = checkpoints.latest()
        if resume is not None:
            meta = ds.load(checkpoints, resume, model, optim, sched, engine)
            first, losses, seconds = meta["step"], meta["losses"], meta["seconds"]
            if dist.is_main():  # rank 0 holds every rank's lists (gathered at each save)
                skipped, clipped, tokens = meta["video_errors"], meta["clipped"], meta["tokens"]

    def forward(**inputs: Any) -> Any:
        with torch.autocast(device, dtype=autocast, enabled=autocast is not None):
            return (engine or model)(**inputs)

    def prepare(k: int) -> tuple[list[MicroBatch], list[dict[str, str]], list[str]]:
        """Step ``k``'s micro-batches, and what they skipped and clipped."""
        skipped_k: list[dict[str, str]] = []
        clipped_k: list[str] = []
        window = [micro_batch(s, skipped_k, clipped_k) for s in windows[k]]
        return [mb for mb in window if mb is not None], skipped_k, clipped_k

    # Decoding and encoding the next step (half of a small model's step time) overlap with this
    # step's forward and backward, as a DataLoader worker would: one thread, one step ahead
    # (decoders, the tokenizer and torch release the GIL). The data order and every tensor are
    # those of a loop without it, so results are identical.
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{desc}-data")
    upcoming = prefetch.submit(prepare, first) if first < total_steps else None
    started = time.perf_counter()
    try:
        for k in tqdm(range(first, total_steps), desc=desc, disable=not progress or not dist.is_main(),
                      unit="step", initial=first, total=total_steps):
            window, skipped_k, clipped_k = upcoming.result()
            skipped += skipped_k
            clipped += clipped_k
            upcoming = prefetch.submit(prepare, k + 1) if k + 1 < total_steps else None
            size = dist.all_sum([sum(mb.size for mb in window)])[0]
            if size == 0:  # nothing readable in the window on any rank
                continue
            window_loss = 0.0
            for mb in window:
                tokens += mb.tokens
                part = loss(forward, mb.inputs, size)
                if part is None:
                    continue
                if not mb.size:  # a filler
                    part = part * 0.0
                if engine is not None:  # the engine averages the gradients over the ranks
                    engine.backward(part * world, scale_wrt_gas=False)
                else:
                    part.backward()
                window_loss += float(part.detach())
            if engine is not None:
                engine.step()  # the window's end: reduce, clip, AdamW and the schedule, once
            else:
                dist.sum_gradients(params)
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                optim.step()
                sched.step()
                optim.zero_grad(set_to_none=True)
            losses.append(dist.all_sum([window_loss])[0])
            if checkpoints is not None and checkpoints.due(k + 1, total_steps):
                ds.save(checkpoints, k + 1, model, optim, sched, engine, {
                    "losses": losses, "seconds": seconds + time.perf_counter() - started,
                    **_gathered(skipped, clipped, tokens)})
    finally:
        prefetch.shutdown(cancel_futures=True)
    model.eval()
    seconds += time.perf_counter() - started
    gathered = _gathered(skipped, clipped, tokens)
    return Trained(total_steps, losses, int(resume.name[5:]) if resume is not None else None,
                   gathered["tokens"], gathered["video_errors"], gathered["clipped"], seconds, world,
                   "deepspeed" if engine is not None else "torch")


def _gathered(skipped: list[dict[str, str]], clipped: list[str], tokens: int) -> dict[str, Any]:
    """Every rank's skip lists and token count, as one (rank 0 reports them)."""
    parts = dist.gather_objects((skipped, clipped, tokens))
    return {"video_errors": [x for s, _, _ in parts for x in s],
            "clipped": [x for _, c, _ in parts for x in c], "tokens": sum(t for *_, t in parts)}


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR factor of optimizer step ``step`` (0-based): linear warmup that starts above 0 (the
    first step learns; ``get_cosine_schedule_with_warmup`` gives it lr 0), then cosine to 0 at
    ``total`` (the last step still has lr > 0)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule(optim: torch.optim.Optimizer, warmup_ratio: float, total_steps: int) -> Any:
    """The one learning-rate schedule of the loop, on either engine: :func:`warmup_cosine` over
    ``total_steps`` optimizer steps, the first ``warmup_ratio`` of them warming up."""
    from torch.optim.lr_scheduler import LambdaLR

    warmup = int(warmup_ratio * total_steps)
    return LambdaLR(optim, lambda s: warmup_cosine(s, warmup, total_steps))


def fp32_master(model: torch.nn.Module) -> torch.dtype | None:
    """Trainable weights in float32 (the optimizer's master copy); returns the dtype they were
    in (to autocast the forward to) or None when they already were float32.

    AdamW on bf16 weights rounds most small updates away (lr 2e-5: 4 % of weights moved vs
    91 % in fp32); LoRA adapters and the reward head are float32 already.
    """
    low = {p.dtype for p in model.parameters() if p.requires_grad} - {torch.float32}
    if not low:
        return None
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return low.pop()


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
