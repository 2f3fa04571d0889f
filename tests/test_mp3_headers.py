"""MP3s (and a WAV, an Ogg) whose header misstates their length: what libsndfile reports against what
really decodes.

An MP3's frame count comes from its LAME/Xing "Info" frame, or, without one, from file size over
bitrate. A partly downloaded file keeps the Info frame of the whole track; an ID3v2 tag (album art)
swells a size-based estimate. Each case is built here from a real MP3 written by libsndfile (LAME).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from bench.data.audio import BadAudio, decode_clip, decode_file

pytestmark = pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3")

RATE = 44100
BITRATES_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)  # MPEG-1 layer III


def write_cbr(path, seconds: float, seed: int = 0) -> np.ndarray:
    """A constant-bitrate stereo MP3 of smoothed noise; returns the mono signal it encodes."""
    x = np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    x = np.convolve(x, np.ones(8) / 8, "same")
    x = (0.3 * x / np.abs(x).max()).astype(np.float32)
    sf.write(path, np.stack([x, x], axis=1), RATE, format="MP3", bitrate_mode="CONSTANT", compression_level=0.5)
    return x


def first_frame_length(data: bytes) -> int:
    """Bytes of the first MPEG-1 layer III frame (LAME's Info frame): 144 * bitrate / rate + padding."""
    assert data[0] == 0xFF and data[1] & 0xE0 == 0xE0, "no frame sync at the start"
    bitrate = BITRATES_KBPS[data[2] >> 4] * 1000
    rate = (44100, 48000, 32000)[(data[2] >> 2) & 3]
    return 144 * bitrate // rate + ((data[2] >> 1) & 1)


def id3v2_tag(payload_bytes: int) -> bytes:
    """An ID3v2.4 tag holding one private frame of `payload_bytes` (sizes are 7-bit "syncsafe")."""
    def syncsafe(n: int) -> bytes:
        return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])

    payload = b"owner\x00" + b"\x11" * payload_bytes
    frame = b"PRIV" + syncsafe(len(payload)) + b"\x00\x00" + payload
    return b"ID3\x04\x00\x00" + syncsafe(len(frame)) + frame


def offset_in(reference: np.ndarray, clip: np.ndarray, near: float) -> float:
    """Seconds into `reference` where `clip` starts, searched within 1 s of `near` (cross-correlation
    of a 0.1 s piece taken 10 s into the clip)."""
    piece = clip[10 * RATE:10 * RATE + 4410]
    lo = max(0, int((10 + near - 1) * RATE))
    window = reference[lo:int((10 + near + 1) * RATE) + len(piece)]
    return (int(np.argmax(np.correlate(window, piece, "valid"))) + lo - 10 * RATE) / RATE


def test_a_partly_downloaded_mp3_is_skipped_as_truncated_not_padded_with_silence(tmp_path):
    whole = tmp_path / "whole.mp3"
    write_cbr(whole, 30.0)
    partial = tmp_path / "partial.mp3"
    partial.write_bytes(whole.read_bytes()[: whole.stat().st_size // 8])
    assert sf.info(str(partial)).duration == pytest.approx(30.0, abs=0.1)  # the Info frame of the whole
    with pytest.raises(BadAudio, match=r"truncated: the header says 30\.00 s, decoding stops at 3\.\d\d s"):
        decode_clip(str(partial), (16000,), 29.1)
    # tagging a whole file takes what decodes: an eighth of 30 s, and says so (it went unsaid)
    said = []
    assert decode_file(str(partial), 16000, warn=said.append).shape[0] / 16000 == pytest.approx(30 / 8, abs=0.3)
    assert len(said) == 1 and re.fullmatch(r"decoded 3\.\d\d s of the 30\.0\d s its header announces \(a damaged or "
                                           r"partial file\?\): only what decodes is used", said[0]), said
    decode_file(str(whole), 16000, warn=said.append)  # whole: nothing to say
    assert len(said) == 1


@pytest.mark.parametrize("seconds_missing", [1.0, 2.0])
def test_an_mp3_missing_its_last_seconds_is_truncated_not_padded(tmp_path, seconds_missing):
    """A 30 s MTAT-length file whose download stopped 1 or 2 s before its end, leaving less than a 29.1 s
    clip: short by more than the header's length estimate may be off by at the end of a file (1 % of it,
    at least 0.25 s), so it is skipped as truncated, not padded with silence."""
    whole = tmp_path / "whole.mp3"
    write_cbr(whole, 30.0)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * (30 - seconds_missing) / 30)])
    with pytest.raises(BadAudio, match=r"truncated: the header says 30\.00 s, decoding stops at 2\d\.\d\d s"):
        decode_clip(str(cut), (16000,), 29.1)

