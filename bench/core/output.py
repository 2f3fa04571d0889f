"""The process's standard output as the commands write it: text it cannot encode is escaped, and a file it
is redirected to is named in its write errors; its rest is flushed, or discarded where it cannot be written.

Python's stdout is strict but in the C locales: a path holding a byte that is not UTF-8 (`caf\xe9`), under
en_US.UTF-8, or any non-ASCII path or tag name under PYTHONIOENCODING=ascii, ended a command in a
traceback, after its work. And `bench grid > grid.log` on a full disk raised `OSError(ENOSPC)` naming no
file, which a command's one-line error could only say as "cannot write No space left on device"."""

from __future__ import annotations

import codecs
import io
import os
import stat
import sys

from bench.core.store import is_resource_error
from bench.core.text import printable

STANDARD_OUTPUT = "standard output"

ESCAPE = "bench-escape"
"""The codec error handler of standard output: a file name's byte that is not UTF-8 (read as a lone
surrogate) as `\\xe9`, as `bench.core.text.printable` shows it; any other character the encoding lacks as
Python's escape (`\\xe9` for é in ASCII, `\\u4e2d`, `\\U0001f3b5`)."""


def _escape(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = "".join(printable(ch) for ch in error.object[error.start:error.end])  # one by one: a mixed span too
    return text.encode("ascii", "backslashreplace").decode("ascii"), error.end


codecs.register_error(ESCAPE, _escape)


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


def set_up_standard_output() -> None:
    """The process's own stdout, as the commands need it (a stream already replaced, such as a test's
    capture, is left as it is): text its encoding cannot hold escaped (`ESCAPE`, stderr's too); and
    where it is a file (the kind a full disk, a quota or a file-size limit stops; a device that is not a
    terminal, such as /dev/full, too), written through a file object that names it in its errors,
    "standard output (PATH)", its text layer rebuilt as it was (encoding, buffering)."""
    if sys.stderr is sys.__stderr__ and isinstance(sys.stderr, io.TextIOWrapper):  # as stdout shows them
        sys.stderr.reconfigure(errors=ESCAPE)
    out = sys.stdout
    if out is None or out is not sys.__stdout__ or not isinstance(out, io.TextIOWrapper):
        return
    try:
        descriptor = out.fileno()
        mode = os.fstat(descriptor).st_mode
        is_file = stat.S_ISREG(mode) or stat.S_ISCHR(mode) and not os.isatty(descriptor)  # a file, /dev/full
    except (OSError, ValueError):
        is_file = False
    if not is_file:
        out.reconfigure(errors=ESCAPE)
        return
    out.flush()
    path = descriptor_path(descriptor)
    raw = _NamedFile(descriptor, f"{STANDARD_OUTPUT} ({path})" if path else STANDARD_OUTPUT)
    unbuffered = isinstance(out.buffer, io.RawIOBase)  # python -u / PYTHONUNBUFFERED
    sys.stdout = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw), encoding=out.encoding,
                                  errors=ESCAPE, line_buffering=out.line_buffering, write_through=out.write_through)


def open_closed_standard_streams() -> None:
    """Standard input, output and error that the process was started without (`<&-`, `>&-`, `2>&-`) opened
    on /dev/null, descriptor and stream: else the first file the process opened took the descriptor's
    number, and what a library or a child process (a grid's worker, which inherits it) then wrote to its
    stdout or stderr went into that file, or failed there (`bench grid --workers 2 >&-` ended in the
    workers' tracebacks); and a command writing to a stream that is None (`bench status --json >&-`)
    ended in an AttributeError. Output to a closed stream goes nowhere, as to /dev/null."""
    for descriptor, (name, mode) in enumerate((("stdin", "r"), ("stdout", "w"), ("stderr", "w"))):
        try:
            os.fstat(descriptor)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)
        if getattr(sys, name) is None:  # open until the process exits; ESCAPE reads strictly
            setattr(sys, name, open(descriptor, mode, closefd=False, errors=ESCAPE))


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
