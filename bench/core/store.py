"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

temp file in the same folder -> write -> fsync -> os.replace -> fsync the folder.

A writer killed before its `os.replace` leaves only a `.<name>.*.tmp` file, which no reader opens;
whoever owns the folder (the holder of its lock) removes them with `remove_temp_files`, and in a
folder that several processes write (a report, embeddings), a later writer removes those untouched
for `STALE_TEMP_SECONDS`. A file that a reader finds invalid anyway (a disk fault, a hand edit) is
set aside with `reject`, never deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.core.errors import UserError
from bench.core.interrupts import interrupts_deferred

WRITE_REFUSED_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})
"""Writes the machine refuses: a full disk, a quota, a read-only or forbidden folder, a file larger than
the file system or the process's file-size limit allows."""

FAILING_STORAGE_ERRNOS = frozenset({errno.EIO, errno.ESTALE, errno.ENOTCONN, errno.ETIMEDOUT, errno.EHOSTDOWN})
"""A failing disk or network file system: EIO, a stale NFS handle, a server gone or not answering."""

DESCRIPTOR_LIMIT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
"""Too many open files, in the process or the whole system."""

PROCESS_LIMIT_ERRNOS = frozenset({errno.ENOMEM, errno.EAGAIN})
"""Too little memory, or too many processes or threads."""

MACHINE_ERRNOS = FAILING_STORAGE_ERRNOS | DESCRIPTOR_LIMIT_ERRNOS | PROCESS_LIMIT_ERRNOS | {errno.ENAMETOOLONG}
"""Faults of the machine or its file systems that no run causes and a rerun may not meet: the three
groups above, and a path longer than the file system takes."""

RESOURCE_ERRNOS = WRITE_REFUSED_ERRNOS | MACHINE_ERRNOS
"""The machine's state, not a run's fault: these stop the grid with one line, resumable, instead of
being recorded as a failed run (or setting aside a checkpoint, or skipping an audio file for good)."""

LOCKLESS_ERRNOS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})  # one on Linux, two on macOS
"""What `flock` fails with on a file system that keeps no such locks: NFSv3 without a running lock
manager (ENOLCK), Lustre mounted without `-o flock` (ENOSYS), some FUSE file systems. (NFS mounted
with `nolock` grants locks that exclude only processes of the same node: nothing can see that.)"""


class LocksUnsupported(UserError):
    """The file system of a lock file does not support `flock`, on which the suite's guarantees rest
    (two workers never run the same run, preparers of a cache take turns): nothing may start there."""


REJECTED_SUFFIX = ".rejected"
TEMP_SUFFIX = ".tmp"


def is_passing_fault(exc: BaseException) -> bool:
    """A machine fault met reading a file that says nothing about the file (a name too long for the
    file system does): a reader stops, resumable, instead of counting the file missing or broken."""
    return isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS and exc.errno != errno.ENAMETOOLONG


def is_resource_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS


FILE_SIZE_LIMIT_KILLED = "File size limit exceeded"
"""What an error wrapping a compiler that the file-size limit (`ulimit -f`) killed says: g++'s words
for SIGXFSZ, which torch.compile's CppCompileError quotes."""

WRAPPED_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
"""Refused writes recognised by their words (`os.strerror`) in an error that quotes another process's
(a linker's "final link failed: No space left on device", a compile worker's traceback)."""


class CompileCacheError(OSError):
    """A write refused under torch.compile's cache folder (`TORCHINDUCTOR_CACHE_DIR`): the folder to
    free or move is that one, not the results or the cache."""


def resource_cause(exc: BaseException, wrapper_folder: str | None = None) -> OSError | None:
    """The machine's state behind `exc`: `exc` itself where `is_resource_error`, else such an OSError
    it was raised from (`__cause__`) or that a wrapper keeps, as torch.compile's InductorError and
    BackendCompilerFailed keep what they met (`inner_exception`); within a wrapper, also another
    process's refused write quoted in words (`WRAPPED_WRITE_ERRNOS`: a linker, a compile worker) and a
    compiler that the file-size limit killed (as EFBIG). A refused write a wrapper kept is a
    CompileCacheError; what a wrapper kept names `wrapper_folder` (torch.compile's cache folder) where
    it names no file. None for any other error."""
    pending: list[tuple[BaseException | None, bool]] = [(exc, False)]
    seen: set[int] = set()
    while pending:
        error, wrapped = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if is_resource_error(error):
            if not wrapped:
                return error
            kind = CompileCacheError if error.errno in WRITE_REFUSED_ERRNOS else OSError  # a failing disk: own advice
            return kind(error.errno, error.strerror or os.strerror(error.errno), error.filename or wrapper_folder)
        if wrapped and not isinstance(error, OSError):
            text = str(error)
            quoted = [code for code in WRAPPED_WRITE_ERRNOS if os.strerror(code) in text]
            code = errno.EFBIG if FILE_SIZE_LIMIT_KILLED in text else quoted[0] if quoted else None
            if code is not None:
                return CompileCacheError(code, os.strerror(code), wrapper_folder)
        inner = getattr(error, "inner_exception", None)
        pending += [(error.__cause__, wrapped), (inner if isinstance(inner, BaseException) else None, True)]
    return None