def test_an_id3_tag_that_swells_the_length_estimate_still_gives_the_centre_of_the_real_audio(tmp_path):
    encoded = tmp_path / "encoded.mp3"
    signal = write_cbr(encoded, 30.0)
    data = encoded.read_bytes()
    tagged = tmp_path / "tagged.mp3"  # no Info frame, a 300 kB tag: the estimate counts the tag as audio
    tagged.write_bytes(id3v2_tag(300_000) + data[first_frame_length(data):])
    assert sf.info(str(tagged)).duration > 40
    decoded = decode_clip(str(tagged), (RATE, 16000), 29.1)
    assert not decoded.padded
    clip = decoded.clips[RATE]
    assert np.abs(clip[-RATE:]).max() > 0.01  # audio to the end, no zeros filling a short read
    # the centre, give or take the 25 ms of LAME's encoder delay that only the Info frame records;
    # trusting the estimate would start the clip at (45.08 - 29.1) / 2 = 8 s
    centre = (30.0 - 29.1) / 2
    assert offset_in(signal, clip, near=centre) == pytest.approx(centre, abs=0.03)


def test_a_long_track_cut_short_gives_the_centre_of_what_is_there(tmp_path):
    whole = tmp_path / "track.mp3"
    signal = write_cbr(whole, 72.0, seed=1)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # 36 s of a 72 s track
    assert sf.info(str(cut)).duration == pytest.approx(72.0, abs=0.1)
    decoded = decode_clip(str(cut), (RATE,), 29.1)
    assert not decoded.padded
    real = decode_file(str(cut), RATE).shape[0] / RATE
    assert real == pytest.approx(36.0, abs=0.5)
    centre = (real - 29.1) / 2
    assert offset_in(signal, decoded.clips[RATE], near=centre) == pytest.approx(centre, abs=0.001)


def test_tagging_a_file_shorter_than_a_second_is_a_one_line_error(tmp_path):
    short = tmp_path / "blip.wav"
    sf.write(short, np.full((40, 2), 0.1), RATE)
    with pytest.raises(BadAudio, match=r"too short \(0\.00 s < 1\.0 s\)"):
        decode_file(str(short), 16000)


