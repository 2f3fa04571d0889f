"""Reading a cache larger than RAM: the kernel is told which rows come next (`RowAdvice`)."""

import mmap
import os

import numpy as np
import pytest
import torch

from bench.data import page_cache
from bench.data.views import ClipDataset, ReadBatches


class _Cache:
    def __init__(self, waveforms, n_tags=3):
        self.waveforms = waveforms
        self._targets = np.zeros((len(waveforms), n_tags), dtype=np.float32)

    def rows(self, split):
        return np.arange(1, len(self.waveforms))  # row 0 is another split's: file rows are not split rows

    def targets(self, rows):
        return self._targets[rows]


class _Mapping:
    """A mapping's madvise, recorded (an mmap's methods cannot be replaced on the object)."""

    def __init__(self, real, events):
        self.real, self.events = real, events

    def madvise(self, advice, start, length):
        self.events.append(("advise", advice, start, length))
        self.real.madvise(advice, start, length)


def _npy(path, rows, samples):
    waves = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, samples))
    waves[:] = np.arange(rows, dtype=np.float16)[:, None]
    waves.flush()
    del waves
    return np.load(path, mmap_mode="r")


def test_each_batch_tells_the_kernel_the_next_batchs_rows_before_it_is_gathered(tmp_path, monkeypatch):
    """Rows of 1,000 float16 samples (2,000 bytes) after the 128-byte header of a .npy file: row r is
    bytes 128 + 2,000 r to 128 + 2,000 (r + 1), asked for from the page it starts in. The first batch's
    rows and the second's are advised before the first is gathered, then batch k + 1's before batch k."""
    waves = _npy(tmp_path / "waves.npy", 11, 1000)
    events = []
    real_select = torch.index_select

    def index_select(source, dim, index, **kwargs):
        if source.shape[-1] == 1000:  # the waveforms, not the targets
            events.append(("gather", index.tolist()))
        return real_select(source, dim, index, **kwargs)

    monkeypatch.setattr(torch, "index_select", index_select)
    monkeypatch.setattr(page_cache.RowAdvice, "worth_it", lambda self, rows: True)  # as if evicted
    reader = ReadBatches(ClipDataset(_Cache(waves), "train"), 4)
    reader.advice.mapping = _Mapping(reader.advice.mapping, events)
    order = torch.tensor([9, 0, 3, 5, 7, 1, 2, 8, 4, 6])  # split rows 0-9 are file rows 1-10
    batches = [wave[:, 0].tolist() for wave, _ in reader.batches(order)]
    assert batches == [[10, 1, 4, 6], [8, 2, 3, 9], [5, 7]]  # the file's rows, advised or not

    def advised(*rows):
        starts = [128 + 2000 * row for row in rows]
        return [("advise", mmap.MADV_WILLNEED, s - s % mmap.PAGESIZE, s + 2000 - (s - s % mmap.PAGESIZE))
                for s in starts]

    assert events == [*advised(10, 1, 4, 6), *advised(8, 2, 3, 9), ("gather", [10, 1, 4, 6]),
                      *advised(5, 7), ("gather", [8, 2, 3, 9]), ("gather", [5, 7])]


def test_a_long_row_is_asked_for_in_pieces_the_kernel_reads_whole(tmp_path):
    """Linux reads at most max(read_ahead_kb, max_sectors_kb) of one call's range, 128 KiB on common
    disks: a row of 150,000 float16 samples (300,000 bytes, from byte 128) is asked for in 128 KiB pieces
    from the page it starts in: 131,072 + 131,072 + 37,984 bytes."""
    events = []
    advice = page_cache.RowAdvice(_npy(tmp_path / "long.npy", 2, 150_000))
    advice.mapping = _Mapping(advice.mapping, events)
    advice.rows([0])
    assert [(start, length) for _, _, start, length in events] == [(0, 131_072), (131_072, 131_072),
                                                                     (262_144, 37_984)]


def test_a_pass_is_advised_only_where_its_rows_left_the_page_cache(tmp_path):
    """A file just written is in the page cache: nothing to advise. Dropped from it (posix_fadvise
    DONTNEED, nothing of it mapped in), its rows are worth advising (not on a tmpfs, whose pages are
    the file)."""
    waves = _npy(tmp_path / "waves.npy", 64, 4096)
    advice = page_cache.RowAdvice(waves)
    assert advice.possible and not advice.worth_it(np.arange(64))
    fd = os.open(tmp_path / "waves.npy", os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    if page_cache.page_cache_fraction(tmp_path / "waves.npy") > 0.05:
        pytest.skip(f"{tmp_path} keeps its pages (a tmpfs)")
    assert advice.worth_it(np.arange(64))


def test_an_array_in_memory_is_not_advised():
    """A cache that is no file (the tests' toy caches) has nothing to tell the kernel."""
    waves = np.zeros((5, 100), dtype=np.float16)
    reader = ReadBatches(ClipDataset(_Cache(waves), "train"), 2)
    assert not reader.advice.possible and not reader.advice.worth_it(np.arange(5))
    assert len(list(reader.batches(torch.arange(4)))) == 2


def test_the_page_cache_of_a_file_that_cannot_be_mapped_is_unknown(tmp_path, monkeypatch):
    """A file that cannot be mapped, or a system without mincore, gives None (not known), not an error."""
    path = tmp_path / "waves.npy"
    _npy(path, 4, 4096)
    assert page_cache.page_cache_fraction(path) > 0.5  # just written

    def refused(*args, **kwargs):
        raise OSError(19, "No such device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(page_cache.mmap, "mmap", refused)
        assert page_cache.page_cache_fraction(path) is None
    monkeypatch.setattr(page_cache, "_libc_mincore", lambda: None)
    assert page_cache.page_cache_fraction(path) is None
