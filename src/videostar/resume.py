"""Resume only the same work: a step's output folder records what produced it.

A resumable step (generate, rationalize, verify, PPO) writes ``fingerprint.json`` beside its
outputs: the model, a hash of every input file and the config sections that decide the
result. A rerun into the folder with the same fingerprint continues (or redoes) that work;
with another one it is refused in one line, unless ``fresh`` is asked for, which removes the
folder's earlier outputs first. Two models' or two inputs' rows never end up in one file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from videostar.data.records import write_json
from videostar.errors import VideostarError

FINGERPRINT = "fingerprint.json"


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (streamed: inputs can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def claim(folder: str | Path, stamp: dict[str, Any], outputs: tuple[str, ...], fresh: bool = False
          ) -> None:
    """Make ``folder`` the home of the work ``stamp`` describes, or refuse.

    ``outputs``: the step's file/folder names (a ``.partial`` file counts); when any exists and
    the recorded fingerprint differs (or is absent), the folder holds other work.
    """
    folder = Path(folder)
    stamp = json.loads(json.dumps(stamp, sort_keys=True, default=str))  # as it reads back
    present = [folder / n for n in outputs] + [folder / f"{n}.partial" for n in outputs]
    present = [p for p in present if p.exists()]
    path = folder / FINGERPRINT
    recorded = json.loads(path.read_text()) if path.is_file() else None
    if present and recorded != stamp:
        if not fresh:
            what = ("no fingerprint" if recorded is None else "different " + ", ".join(
                sorted(k for k in {*stamp, *recorded} if stamp.get(k) != recorded.get(k))))
            raise VideostarError(
                f"{folder}: holds the output of other work ({what}); use another folder, "
                "or pass --fresh to discard it")
        for p in present:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        print(f"fresh: removed the earlier outputs of {folder}: "
              f"{', '.join(p.name for p in present)}", file=sys.stderr)
    write_json(path, stamp)