def test_a_whole_track_is_decoded_block_by_block_without_holding_it_at_its_own_rate(tmp_path):
    """bench tag / embed read whole tracks: the result equals the one-shot decode (soxr's stream gives
    the same samples), and the stereo file at 44.1 kHz is never in memory whole (tracemalloc sees
    numpy's buffers)."""
    import tracemalloc

    import soxr

    seconds = 40.0
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)
    path = tmp_path / "track.wav"
    sf.write(path, np.stack([x, 0.5 * x], axis=1), RATE, subtype="FLOAT")
    tracemalloc.start()
    try:
        decoded = decode_file(str(path), 16000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = soxr.resample(0.75 * x, RATE, 16000, quality="HQ")
    np.testing.assert_allclose(decoded, expected, rtol=0, atol=1e-6)
    stereo_at_source = x.size * 2 * 4
    assert peak < stereo_at_source / 2  # the whole file read at once: >= 14 MB here; block by block: the output


def test_a_track_cut_inside_its_centre_window_is_not_padded_with_silence(tmp_path):
    """A 40 s track cut to stop decoding a tenth of a second before the end of its centre window: less than
    the quarter second a header's length estimate may be off by at the end of a file (1 % of a long one),
    but in the middle of a file any shortfall is truncation, and the clip must not end in silence."""
    whole = tmp_path / "track.mp3"
    signal = write_cbr(whole, 40.0, seed=2)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.8612)])
    real = decode_file(str(cut), RATE).shape[0] / RATE
    window_end = (40.0 + 29.1) / 2
    assert 0.02 < window_end - real < 0.25  # inside the window, by less than the end-of-file slack
    decoded = decode_clip(str(cut), (RATE,), 29.1)
    assert not decoded.padded and np.abs(decoded.clips[RATE][-RATE // 50:]).max() > 0.01
    centre = (real - 29.1) / 2
    assert offset_in(signal, decoded.clips[RATE], near=centre) == pytest.approx(centre, abs=0.001)


def test_an_mp3_read_in_blocks_or_from_its_centre_gives_the_samples_of_one_whole_read(tmp_path):
    """python-soundfile's read seeks to where it stopped after every call, and libsndfile's MP3 decoder
    (mpg123) restarts at a seek without its bit reservoir: block by block, the samples after each block
    boundary were off by up to 0.6, and a clip read after a seek began with such a click. One libsndfile
    read of the whole file is the reference (a 12 s stereo MP3 at 44.1 kHz: 529,200 frames, 8 blocks of
    65,536 frames and part of a ninth)."""
    from bench.core import framing

    t = np.arange(int(12.0 * RATE)) / RATE  # tones under a slow tremolo, and bursts of noise: the bit
    gate = (t % 2.0) < 0.5  # reservoir carries bits between frames of unlike content
    noise = np.random.default_rng(3).standard_normal(t.size)
    x = sum(0.06 * (1 + np.sin(2 * np.pi * 0.1 * k * t)) * np.sin(2 * np.pi * f * t)
            for k, f in enumerate((220.0, 440.0, 1250.0, 2900.0), start=1)) + 0.1 * gate * noise
    path = tmp_path / "track.mp3"
    sf.write(path, x.astype(np.float32), RATE, format="MP3")  # libsndfile's default: variable bitrate
    whole = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)
    decoded = decode_file(str(path), RATE)
    assert decoded.shape == whole.shape and np.abs(decoded - whole).max() < 1e-6
    clip = decode_clip(str(path), (RATE,), 4.0).clips[RATE]
    wanted = framing.clip_samples(4.0, RATE)
    with sf.SoundFile(path) as handle:  # the centre by the header's count, as the cache takes it
        start = (handle.frames - wanted) // 2
    assert start > 0 and np.abs(clip - whole[start:start + wanted]).max() < 1e-6


def test_a_wav_cut_short_is_skipped_as_truncated_not_padded_with_silence(tmp_path):
    """libsndfile announces the frames a cut WAV holds, not the ones its header declares: 22.7 s of a
    30 s file would be cached with 6.4 s of silence under its labels. A WAV shorter than the clip as
    written is still padded (a short recording), and a cut one long enough gives its centre."""
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(30 * RATE) / RATE)).astype(np.float32)
    whole = tmp_path / "whole.wav"
    sf.write(whole, x, RATE, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[:2_000_000])  # 22.68 s of 30 s
    with pytest.raises(BadAudio, match=r"^truncated: the header says 30\.00 s, the file holds 22\.68 s$"):
        decode_clip(str(cut), (16000,), 29.1)
    assert not decode_clip(str(cut), (16000,), 10.0).padded
    short = tmp_path / "short.wav"
    sf.write(short, x[:20 * RATE], RATE, subtype="PCM_16")
    assert decode_clip(str(short), (16000,), 29.1).padded
    # a 25 s recording, shorter than the clip as written, cut in half: its cut, not its length, pads it
    short.write_bytes(short.read_bytes()[:1_000_000])
    with pytest.raises(BadAudio, match=r"^truncated: the header says 20\.00 s, the file holds 11\.34 s$"):
        decode_clip(str(short), (16000,), 29.1)


