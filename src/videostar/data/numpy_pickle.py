"""Annotation pickles (FineDiving, Action Genome) read without letting them run code.

A pickle can call any importable function when loaded; these files only hold builtin containers
and numpy arrays, so the unpickler admits numpy's array globals and refuses everything else.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

from videostar.data._common import require_file
from videostar.errors import RecordError

# Everything the released files reference (ndarray/dtype/_reconstruct/scalar), under both the
# numpy<2 (numpy.core) and numpy>=2 (numpy._core) names; _frombuffer is how a file re-saved with
# pickle protocol 5 stores arrays. Builtin containers need no globals; protocol 2's bytes are
# rebuilt by the stand-ins below.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *(
            (f"{core}.{module}", name)
            for core in ("numpy.core", "numpy._core")
            for module, name in (
                ("multiarray", "_reconstruct"),
                ("multiarray", "scalar"),
                ("numeric", "_frombuffer"),
            )
        ),
    }
)




class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """Stands in for ``_codecs.encode``: protocol 2 has no bytes opcode, so an array's raw data
    is stored as ``_codecs.encode(<str>, 'latin1')``. Only that call is honoured (a str and
    latin-1 give back bytes, nothing else runs); any other use is refused."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "").replace("_", "") != "latin1":
        raise _RefusedGlobal(f"_codecs.encode({type(text).__name__}, {encoding!r:.20})")
    return text.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    """Stands in for ``bytes``: protocol 2 stores ``b""`` (a zero-row array's data) as
    ``bytes()``; any argument (``bytes(10**12)`` would allocate) is refused."""
    if args:
        raise _RefusedGlobal(f"bytes with {len(args)} argument(s)")
    return b""


# Protocol 2 (Python 3 writing for Python 2 readers) rebuilds bytes through these globals; each
# is answered by a stand-in that does only that.
_BYTES_BUILDERS = {("_codecs", "encode"): _latin1_bytes, ("__builtin__", "bytes"): _empty_bytes,
                   ("builtins", "bytes"): _empty_bytes}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _BYTES_BUILDERS:
            return _BYTES_BUILDERS[(module, name)]
        if (module, name) not in _ALLOWED_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        # Resolve numpy.core / numpy._core under whichever name this numpy has, new name first
        # (numpy 2 warns on numpy.core).
        spellings = (
            module.replace("numpy.core", "numpy._core", 1),
            module.replace("numpy._core", "numpy.core", 1),
        )
        for spelling in dict.fromkeys(spellings):
            try:
                return getattr(importlib.import_module(spelling), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"{module}.{name} is not available in this numpy")


def load_numpy_pickle(path: str | Path, what: str) -> Any:
    """Load ``path``, refusing any global but numpy's array types; ``what`` names the files
    in the one-line refusal ("FineDiving annotation pickles")."""
    path = require_file(path)
    try:
        with open(path, "rb") as fh:
            return _NumpyOnlyUnpickler(fh).load()
    except _RefusedGlobal as exc:
        raise RecordError(
            f"{path}: refused to load global {exc} ({what} hold only numpy arrays and scalars)"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
        raise RecordError(f"{path}: not a readable pickle ({exc})") from exc
