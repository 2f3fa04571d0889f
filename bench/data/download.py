"""`bench download mtat|jamendo`: fetch a dataset's audio from its public home, resumably, and unpack it.

MTG-Jamendo's audio (`raw_30s`, every track of its autotagging tasks) is 100 tar archives at the
dataset's documented address (`JAMENDO_BASE_URL`, the fast mirror its own download script uses by
default, + `raw_30s/audio-low/raw_30s_audio-low-NN.tar`, or `audio/` for full quality); each
archive is checked against the published SHA-256
(`bench.data.jamendo_checksums`) before it is unpacked (a mismatch removes it and says to run again),
unpacked with every member checked to stay inside the target, and marked done, so a rerun fetches
and unpacks only what is left. Tracks land at `NN/ID.low.mp3` (or `NN/ID.mp3`), where
`bench.data.jamendo` looks for them.

The audio is distributed as one zip archive cut into three parts (`mp3.zip.001`-`.003`); read one
after the other (`JoinedParts`, so the joined copy never takes disk space), they are an ordinary zip
holding the folders `0`-`f`. Downloads resume from a `.part` file with an HTTP Range request, taken
only where the server's Content-Range starts where the part ends (a server that ignores Range, or
answers another range, restarts the file), and each file appears under its final name only once
complete. Extraction refuses entries that would land outside the target folder and ends with a
marker file, so a rerun after an interruption redoes only what is left; the archives are removed
after the marker (also by a rerun that finds them there), unless kept.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.core.errors import UserError
from bench.core.store import named_error

MTAT_BASE_URL = "https://mirg.city.ac.uk/datasets/magnatagatune/"
MTAT_PARTS = ("mp3.zip.001", "mp3.zip.002", "mp3.zip.003")
MTAT_ANNOTATIONS = "annotations_final.csv"
EXTRACTED_MARKER = ".mp3-extracted"
# the fast mirror that MTG-Jamendo's own download script uses by default (its origin server,
# https://essentia.upf.edu/documentation/datasets/mtg-jamendo/, holds the same files: --base-url)
JAMENDO_BASE_URL = "https://cdn.freesound.org/mtg-jamendo/"
JAMENDO_QUALITIES = ("low", "full")
CHUNK = 1 << 20
# what a connection can raise besides HTTP errors: a refused or reset connection (URLError, OSError),
# a body cut off before its end without a Content-Length or a garbled status line (HTTPException)
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)
# what a damaged zip raises while its members are read: a bad header or CRC, bad deflate data, a cut-off member
CORRUPT_ZIP = (zipfile.BadZipFile, zlib.error, EOFError)


def content_range(headers) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header: `bytes 100-199/1000` or `bytes */1000` (a 416's);
    None for what it does not say."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", (headers or {}).get("Content-Range") or "")
    if not match:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def _why(exc: Exception) -> str:
    """A network error in words: URLError's reason, else the exception's own text, else its name."""
    return str(getattr(exc, "reason", None) or exc) or type(exc).__name__


def fetch(url: str, dest: Path, progress: Callable | None = None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, resuming `dest.part` if present. Returns `dest`."""
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    try:
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    except ValueError as exc:  # e.g. "unknown url type": a --base-url without https://
        raise UserError(f"download failed: {url}: {exc}") from None
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: complete if the server's size is the part's
            if content_range(exc.headers)[1] == have:
                part.replace(dest)
                return dest
            part.unlink()  # longer than the file, or a size the server does not say: start again
            return fetch(url, dest, progress, timeout)
        raise UserError(f"download failed: {url}: HTTP {exc.code} {exc.reason}") from None
    except NETWORK_ERRORS as exc:
        raise UserError(f"download failed: {url}: {_why(exc)}") from None
    with response:
        resumed = response.status == 206
        if resumed and content_range(response.headers)[0] != have:  # not the rest of the part: start again
            if not have:
                raise UserError(f"download failed: {url}: the server answered a range that was not asked for")
            response.close()
            part.unlink()
            return fetch(url, dest, progress, timeout)
        mode = "ab" if resumed else "wb"
        length = response.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length else None
        bar = progress(total, dest.name, have if resumed else 0) if progress else None
        try:
            with open(part, mode) as out:
                while True:
                    try:  # the network's faults only: one writing the part (a full disk) is said as such
                        chunk = response.read(CHUNK)
                    except NETWORK_ERRORS as exc:
                        raise UserError(f"download interrupted: {url}: {_why(exc)} (run again to resume)") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except OSError as exc:
            raise named_error(exc, part) from None
        finally:
            if bar is not None:
                bar.close()
    if total is not None and part.stat().st_size != total:
        raise UserError(f"download incomplete: {url}: {part.stat().st_size} of {total} bytes (run again to resume)")
    part.replace(dest)
    return dest