@pytest.mark.parametrize("container", ["AIFF", "AU", "RF64", "W64"])
def test_other_uncompressed_files_cut_short_are_skipped_as_truncated(tmp_path, container):
    """Only WAV's log line was read: an AIFF, AU, RF64 or W64 copy cut in half was cached as a short
    recording, padded with silence under its labels. libsndfile logs what each header declared (AIFF's
    SSND, AU's Data Size, W64's riff size, RF64's ds64 frame count)."""
    x = (0.1 * np.random.default_rng(0).standard_normal(25 * RATE)).astype(np.float32)
    whole = tmp_path / f"whole.{container.lower()}"
    sf.write(whole, x, RATE, format=container, subtype="PCM_16")
    cut = tmp_path / f"cut.{container.lower()}"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    with pytest.raises(BadAudio, match=r"^truncated: the header says 25\.0\d s, the file holds 12\.\d\d s$"):
        decode_clip(str(cut), (16000,), 29.1)
    assert decode_clip(str(whole), (16000,), 29.1).padded  # whole, it is a short recording


@pytest.mark.parametrize("container", ["WAV", "AIFF", "AU", "RF64", "W64", "OGG"])
def test_tagging_a_file_cut_short_says_how_much_of_it_decoded(tmp_path, container):
    """`bench tag` and `bench embed` take what decodes of a whole file and say so where it falls short of
    what the header announced (docs/pretrained.md). libsndfile announces only the frames a cut WAV,
    AIFF, AU, RF64 or W64 holds, so comparing with its count said nothing of them: a copy cut in half
    was tagged in silence as a 12.5 s recording. An Ogg declares no length; its missing last page says
    it was cut. A whole file gets no line."""
    x = (0.1 * np.random.default_rng(0).standard_normal(25 * RATE)).astype(np.float32)
    whole = tmp_path / f"whole.{container.lower()}"
    sf.write(whole, x, RATE, format=container, subtype="VORBIS" if container == "OGG" else "PCM_16")
    cut = tmp_path / f"cut.{container.lower()}"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    said = []
    held = decode_file(str(cut), 16000, warn=said.append).shape[0] / 16000
    assert 5 < held < 20
    why = r" \(a damaged or partial file\?\): only what decodes is used"
    expected = (rf"decoded 1\d\.\d\d s, where the Ogg stream stops without its last page{why}" if container == "OGG"
                else rf"decoded 1\d\.\d\d s of the 25\.0\d s its header announces{why}")
    assert len(said) == 1 and re.fullmatch(expected, said[0]), said
    decode_file(str(whole), 16000, warn=said.append)
    assert len(said) == 1


@pytest.mark.parametrize("codec", ["VORBIS", "OPUS"])
@pytest.mark.parametrize("damage", ["cut 10", "cut 1000", "zeros 5", "zeros 300", "cut, junk"])
def test_an_ogg_cut_inside_its_last_page_is_cut_short(tmp_path, codec, damage):
    """A cut inside the last page leaves its end-of-stream flag in place (the page's header is whole),
    and libsndfile drops the broken page: over a second of Opus went without a word. The page's lacing
    values (RFC 3533) say how many bytes it should hold; where zeros (a preallocated download) or junk
    fill them, its checksum says it is broken."""
    x = (0.1 * np.random.default_rng(0).standard_normal(25 * 48000)).astype(np.float32)
    whole = tmp_path / "whole.ogg"
    sf.write(whole, x, 48000, format="OGG", subtype=codec)
    data = whole.read_bytes()
    how, _, count = damage.partition(" ")
    cut = tmp_path / "cut.ogg"
    cut.write_bytes({"cut": lambda: data[:-int(count)], "zeros": lambda: data[:-int(count)] + bytes(int(count)),
                     "cut,": lambda: data[:-5] + b"TAG" + bytes(125)}[how]())
    said = []
    decode_file(str(cut), 16000, warn=said.append)
    assert len(said) == 1 and "the Ogg stream stops without its last page" in said[0], said
    with pytest.raises(BadAudio, match=r"^truncated: the Ogg stream stops at \d+\.\d\d s without its last page$"):
        decode_clip(str(cut), (16000,), 29.1)
    decode_file(str(whole), 16000, warn=said.append)
    assert len(said) == 1


