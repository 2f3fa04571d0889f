"""Decode one audio file into fixed-length clips at every sample rate the grid needs (no torch),
or a whole file at one rate (`decode_file`, for tagging).

decode (soundfile) -> downmix -> centre crop at the source rate -> resample (soxr, high quality,
librosa's default resampler) -> exact clip length (zero-pad at the end when shorter).

Only the centre of the file is decoded, so an hours-long file costs no more than a clip, unless
decoding stops short of the length the header announced (a partly downloaded MP3, or one whose length
is estimated from a size that includes an ID3 tag): then the frames that really decode are counted
and the clip is the centre of those; a clip that would need padding because the file stops early is
skipped as truncated. Every problem with a file becomes a `BadAudio` with a one-line reason; nothing
here raises anything else.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from bench.core import framing
from bench.core.store import is_passing_fault

MIN_SECONDS = 1.0
"""Files shorter than this are skipped as too short (longer ones shorter than a clip are padded)."""

BLOCK_FRAMES = 1 << 16
"""Frames read at a time by `decode_file`."""

SILENCE_PEAK = 1e-5
"""A clip whose peak amplitude stays below this (-100 dBFS) is skipped as silent."""

MAX_PEAK = 16.0
"""A clip whose peak amplitude exceeds this (24 dB over full scale) is skipped: a float file of
integer-scaled samples (16-bit values up to 32767, 24-bit up to 8.4 million), not audio in [-1, 1].
Decoded MP3s and mastered float files go a little over 1; beyond float16's largest value (65504, the
waveform cache's format) the samples would be cached as inf."""


SEEK_PREROLL = 8192
"""Frames decoded and thrown away before a position sought to: libsndfile's MP3 decoder (mpg123) starts
at a seek without the bit reservoir of the frames before it, so its first 1,000-4,600 samples there
are wrong (off by up to 0.6); from this far before, they fall in the discarded part (2,304 frames
were already enough on every MP3 tried)."""


class BadAudio(Exception):
    """A file that cannot give a clip; str(exc) is the reason recorded in the cache manifest."""


@dataclass(frozen=True)
class DecodedClip:
    clips: dict[int, np.ndarray]
    """sample rate -> float32 mono clip of exactly clip_samples(clip_seconds, rate) samples."""
    source_rate: int
    padded: bool
    """True when the file was shorter than the clip and was zero-padded."""


MISSING_FILE = "missing file"
UNREADABLE = "cannot read"
"""The reasons (the start of them) of a file that could not be reached: it may be there later (a folder
moved back, a mount that came up, permissions fixed) with its old times."""


def check_file(path: str) -> None:
    """BadAudio, with the reason, where `path` cannot be opened as a file; nothing is decoded."""
    try:  # os.path.exists says False for a file in a folder that cannot be entered, too
        os.stat(path)
    except PermissionError:
        raise BadAudio(f"{UNREADABLE} (Permission denied: a folder on its path cannot be entered)") from None
    except (FileNotFoundError, NotADirectoryError):
        raise BadAudio(MISSING_FILE) from None
    except (OSError, ValueError) as exc:  # a symlink loop, a name too long, a NUL in the name
        if is_passing_fault(exc):  # stops the preparation, resumable, instead of skipping the file for good
            raise
        raise BadAudio(f"{UNREADABLE} ({getattr(exc, 'strerror', None) or exc})") from None
    if not os.path.isfile(path):
        raise BadAudio("undecodable (not a regular file)")
    if os.path.getsize(path) == 0:
        raise BadAudio("empty file (0 bytes)")
    try:  # libsndfile would report a file it may not open as "System error"
        os.close(os.open(path, os.O_RDONLY))
    except PermissionError:
        raise BadAudio(f"{UNREADABLE} (Permission denied)") from None