MISPLACED_ERRNOS = frozenset({errno.EISDIR, errno.ENOTDIR, errno.EEXIST})
"""A folder where the suite keeps a file, or a file where it keeps a folder (a copy gone wrong, a name
taken by hand): not a run's failure; the grid stops, resumable, once it is moved aside."""


def is_misplaced(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in MISPLACED_ERRNOS


def fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temp file beside `path` for the caller to open by name and write: on a clean exit
    it is fsynced and renamed over `path`, then the folder is fsynced; on an error it is removed. A
    reader sees the old file or the whole new one, never part of it; an error names the file."""
    path = Path(path)
    with _temp_beside(path) as tmp:
        yield tmp
    _rename(tmp, path)
    fsync_folder(path.parent)


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    """A temp file beside `path`, fsynced with the mode results get on a clean exit and left for the caller
    to rename; removed on an error, which names `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:  # the temp file not made (no inode left, say): named as the file it was to become
        attempted = os.fsdecode(exc.filename) if exc.filename is not None else None
        temp = attempted is not None and Path(attempted).name.startswith(f".{path.name}.")
        raise named_error(exc, path if temp else path.parent, instead_of=attempted if temp else None) from None
    try:
        try:
            os.fchmod(fd, 0o600)  # the writer may open it by name: writable whatever the umask says
            yield Path(tmp)
            os.fchmod(fd, 0o666 & ~_umask())  # 0600 would hide results from colleagues
            os.fsync(fd)  # the file's data, whichever descriptor wrote it
        finally:
            os.close(fd)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise named_error(exc, path, instead_of=tmp) from None
        raise


def _rename(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise named_error(exc, path, instead_of=str(tmp)) from None


def atomic_write_together(folder: str | Path, contents: Mapping[str, bytes]) -> list[Path]:
    """Write the files `contents` names (file name -> bytes) in `folder` as one set: every one is written
    to a temp file and fsynced before any is renamed over its old copy, so an error while writing (a full
    disk, a quota) leaves every old file as it was, and what a reader finds is the old set or, moments
    later, the new one, not some files of each. Returns the paths written."""
    folder = Path(folder)
    staged: dict[Path, Path] = {}
    try:
        for name, data in contents.items():
            with _temp_beside(folder / name) as tmp, open(tmp, "wb") as handle:
                handle.write(data)
            staged[folder / name] = tmp
        with interrupts_deferred():  # renames only: nothing left that can run out of space
            for path, tmp in list(staged.items()):
                _rename(tmp, path)
                del staged[path]
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    fsync_folder(folder)
    return [folder / name for name in contents]


def fsync_folder(folder: str | Path) -> None:
    """Make the names in `folder` (a file renamed or a folder made in it) survive a crash of the machine."""
    try:
        fsync_path(folder)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # folders some file systems cannot fsync
            raise named_error(exc, Path(folder)) from None


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
    return Path(path)


def named_error(exc: OSError, path: Path, instead_of: str | None = None) -> OSError:
    """The same error, naming the file it was about (a failed write() or fsync() names none; a temp
    file `instead_of` is named as the file it was to become)."""
    named = exc.filename is not None and (instead_of is None or os.fsdecode(exc.filename) != instead_of)
    if named or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def remove_temp_files(folder: str | Path, min_age_seconds: float = 0.0) -> list[Path]:
    """Delete the temp files of writers that died in `folder`. Only its owner may call this with no
    `min_age_seconds`; in a folder that several processes write (a report, embeddings), a temp file
    named as `atomic_file` names them and untouched for `STALE_TEMP_SECONDS` is a dead writer's, since
    a live one renames it within seconds."""
    removed, now = [], None
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if min_age_seconds and not TEMP_NAME.fullmatch(tmp.name):  # a folder the user named may hold anything
            continue
        try:
            if min_age_seconds and now is None:
                now = now_on(folder)  # the writer may be another host, whose clock need not agree with ours
            if min_age_seconds and now - tmp.stat().st_mtime < min_age_seconds:
                continue
            tmp.unlink()
        except FileNotFoundError:  # renamed or removed by its writer meanwhile
            continue
        removed.append(tmp)
    return removed


def now_on(folder: str | Path) -> float:
    """Now, on the clock that stamps the files of `folder`: the file server's on a network file system,
    which other hosts' writes there carry too (a new empty file's modification time); this host's clock
    where the folder takes no file."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".clock-")
    except OSError:
        return time.time()
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)


TEMP_NAME = re.compile(rf"\..+\.[a-z0-9_]{{8}}{re.escape(TEMP_SUFFIX)}")
"""The name `atomic_file` gives a temp file: `.<name>.` + mkstemp's 8 random characters + `.tmp`."""
STALE_TEMP_SECONDS = 3600.0
"""Age after which a temp file in a shared output folder is taken for a dead writer's."""


def reject(path: str | Path) -> Path:
    """Set an invalid file aside as `<name>.rejected`, or `<name>.rejected.2`, `.3`, ... when earlier ones
    are there: kept for inspection, never replaced (a file rejected after a passing fault may be the
    only copy of much work)."""
    path = Path(path)
    target, n = path.with_name(path.name + REJECTED_SUFFIX), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{REJECTED_SUFFIX}.{n}")
    os.replace(path, target)
    return target


def append_line(path: str | Path, line: str) -> None:
    """Append one line with one write (a reader sees whole lines); an error names the file."""
    try:
        with open(path, "a") as handle:
            handle.write(line)
    except OSError as exc:
        raise named_error(exc, Path(path)) from None


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json_text(data) + "\n")


def json_text(data: Any, indent: int = 1) -> str:
    """`data` as strict JSON (`_finite`): what bench writes to a file or prints with --json."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False)


def is_finite_number(value: object) -> bool:
    """A number read from JSON that arithmetic can use: not a bool, NaN or infinity, nor an integer past a
    float's range (JSON's integers have no bound, and math.isfinite raises OverflowError on one)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def beyond_64_bits(value: object, where: str = "") -> str | None:
    """The first field of JSON `value` (named from `where`: "cost.gmac", "folds[2]") holding an integer
    beyond 64 bits, or None. JSON's integers have no bound; a table column (int64) holds none of them,
    and a float conversion of one raises OverflowError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None if -2**63 <= value < 2**63 else where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        name = (f"{where}.{key}" if where else str(key) or '""') if isinstance(value, dict) else f"{where}[{key}]"
        found = beyond_64_bits(item, name)
        if found is not None:
            return found
    return None


def _finite(data: Any) -> Any:
    """`data` with NaN and infinities as None: JSON has no NaN, and strict readers (JavaScript's
    JSON.parse, most languages' libraries) refuse a file that contains one."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


LOCK_MODE = 0o666
"""Lock files are read-write for whoever the umask allows, as results are (`atomic_file`): a colleague
sharing the results folder (group-writable, umask 002) must be able to lock a run to resume it."""


def _flock(fd: int, operation: int, path: str | Path) -> None:
    try:
        fcntl.flock(fd, operation)
    except OSError as exc:
        if exc.errno not in LOCKLESS_ERRNOS:
            raise
        reason = exc.strerror or os.strerror(exc.errno)
        raise LocksUnsupported(
            f"{path}: this file system does not support flock locks ({reason}), which keep two processes off "
            "the same work; move this folder (--results, --cache, BENCH_GPU_LOCKS or the dataset's) to one that "
            "does (a local disk, NFSv4 mounted without nolock or local_lock, Lustre mounted with -o flock), "
            "then rerun") from None


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (waiting for it): the kernel drops it if the holder dies.

    The lock file is removed on release, so a finished or interrupted holder leaves nothing behind
    (a killed one leaves it; the next holder takes it over). A waiter that wakes up holding a file
    that is no longer at `path` (its holder removed it) opens `path` again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, LOCK_MODE)
        try:
            _flock(fd, fcntl.LOCK_EX, path)
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        except BaseException:
            os.close(fd)
            raise
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        yield
    finally:
        Path(path).unlink(missing_ok=True)  # while still holding it: no one can hold this inode next
        os.close(fd)


def release_lock(fd: int) -> None:
    """Release a lock `try_lock` took: unlocked first, for every process sharing the descriptor."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def try_lock(path: str | Path, note: str = "", previous: list[bytes] | None = None) -> int | None:
    """An exclusive, non-blocking flock on `path` (created if needed), with `note` written into it:
    the open descriptor (closing it releases the lock; so does the holder's death), or None if
    another process holds it. What the file held before (the last holder's note) is appended to
    `previous` where that is given."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, LOCK_MODE)
    try:
        _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, path)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    try:
        if previous is not None:
            previous.append(os.pread(fd, 65536, 0))
        os.ftruncate(fd, 0)
        os.write(fd, note.encode())
    except OSError as exc:
        os.close(fd)
        raise named_error(exc, Path(path)) from None
    return fd


def rewrite_lock_note(fd: int, note: bytes) -> None:
    """Replace the note in a lock file this process holds."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, note, 0)


def lock_held(path: str | Path) -> bool:
    """True if another live process holds an exclusive flock on `path` right now (a look that writes nothing)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):  # no lock, or a file where a folder on the way should be
        return False
    try:
        _flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, path)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a shared lock we may have taken


NOT_REGULAR_FILE = "not a regular file (a link to a FIFO or a device)"
"""What a file `read_regular_file` refuses is, as the commands say it."""


def read_regular_file(path: str | os.PathLike) -> bytes:
    """The bytes of the file at `path` where it is a regular file; OSError EINVAL for anything else a
    hostile or broken folder can put there (a link to a FIFO, whose read would wait for good, or to
    /dev/zero, whose zeros would fill the memory). Opened without blocking: a FIFO with no writer blocks
    the open itself."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):  # a folder where the file belongs: said as such (`bench.cli`)
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()
