"""Standard output redirected to a file names that file in its write errors; its rest is flushed, or
discarded where it cannot be written.

`bench grid > grid.log` on a full disk: Python's stdout raises `OSError(ENOSPC)` naming no file, which a
command's one-line error could only say as "cannot write No space left on device"."""

from __future__ import annotations

import io
import os
import stat
import sys

from bench.core.store import is_resource_error

STANDARD_OUTPUT = "standard output"


class _NamedFile(io.FileIO):
    """A descriptor's file whose failed writes name `label`."""

    def __init__(self, descriptor: int, label: str):
        super().__init__(descriptor, "w", closefd=False)
        self.label = label

    def write(self, data) -> int | None:
        try:
            return super().write(data)
        except OSError as exc:
            if exc.filename is None:
                exc.filename = self.label
            raise


def descriptor_path(descriptor: int) -> str | None:
    """The path a descriptor's file was opened by (Linux's /proc), or None."""
    try:
        return os.readlink(f"/proc/self/fd/{descriptor}")
    except OSError:
        return None


def name_standard_output() -> None:
    """Where the process's own stdout is a file (the kind a full disk, a quota or a file-size limit stops;
    a device that is not a terminal, such as /dev/full, too), write it through a file object that names it
    in its errors: "standard output (PATH)". The text layer is rebuilt as it was (encoding, errors,
    buffering); a stream already replaced (a test's capture, or this) is left as it is."""
    out = sys.stdout
    if out is None or out is not sys.__stdout__ or not isinstance(out, io.TextIOWrapper):
        return
    try:
        descriptor = out.fileno()
        mode = os.fstat(descriptor).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) and not os.isatty(descriptor)):  # a file, /dev/full
            return
    except (OSError, ValueError):
        return
    out.flush()
    path = descriptor_path(descriptor)
    raw = _NamedFile(descriptor, f"{STANDARD_OUTPUT} ({path})" if path else STANDARD_OUTPUT)
    unbuffered = isinstance(out.buffer, io.RawIOBase)  # python -u / PYTHONUNBUFFERED
    sys.stdout = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw), encoding=out.encoding,
                                  errors=out.errors, line_buffering=out.line_buffering,
                                  write_through=out.write_through)


def discard_if_closed(stream) -> OSError | None:
    """Flush `stream`; where the reader of its pipe has gone (`bench grid 2>&1 | head`), or its file cannot
    take the rest (a full disk under `bench plan > plan.txt`), point its descriptor at /dev/null instead, so
    that what it still buffers goes nowhere rather than failing again when Python flushes it at exit (which
    would turn the exit status into 120, or 1). Returns the error of a file that could not take the rest."""
    if stream is None:
        return None
    try:
        stream.flush()
    except ValueError:  # closed: nothing is buffered
        return None
    except OSError as exc:
        if not isinstance(exc, BrokenPipeError) and not is_resource_error(exc):
            raise
        unwritten = None if isinstance(exc, BrokenPipeError) else exc
        try:
            descriptor = stream.fileno()
        except (OSError, ValueError):  # not a file (a test's capture)
            return unwritten
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, descriptor)
        os.close(null)
        return unwritten
    return None