def _undecodable(exc: Exception) -> BadAudio:
    """libsndfile's error, said truly: for a regular file it cannot open (text named .mp3, say) it
    reports "File does not exist or is not a regular file (possibly a pipe?)"."""
    detail = str(exc).strip() or "no detail"
    if "not a regular file" in detail or "Format not recognised" in detail:
        return BadAudio("undecodable (not audio in a format libsndfile reads: wav, flac, ogg, mp3, ...)")
    return BadAudio(f"undecodable ({type(exc).__name__}: {detail})")


@contextlib.contextmanager
def decoder_messages_discarded() -> Iterator[None]:
    """File descriptor 2 on /dev/null for the duration: libsndfile's MP3 decoder (mpg123) writes
    "Note: Illegal Audio-MPEG-Header ..." lines straight to it while it looks for a frame in data
    that is not MP3, and "error: part2_3_length ... too large" lines when a seek starts decoding
    mid-stream (the frames it needs come right after), beside what we report. For a process or a
    moment that nothing else writes to stderr in: another thread's stderr would be lost meanwhile."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr to redirect (a closed or absent fd 2)
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _seconds(frames: int, rate: int) -> str:
    """A length shown to 1/100 s, rounded down: 0.999 s is "0.99 s" beside the limit of 1 s, not "1.00"."""
    return f"{frames * 100 // rate / 100:.2f}"


def probe(path: str, min_seconds: float = MIN_SECONDS) -> None:
    """Raise BadAudio if `path` is missing, empty, not decodable audio or shorter than `min_seconds`
    by its header, reading only the header."""
    check_file(path)
    try:
        with decoder_messages_discarded():
            info = sf.info(os.fsencode(path))
    except Exception as exc:  # libsndfile reports bad data as several exception types
        raise _undecodable(exc) from None
    if info.frames <= 0:
        raise BadAudio("no audio frames")
    if info.frames < min_seconds * info.samplerate:
        raise BadAudio(f"too short ({_seconds(info.frames, info.samplerate)} s < {min_seconds} s)")


@contextlib.contextmanager
def _opened(path: str, min_seconds: float) -> Iterator[sf.SoundFile]:
    """`path` open for reading, its header announcing at least `min_seconds` of audio; whatever
    libsndfile raises, on opening or while the caller reads, becomes a BadAudio."""
    check_file(path)
    try:
        # bytes: soundfile encodes a str name strictly, and a Latin-1 name read from disk is not UTF-8
        with sf.SoundFile(os.fsencode(path)) as handle:
            if handle.frames <= 0:
                raise BadAudio("no audio frames")
            if handle.frames < min_seconds * handle.samplerate:
                raise BadAudio(f"too short ({_seconds(handle.frames, handle.samplerate)} s < {min_seconds} s)")
            yield handle
    except BadAudio:
        raise
    except Exception as exc:  # libsndfile reports bad data as several exception types
        raise _undecodable(exc) from None


def _read(handle: sf.SoundFile, frames: int, stop_at_error: bool = False) -> np.ndarray:
    """Up to `frames` frames (float32, frames x channels) from where `handle` stands, in one libsndfile
    call. `SoundFile.read` seeks to where it stopped after every call, and each such seek restarts the MP3
    decoder as described under SEEK_PREROLL: reading a file block by block put wrong samples (off by up
    to 0.6) after every block boundary but the first. Uses python-soundfile's cffi handles, the same
    call its `read` makes; a python-soundfile without them falls back to `read` (exact for all but MP3).

    `stop_at_error`: a decoder error ends the read as the end of the file does, rather than raise
    (libsndfile then returns no frame of that call; `_decodable_tail` reads up to where the error starts)."""
    try:
        lib, ffi, file = sf._snd, sf._ffi, handle._file
    except AttributeError:  # pragma: no cover - a python-soundfile whose internals moved
        return handle.read(frames, dtype="float32", always_2d=True)
    out = np.empty((frames, handle.channels), dtype=np.float32)
    read = lib.sf_readf_float(file, ffi.cast("float *", out.ctypes.data), frames)
    if error := lib.sf_error(file):
        if not stop_at_error:
            raise sf.LibsndfileError(error)  # as `read` raises it
        return out[:0]
    return out[:read]


ERROR_SEARCH_FRAMES = 1024
"""Frames per read where `_decodable_tail` looks for the frame at which decoding fails."""


def _decodable_tail(handle: sf.SoundFile, start: int) -> np.ndarray:
    """The frames that decode from `start` up to a decoder error met by a read from there (which
    returned nothing): read again from `start` in small pieces, up to the piece that fails. An MP3
    without a Xing frame followed by other bytes (zeros, a tag libsndfile does not skip) decodes to its
    last frame and then fails: without this, the whole file was skipped as undecodable. A codec that
    cannot seek cannot be read again: nothing more decodes."""
    if not handle.seekable():
        return np.empty((0, handle.channels), dtype=np.float32)
    _seek(handle, start)
    pieces = []
    while (piece := _read(handle, ERROR_SEARCH_FRAMES, stop_at_error=True)).shape[0]:
        pieces.append(piece)
        if piece.shape[0] < ERROR_SEARCH_FRAMES:
            break
    return np.concatenate(pieces) if pieces else np.empty((0, handle.channels), dtype=np.float32)


def _seek(handle: sf.SoundFile, frame: int) -> None:
    """Stand `handle` at `frame`, decoding the SEEK_PREROLL frames before it (see there). A codec that
    cannot seek (GSM 6.10, G.72x, NMS ADPCM: libsndfile's "Seek attempted on unseekable file type") is
    decoded from its start up to `frame`: its handle must have read nothing yet (a fresh open), since
    such a handle cannot say where it stands."""
    before = 0
    if handle.seekable():
        before = max(0, frame - SEEK_PREROLL)
        handle.seek(before)
    while before < frame and (n := _read(handle, min(frame - before, BLOCK_FRAMES)).shape[0]):
        before += n


DECLARED_SIZE = re.compile(r"^\s*(?:data|SSND|Data Size)\s*:\s*(\d+) \(should be (\d+)\)", re.MULTILINE)
"""libsndfile's log line for an audio data chunk larger than the file holds, "<chunk> : <declared> (should
be <on disk>)": WAV's `data`, AIFF's `SSND`, AU's `Data Size`."""
DECLARED_CONTAINER = re.compile(r"^\s*riff\s*:\s*(\d+) \(should be (\d+)\)", re.MULTILINE)
"""W64's: its data chunk's size is logged without a correction, its container's (`riff`) with one."""
DECLARED_FRAMES = re.compile(r"Calculated frame count (\d+) does not match value from 'ds64' chunk of (\d+)")
"""RF64's: the frames on disk, then those its ds64 chunk declares."""


