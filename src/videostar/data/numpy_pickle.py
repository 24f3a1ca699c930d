"""Annotation pickles (FineDiving, Action Genome) read without letting them run code.

A pickle can call any importable function when loaded; these files only hold builtin containers
and numpy arrays, so the unpickler admits numpy's array globals and refuses everything else.
"""

from __future__ import annotations

import importlib
import math
import operator
import pickle
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

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

MAX_ARRAY_ELEMENTS = 1 << 24
"""Elements one unpickled array may have (annotation arrays hold boxes and per-frame labels)."""
MAX_ARRAY_BYTES = 1 << 28
"""Bytes one unpickled array may take (256 MiB)."""
BUDGET_BYTES = 1 << 30
"""Bytes all arrays of one file may take beyond twice the file's own size: a shape costs a few
bytes in a pickle, so a 171-byte file can ask numpy for 74.5 GiB; every array is sized and
charged against this before numpy allocates it."""


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class _TooLarge(pickle.UnpicklingError):
    """A pickle asked for an array past the bounds above."""


_budget: ContextVar[list[int]] = ContextVar("numpy_pickle_budget")


def _claim(shape: Any, dtype: Any) -> None:
    """Size an array from its shape and dtype (Python ints, so nothing overflows) and charge it
    to the load's budget, refusing it before numpy allocates anything."""
    try:
        dims = tuple(operator.index(d) for d in (shape if isinstance(shape, tuple | list) else (shape,)))
        itemsize = np.dtype(dtype).itemsize
    except (TypeError, ValueError, OverflowError) as exc:
        raise _TooLarge(f"an array of shape {shape!r:.60} and dtype {dtype!r:.40} ({exc})") from None
    if any(d < 0 for d in dims):
        raise _TooLarge(f"an array of negative shape {dims!r:.60}")
    elements = math.prod(dims)
    nbytes = elements * max(itemsize, 1)
    left = _budget.get()
    if elements > MAX_ARRAY_ELEMENTS or nbytes > min(MAX_ARRAY_BYTES, left[0]):
        raise _TooLarge(f"an array of {elements} elements ({nbytes} bytes; at most {MAX_ARRAY_ELEMENTS} "
                        f"elements and {min(MAX_ARRAY_BYTES, left[0])} bytes)")
    left[0] -= nbytes


class _Bounded(np.ndarray):
    """Every array the unpickler builds is one of these until the load returns, so numpy's
    ``__setstate__`` (pickle's BUILD, which re-shapes the array and may allocate it anew) is
    sized first; :func:`_plain` turns them back into plain ndarrays."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _TooLarge(f"an array state of {type(state).__name__}")
        _claim(state[-4], state[-3])
        super().__setstate__(state)


class _NdarrayType:
    """Stands in for ``numpy.ndarray``: called, it sizes the array first; passed to
    ``_reconstruct`` as the subtype, it means ndarray."""

    def __call__(self, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
        _claim(shape, dtype)
        return _Bounded(shape, dtype, *args, **kwargs)


_NDARRAY = _NdarrayType()


def _bounded_reconstruct(real: Any) -> Any:
    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not _NDARRAY:
            raise _RefusedGlobal(f"_reconstruct of {subtype!r:.40}")
        _claim(shape, dtype)
        return real(_Bounded, shape, dtype)

    return reconstruct


def _bounded_frombuffer(real: Any) -> Any:
    def frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        _claim(shape, dtype)
        return real(buf, dtype, shape, order).view(_Bounded)

    return frombuffer


_BOUNDED = {"_reconstruct": _bounded_reconstruct, "_frombuffer": _bounded_frombuffer}
"""numpy's array builders, each wrapped to size its array before building it."""


_LEAVES = frozenset({str, int, float, bool, bytes, type(None)})
"""What an annotation is mostly made of, and holds no array: not walked."""


def _plain(obj: Any, seen: dict[int, Any]) -> Any:
    """``obj`` with every :class:`_Bounded` array as a plain ndarray (a view: no copy);
    containers are updated in place, tuples rebuilt, shared and cyclic references kept."""
    if type(obj) in _LEAVES:
        return obj
    if id(obj) in seen:
        return seen[id(obj)]
    if isinstance(obj, np.ndarray):
        out = obj.view(np.ndarray) if type(obj) is _Bounded else obj
        seen[id(obj)] = out
        if out.dtype == object:
            flat = out.reshape(-1)
            for i, item in enumerate(flat):
                flat[i] = _plain(item, seen)
        return out
    seen[id(obj)] = obj
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _plain(value, seen)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            obj[i] = _plain(value, seen)
    elif isinstance(obj, tuple):
        seen[id(obj)] = obj = tuple(_plain(v, seen) for v in obj)
    return obj


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
        if (module, name) == ("numpy", "ndarray"):
            return _NDARRAY
        real = self._resolve(module, name)
        return _BOUNDED[name](real) if name in _BOUNDED else real

    @staticmethod
    def _resolve(module: str, name: str) -> Any:
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
    token = _budget.set([BUDGET_BYTES + 2 * path.stat().st_size])
    try:
        with open(path, "rb") as fh:
            return _plain(_NumpyOnlyUnpickler(fh).load(), {})
    except _RefusedGlobal as exc:
        raise RecordError(
            f"{path}: refused to load global {exc} ({what} hold only numpy arrays and scalars)"
        ) from None
    except _TooLarge as exc:
        raise RecordError(f"{path}: refused to build {exc}; {what} hold small arrays") from None
    except RecursionError:
        raise RecordError(f"{path}: refused: nested deeper than Python can walk") from None
    except MemoryError:
        raise RecordError(f"{path}: refused: it needs more memory than this machine has") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError,
            KeyError, OverflowError) as exc:
        raise RecordError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc!s:.200})") from None
    finally:
        _budget.reset(token)