def test_ogg_page_checksums_are_rfc_3533s(tmp_path):
    """Every page of an Ogg file libsndfile wrote checks against its stored CRC-32 (polynomial 0x04C11DB7,
    not reflected, initial value 0, over the page with the field zeroed), and a flipped bit does not."""
    from bench.data.audio import ogg_crc

    path = tmp_path / "x.ogg"
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(3 * 48000)).astype(np.float32), 48000,
             format="OGG", subtype="VORBIS")
    data, at, pages = path.read_bytes(), 0, 0
    while at < len(data):
        assert data[at:at + 4] == b"OggS"
        lacing = data[at + 27:at + 27 + data[at + 26]]
        page = data[at:at + 27 + len(lacing) + sum(lacing)]
        stored = int.from_bytes(page[22:26], "little")
        assert ogg_crc(page[:22] + bytes(4) + page[26:]) == stored
        assert ogg_crc(page[:22] + bytes(4) + page[26:-1] + bytes([page[-1] ^ 1])) != stored
        at, pages = at + len(page), pages + 1
    assert pages >= 3


@pytest.mark.parametrize("placeholder", [0x7FFFF000, 0x7FFFFFFF])
def test_a_streamed_wav_whose_size_is_a_placeholder_is_no_cut(tmp_path, placeholder):
    """sox writing a WAV to a pipe cannot know its length and puts 0x7FFFF000 in its data size (others
    0x7FFFFFFF): a 2 s recording read as 67,109 s cut short was skipped as truncated and warned of."""
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * RATE) / RATE)).astype(np.float32)
    path = tmp_path / "streamed.wav"
    sf.write(path, x, RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = placeholder.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    said = []
    assert decode_file(str(path), 16000, warn=said.append).shape[0] == 2 * 16000 and said == []
    assert decode_clip(str(path), (16000,), 3.0).padded


@pytest.mark.parametrize(("over_bytes", "cut"), [(1, False), (2, False), (64, False), (2000, True)])
def test_a_wav_declaring_a_few_bytes_more_than_it_holds_is_not_cut_short(tmp_path, over_bytes, cut):
    """A data chunk's size a pad byte or a writer's rounding over what the file holds loses no audio:
    within 10 ms (441 samples at 44.1 kHz, 882 bytes of 16-bit mono) it is not a cut, neither for
    tagging (no warning) nor for the cache (a 3 s recording, short of a 29.1 s clip, padded, not
    skipped as truncated). 2,000 bytes over (23 ms) is a cut."""
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * RATE) / RATE)).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, x, RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = (int.from_bytes(data[at:at + 4], "little") + over_bytes).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    said = []
    assert decode_file(str(path), 16000, warn=said.append).shape[0] == 3 * 16000
    assert len(said) == int(cut)
    if cut:
        assert said[0].startswith("decoded 3.00 s of the 3.02 s its header announces"), said
        with pytest.raises(BadAudio, match=r"^truncated: the header says 3\.02 s, the file holds 3\.00 s$"):
            decode_clip(str(path), (16000,), 29.1)
    else:
        assert decode_clip(str(path), (16000,), 29.1).padded


@pytest.mark.parametrize(("container", "codec"), [("WAV", "GSM610"), ("WAV", "G721_32"), ("AU", "G723_24")])
def test_a_file_whose_codec_cannot_seek_gives_its_centre(tmp_path, container, codec):
    """libsndfile cannot seek in GSM 6.10 or G.72x: a file longer than the clip, whose centre is sought,
    was skipped as undecodable ("Seek attempted on unseekable file type"), though it decodes whole. The
    frames before the centre are decoded and dropped instead."""
    rate = 8000
    x = (0.2 * np.random.default_rng(0).standard_normal(40 * rate)).astype(np.float32)
    path = tmp_path / f"long.{container.lower()}"
    sf.write(path, x, rate, format=container, subtype=codec)
    whole, _ = sf.read(path, dtype="float32")
    clip = decode_clip(str(path), (rate,), 10.0)
    assert not clip.padded
    start = (len(whole) - 10 * rate) // 2
    np.testing.assert_allclose(clip.clips[rate][:5000], whole[start:start + 5000], atol=1e-3)