class JoinedParts(io.RawIOBase):
    """The files `paths` read as one, in order: a split archive's parts as the archive they make,
    seekable (zipfile reads the central directory at the end first), without writing the join."""

    def __init__(self, paths: Sequence[Path]):
        self._files = [open(path, "rb") for path in paths]
        self._starts, start = [], 0
        for handle in self._files:
            self._starts.append(start)
            start += os.fstat(handle.fileno()).st_size
        self._size, self._position = start, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer) -> int:
        """Up to len(buffer) bytes from the one part the position is in (fewer at a part's end)."""
        for handle, start in zip(reversed(self._files), reversed(self._starts), strict=True):
            if start <= self._position:  # the last part that starts at or before the position
                handle.seek(self._position - start)
                read = handle.readinto(buffer) or 0
                self._position += read
                return read
        return 0

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        super().close()


def safe_extract(archive: Path | Sequence[Path], target: Path) -> int:
    """Extract every member of `archive` (a zip, or the parts of a split one) under `target`, each file
    whole or not at all (`_unpack`); refuse paths that escape it."""
    target = target.resolve()
    source = JoinedParts(archive) if isinstance(archive, (list, tuple)) else archive
    with zipfile.ZipFile(io.BufferedReader(source, CHUNK) if isinstance(source, JoinedParts) else source) as zf:
        members = zf.infolist()
        # a zip member's CRC is checked as its last bytes are read
        _unpack_all([(m.filename, "folder" if m.is_dir() else "file", lambda m=m: zf.open(m)) for m in members],
                    target, lambda name: f"{_name(archive)}: refusing to extract {name!r} outside {target}")
    return len(members)


def _unpack_all(members: list[tuple[str, str, Callable]], target: Path, refused: Callable[[str], str]) -> None:
    """Each (name, kind, open) member of an archive under `target`: every name checked first (`_inside`;
    a kind other than "file" or "folder", or a file named as the target itself, is refused too, with
    `refused(name)`), then what killed unpackings left in the files' folders removed, then folders made
    and files unpacked (`_unpack`)."""
    places = [_inside(target, name) for name, _, _ in members]
    for (name, kind, _), place in zip(members, places, strict=True):
        if place is None or kind not in ("file", "folder") or (place == target and kind == "file"):
            raise UserError(refused(name))
    _sweep_partials({place.parent for (_, kind, _), place in zip(members, places, strict=True) if kind == "file"})
    for (_, kind, opened), place in zip(members, places, strict=True):
        if kind == "folder":
            place.mkdir(parents=True, exist_ok=True)
        else:
            with opened() as data:
                _unpack(data, place)


PARTIAL = ".unpacking-"
"""A member being unpacked is written to `<its folder>/.unpacking-<pid>`, then renamed to its name."""


def _sweep_partials(folders: set[Path]) -> None:
    """Remove what an unpacking killed midway (SIGKILL, the out-of-memory killer) left in `folders`: a
    partial file of a process that is gone (or one named `<member>.unpacking`, as earlier versions named
    them). One of a live process is another download's, into the same folder."""
    for folder in folders:
        try:
            names = [p for p in folder.iterdir() if p.name.startswith(PARTIAL) or p.name.endswith(".unpacking")]
        except OSError:  # not there yet
            continue
        for path in names:
            pid = path.name[len(PARTIAL):]
            live = path.name.startswith(PARTIAL) and pid.isascii() and pid.isdigit() and _alive(int(pid))
            if live or path.is_symlink() or not path.is_file():  # a folder of that name is someone's
                continue
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (this one included); False for a number no process can have."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # another user's
        return True
    return True


def _inside(target: Path, name: str) -> Path | None:
    """Where member `name` goes under `target`, or None where its name leads out of it (`..`, an absolute
    path). Read from the name alone: a folder there that is the user's link to another disk is theirs
    to make (an archive's own links are refused, or not made)."""
    place = Path(os.path.normpath(target / name))
    return place if place == target or target in place.parents else None


