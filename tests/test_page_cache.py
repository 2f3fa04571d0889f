"""Reading a cache larger than RAM: the kernel is told which rows come next (`RowAdvice`)."""

import os

import numpy as np
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


def test_each_batch_tells_the_kernel_the_next_batchs_rows_before_it_is_gathered(tmp_path, monkeypatch):
    """Rows of 1,000 float16 samples (2,000 bytes) after the 128-byte header of a .npy file: row r is
    bytes 128 + 2,000 r to 128 + 2,000 (r + 1). The first batch's rows and the second's are advised
    before the first is gathered, then batch k + 1's before batch k is."""
    waves = np.lib.format.open_memmap(tmp_path / "waves.npy", mode="w+", dtype=np.float16, shape=(11, 1000))
    waves[:] = np.arange(11, dtype=np.float16)[:, None]
    waves.flush()
    waves = np.load(tmp_path / "waves.npy", mmap_mode="r")
    events = []
    real_advise, real_select = os.posix_fadvise, torch.index_select
    monkeypatch.setattr(page_cache.os, "posix_fadvise", lambda fd, offset, length, advice: (
        events.append(("advise", offset, length, advice)), real_advise(fd, offset, length, advice))[1])

    def index_select(source, dim, index, **kwargs):
        if source.shape[-1] == 1000:  # the waveforms, not the targets
            events.append(("gather", index.tolist()))
        return real_select(source, dim, index, **kwargs)

    monkeypatch.setattr(torch, "index_select", index_select)
    reader = ReadBatches(ClipDataset(_Cache(waves), "train"), 4)
    order = torch.tensor([9, 0, 3, 5, 7, 1, 2, 8, 4, 6])  # split rows 0-9 are file rows 1-10
    batches = [wave[:, 0].tolist() for wave, _ in reader.batches(order)]
    assert batches == [[10, 1, 4, 6], [8, 2, 3, 9], [5, 7]]  # the file's rows, advised or not

    def advised(*rows):
        return [("advise", 128 + 2000 * row, 2000, os.POSIX_FADV_WILLNEED) for row in rows]

    assert events == [*advised(10, 1, 4, 6), *advised(8, 2, 3, 9), ("gather", [10, 1, 4, 6]),
                      *advised(5, 7), ("gather", [8, 2, 3, 9]), ("gather", [5, 7])]
    assert reader.advice.file is not None
    reader.close()
    assert reader.advice.file is None


def test_an_array_in_memory_is_not_advised():
    """A cache that is no file (the tests' toy caches) has nothing to tell the kernel."""
    waves = np.zeros((5, 100), dtype=np.float16)
    reader = ReadBatches(ClipDataset(_Cache(waves), "train"), 2)
    assert not reader.advice.possible
    assert len(list(reader.batches(torch.arange(4)))) == 2 and reader.advice.file is None
