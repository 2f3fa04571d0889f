"""Small datasets built inside tests: real MP3 files (soundfile) and hand-made annotation files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

# Tag columns in file order, and which clips carry them. Counts over all rows (the broken clip
# included): guitar 5, classical 3, slow 5, techno 1, no voice 3.
# Top 3 = guitar (5), slow (5; tie with guitar, later column), then classical (3; tie with
# "no voice", earlier column).
TAGS = ["guitar", "classical", "slow", "techno", "no voice"]
ROWS = [
    # clip_id, folder, file name, tags
    ("2", "0", "artist_a-album-01-track_one-0-29.mp3", {"guitar", "slow"}),
    ("6", "3", "artist_b-album, with comma-02-song-30-59.mp3", {"guitar", "classical"}),
    ("10", "b", "artist_c-album-03-song-0-29.mp3", {"slow", "no voice"}),
    ("14", "c", "artist_d-album-04-song-0-29.mp3", {"guitar"}),
    ("18", "d", "artist_e-album-05-song-0-29.mp3", {"classical", "slow", "no voice"}),
    ("22", "f", "artist_f-album-06-song-0-29.mp3", {"techno"}),  # none of the top 3
    ("35644", "e", "broken-known-0-29.mp3", {"guitar", "slow", "classical"}),  # a known broken id
    ("26", "f", "artist_g-album-07-song-0-29.mp3", {"guitar", "slow", "no voice"}),
]


def tone(seconds: float, sr: int = 16000, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def write_mp3(path: Path, audio: np.ndarray, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, format="MP3", subtype="MPEG_LAYER_III")
    return path


def quoted(fields) -> str:
    return "\t".join('"' + str(f).replace('"', '""') + '"' for f in fields)


def make_mtat(root: Path, seconds: float = 2.0, write_audio: bool = True) -> Path:
    """An MTAT-format tree: annotations_final.csv (tab-separated, quoted) and MP3s in folders 0-f."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in "0123456789abcdef":
        (root / folder).mkdir(exist_ok=True)
    lines = [quoted(["clip_id", *TAGS, "mp3_path"])]
    for i, (clip_id, folder, name, tags) in enumerate(ROWS):
        lines.append(quoted([clip_id, *[int(t in tags) for t in TAGS], f"{folder}/{name}"]))
        if write_audio:
            if clip_id == "35644":
                (root / folder / name).write_bytes(b"")  # the known broken clip is empty, like in MTAT
            else:
                write_mp3(root / folder / name, tone(seconds, freq=220.0 * (i + 1), seed=i))
    (root / "annotations_final.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


PUBLISHED_TAGS = Path(__file__).parent / "data" / "published_tags"


def published_tags(name: str) -> tuple[str, ...]:
    """A published tag list, written out in tests/data/published_tags/ (its README names the sources):
    "mtat", "msd" or "jamendo"."""
    return tuple((PUBLISHED_TAGS / f"{name}_top50.txt").read_text(encoding="utf-8").splitlines())


def make_mtat_top50(root: Path) -> Path:
    """annotations_final.csv as MTAT ships it (every field quoted, tab-separated, CRLF line ends) with
    the published top 50 tags plus two rare ones, and MTAT's tie: `metal` and `female voice` carry
    the same count, and `female voice` comes first in column order, as in the real file (column
    order alone would rank it before `metal`; the published order has `metal` first).

    Counts: the tag at published position i is on 60 - i clips, except positions 47 and 48 (both 13);
    the rare tags `rare a`, `rare b` on 1 clip. 62 clips in folders 0-f by clip index; clip 61 carries
    no top-50 tag."""
    published = published_tags("mtat")
    root.mkdir(parents=True, exist_ok=True)
    counts = {tag: 60 - i for i, tag in enumerate(published)}
    counts["metal"] = counts["female voice"] = 13
    columns = [t for t in published if t not in ("metal", "female voice")]
    columns[40:40] = ["female voice", "rare a", "metal", "rare b"]  # female voice before metal
    counts.update({"rare a": 1, "rare b": 1})
    folders = "0123456789abcdef"
    lines = [quoted(["clip_id", *columns, "mp3_path"])]
    for row in range(62):
        tags = {t for t in columns if row < counts[t]} if row < 61 else set()
        if row == 60:
            tags = {"rare a", "rare b"}
        folder = folders[row % 16]
        lines.append(quoted([str(2 + row), *[int(t in tags) for t in columns], f"{folder}/clip-{row:02d}-0-29.mp3"]))
    (root / "annotations_final.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return root
