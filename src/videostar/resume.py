"""Resume only the same work: a step's output folder records what produced it.

A resumable step (generate, rationalize, verify) and a training run's checkpoints (SFT, reward
model, PPO: :mod:`videostar.training.checkpoints`) record the work in :data:`STAMP` beside
their outputs, through the one :func:`claim`: the model's content (:func:`model_content`: a
hash of its files, so a model replaced at the same path is other work), a hash of every input
file and the config sections that decide the result. A rerun into the folder with the same
stamp continues (or redoes) that work; with another one it is refused in one line, unless
``fresh`` is asked for, which removes the folder's earlier outputs first. Two models' or two
inputs' rows never end up in one file. A saved model's card records the stamp's hash, its
fingerprint (:func:`stamp_digest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from videostar.data.records import write_json
from videostar.errors import VideostarError
from videostar.layout import MODEL_CARD

STAMP = "stamp.json"
"""The stamp file: what produced a folder's outputs (its hash is the fingerprint a model card records)."""
HASH_CACHE_ENV = "VIDEOSTAR_HASH_CACHE"
CACHED_FROM = 1 << 20
"""Files from this size on have their hash cached; smaller ones are quicker to hash again."""

_cache: dict[str, dict[str, Any]] | None = None


def _cache_path() -> Path:
    """``$VIDEOSTAR_HASH_CACHE``, else ``videostar/file-hashes.json`` in the user's cache folder."""
    if os.environ.get(HASH_CACHE_ENV):
        return Path(os.environ[HASH_CACHE_ENV])
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "videostar" / "file-hashes.json"


def _cached() -> dict[str, dict[str, Any]]:
    global _cache
    if _cache is None:
        try:
            loaded = json.loads(_cache_path().read_text())
        except (OSError, ValueError):
            loaded = None  # none yet, or unreadable: it is only a cache
        _cache = loaded if isinstance(loaded, dict) else {}
    return _cache


def _save_cache() -> None:
    """Write the cache whole (temp file + rename: a concurrent writer's entries may be lost,
    never torn); an unwritable cache folder only costs hashing again."""
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(_cached(), sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def file_hash(path: str | Path, save: bool = True) -> str:
    """sha256 of a file's bytes (streamed: inputs can be large). Large files' hashes are cached
    by path, size, mtime and ctime (``cp -p`` keeps the mtime, never the ctime), so a model
    is read once, not on every step that names it."""
    path = Path(path)
    st = path.stat()
    key = str(path.resolve())
    when = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    entry = _cached().get(key) if st.st_size >= CACHED_FROM else None
    if entry is not None and entry.get("stat") == when:
        return entry["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if st.st_size >= CACHED_FROM:
        _cached()[key] = {"stat": when, "sha256": digest.hexdigest()}
        if save:
            _save_cache()
    return digest.hexdigest()


def folder_hash(folder: str | Path) -> str:
    """sha256 over a folder's files (relative path and content hash of each, sorted); hidden
    entries (temp files, caches) are left out."""
    folder = Path(folder)
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_hash(path, save=False)}\n".encode())
    _save_cache()
    return digest.hexdigest()


def model_content(uri: str | Path, adapter_base: str | Path | None = None) -> dict[str, Any]:
    """What a model's outputs depend on: its folder's content hash and, for an adapter, its
    base's (``adapter_base``, else the one its card names). An ``s3://`` model is its URI:
    store prefixes are written once, never replaced."""
    uri = str(uri)
    path = Path(uri.removeprefix("file://"))
    if uri.startswith("s3://") or not path.is_dir():
        return {"uri": uri}
    out: dict[str, Any] = {"content": folder_hash(path)}
    card = path / MODEL_CARD
    meta = json.loads(card.read_text()) if card.is_file() else {}
    if meta.get("kind") == "lora":
        out["base"] = model_content(adapter_base or meta["base"])
    return out


def claim(folder: str | Path, stamp: dict[str, Any], outputs: tuple[str, ...], fresh: bool | None = False,
          context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Make ``folder`` the home of the work ``stamp`` describes, or refuse.

    ``outputs``: the glob patterns of the work's files and folders (a ``.partial`` one counts);
    when any exists and the recorded stamp differs (or is absent), the folder holds other work:
    refused in one line, or with ``fresh`` its outputs are removed first (None: the step has no
    ``--fresh``, so the line says to remove the folder). ``context`` (a training run's world size)
    is recorded beside the stamp without deciding whether the work is the same; returns the
    context recorded before ({} when none).
    """
    folder = Path(folder)
    context = context or {}
    stamp = json.loads(json.dumps(stamp, sort_keys=True, default=str))  # as it reads back
    present = sorted({p for n in outputs for pattern in (n, f"{n}.partial") for p in folder.glob(pattern)})
    path = folder / STAMP
    recorded = json.loads(path.read_text()) if path.is_file() else None
    before = {k: recorded.pop(k) for k in context if k in recorded} if recorded is not None else {}
    if present and recorded != stamp:
        if not fresh:
            what = ("no stamp" if recorded is None else "different " + ", ".join(
                sorted(k for k in {*stamp, *recorded} if stamp.get(k) != recorded.get(k))))
            remedy = "or pass --fresh to discard it" if fresh is False else "or remove it to start over"
            raise VideostarError(f"{folder}: holds the output of other work ({what}); use another folder, "
                                 + remedy)
        for p in present:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        print(f"fresh: removed the earlier outputs of {folder}: "
              f"{', '.join(p.name for p in present)}", file=sys.stderr)
    write_json(path, {**stamp, **context})
    return before


def stamp_digest(stamp: dict[str, Any]) -> str:
    """The fingerprint: one hash of a stamp (what a saved model's card records of the work that made it)."""
    return hashlib.sha256(json.dumps(stamp, sort_keys=True, default=str).encode()).hexdigest()


def published_result(out: str | Path, stamp: dict[str, Any]) -> dict[str, Any] | None:
    """The result recorded in the card of the model saved at ``out``, when the same work (same
    fingerprint) saved it: a retry after a kill between the model's save and ``metrics.json``
    completes instead of refusing. None when ``out`` does not exist; another work's model is
    refused in one line, never overwritten."""
    out = Path(out)
    if not out.exists():
        return None
    card = out / MODEL_CARD
    try:
        meta = json.loads(card.read_text())
    except (OSError, ValueError):
        meta = {}
    if not isinstance(meta, dict) or meta.get("fingerprint") != stamp_digest(stamp) \
            or not isinstance(meta.get("result"), dict):
        raise VideostarError(f"{out}: already exists and holds another run's model (other base, "
                             "data or settings); refusing to overwrite it")
    print(f"resume: {out} already holds this run's model (saved before its metrics); completing",
          file=sys.stderr)
    return meta["result"]
