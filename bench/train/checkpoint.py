"""Checkpoints of a run: when to write them, how they are written and read, and resuming from them.

checkpoint.pt is written (atomically) first, then best.pt, `{"epoch", "model"}`, when it does not yet
hold the best epoch so far; between checkpoints the best weights are kept in memory by the loop. A
kill between the two leaves a checkpoint whose best epoch is its own, or which carries the best
weights as `best_model`, so the best weights are in the checkpoint and best.pt is rewritten from it
on resume. A checkpoint or best.pt that cannot be loaded (corrupt, truncated, damaged in its bytes, not
this run's, or holding anything but tensors and plain containers) is set aside as `*.rejected` and the
run restarts from scratch.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.core.errors import first_line, is_job_stop
from bench.core.layout import BEST, CHECKPOINT
from bench.core.store import atomic_write_bytes, is_resource_error, reject


@dataclass
class CheckpointPolicy:
    """When to write a checkpoint: after the first epoch, after the last, and otherwise once the time
    since the last one reaches `1 / max_overhead` times what the last one took to write, so
    checkpointing costs at most `max_overhead` of the run. On the CPU (minutes per epoch) that is
    every epoch; on a GPU with short epochs and a ~210 MB VGG checkpoint, every minute or so. A kill
    loses at most that much work: the run resumes from the last checkpoint."""

    max_overhead: float = 0.05
    last_written: float | None = None
    last_cost: float = 0.0

    def due(self, now: float) -> bool:
        return self.last_written is None or now - self.last_written >= self.last_cost / self.max_overhead

    def written(self, started: float, finished: float) -> None:
        self.last_written, self.last_cost = finished, finished - started


def save_torch(path: Path, obj) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_torch(path: Path):
    """Checkpoints are loaded with weights_only=True: tensors and plain containers, never code. The zip
    archive torch.save writes is checked against its CRC-32s first: torch's reader does not check them,
    so a file whose bytes the disk changed (a bit flipped, its size and structure intact) loaded, and a
    run resumed from other weights than it saved."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would hang the read, /dev/zero fill the memory
        raise zipfile.BadZipFile(f"{path} is not a regular file")
    if zipfile.is_zipfile(path):  # else torch.load says what it is not
        check_crcs(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def check_crcs(path: Path) -> None:
    """BadZipFile naming the first entry of the zip archive at `path` whose bytes do not match its CRC-32.
    An entry with data and a CRC of 0 is not checked: torch writes 0 where its `compute_crc32` setting
    (torch.utils.serialization.config.save) was turned off, and such files load."""
    with zipfile.ZipFile(path) as archive:
        for entry in archive.infolist():
            if entry.compress_type != zipfile.ZIP_STORED:  # torch.save stores; a compressed entry would be
                raise zipfile.BadZipFile(f"{entry.filename} is compressed, which torch.save never writes "  # inflated
                                         "(a file made elsewhere)")  # whole by torch.load: 2 GB from 2 MB
            if entry.CRC == 0 and entry.file_size > 0:
                continue
            try:
                with archive.open(entry) as data:  # zipfile checks the CRC-32 as the last bytes are read
                    while data.read(1 << 24):
                        pass
            except zipfile.BadZipFile:
                raise zipfile.BadZipFile(f"{entry.filename} does not match its CRC-32 (the file was damaged)") from None


class InvalidCheckpoint(Exception):
    """A checkpoint or best.pt that must not be used; str(exc) says why."""


CHECKPOINT_KEYS = ("epoch", "model", "optimizer", "scheduler", "scaler", "best", "history", "torch_rng", "run_id")


def read_checkpoint(path: Path, run_id: str) -> dict:
    """The checkpoint at `path` if it is a complete checkpoint of `run_id`; InvalidCheckpoint otherwise."""
    state = _load_dict(path)
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise InvalidCheckpoint(f"missing {', '.join(missing)}")
    if state["run_id"] != run_id:
        raise InvalidCheckpoint(f"belongs to run {state['run_id']!r}, not {run_id!r}")
    epoch, best = state["epoch"], state["best"]
    if not isinstance(epoch, int) or epoch < 1 or not isinstance(best, dict) \
            or not isinstance(best.get("epoch"), int) or not 0 <= best["epoch"] <= epoch:
        raise InvalidCheckpoint(f"inconsistent epochs (epoch {epoch!r}, best {best!r})")
    if not isinstance(state["history"], list) or len(state["history"]) != epoch:
        raise InvalidCheckpoint("history does not match the epoch")
    return state


def read_best(path: Path, epoch: int) -> dict:
    """The best-validation weights of `epoch` from best.pt; InvalidCheckpoint if that is not what it holds."""
    state = _load_dict(path)
    if state.get("epoch") != epoch or not isinstance(state.get("model"), dict):
        raise InvalidCheckpoint(f"holds epoch {state.get('epoch')!r}, not the best epoch {epoch}")
    return state["model"]


def _load_dict(path: Path) -> dict:
    try:
        state = load_torch(path)
    except Exception as exc:  # torch reports torn zips, refused globals, bad pickles, truncated archives
        # (OSError EINVAL) as many types: each sets the file aside (kept, numbered). Not these: no file;
        # permission denied (the file may be fine: the grid stops, resumable); the job's time running out
        if isinstance(exc, FileNotFoundError) or is_resource_error(exc) or is_job_stop(exc):
            raise
        if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc):  # torch's allocator says so in a
            # RuntimeError: too little memory says nothing about the file
            raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM), str(path)) from None
        raise InvalidCheckpoint(f"unreadable ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(state, dict):
        raise InvalidCheckpoint(f"holds a {type(state).__name__}, not a dict")
    return state


def resume_state(run_dir: Path, run_id: str, log: Callable = print) -> dict | None:
    """The checkpoint to resume from, with best.pt checked (and rewritten when the checkpoint holds the
    best weights), or None: start from scratch, with anything invalid set aside as `*.rejected`."""
    checkpoint, best_path = run_dir / CHECKPOINT, run_dir / BEST
    if not checkpoint.exists():
        return None
    try:
        state = read_checkpoint(checkpoint, run_id)
    except InvalidCheckpoint as exc:
        log(f"{checkpoint}: {exc}; set aside as {reject(checkpoint).name}, the run starts from scratch")
        return None
    best_epoch = state["best"]["epoch"]
    if best_epoch == 0:
        return state
    try:
        read_best(best_path, best_epoch)
        return state
    except (InvalidCheckpoint, FileNotFoundError) as exc:
        problem = "missing" if isinstance(exc, FileNotFoundError) else str(exc)
        if best_path.exists():
            log(f"{best_path}: {problem}; set aside as {reject(best_path).name}")
    # killed between the checkpoint and best.pt: the best weights are in the checkpoint
    carried = state["model"] if best_epoch == state["epoch"] else state.get("best_model")
    if isinstance(carried, dict):
        save_torch(best_path, {"epoch": best_epoch, "model": carried})
        return state
    log(f"{best_path}: the best weights (epoch {best_epoch}) are lost; {CHECKPOINT} set aside as "
        f"{reject(checkpoint).name}, the run starts from scratch")
    return None