UNKNOWN_SIZE = 0x7FFFF000
"""Sizes from here up are a streaming writer's "length unknown", not a length: sox writing to a pipe puts
0x7FFFF000 in a WAV's data size, others 0x7FFFFFFF or 0xFFFFFFFF."""


def _declared_seconds(handle: sf.SoundFile) -> float | None:
    """The length a header declares when the file holds less (a copy cut short), or None. libsndfile
    announces only the frames on disk, and logs what the header said (WAV, AIFF, AU: DECLARED_SIZE; W64:
    DECLARED_CONTAINER; RF64: DECLARED_FRAMES); 0 and sizes from UNKNOWN_SIZE up are a streaming
    writer's "unknown", not a length."""
    log = handle.extra_info
    sizes = DECLARED_SIZE.search(log) or (DECLARED_CONTAINER.search(log) if handle.format == "W64" else None)
    if sizes is not None:
        declared, held = int(sizes[1]), int(sizes[2])
    elif frames := DECLARED_FRAMES.search(log):
        held, declared = int(frames[1]), int(frames[2])
    else:
        return None
    if not 0 < held < declared < UNKNOWN_SIZE:
        return None
    holds = handle.frames / handle.samplerate
    declared_seconds = holds * declared / held
    # a few bytes over (a pad byte left out, a writer's rounding) lose no audio: within 10 ms, as a clip
    # short by that much is not counted padded
    return declared_seconds if declared_seconds - holds > 0.01 else None


