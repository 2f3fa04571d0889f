"""What of a cache file the kernel holds in memory, and telling it which rows will be read next.

A waveform cache larger than the machine's RAM (MSD at 16 kHz: 225 GB) is read from the disk every
epoch. Gathering a batch's rows through the memory map faults their pages in one after another, a
readahead window at a time: the disk sees one small request at a time. Telling the kernel first
(`posix_fadvise(WILLNEED)`) queues the reads of every row at once. Measured on this project's CPU
machine (docs/performance.md), 32 rows of 0.93 MB at random from a 2.8 GB file evicted from the
page cache, read by `ReadBatches`: 660-730 clips/s without the advice (faulting each row in read
around it: 97 % of the file came into memory to serve 43 % of it), 1,380-2,220 with it.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np


def page_cache_fraction(path: Path | str) -> float | None:
    """The fraction of `path`'s pages in the page cache (Linux `mincore` on a fresh mapping, which
    reads nothing); None where it cannot be asked."""
    import ctypes

    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    pages = -(-size // mmap.PAGESIZE)
    vector = np.zeros(pages, dtype=np.uint8)
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            if libc.mincore(address, size, vector.ctypes.data) != 0:
                return None
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
    return int(np.count_nonzero(vector & 1)) / pages


class RowAdvice:
    """Tells the kernel which rows of a memory-mapped cache (`np.memmap`, one clip per row) will be
    read next, where the system has `posix_fadvise`. Advice only: a failed call changes nothing that
    is read. Rows already in the page cache cost the kernel a walk over their pages: within the noise
    of a batch read from the page cache, as measured (10,000-14,000 clips/s either way)."""

    def __init__(self, waveforms: np.ndarray):
        self.path = getattr(waveforms, "filename", None)  # an in-memory array has none: nothing to advise
        self.offset = int(getattr(waveforms, "offset", 0))
        self.row_bytes = int(waveforms.shape[1]) * waveforms.dtype.itemsize
        self.possible = self.path is not None and hasattr(os, "posix_fadvise")
        self.file = None

    def rows(self, rows) -> None:
        """Ask the kernel to start reading these rows (file rows, any order) into the page cache."""
        if not self.possible:
            return
        if self.file is None:
            self.file = open(self.path, "rb")  # noqa: SIM115 - held for the reader's life, closed by close()
        fd = self.file.fileno()
        for row in rows:
            try:
                os.posix_fadvise(fd, self.offset + int(row) * self.row_bytes, self.row_bytes, os.POSIX_FADV_WILLNEED)
            except OSError:  # advice only
                return

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
