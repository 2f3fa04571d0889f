"""Where things live by default, and whether a folder the user named can be used, checked before any work.

Defaults (each overridable on the command line or by an environment variable):

    results   ./results                                  (--results)
    cache     $BENCH_CACHE, else ./cache                 (--cache)
    data      the spec's dataset.path, relative to the working directory (--data)
    models    $BENCH_MODELS, else $XDG_DATA_HOME/bench/models, else ~/.local/share/bench/models
              (--models / --out): imported models are the user's, found from any folder

A check never creates anything: a grid stopped by a bad path leaves no folders behind.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from bench.core.errors import UserError
from bench.core.layout import RUN_FILES, RUNS

MODELS_ENV = "BENCH_MODELS"

CODE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding `bench/` (bench/core/paths.py's grandparent): a checkout, or site-packages."""


def default_models_dir() -> Path:
    """$BENCH_MODELS, else $XDG_DATA_HOME/bench/models, else ~/.local/share/bench/models (the XDG default;
    a relative $XDG_DATA_HOME is not one, as the XDG specification says: it is ignored)."""
    if os.environ.get(MODELS_ENV):
        return expanded(os.environ[MODELS_ENV], f"${MODELS_ENV}")
    data_home = os.environ.get("XDG_DATA_HOME")
    if data_home and (folder := expanded(data_home, "$XDG_DATA_HOME")).is_absolute():
        return folder / "bench" / "models"
    try:
        return Path("~/.local/share").expanduser() / "bench" / "models"
    except RuntimeError:  # no $HOME and no home in the user database: a container run as an arbitrary uid
        raise UserError(f"no home folder to keep imported models in ($HOME is not set): give --models DIR, "
                        f"or set ${MODELS_ENV} or $XDG_DATA_HOME") from None


def expanded(path: str | os.PathLike, where: str) -> Path:
    """`path` with a leading ~ or ~user made that home folder; UserError naming `where` (an option, a
    variable) where there is none: no $HOME and no home in the user database (a container run as an
    arbitrary uid), or no such user."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        home = os.fspath(path).split(os.sep, 1)[0]
        raise UserError(f"{where} {os.fspath(path)}: no home folder for {home} ($HOME is not set, or no such "
                        f"user); give a path without {home}") from None


def _given(path: str | os.PathLike, option: str, file: bool = False) -> Path:
    """`path` as a Path; an empty one (`--out ""`, an unset shell variable) is a UserError, not the
    working directory, which is what Path("") means. `file`: the option names a file, not a folder."""
    if not os.fspath(path).strip():
        give = "give a file name" if file else "give a folder, or . for this one"
        raise UserError(f"{option}: an empty path (an unset variable?); {give}")
    path = expanded(path, option)
    nameable(path, option)
    return path


def refuse_empty(path: str | os.PathLike, option: str, file: bool = False) -> None:
    """UserError where `path` is empty (`_given`), whatever the option does with it later."""
    _given(path, option, file)


def nameable(path: str | os.PathLike, what: str) -> None:
    """UserError where this system's file-system encoding cannot hold `path` (an ASCII one, LC_ALL=C with
    PYTHONUTF8=0, and a non-ASCII name): every look at the file would fail, and `Path.is_file()` says
    False, which would have been "not found" for a file that is there."""
    import sys

    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        raise UserError(f"{what} {os.fspath(path)}: not a name this locale's file-system encoding "
                        f"({sys.getfilesystemencoding()}) can hold; run under a UTF-8 locale (e.g. LC_ALL=C.UTF-8) "
                        "or with PYTHONUTF8=1") from None


def _exists(probe: Path, option: str, path: Path) -> bool:
    """Whether `probe` (a part of `path`, `_given`) exists; UserError where `path` cannot name a file at all."""
    try:
        probe.stat()
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # a name longer than the file system takes (255 bytes, usually)
            raise UserError(f"{option} {path}: {exc.strerror}; choose a shorter path") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EBADF):  # as Path.exists() answers False
            return False
        raise
    return True


def folder_path(path: str | os.PathLike, option: str, shown: Path | None = None) -> tuple[Path, Path]:
    """(`path`, its nearest existing folder) when `path` is or can become a folder (no file in the way);
    else UserError naming `option` and the path. Reads only."""
    path = _given(path, option)
    probe = path
    while not _exists(probe, option, path):
        if probe.is_symlink():  # a link to nothing: a folder cannot be made in its place, nor a file through it
            raise UserError(f"{option} {shown or path}: cannot be created: {probe} is a link to "
                            f"{os.readlink(probe)}, which does not exist")
        if probe.parent == probe:  # pragma: no cover - the root always exists
            break
        probe = probe.parent
    if not probe.is_dir():
        # `shown`: the file to be written in `path` (writable_file), which a file named like the folder blocks
        what = "is a file" if probe == path and shown is None else f"cannot be created: {probe} is a file"
        raise UserError(f"{option} {shown or path}: {what}, not a folder")
    return path, probe


def writable_folder(path: str | os.PathLike, option: str, shown: Path | None = None) -> Path:
    """`path` as a folder this process can create files in (it may not exist yet: then its nearest
    existing parent must take a new folder). Raises UserError naming `option` and the path; creates nothing."""
    path, probe = folder_path(path, option, shown)
    try:  # the only reliable test (permissions, read-only mounts, /proc, root's access) is to try
        fd, name = tempfile.mkstemp(prefix=".bench-probe.", dir=probe)
    except OSError as exc:
        raise UserError(f"{option} {shown or path}: cannot create files in {probe} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)
    return path


def writable_file(path: str | os.PathLike, option: str, suffix: str | None = None) -> Path:
    """`path` as a file this process can write (its folder may not exist yet), named with `suffix`
    where one is given (`.json`: `--out song.wav`, a recording named by mistake, is not replaced);
    creates nothing."""
    path = _given(path, option, file=True)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder, not a file")
    # a run's own (results/<spec>/runs/<run_id>/result.json), of a run trained or still to start
    if path.name in RUN_FILES and Path(os.path.abspath(path)).parent.parent.name == RUNS:
        raise UserError(f"{option} {path}: is a file of the run in {path.parent}, which the output would replace; "
                        "give another name")
    if suffix is not None and path.suffix.lower() != suffix:
        raise UserError(f"{option} {path}: a name that does not end in {suffix} (out{suffix}, say); the output is "
                        "written there, replacing any file of that name")
    writable_folder(path.parent, option, shown=path)
    return path


def readable_folder(path: str | os.PathLike, option: str) -> Path:
    """An existing folder; raises UserError naming `option` and the path."""
    path = _given(path, option)
    if not _exists(path, option, path):
        raise UserError(f"{option} {path}: no such folder")
    if not path.is_dir():
        raise UserError(f"{option} {path}: is a file, not a folder")
    return path


def plain_name(name: object) -> bool:
    """Whether `name`, read from a file (a layer, a run id, a weights file), names a file or folder in the
    folder it is joined to, and nothing else: a non-empty string with no separator, not "." or "..",
    no NUL and no leading or trailing blank."""
    return (isinstance(name, str) and name not in ("", ".", "..") and name == name.strip()
            and "/" not in name and os.sep not in name and "\0" not in name
            and (os.altsep is None or os.altsep not in name))