def test_an_ogg_cut_short_is_skipped_as_truncated_not_padded_with_silence(tmp_path):
    """Ogg declares no length: libsndfile reads the pages a cut copy holds as a shorter recording. A
    finished stream's last page carries the end-of-stream flag (RFC 3533), a cut one's does not."""
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(40 * RATE) / RATE)).astype(np.float32)
    whole = tmp_path / "whole.ogg"
    sf.write(whole, x, RATE, format="OGG", subtype="VORBIS")
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    with pytest.raises(BadAudio, match=r"^truncated: the Ogg stream stops at \d+\.\d\d s without its last page$"):
        decode_clip(str(cut), (16000,), 29.1)
    assert not decode_clip(str(cut), (16000,), 10.0).padded  # long enough: its centre, as a cut WAV's
    short = tmp_path / "short.ogg"  # a recording shorter than the clip, whole: padded
    sf.write(short, x[:20 * RATE], RATE, format="OGG", subtype="VORBIS")
    assert decode_clip(str(short), (16000,), 29.1).padded


@pytest.mark.parametrize(("short_by", "padded"), [(441, False), (442, True)])
def test_a_short_file_is_counted_as_padded_whatever_rates_are_prepared_with_it(tmp_path, short_by, padded):
    """29.1 s at 44.1 kHz less 441 or 442 samples: shorter than the clip by more than 10 ms (441 samples)
    is a padded clip, the same verdict at 8 kHz alone as at 8 and 44.1 kHz together (each rate's
    resampled length was compared with that rate's clip: 442 samples short are 80.2 at 8 kHz, within
    its 80, so the count changed with the rates of the grid)."""
    n = round(29.1 * RATE) - short_by
    path = tmp_path / "short.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)).astype(np.float32), RATE, subtype="FLOAT")
    assert [decode_clip(str(path), rates, 29.1).padded for rates in ((8000,), (44100, 8000), (44100,))] == [padded] * 3


def test_the_peak_refusal_is_the_same_whatever_rates_are_prepared_with_the_file(tmp_path):
    """A float file of a 100 Hz square wave peaking at 15.5 (16 is the limit): accepted at every rate,
    alone or together. Resampled to 8 kHz, its edges overshoot (Gibbs) past 16, and the file was
    refused at every rate of a grid that had 8 kHz, accepted by one that had not."""
    t = np.arange(30 * RATE) / RATE
    x = (15.5 * np.sign(np.sin(2 * np.pi * 100 * t))).astype(np.float32)
    path = tmp_path / "loud.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    for rates in ((8000,), (44100, 8000), (44100,)):
        assert set(decode_clip(str(path), rates, 29.1).clips) == set(rates)


def test_an_mp3_followed_by_other_bytes_gives_the_audio_before_them(tmp_path):
    """No Info frame and 16 kB of zeros after the last frame (padding, a tag libsndfile does not know
    would do the same): the size-based length runs past the audio, and mpg123 fails at the first bytes that are no
    frame. The audio before them is whole: the clip is its centre, and `bench tag` reads all of it
    (the file was skipped as undecodable, since libsndfile returns no frame of the read that fails)."""
    encoded = tmp_path / "encoded.mp3"
    signal = write_cbr(encoded, 29.3)
    data = encoded.read_bytes()
    trailed = tmp_path / "trailed.mp3"
    trailed.write_bytes(data[first_frame_length(data):] + bytes(16_000))
    assert sf.info(str(trailed)).duration > 30.0  # the estimate counts the trailer as audio
    whole = decode_file(str(trailed), RATE)
    assert len(whole) / RATE == pytest.approx(29.3, abs=0.1)
    decoded = decode_clip(str(trailed), (RATE,), 29.1)
    assert not decoded.padded
    wanted = round(29.1 * RATE)
    start = (len(whole) - wanted) // 2
    np.testing.assert_array_equal(decoded.clips[RATE], whole[start:start + wanted])
    assert offset_in(signal, decoded.clips[RATE], near=0.1) == pytest.approx(0.1, abs=0.03)
