"""A restricted unpickler for the MSD split files (Python 2 cPickle files from Lee et al.).

Unpickling runs code named by the file, so a plain `pickle.load` of a downloaded file is unsafe.
This loader admits only what those files contain: builtin containers, strings, numbers and numpy
arrays. Anything else is refused with `UnsafePickleError` before it is constructed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import UserError

_ALLOWED = {  # not bytearray: bytearray(10**9), a few bytes of pickle, is a gigabyte of zeros (bytes: `_bytes`)
    ("builtins", name) for name in ("list", "dict", "tuple", "set", "frozenset", "str", "bytes", "int", "float",
                                    "bool", "complex")
} | {
    ("__builtin__", name) for name in ("list", "dict", "tuple", "set", "frozenset", "str", "unicode", "bytes", "int",
                                       "long", "float", "bool", "complex")
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    # protocol 5, Python's default since 3.8: an array is its raw buffer (never an object array: numpy
    # refuses to make one from memory)
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 carry bytes
}


class UnsafePickleError(UserError):
    """The file names a global that is not a container, string, number or numpy array."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # Python 2 str -> str; numpy's own data round-trips
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"{self.source}: refusing to unpickle {module}.{name} (only containers, strings, numbers "
                "and numpy arrays are allowed)"
            )
        if name == "bytes":  # bytes(10**9), a few bytes of pickle, would fill memory with zeros
            return _bytes
        if module.startswith("numpy.core.") and _NUMPY_CORE_RENAMED:  # the split files' numpy 1 names
            module = "numpy._core." + module.removeprefix("numpy.core.")
        elif module.startswith("numpy._core.") and not _NUMPY_CORE_RENAMED:  # a file saved with numpy 2
            module = "numpy.core." + module.removeprefix("numpy._core.")
        return super().find_class(module, name)


def _bytes(*args: Any) -> bytes:
    """`bytes` as a pickle calls it (`bytes()`: how protocol 2 writes b""; or of text), never with a size to
    fill, whatever carries the size (an int, a numpy integer: anything with `__index__`)."""
    if args and not isinstance(args[0], (str, bytes)):
        raise UnsafePickleError(f"refusing bytes({type(args[0]).__name__}): a size to fill, which no split file "
                                "holds")
    return bytes(*args)


_NUMPY_CORE_RENAMED = int(np.__version__.split(".")[0]) >= 2
"""numpy 2 renamed numpy.core to numpy._core (the old name still works, with a DeprecationWarning); numpy 1
knows only numpy.core."""


def safe_load(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return _RestrictedUnpickler(handle, str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # a corrupt file fails in the unpickler's or numpy's words, any of a dozen kinds
        # (a length field read as gigabytes: MemoryError; an opcode changed: IndexError, LookupError, ...)
        raise UserError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
