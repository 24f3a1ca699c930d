"""Resumable checkpoints of SFT and reward-model training, every N optimizer steps.

A checkpoint ``step-N`` holds the trainable weights (adapter, head, or the unfrozen blocks),
the optimizer and scheduler, the loss history and skip lists, and every rank's RNG
(``rank-R/``), as safetensors + JSON (:mod:`videostar.training.state`: loading never runs
code). The data position is the step itself: the example order is a function of the seed,
so step N continues at the (N+1)-th window of the epoch and no example is trained twice.

All ranks write into ``.step-N.tmp`` and rank 0 renames it into place once every rank's part
is there, so a ``step-N`` folder is complete or absent; one that is not (copied partly, a
disk error) is ignored with one line. Every file and folder of a new checkpoint is fsynced
before it is renamed into place, and the rename before the older checkpoints are deleted, so
a power loss never leaves no checkpoint at all. Only the newest checkpoint is kept. The folder
records what produced it (``stamp``): checkpoints of other work are refused, never resumed;
it also records the world size, and a resume on another one says so in one line (the
global batch stays, each rank's share and RNG change).

A DeepSpeed run's optimizer is sharded: each rank writes its own part (``shard``) beside its
RNG, and such a checkpoint resumes on the same world size only.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from videostar.data.records import write_json
from videostar.errors import VideostarError
from videostar.outputs import clean_debris, publish_mode
from videostar.training import distributed as dist
from videostar.training import state as state

STAMP = "stamp.json"


def folder_for(model_out: str | Path) -> Path:
    """Where the checkpoints of the model saved to ``model_out`` live: beside it, so the model
    folder itself only ever appears complete."""
    model_out = Path(model_out)
    return model_out.parent / f"{model_out.name}-checkpoints"


class Checkpoints:
    """The checkpoints of one training run in ``folder``; ``stamp`` says which run."""

    def __init__(self, folder: str | Path, stamp: dict[str, Any], every: int):
        self.folder, self.every = Path(folder), every
        self.stamp = json.loads(json.dumps(stamp, sort_keys=True, default=str))

    def claim(self) -> None:
        """Sweep killed saves' debris and record the stamp and world size; checkpoints of other
        work are refused, a changed world size is named."""
        if dist.is_main():  # alone: the other ranks wait (or are stopped by torchrun if it fails)
            path = self.folder / STAMP
            recorded = json.loads(path.read_text()) if path.is_file() else None
            world = dist.world_size()
            if recorded is not None:
                was = recorded.pop("world_size", 1)
                if recorded != self.stamp:
                    raise VideostarError(f"{self.folder}: holds checkpoints of other work (another "
                                         "base, data or settings); remove the folder to start over")
                if was != world and any(self.folder.glob("step-*")):
                    print(f"checkpoint: {self.folder} was written on {was} rank(s), resuming on "
                          f"{world}: the global batch is the same, each rank's share of it and "
                          "its random state are not", file=sys.stderr)
            clean_debris(self.folder, (".step-*.tmp",))
            write_json(path, {**self.stamp, "world_size": world})
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

    def latest(self) -> Path | None:
        """The newest complete checkpoint (incomplete ones are named and passed over)."""
        steps = [p for p in self.folder.glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
        for path in sorted(steps, key=lambda p: int(p.name[5:]), reverse=True):
            missing = self._complete(path)
            if not missing:
                return path
            if dist.is_main():
                print(f"checkpoint: ignoring the incomplete {path} (no {missing})", file=sys.stderr)
        return None

    def due(self, step: int, total: int) -> bool:
        return self.every > 0 and step % self.every == 0 and step < total

    def save(self, step: int, params: dict[str, torch.nn.Parameter], optim: torch.optim.Optimizer | None,
             sched: Any, meta: dict[str, Any],
             shard: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None) -> Path:
        """Write ``step-N`` (every rank calls this): weights, optimizer (None: it is in the
        ranks' ``shard``), scheduler, ``meta``, and each rank's RNG and ``shard`` (tensors,
        JSON), beside, made durable and renamed into place; then drop the older checkpoints."""
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
            head = {"step": step, "world_size": dist.world_size(), "scheduler": sched.state_dict()}
            if optim is not None:
                optim_tensors, head["optimizer"] = state.pack_optimizer(optim.state_dict())
                tensors |= {f"optimizer.{k}": v for k, v in optim_tensors.items()}
            state.write_state(tmp, tensors, {**head, **meta})
            publish_mode(tmp)
            fsync_tree(tmp)
            tmp.rename(final)
            fsync_tree(self.folder, recurse=False)  # the rename itself
            for old in self.folder.glob("step-*"):
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
        dist.barrier()
        return final

    def load(self, path: Path, params: dict[str, torch.nn.Parameter], optim: torch.optim.Optimizer | None,
             sched: Any) -> dict[str, Any]:
        """Restore what :meth:`save` wrote into ``params``, ``optim``, ``sched`` and this rank's
        RNG; returns the metadata (``step`` and the caller's own)."""
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
