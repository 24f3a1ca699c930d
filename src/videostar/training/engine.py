"""The DeepSpeed engine of the training loop, and checkpoints of either path.

The engine gets the loop's own AdamW and LambdaLR (the schedule whose first step learns;
DeepSpeed's ``WarmupCosineLR`` gives the first steps lr 0), and unmanaged gradient
accumulation: the loop decides the windows (a partial last one included) and calls ``step()``
once at the end of each, so DeepSpeed never counts micro-steps of its own. Its checkpoints are
ours (safetensors, not DeepSpeed's pickles): the weights gathered whole, and each rank's fp32
master and optimizer partition in its own part, so they resume on the same world size only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from videostar.config.recipe import DEEPSPEED_DIR
from videostar.errors import VideostarError
from videostar.training import distributed as dist
from videostar.training import state as state
from videostar.training.checkpoints import Checkpoints, load_shard, trainable


def config(name: str, batch_size: int, grad_accum: int) -> dict[str, Any]:
    """The DeepSpeed config ``name`` (a path, or one shipped in ``training/deepspeed/``) with the
    batch bookkeeping: ``batch_size`` is the global micro-batch, split over the ranks by the
    loop's batch source, so ``train_micro_batch_size_per_gpu`` only informs DeepSpeed."""
    path = Path(name)
    if not path.exists():
        path = DEEPSPEED_DIR / name
    cfg = json.loads(path.read_text())
    cfg.update({"train_micro_batch_size_per_gpu": max(1, math.ceil(batch_size / dist.world_size())),
                "gradient_accumulation_steps": grad_accum})
    return cfg


def engine(model: torch.nn.Module, optim: torch.optim.Optimizer, sched: Any, cfg: dict[str, Any],
           max_grad_norm: float) -> Any:
    """A DeepSpeed engine around ``model`` that trains exactly as the plain loop does."""
    import deepspeed

    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),  # alone: rank 0 of 1
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29511")):
        os.environ.setdefault(key, value)
    cfg = {**cfg, "bf16": {"enabled": torch.cuda.is_available()}, "managed_gradient_accumulation": False,
           "gradient_clipping": max_grad_norm,
           "zero_allow_untested_optimizer": True}  # torch's AdamW, as the plain loop
    wrapped, _, _, _ = deepspeed.initialize(model=model, optimizer=optim, lr_scheduler=sched, config=cfg)
    return wrapped


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


def save(checkpoints: Checkpoints, step: int, model: torch.nn.Module, optim: torch.optim.Optimizer,
         sched: Any, engine: Any, meta: dict[str, Any]) -> None:
    """A checkpoint of either path; under DeepSpeed each rank's partition goes in its part."""
    if engine is None:
        checkpoints.save(step, trainable(model), optim, sched, meta)
        return
    with _zero_parts(engine) as (masters, inner):
        optim_tensors, optim_meta = state.pack_optimizer(inner.state_dict())
    shard = ({**{f"master.{i}": m for i, m in enumerate(masters)},
              **{f"optimizer.{k}": v for k, v in optim_tensors.items()}}, {"optimizer": optim_meta})
    with dist.full_weights(model):
        checkpoints.save(step, trainable(model), None, sched, meta, shard)


def load(checkpoints: Checkpoints, path: Path, model: torch.nn.Module, optim: torch.optim.Optimizer,
         sched: Any, engine: Any) -> dict[str, Any]:
    """Restore what :func:`save` wrote; returns its metadata."""
    if engine is None:
        return checkpoints.load(path, trainable(model), optim, sched)
    with dist.full_weights(model, modify=True):
        meta = checkpoints.load(path, trainable(model), None, sched)
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
