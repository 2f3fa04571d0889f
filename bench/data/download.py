"""`bench download mtat|jamendo`: fetch a dataset's audio from its public home, resumably, and unpack it.

MTG-Jamendo's audio (`raw_30s`, every track of its autotagging tasks) is 100 tar archives at the
dataset's documented address (`JAMENDO_BASE_URL` + `raw_30s/audio-low/raw_30s_audio-low-NN.tar`, or
`audio/` for full quality); each archive is checked against the published SHA-256
(`bench.data.jamendo_checksums`) before it is unpacked (a mismatch removes it and says to run again),
unpacked with every member checked to stay inside the target, and marked done, so a rerun fetches
and unpacks only what is left. Tracks land at `NN/ID.low.mp3` (or `NN/ID.mp3`), where
`bench.data.jamendo` looks for them.

The audio is distributed as one zip archive cut into three parts (`mp3.zip.001`-`.003`); joined,
they are an ordinary zip holding the folders `0`-`f`. Downloads resume from a `.part` file with an
HTTP Range request (a server that ignores Range simply restarts the file), and each file appears
under its final name only once complete. Extraction refuses entries that would land outside the
target folder and ends with a marker file, so a rerun after an interruption redoes only what is left.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from bench.core.errors import UserError

MTAT_BASE_URL = "https://mirg.city.ac.uk/datasets/magnatagatune/"
MTAT_PARTS = ("mp3.zip.001", "mp3.zip.002", "mp3.zip.003")
MTAT_ANNOTATIONS = "annotations_final.csv"
EXTRACTED_MARKER = ".mp3-extracted"
JAMENDO_BASE_URL = "https://essentia.upf.edu/documentation/datasets/mtg-jamendo/"
JAMENDO_QUALITIES = ("low", "full")
CHUNK = 1 << 20


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
        if exc.code == 416 and have:  # nothing left to fetch: the part is complete
            part.replace(dest)
            return dest
        raise UserError(f"download failed: {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"download failed: {url}: {getattr(exc, 'reason', exc)}") from None
    with response:
        resumed = response.status == 206
        mode = "ab" if resumed else "wb"
        length = response.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length else None
        bar = progress(total, dest.name, have if resumed else 0) if progress else None
        try:
            with open(part, mode) as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as exc:
            raise UserError(f"download interrupted: {url}: {exc} (run again to resume)") from None
        finally:
            if bar is not None:
                bar.close()
    if total is not None and part.stat().st_size != total:
        raise UserError(f"download incomplete: {url}: {part.stat().st_size} of {total} bytes (run again to resume)")
    part.replace(dest)
    return dest


def safe_extract(archive: Path, target: Path) -> int:
    """Extract every member of `archive` under `target`; refuse paths that escape it."""
    target = target.resolve()
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for member in members:
            destination = (target / member.filename).resolve()
            if target != destination and target not in destination.parents:
                raise UserError(f"{archive}: refusing to extract {member.filename!r} outside {target}")
        zf.extractall(target)
    return len(members)


def download_mtat(to: str | Path, base_url: str = MTAT_BASE_URL, keep_archives: bool = False,
                  progress: Callable | None = None) -> Path:
    """Fetch the three parts and the annotations into `to`, join the parts, unpack the mp3 folders."""
    to = Path(to).expanduser()
    to.mkdir(parents=True, exist_ok=True)
    base = base_url if base_url.endswith("/") else base_url + "/"
    fetch(base + MTAT_ANNOTATIONS, to / MTAT_ANNOTATIONS, progress)
    if (to / EXTRACTED_MARKER).exists():
        return to
    joined = to / "mp3.zip"
    if not joined.exists():
        parts = [fetch(base + name, to / name, progress) for name in MTAT_PARTS]
        tmp = to / "mp3.zip.joining"
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, CHUNK)
        tmp.replace(joined)
    try:
        safe_extract(joined, to)
    except zipfile.BadZipFile as exc:
        raise UserError(f"{joined}: not a valid zip after joining the parts ({exc}); delete it and the parts "
                        "and download again") from None
    (to / EXTRACTED_MARKER).write_text("ok\n")
    if not keep_archives:
        for name in (*MTAT_PARTS, "mp3.zip"):
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
            for member in members:
                destination = (target / member.name).resolve()
                outside = target != destination and target not in destination.parents
                if outside or not (member.isfile() or member.isdir()):
                    raise UserError(f"{archive}: refusing to extract {member.name!r} (outside {target}, or not a "
                                    "regular file)")
            for member in members:
                tar.extract(member, target, set_attrs=False)
    except tarfile.TarError as exc:
        raise UserError(f"{archive}: not a valid tar archive ({exc}); delete it and run again") from None
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
