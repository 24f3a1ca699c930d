"""Resumable checkpoints of SFT and reward-model training, every N optimizer steps.

A checkpoint ``step-N`` holds the trainable weights (adapter, head, or the unfrozen blocks),
the optimizer and scheduler, the loss history and skip lists, and every rank's RNG
(``rank-R/``), as safetensors + JSON (:mod:`videostar.rlaif.checkpoint`: loading never runs
code). The data position is the step itself: the example order is a function of the seed,
so step N continues at the (N+1)-th window of the epoch and no example is trained twice.

All ranks write into ``.step-N.tmp`` and rank 0 renames it into place once every rank's part
is there, so a ``step-N`` folder is complete or absent; one that is not (copied partly, a
disk error) is ignored with one line. Only the newest checkpoint is kept. The folder records
what produced it (``stamp``): checkpoints of other work are refused, never resumed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from videostar import distributed as dist
from videostar.data.records import write_json
from videostar.errors import VideostarError
from videostar.outputs import clean_debris, publish_mode
from videostar.rlaif import checkpoint as state

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
        """Sweep killed saves' debris and record the stamp; checkpoints of other work are refused."""
        if dist.is_main():  # alone: the other ranks wait (or are stopped by torchrun if it fails)
            path = self.folder / STAMP
            if path.is_file() and json.loads(path.read_text()) != self.stamp:
                raise VideostarError(f"{self.folder}: holds checkpoints of other work (another "
                                     "base, data or settings); remove the folder to start over")
            clean_debris(self.folder, (".step-*.tmp",))
            write_json(path, self.stamp)
        dist.barrier()

    def _complete(self, path: Path) -> str | None:
        """What a checkpoint folder lacks ('' when nothing)."""
        needed = [path / state.TENSORS, path / state.META]
        if needed[1].is_file():
            world = json.loads(needed[1].read_text()).get("world_size", 1)
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

    def save(self, step: int, params: dict[str, torch.nn.Parameter], optim: torch.optim.Optimizer,
             sched: Any, meta: dict[str, Any]) -> Path:
        """Write ``step-N`` (every rank calls this): weights, optimizer, scheduler, ``meta`` and
        each rank's RNG, beside and renamed into place; then drop the older checkpoints."""
        tmp, final = self.folder / f".step-{step}.tmp", self.folder / f"step-{step}"
        if dist.is_main():
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        dist.barrier()
        rng, rng_meta = state.pack_rng()
        state.write_state(tmp / f"rank-{dist.rank()}", rng, {"rng": rng_meta})
        dist.barrier()
        if dist.is_main():
            optim_tensors, optim_meta = state.pack_optimizer(optim.state_dict())
            tensors = {**{f"weights.{k}": v for k, v in params.items()},
                       **{f"optimizer.{k}": v for k, v in optim_tensors.items()}}
            state.write_state(tmp, tensors, {"step": step, "world_size": dist.world_size(),
                                             "optimizer": optim_meta,
                                             "scheduler": sched.state_dict(), **meta})
            publish_mode(tmp)
            tmp.rename(final)
            for old in self.folder.glob("step-*"):
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
        dist.barrier()
        return final

    def load(self, path: Path, params: dict[str, torch.nn.Parameter], optim: torch.optim.Optimizer,
             sched: Any) -> dict[str, Any]:
        """Restore what :meth:`save` wrote into ``params``, ``optim``, ``sched`` and this rank's
        RNG; returns the metadata (``step`` and the caller's own)."""
        tensors, meta = state.read_state(path)
        weights = state.prefixed(tensors, "weights")
        if set(weights) != set(params):
            raise VideostarError(f"{path}: its weights do not match this model's trainable ones")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(weights[name])
        optim.load_state_dict(state.unpack_optimizer(state.prefixed(tensors, "optimizer"),
                                                     meta["optimizer"]))
        sched.load_state_dict(meta["scheduler"])
        mine = path / f"rank-{dist.rank()}"
        if mine.is_dir():
            rng, rng_meta = state.read_state(mine)
            state.unpack_rng(rng, rng_meta["rng"])
        else:  # resumed on more ranks than saved: the new ranks keep their seed
            print(f"checkpoint: {path} has no RNG of rank {dist.rank()}", file=sys.stderr)
        if dist.is_main():
            print(f"checkpoint: resuming from {path} (step {meta['step']})", file=sys.stderr)
        return meta


def trainable(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters a checkpoint holds: the ones training changes."""
    return {n: p for n, p in module.named_parameters() if p.requires_grad}