OGG_MAX_PAGE = 65_307
"""The largest Ogg page (27-byte header, 255 lacing values, 255 x 255 bytes of data; RFC 3533)."""

_BITS_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


def ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32 with polynomial 0x04C11DB7, not reflected, initial value and final XOR
    0 (RFC 3533, over the page with its checksum field zeroed), computed by zlib's reflected CRC-32 over
    the bit-reversed bytes (zlib's initial value and final XOR undone), its result bit-reversed."""
    reflected = zlib.crc32(page.translate(_BITS_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _ogg_stream_ends(path: str) -> bool:
    """Whether the last page of an Ogg file is whole and carries the end-of-stream flag (header type bit
    0x04; RFC 3533). Ogg declares no length: libsndfile counts the frames up to the last complete page,
    so a copy cut short reads as a shorter recording, which would be padded with silence under its
    labels. A cut inside the last page leaves its flag but not all of its segments: the page's 27-byte
    header ends with the number of segments, whose lacing values, one byte each, sum to its data's bytes.
    Bytes after a cut (a preallocated download's zeros, junk appended) can fill that length: the page's
    checksum (bytes 22-25, little-endian), which libsndfile checks and drops the page on, says so."""
    with open(path, "rb") as handle:
        handle.seek(max(0, os.path.getsize(path) - OGG_MAX_PAGE))
        tail = handle.read()
    last = tail.rfind(b"OggS\x00")
    if last < 0 or last + 27 > len(tail) or not tail[last + 5] & 0x04:
        return False
    segments = tail[last + 26]
    lacing = tail[last + 27:last + 27 + segments]
    end = last + 27 + segments + sum(lacing)
    if len(lacing) != segments or end > len(tail):
        return False
    page = tail[last:end]
    return ogg_crc(page[:22] + bytes(4) + page[26:]) == int.from_bytes(page[22:26], "little")


def _read_mono(path: str, clip_seconds: float, min_seconds: float) -> tuple[np.ndarray, int]:
    """(float32 mono samples, source rate) of the centre `clip_seconds` of `path`: from frame
    (frames - clip frames) // 2 (an odd sample over goes to the end), the frames as the header counts
    them, unless decoding stops short of the window (then the centre of what decodes)."""
    with _opened(path, min_seconds) as handle:
        source_rate, total = handle.samplerate, handle.frames
        wanted = framing.clip_samples(clip_seconds, source_rate)
        declared = _declared_seconds(handle) if total < wanted else None
        if declared is not None:  # padding would fill in for what a cut took, as if the recording were short
            raise BadAudio(f"truncated: the header says {declared:.2f} s, the file holds {total / source_rate:.2f} s")
        if total < wanted and handle.format == "OGG" and not _ogg_stream_ends(path):
            raise BadAudio(f"truncated: the Ogg stream stops at {total / source_rate:.2f} s without its last page")
        start = max(0, (total - wanted) // 2)
        if start:
            _seek(handle, start)
        data = _read(handle, min(wanted, total), stop_at_error=True)  # an error: a short read, counted below
        window = min(wanted, total - start)
        # a header's misestimate shows at the end of the file only: a read that stops short well
        # before the announced end is a truncated file, whatever its length
        end_slack = _slack(total, source_rate)
        slack = end_slack if total - (start + window) <= end_slack else source_rate // 100
        if window - data.shape[0] > slack:
            data = _centre_of_decoded(handle, total, wanted, min_seconds)
    if data.shape[0] < min_seconds * source_rate:  # frames announced but not delivered (truncated file)
        raise BadAudio(f"too short after decoding ({_seconds(data.shape[0], source_rate)} s < {min_seconds} s)")
    mono = data.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise BadAudio("non-finite samples (NaN or inf)")
    return mono, source_rate


def _slack(total: int, source_rate: int) -> int:
    """How far decoding may fall short of the header's frame count before the count is not believed:
    an MP3 without a Xing/Info frame has its length estimated from size and bitrate (30.067 s for a
    file that decodes to 30.041 s)."""
    return max(source_rate // 4, total // 100)


def _centre_of_decoded(handle: sf.SoundFile, total: int, wanted: int, min_seconds: float) -> np.ndarray:
    """The centre `wanted` frames of what really decodes, for a file whose header overstates its length.

    An MP3's frame count is its header's word: a partly downloaded file keeps the Xing frame of the
    whole, and an ID3 tag (album art) swells a size-based estimate. So count the frames that decode,
    block by block, then read the centre of those. A clip that would have to be padded because the
    file stops early is a truncated file, not a short recording: it is skipped, not filled with silence.
    """
    rate = handle.samplerate
    handle.seek(0)  # count the frames that decode
    decoded = 0
    while (n := _read(handle, BLOCK_FRAMES, stop_at_error=True).shape[0]) == BLOCK_FRAMES:
        decoded += n
    decoded += _decodable_tail(handle, decoded).shape[0] if n == 0 and decoded < total else n
    if decoded < min_seconds * rate:
        raise BadAudio(f"truncated: the header says {total / rate:.2f} s, decoding stops at {decoded / rate:.2f} s "
                       f"(< {min_seconds} s)")
    if decoded < wanted:
        raise BadAudio(f"truncated: the header says {total / rate:.2f} s, decoding stops at {decoded / rate:.2f} s")
    handle.seek(0)  # then read up to the centre: a seek maps time to bytes by the header, and lands wrong
    skip = max(0, (decoded - wanted) // 2)
    while skip and (n := _read(handle, min(skip, BLOCK_FRAMES)).shape[0]):
        skip -= n
    return _read(handle, min(wanted, decoded))


def _resample(mono: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    return mono if rate == source_rate else soxr.resample(mono, source_rate, rate, quality="HQ")


def out_of_range(peak: float) -> BadAudio:
    return BadAudio(f"samples out of range (peak {peak:.6g} > {MAX_PEAK:g}: the samples are not scaled to [-1, 1])")


def _cut_short(handle: sf.SoundFile, path: str, decoded: int) -> str | None:
    """How a whole file that decoded to `decoded` frames falls short of its length, or None: a WAV, AIFF,
    AU, W64 or RF64 cut short, whose header libsndfile logs (it announces only the frames the file
    holds); an MP3 or FLAC whose decoding stops short of the frames announced; an Ogg, which declares no
    length, whose last page is missing or broken."""
    seconds, announced, rate = decoded / handle.samplerate, handle.frames, handle.samplerate
    declared = _declared_seconds(handle)
    if declared is not None:
        return f"decoded {seconds:.2f} s of the {declared:.2f} s its header announces"
    if announced - decoded > _slack(announced, rate):
        return f"decoded {seconds:.2f} s of the {announced / rate:.2f} s its header announces"
    if handle.format == "OGG" and not _ogg_stream_ends(path):
        return f"decoded {seconds:.2f} s, where the Ogg stream stops without its last page"
    return None


def decode_file(path: str, sample_rate: int, min_seconds: float = MIN_SECONDS,
                warn: Callable[[str], None] | None = None) -> np.ndarray:
    """The whole of `path` as float32 mono at `sample_rate` (for tagging whole tracks); shorter than
    `min_seconds` is a BadAudio, as in the cache (a few samples would not fill one STFT window), and so
    are samples past MAX_PEAK (integer-scaled floats, which a network would score as noise). What
    decodes is used: `warn` gets a line where that falls short of the length the header announces (a
    damaged or partial file; or an MP3 without a Xing frame whose size-based estimate a tag inflated).

    Read, downmixed and resampled block by block (soxr's stream gives the one-shot result exactly):
    an hours-long stereo file never sits in memory at its own rate, only the mono result does."""
    decoded, peak = 0, 0.0
    with _opened(path, min_seconds) as handle:
        source_rate = handle.samplerate
        announced = min(handle.frames, int(MAX_ANNOUNCED_SECONDS * source_rate))  # a header may say anything
        pieces = _Samples(announced * sample_rate // source_rate + BLOCK_FRAMES)
        stream = None if source_rate == sample_rate else \
            soxr.ResampleStream(source_rate, sample_rate, 1, dtype="float32", quality="HQ")
        while True:  # to the end of what decodes, whatever the header announced
            block = _read(handle, BLOCK_FRAMES, stop_at_error=True)
            if block.shape[0] == 0 and decoded < handle.frames:
                block = _decodable_tail(handle, decoded)
            last = block.shape[0] < BLOCK_FRAMES
            mono = block.mean(axis=1, dtype=np.float32)
            if not np.isfinite(mono).all():
                raise BadAudio("non-finite samples (NaN or inf)")
            peak = max(peak, float(np.abs(mono).max(initial=0.0)))
            decoded += mono.shape[0]
            pieces.add(mono if stream is None else stream.resample_chunk(mono, last=last))
            if last:
                break
        cut = _cut_short(handle, path, decoded) if warn is not None else None
    if cut is not None:
        warn(f"{cut} (a damaged or partial file?): only what decodes is used")
    if decoded < min_seconds * source_rate:  # frames announced but not delivered (truncated file)
        raise BadAudio(f"too short after decoding ({_seconds(decoded, source_rate)} s < {min_seconds} s)")
    if peak > MAX_PEAK:
        raise out_of_range(peak)
    return pieces.joined()


MAX_ANNOUNCED_SECONDS = 3 * 3600
"""The most of a header's length `decode_file` sets memory aside for at once (addresses only: pages are
taken as samples are written); a longer file's array grows as it is read."""


class _Samples:
    """float32 samples added block by block to one array, grown (doubled) only where a file holds more
    than was set aside: the blocks and their join are never both whole in memory, as they were with
    np.concatenate (an hour's samples twice)."""

    def __init__(self, expected: int):
        self.array, self.size = np.empty(max(expected, 1), np.float32), 0

    def add(self, block: np.ndarray) -> None:
        end = self.size + len(block)
        if end > len(self.array):
            grown = np.empty(max(end, 2 * len(self.array)), np.float32)
            grown[:self.size] = self.array[:self.size]
            self.array = grown
        self.array[self.size:end] = block
        self.size = end

    def joined(self) -> np.ndarray:
        return self.array[:self.size]


def decode_clip(path: str, sample_rates: tuple[int, ...], clip_seconds: float,
                min_seconds: float = MIN_SECONDS) -> DecodedClip:
    """Decode the centre `clip_seconds` of `path` at every rate in `sample_rates`."""
    mono, source_rate = _read_mono(path, clip_seconds, min_seconds)
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK:
        raise BadAudio("silent")
    if peak > MAX_PEAK:  # of the file's samples: the same verdict whatever rates are prepared with it
        raise out_of_range(peak)
    # counted at the file's own rate, so whatever rates are prepared with it; a file short of the clip by
    # up to 10 ms (an MP3 decoder's padding, a header's rounding) is not counted
    padded = mono.shape[0] < framing.clip_samples(clip_seconds, source_rate) - source_rate // 100
    clips = {}
    for rate in sample_rates:
        y = _resample(mono, source_rate, rate)
        n = framing.clip_samples(clip_seconds, rate)
        clips[rate] = np.pad(y, (0, max(0, n - y.shape[0])))[:n].astype(np.float32, copy=False)
    return DecodedClip(clips=clips, source_rate=source_rate, padded=padded)
