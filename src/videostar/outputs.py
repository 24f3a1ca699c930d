"""How outputs land on disk: one group-readable mode for every file and folder, and the
debris of a killed save swept away by the next run.

Files written through a temp file (``mkstemp``: 0600, ``mkdtemp``: 0700) would otherwise be
unreadable to a pod running as another uid of the same group, while files written directly
get the umask's mode; :func:`publish_mode` gives both the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_mode(path: str | Path) -> None:
    """Give a temp file or folder (and what a folder holds) the mode ``open``/``mkdir`` give."""
    path = Path(path)
    mask = _umask()
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in dirs:
                os.chmod(Path(root, name), 0o777 & ~mask)
            for name in files:
                os.chmod(Path(root, name), 0o666 & ~mask)


def clean_debris(folder: str | Path, patterns: tuple[str, ...]) -> list[Path]:
    """Remove what interrupted saves left in ``folder`` (entries matching ``patterns``, e.g.
    ``.model.*`` beside a model folder), each with one line on stderr."""
    folder = Path(folder)
    found = [p for pat in patterns for p in folder.glob(pat)] if folder.is_dir() else []
    for path in found:
        kind = "folder" if path.is_dir() else "file"
        print(f"cleanup: removed the temp {kind} of an interrupted save: {path}", file=sys.stderr)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def clean_save_debris(target: str | Path) -> list[Path]:
    """The temp copies (``.<name>.*`` beside it) that killed saves of ``target`` left."""
    target = Path(target)
    return clean_debris(target.parent, (f".{target.name}.*",))


def replace_folder(new: str | Path, target: str | Path) -> None:
    """Put the finished folder ``new`` at ``target`` in one step, so a reader (or a kill) sees the
    old folder or the new one, never neither or a mix; the old one is then removed.

    ``rename`` cannot replace a non-empty folder, and no library swaps folders, hence Linux's
    ``renameat2(RENAME_EXCHANGE)`` through libc; where that is missing (another OS, a filesystem
    without it) two renames are used, and a kill between them leaves the old folder beside the
    target as ``.<name>.old-*`` (swept by :func:`clean_save_debris`).
    """
    import ctypes

    new, target = Path(new), Path(target)
    if not target.exists():
        new.rename(target)
        return
    swap = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    at_fdcwd, rename_exchange = -100, 2
    if swap is not None and swap(at_fdcwd, os.fsencode(new), at_fdcwd, os.fsencode(target),
                                 rename_exchange) == 0:
        shutil.rmtree(new)  # now the old folder
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    target.rename(old)
    try:
        new.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old)



@contextlib.contextmanager
def locked(target: str | Path) -> Iterator[None]:
    """Hold an exclusive lock for ``target`` (a file in ``$TMPDIR/videostar-locks``, named by its
    path), so writers of one target on a machine take turns, and the one holding it may sweep
    what killed ones left (:func:`clean_save_debris`) without removing a live writer's temp."""
    locks = Path(tempfile.gettempdir()) / "videostar-locks"
    locks.mkdir(exist_ok=True)
    name = hashlib.sha256(str(Path(target).absolute()).encode()).hexdigest()[:32]
    with open(locks / f"{name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
