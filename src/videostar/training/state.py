"""A resumable training state as safetensors + JSON: loading a checkpoint never runs code.

An output folder may be shared (a PVC, an object store), so a file planted in it must not be
able to execute on load, as a pickle does (``torch.load(weights_only=False)``). Every tensor
(adapters, value head, optimizer moments, RNG states) goes to ``state.safetensors`` and
everything else (step, history, optimizer hyperparameters, RNG scalars) to ``state.json``;
neither format can hold code. A pickle in a checkpoint folder is refused, never opened.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from videostar.errors import VideostarError

TENSORS = "state.safetensors"
META = "state.json"
PICKLES = ("*.pt", "*.pth", "*.bin", "*.pkl", "*.pickle")
"""Pickle-based checkpoint names a state folder must not hold (``adapter/`` is HF's own)."""


def write_state(folder: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write the state (the caller renames the folder into place, so it is never half-read)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, folder / TENSORS)
    (folder / META).write_text(json.dumps(meta, indent=1) + "\n")


def read_state(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of a state folder; a pickle or an unreadable file is refused
    in one line, without being executed."""
    folder = Path(folder)
    refuse_pickles(folder)
    try:
        tensors = load_file(folder / TENSORS)
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise VideostarError(f"{folder}: not a readable checkpoint ({str(exc)[:120]})") from exc
    if not isinstance(meta, dict):
        raise VideostarError(f"{folder}/{META}: not a JSON object")
    return tensors, meta


@contextlib.contextmanager
def restoring(folder: Path) -> Iterator[None]:
    """Restoring a state read from ``folder``: an entry of the wrong shape or type (a state.json
    edited or corrupted: ``world_size: "abc"``, a scheduler where the optimizer belongs, a
    tensor of another size) is refused in one line naming the file and the reason."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        what = f"no entry {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:160]
        raise VideostarError(f"{folder / META}: does not hold a checkpoint of this run "
                             f"({type(exc).__name__}: {what})") from exc


def refuse_pickles(folder: Path) -> None:
    """Refuse a state folder holding a pickle-based file, without opening it."""
    pickles = sorted(p.name for pat in PICKLES for p in folder.glob(pat))
    if pickles:
        raise VideostarError(f"{folder}: holds a pickle ({pickles[0]}), which is never loaded "
                             "(it could run code); remove it or use another output folder")


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors saved under ``prefix.``, with the prefix removed."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def pack_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A ``torch.optim`` state dict as tensors (per-parameter state) and JSON (the rest)."""
    tensors, scalars = {}, {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unpack_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def pack_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch, CUDA, NumPy and Python RNG states as tensors, their scalars as JSON."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    tensors = {"torch": torch.get_rng_state(),
               "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
               "python": torch.tensor(mt, dtype=torch.int64)}
    if torch.cuda.is_available():
        tensors |= {f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)],
            "python": [version, gauss_next]}
    return tensors, meta


def unpack_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = prefixed(tensors, "cuda")
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([cuda[str(i)] for i in range(len(cuda))])
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, gauss_next = meta["python"]
    random.setstate((version, tuple(int(x) for x in tensors["python"].tolist()), gauss_next))
