"""Rank awareness for the training steps: one process, or one of ``torchrun``'s workers.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`init` joins the process
group (nccl on GPU, gloo on CPU) and pins the rank's GPU, so ``"cuda"`` means this rank's
device; alone, every call here is a no-op and the code paths are the single-process ones.

Data parallelism is done by hand rather than with ``DistributedDataParallel``: DDP needs every
rank to run a forward and backward in lockstep, and a rank whose whole micro-batch was
unreadable videos (skipped, with a reason) has nothing to run. Summing the gradients once per
optimizer step (:func:`sum_gradients`) is what DDP does under ``no_sync`` on all but the last
micro-step, and gives exactly the single-process gradient when each rank's loss is divided by
the *global* token (or pair) count; it only gives up DDP's overlap of the reduction with the
backward, which is small for LoRA's few-MB gradients. Full fine-tunes past one GPU go through
DeepSpeed (``sft.deepspeed``), which shards and reduces itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Rank 0: the one process that saves, writes metrics and logs to MLflow."""
    return rank() == 0


def in_worker() -> bool:
    """Whether this process was started by ``torchrun`` (then a launcher must not start another)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init() -> None:
    """Join the process group when started as one of several ranks (idempotent)."""
    if world_size() <= 1 or active():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def shutdown(done: bool) -> None:
    """Leave the process group, if joined. A rank that tears its group down while another still
    works (rank 0 writing the model) can abort in the teardown (SIGABRT, "terminate called without
    an active exception") after its own work is done, and torchrun then fails the step: so a rank
    that ``done`` its work first waits for every rank. A failed rank leaves at once (waiting could
    hang on ranks that wait for it), and torchrun stops the others."""
    if active():
        if done:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def _device() -> torch.device:
    # nccl reduces CUDA tensors only; gloo CPU ones.
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def all_sum(values: list[float]) -> list[float]:
    """The element-wise sum of ``values`` over all ranks (the values themselves when alone)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(t)
    return t.tolist()


def all_min_max(value: int) -> tuple[int, int]:
    """The smallest and largest ``value`` over all ranks."""
    if not active():
        return value, value
    t = torch.tensor([-value, value], dtype=torch.int64, device=_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return -int(t[0]), int(t[1])


BUCKET_BYTES = 25 * 2**20
"""Gradients are summed in flat buckets of about this size (DDP's default): one collective per
bucket instead of one per tensor (LoRA has hundreds of small ones)."""


def sum_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum every trainable parameter's gradient over the ranks (a missing one counts as 0)."""
    if not active():
        return
    bucket: list[torch.Tensor] = []
    size = 0
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= BUCKET_BYTES:
            _sum_bucket(bucket)
            bucket, size = [], 0
    _sum_bucket(bucket)


def _sum_bucket(grads: list[torch.Tensor]) -> None:
    for dtype in {g.dtype for g in grads}:
        same = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in same])
        torch.distributed.all_reduce(flat)
        for g, part in zip(same, flat.split([g.numel() for g in same]), strict=True):
            g.copy_(part.view_as(g))


def broadcast_parameters(params: list[torch.nn.Parameter]) -> None:
    """Rank 0's initial weights on every rank (what DDP does at construction)."""
    if not active():
        return
    for p in params:
        torch.distributed.broadcast(p.data, src=0)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a small picklable value: skip lists), in rank order."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


@contextmanager
def full_weights(module: torch.nn.Module, modify: bool = False) -> Iterator[None]:
    """Inside, every parameter of ``module`` is whole on every rank: DeepSpeed ZeRO-3 keeps only
    each rank's shard (a save outside this would write empty tensors). With ``modify``, what
    rank 0 writes into them is what every rank keeps. Without ZeRO-3 it does nothing."""
    partitioned = [p for p in module.parameters() if hasattr(p, "ds_id")]
    if not partitioned:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0 if modify else None):
        yield
