"""What of a cache file the kernel holds in memory, and telling it which rows will be read next.

A waveform cache larger than the machine's RAM (MSD at 16 kHz: 225 GB) is read from the disk every
epoch. Gathering a batch's rows through the memory map faults their pages in one after another, a
readahead window at a time: the disk sees one small request at a time. Telling the kernel first
(`madvise(MADV_WILLNEED)`) queues the reads of every row at once. Measured on this project's CPU
machine (docs/performance.md), 32 rows of 0.93 MB at random from a 2.8 GB file evicted from the
page cache, read by `ReadBatches`: 680-840 clips/s without the advice (faulting each row in read
around it: 97 % of the file came into memory to serve 43 % of it), 1,410-1,760 with it, whether the
disk reads ahead 128 KiB or 8 MiB.
"""

from __future__ import annotations

import functools
import mmap
import os
from pathlib import Path

import numpy as np


def page_cache_fraction(path: Path | str) -> float | None:
    """The fraction of `path`'s pages in the page cache (Linux `mincore` on a fresh mapping, which
    reads nothing); None where it cannot be asked."""
    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    with open(path, "rb") as f:
        try:
            with mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as mapping:
                view = np.frombuffer(mapping, dtype=np.uint8)
                address = view.ctypes.data
                del view  # the mapping closes only once nothing exports its buffer
                resident = _resident_pages(address, size)
        except OSError:  # a file that cannot be mapped, or no mincore
            return None
    return int(np.count_nonzero(resident & 1)) / resident.size


ADVICE_BYTES = 128 * 1024
"""Bytes asked for per call: Linux reads at most max(read_ahead_kb, max_sectors_kb) of one call's range
(`force_page_cache_ra`), 128 KiB on common disks; a row of 0.93 MB asked for in one call would have
only its start read ahead."""

RESIDENT_AT_LEAST = 0.98
"""A pass whose sampled rows are this much in the page cache is read without advice: asking for pages
the kernel already holds costs it a walk over them (15 % of reading such a batch, as measured)."""

SAMPLED_ROWS = 64


class RowAdvice:
    """Tells the kernel which rows of a memory-mapped cache (`np.memmap`, one clip per row) will be read
    next (`madvise(MADV_WILLNEED)` on the array's own mapping, in chunks of ADVICE_BYTES), for passes
    whose rows are not (nearly) all in the page cache already (`worth_it`). Advice only: where it cannot
    be given (an array in memory, a system without madvise) or a call fails, reading goes on as it
    would without it."""

    def __init__(self, waveforms: np.ndarray):
        self.waveforms = waveforms
        self.mapping = getattr(waveforms, "_mmap", None)  # numpy's mapping of the file, None for an array in memory
        self.row_bytes = int(waveforms.shape[1]) * waveforms.dtype.itemsize
        # numpy maps from the header's offset rounded down to the allocation granularity
        self.start = int(getattr(waveforms, "offset", 0)) % mmap.ALLOCATIONGRANULARITY
        self.possible = (self.mapping is not None and hasattr(self.mapping, "madvise")
                         and hasattr(mmap, "MADV_WILLNEED"))

    def worth_it(self, rows) -> bool:
        """Whether a pass over `rows` (file rows, a sequence that slices) should be advised: less than
        RESIDENT_AT_LEAST of the pages of up to SAMPLED_ROWS of them, evenly spread, are in the page
        cache (`mincore` on the mapping: nothing is read). False where no advice can be given; True
        where the page cache cannot be asked."""
        if not self.possible:
            return False
        sample = rows[::max(1, len(rows) // SAMPLED_ROWS)][:SAMPLED_ROWS]
        resident = pages = 0
        try:
            for row in sample:
                cached = _resident_pages(self.waveforms.ctypes.data + int(row) * self.row_bytes, self.row_bytes)
                resident, pages = resident + int(np.count_nonzero(cached & 1)), pages + len(cached)
        except OSError:
            return True
        return pages == 0 or resident / pages < RESIDENT_AT_LEAST

    def rows(self, rows) -> None:
        """Ask the kernel to start reading these rows (file rows, any order) into the page cache."""
        if not self.possible:
            return
        for row in rows:
            first = self.start + int(row) * self.row_bytes
            end = first + self.row_bytes
            first -= first % mmap.PAGESIZE  # madvise takes page-aligned ranges
            try:
                for at in range(first, end, ADVICE_BYTES):
                    self.mapping.madvise(mmap.MADV_WILLNEED, at, min(ADVICE_BYTES, end - at))
            except (OSError, ValueError):  # advice only (ValueError: a mapping closed under it)
                return


def _resident_pages(address: int, length: int) -> np.ndarray:
    """`mincore`'s vector for the pages of [address, address + length) of this process's mappings."""
    import ctypes

    first = address - address % mmap.PAGESIZE
    length += address - first
    vector = np.zeros(-(-length // mmap.PAGESIZE), dtype=np.uint8)
    mincore = _libc_mincore()
    if mincore is None or mincore(first, length, vector.ctypes.data) != 0:
        raise OSError(ctypes.get_errno() if mincore else 0, "mincore")
    return vector


@functools.cache
def _libc_mincore():
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return libc.mincore