def _unpack(data, place: Path) -> None:
    """A member's bytes at `place`, whole or not at all: written beside it and renamed. A member that
    fails as it is read (a bad CRC, a full disk) left a truncated file where the dataset is read."""
    place.parent.mkdir(parents=True, exist_ok=True)
    partial = place.parent / f"{PARTIAL}{os.getpid()}"  # a short name, whatever the member's length
    try:
        with open(partial, "wb") as out:
            shutil.copyfileobj(data, out, CHUNK)
        os.replace(partial, place)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _name(archive: Path | Sequence[Path]) -> str:
    return " + ".join(p.name for p in archive) if isinstance(archive, (list, tuple)) else str(archive)


def download_mtat(to: str | Path, base_url: str = MTAT_BASE_URL, keep_archives: bool = False,
                  progress: Callable | None = None) -> Path:
    """Fetch the three parts and the annotations into `to`, join the parts, unpack the mp3 folders."""
    to = Path(to).expanduser()
    to.mkdir(parents=True, exist_ok=True)
    base = base_url if base_url.endswith("/") else base_url + "/"
    fetch(base + MTAT_ANNOTATIONS, to / MTAT_ANNOTATIONS, progress)
    if not (to / EXTRACTED_MARKER).exists():
        joined = to / "mp3.zip"  # an earlier version joined the parts into it
        archive = joined if joined.exists() else [fetch(base + name, to / name, progress) for name in MTAT_PARTS]
        try:
            safe_extract(archive, to)
        except CORRUPT_ZIP as exc:
            raise UserError(f"{_name(archive)} in {to}: not a valid zip ({type(exc).__name__}: {exc}); delete "
                            f"{'mp3.zip and ' if archive == joined else ''}the parts and download again") from None
        except OSError as exc:
            space = " (unpacking needs as much free space again as the parts take)" \
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise UserError(f"cannot unpack {_name(archive)} into {to}: {exc.strerror or exc}{space}") from None
        (to / EXTRACTED_MARKER).write_text("ok\n")
    if not keep_archives:  # also what an interrupted run left behind its marker
        for name in (*MTAT_PARTS, "mp3.zip", "mp3.zip.joining"):
            (to / name).unlink(missing_ok=True)
    return to


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract_tar(archive: Path, target: Path) -> int:
    """Extract the regular files and folders of `archive` under `target`; refuse members that would
    land outside it, links and devices."""
    target = target.resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            _unpack_all([(m.name, "file" if m.isfile() else "folder" if m.isdir() else "link or device",
                          lambda m=m: tar.extractfile(m)) for m in members],
                        target, lambda name: f"{archive}: refusing to extract {name!r} (outside {target}, or not a "
                                             "regular file)")
    except tarfile.TarError as exc:
        raise UserError(f"{archive}: not a valid tar archive ({exc}); delete it and run again") from None
    except OSError as exc:
        raise UserError(f"cannot unpack {archive} into {target}: {exc.strerror or exc}") from None
    return len(members)


def download_jamendo(to: str | Path, quality: str = "low", base_url: str = JAMENDO_BASE_URL,
                     keep_archives: bool = False, progress: Callable | None = None,
                     checksums: dict[str, str] | None = None) -> Path:
    """Fetch, check and unpack MTG-Jamendo's raw_30s audio archives into `to` (see the module docstring).
    `checksums` (archive name -> SHA-256) defaults to the published table of `quality`."""
    from bench.data import jamendo_checksums

    if quality not in JAMENDO_QUALITIES:
        raise UserError(f"--quality must be one of {', '.join(JAMENDO_QUALITIES)}, not {quality!r}")
    table = checksums or (jamendo_checksums.AUDIO_LOW if quality == "low" else jamendo_checksums.AUDIO)
    folder = "audio-low" if quality == "low" else "audio"
    to = Path(to).expanduser()
    to.mkdir(parents=True, exist_ok=True)
    base = (base_url if base_url.endswith("/") else base_url + "/") + f"raw_30s/{folder}/"
    for name in sorted(table):
        marker = to / f".{name}.extracted"
        if marker.exists():
            if not keep_archives:  # an interrupted run's, left behind its marker
                (to / name).unlink(missing_ok=True)
            continue
        archive = fetch(base + name, to / name, progress)
        digest = sha256_of(archive)
        if digest != table[name]:
            archive.unlink()
            raise UserError(f"{archive}: SHA-256 {digest[:16]}... is not the published {table[name][:16]}...; "
                            "the file was removed: run again to download it anew")
        safe_extract_tar(archive, to)
        marker.write_text("ok\n")
        if not keep_archives:
            archive.unlink()
    return to
