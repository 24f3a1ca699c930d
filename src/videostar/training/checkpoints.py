"""Resumable checkpoints of SFT, reward-model and PPO training, every N optimizer steps: the one
checkpoint format and code path of every trainer.

A checkpoint ``step-N`` holds the trainable weights (adapters, heads, or the unfrozen blocks),
the optimizer and scheduler, the trainer's own metadata (loss history, skip lists), and every
rank's RNG (``rank-R/``), as safetensors + JSON (:mod:`videostar.training.state`: loading never
runs code; a pickle in a checkpoint folder is refused unopened). The data position is the step
itself: the example order is a function of the seed, so step N continues at the (N+1)-th window
of the epoch and no example is trained twice.

All ranks write into ``.step-N.tmp`` and rank 0 renames it into place once every rank's part
is there, so a ``step-N`` folder is complete or absent; one that is not (copied partly, a
disk error) is ignored with one line, and one that does not read back is named and the one
before it resumed (:meth:`Checkpoints.resume`). Every file and folder of a new checkpoint is
fsynced before it is renamed into place, and the rename before the older checkpoints are
deleted, so a power loss never leaves no checkpoint at all. The newest ``keep`` are kept. The
folder records what produced it (its stamp, :func:`videostar.resume.claim`): checkpoints of
other work are refused, never resumed; it also records the world size, and a resume on another
one says so in one line (the global batch stays, each rank's share and RNG change).

A DeepSpeed run's optimizer is sharded: each rank writes its own part (``shard``) beside its
RNG, and such a checkpoint resumes on the same world size only.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from videostar.errors import VideostarError
from videostar.outputs import clean_debris, publish_mode
from videostar.resume import STAMP as STAMP  # the one stamp file name, of steps and checkpoints
from videostar.resume import claim
from videostar.training import distributed as dist
from videostar.training import state as state


def folder_for(model_out: str | Path) -> Path:
    """Where the checkpoints of the model saved to ``model_out`` live: beside it, so the model
    folder itself only ever appears complete."""
    model_out = Path(model_out)
    return model_out.parent / f"{model_out.name}-checkpoints"


class Checkpoints:
    """The checkpoints of one training run in ``folder``; ``stamp`` says which run. One is due
    every ``every`` steps (0: never); the newest ``keep`` stay."""

    def __init__(self, folder: str | Path, stamp: dict[str, Any], every: int, keep: int = 1):
        self.folder, self.every, self.keep = Path(folder), every, keep
        self.stamp = json.loads(json.dumps(stamp, sort_keys=True, default=str))

    def claim(self, fresh: bool | None = None) -> None:
        """Sweep killed saves' debris and record the stamp and world size; checkpoints of other
        work are refused (``fresh``: removed; None: the step cannot start fresh), a changed world
        size is named."""
        if dist.is_main():  # alone: the other ranks wait (or are stopped by torchrun if it fails)
            world = dist.world_size()
            was = claim(self.folder, self.stamp, ("step-*",), fresh, {"world_size": world}
                        ).get("world_size", 1)
            if was != world and any(self.folder.glob("step-*")):
                print(f"checkpoint: {self.folder} was written on {was} rank(s), resuming on "
                      f"{world}: the global batch is the same, each rank's share of it and "
                      "its random state are not", file=sys.stderr)
            clean_debris(self.folder, (".step-*.tmp",))
        dist.barrier()

    def _complete(self, path: Path) -> str | None:
        """What a checkpoint folder lacks ('' when nothing)."""
        needed = [path / state.TENSORS, path / state.META]
        if needed[1].is_file():
            try:
                world = json.loads(needed[1].read_text()).get("world_size", 1)
            except (ValueError, AttributeError):
                return f"{state.META} that reads as a JSON object"
            if type(world) is not int or world < 1:
                return f"{state.META} with a rank count (world_size is {world!r:.40})"
            needed += [path / f"rank-{r}" / state.META for r in range(world)]
        missing = [p for p in needed if not p.is_file()]
        return str(missing[0].relative_to(path)) if missing else ""

    def found(self) -> Iterator[Path]:
        """The complete checkpoints, newest first (incomplete ones are named and passed over; one
        holding a pickle is refused, never opened)."""
        steps = [p for p in self.folder.glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
        for path in sorted(steps, key=lambda p: int(p.name[5:]), reverse=True):
            state.refuse_pickles(path)
            missing = self._complete(path)
            if not missing:
                yield path
            elif dist.is_main():
                print(f"checkpoint: ignoring the incomplete {path} (no {missing})", file=sys.stderr)

    def latest(self) -> Path | None:
        """The newest complete checkpoint."""
        return next(self.found(), None)

    def resume(self, load: Callable[[Path], dict[str, Any]]) -> dict[str, Any] | None:
        """Restore the newest checkpoint that reads back (``load(path)`` restores it, e.g. with
        :meth:`load`, and returns its metadata): one that does not is named with its reason and
        the one before it tried; when none reads, the newest's reason is raised. None when
        there is none."""
        first: VideostarError | None = None
        for path in self.found():
            try:
                return load(path)
            except VideostarError as exc:
                first = first or exc
                print(f"checkpoint: {exc}; trying the one before it", file=sys.stderr)
        if first is not None:
            raise first
        return None

    def due(self, step: int, total: int) -> bool:
        return self.every > 0 and step % self.every == 0 and step < total

    def save(self, step: int, params: dict[str, torch.nn.Parameter], optim: torch.optim.Optimizer | None,
             sched: Any, meta: dict[str, Any],
             shard: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None) -> Path:
        """Write ``step-N`` (every rank calls this): weights, optimizer (None: it is in the
        ranks' ``shard``), scheduler (None: the trainer has none), ``meta``, and each rank's RNG
        and ``shard`` (tensors, JSON), beside, made durable and renamed into place (replacing a
        ``step-N`` a resume passed over); then all but the newest ``keep`` go, and any newer
        than ``step`` (passed over: their steps are being trained again)."""
        tmp, final = self.folder / f".step-{step}.tmp", self.folder / f"step-{step}"
        if dist.is_main():
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        dist.barrier()
        rng, rng_meta = state.pack_rng()
        mine = tmp / f"rank-{dist.rank()}"
        tensors, extra = {}, {}
        if shard is not None:
            tensors, extra = {f"shard.{k}": v for k, v in shard[0].items()}, {"shard": shard[1]}
        state.write_state(mine, {**rng, **tensors}, {"rng": rng_meta, **extra})
        fsync_tree(mine)
        dist.barrier()
        if dist.is_main():
            tensors = {f"weights.{k}": v for k, v in params.items()}
            head = {"step": step, "world_size": dist.world_size(),
                    "scheduler": sched.state_dict() if sched is not None else None}
            if optim is not None:
                optim_tensors, head["optimizer"] = state.pack_optimizer(optim.state_dict())
                tensors |= {f"optimizer.{k}": v for k, v in optim_tensors.items()}
            state.write_state(tmp, tensors, {**head, **meta})
            publish_mode(tmp)
            fsync_tree(tmp)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            fsync_tree(self.folder, recurse=False)  # the rename itself
            older = sorted((int(p.name[5:]), p) for p in self.folder.glob("step-*")
                           if p.name[5:].isdigit() and p != final)
            kept = [p for n, p in older if n < step][::-1][:self.keep - 1]
            for _, old in older:
                if old not in kept:
                    shutil.rmtree(old, ignore_errors=True)
        dist.barrier()
        return final

    def load(self, path: Path, params: dict[str, torch.nn.Parameter], optim: torch.optim.Optimizer | None,
             sched: Any) -> dict[str, Any]:
        """Restore what :meth:`save` wrote into ``params``, ``optim``, ``sched`` (None: none) and
        this rank's RNG; returns the metadata (``step`` and the caller's own). An entry that does
        not fit is refused in one line naming the file."""
        tensors, meta = state.read_state(path)
        weights = state.prefixed(tensors, "weights")
        if set(weights) != set(params):
            raise VideostarError(f"{path}: its weights do not match this model's trainable ones")
        with state.restoring(path), torch.no_grad():  # a wrong entry: one line, no traceback
            for name, p in params.items():
                p.copy_(weights[name])
            if optim is not None:
                optim.load_state_dict(state.unpack_optimizer(state.prefixed(tensors, "optimizer"),
                                                             meta["optimizer"]))
            if sched is not None:
                sched.load_state_dict(meta["scheduler"])
        mine = path / f"rank-{dist.rank()}"
        if mine.is_dir():
            rng, rng_meta = state.read_state(mine)
            with state.restoring(mine):
                state.unpack_rng(rng, rng_meta["rng"])
        else:  # resumed on more ranks than saved: the new ranks keep their seed
            print(f"checkpoint: {path} has no RNG of rank {dist.rank()}", file=sys.stderr)
        if dist.is_main():
            print(f"checkpoint: resuming from {path} (step {meta['step']})", file=sys.stderr)
        return meta


def load_shard(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This rank's ``shard`` of checkpoint ``path`` (what :meth:`Checkpoints.save` got)."""
    tensors, meta = state.read_state(path / f"rank-{dist.rank()}")
    return state.prefixed(tensors, "shard"), meta.get("shard", {})


def fsync_tree(path: Path, recurse: bool = True) -> None:
    """Flush ``path``'s files and folders (with ``recurse``, all below it) to disk: a rename
    is only durable once what it names is."""
    folders = [path]
    if recurse:
        for root, dirs, files in os.walk(path):
            for name in files:
                fd = os.open(Path(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            folders += [Path(root, d) for d in dirs]
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def trainable(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters a checkpoint holds: the ones training changes."""
    return {n: p for n, p in module.named_parameters() if p.requires_grad}
