"""`bench download mtat`: fetch MagnaTagATune from its public home, resumably, and unpack it.

The audio is distributed as one zip archive cut into three parts (`mp3.zip.001`-`.003`); joined,
they are an ordinary zip holding the folders `0`-`f`. Downloads resume from a `.part` file with an
HTTP Range request (a server that ignores Range simply restarts the file), and each file appears
under its final name only once complete. Extraction refuses entries that would land outside the
target folder and ends with a marker file, so a rerun after an interruption redoes only what is left.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from bench.errors import UserError

MTAT_BASE_URL = "https://mirg.city.ac.uk/datasets/magnatagatune/"
MTAT_PARTS = ("mp3.zip.001", "mp3.zip.002", "mp3.zip.003")
MTAT_ANNOTATIONS = "annotations_final.csv"
EXTRACTED_MARKER = ".mp3-extracted"
CHUNK = 1 << 20


def fetch(url: str, dest: Path, progress: Callable | None = None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, resuming `dest.part` if present. Returns `dest`."""
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
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
