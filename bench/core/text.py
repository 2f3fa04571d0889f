"""Users' text files (annotations, split lists, tag lists): read whole, so that a file that is not
UTF-8 is one line naming it and the offending byte, not a UnicodeDecodeError from deep in a reader."""

from __future__ import annotations

import io
from pathlib import Path

from bench.core.errors import UserError


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of `path`, line ends as written (newline=""). UserError when it is not `encoding`."""
    try:
        with open(path, encoding=encoding, newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        "save it as UTF-8") from None


def text_file(path: str | Path, encoding: str = "utf-8") -> io.StringIO:
    """`read_text(path)` as a file object that iterates lines as `open(path, newline="")` does."""
    return io.StringIO(read_text(path, encoding), newline="")


def printable(name: str) -> str:
    """A file name as Python reads it from the file system, as text that can be written as UTF-8 and
    drawn: its bytes that are not UTF-8 (a Latin-1 "café" is b"caf\\xe9", read as a lone surrogate) as
    `\\xe9`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
