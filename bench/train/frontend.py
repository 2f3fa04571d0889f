"""The mel front end: waveform batch -> log-compressed mel spectrogram, on any device.

Matches the paper's setup (librosa's defaults, which Essentia was configured to reproduce): power
mel spectrogram, n_fft = 512, periodic Hann window, Slaney mel scale with Slaney (area)
normalisation, fmin = 0, fmax = sr / 2. The clip is zero-padded on the right to a multiple of 256
samples and framed centred with constant (zero) padding, which gives the paper's frame counts
(`bench.core.framing`). torchaudio's default `pad_mode='reflect'` would change the first and last frames.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
import torchaudio

from bench.core import framing
from bench.spec import LOG_TYPES, MelConfig

LOG_SCALE = 10_000.0
"""`log` compression: log10(1 + 10000 x)."""

DB_FLOOR = 1e-10
"""`dB` compression: 10 log10(max(x, 1e-10))."""


def log_compress(power: torch.Tensor, log: str) -> torch.Tensor:
    """Apply the paper's log compression to a power mel spectrogram."""
    if log == "log":
        return torch.log10(1.0 + LOG_SCALE * power)
    if log == "dB":
        return 10.0 * torch.log10(torch.clamp(power, min=DB_FLOOR))
    raise ValueError(f"unknown log type {log!r}; expected one of {LOG_TYPES}")


FLOAT16_MAX = 65504.0


def mel_filterbank(sample_rate: int, n_mels: int) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised mel filters from 0 Hz to Nyquist over the N_FFT frame's bins,
    (n_freqs, n_mels), as librosa's `filters.mel` gives them. torchaudio's `melscale_fbanks` places the
    bins at linspace(0, sample_rate // 2): at an odd rate (11,025 Hz) half a hertz below their
    frequencies over the whole range (filters 0.4 % off, 0.84 dB in a band). Built at twice the rate over
    twice the bins, its first n_freqs bins are the frame's own (k x sample_rate / N_FFT)."""
    n_freqs = framing.N_FFT // 2 + 1
    with empty_bands_unsaid():
        return torchaudio.functional.melscale_fbanks(2 * n_freqs - 1, 0.0, sample_rate / 2, n_mels, 2 * sample_rate,
                                                     norm="slaney", mel_scale="slaney")[:n_freqs]


EMPTY_BANDS_WARNING = "At least one mel filterbank has all zero values"
"""The start of torchaudio's UserWarning for a filterbank with empty bands."""


@contextlib.contextmanager
def empty_bands_unsaid() -> Iterator[None]:
    """torchaudio's warning of empty mel bands left out: `bench plan` and `bench grid` say it once per
    configuration in their own words (`framing.empty_mel_bands`), where torchaudio said it twice per front
    end built, every run of a grid, with its file and line: once of the filterbank torchaudio's
    MelSpectrogram builds, which `MelFrontend` replaces at once, and once of `mel_filterbank`'s."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=EMPTY_BANDS_WARNING, category=UserWarning)
        yield


class MelFrontend(torch.nn.Module):
    """(batch, samples) float waveform -> (batch, n_mels, n_frames) log-mel.

    Computed in float32 whatever autocast says: the STFT and the log are precision-sensitive, and
    the front end is a small share of a training step (measured:
    docs/performance.md#measurements-behind-the-codes-choices).

    The keywords reproduce the front end of the released musicnn models (`bench.tools.pretrained`), which
    were trained on librosa's defaults of their time: `pad_mode="reflect"` with `pad_to_hop=False`
    (plain centred framing, 1 + samples // hop frames) and `float16_mel=True` (the mel power was
    stored as float16; the log is then taken in float32 of the rounded value).

    `float16_waveform=True` rounds the samples to float16 first: a grid's runs train and are evaluated
    on the waveform cache's float16 samples, whose rounding noise (about 66 dB below each sample) is
    what the quietest mel bands of a dB run hold; a tool that feeds such a run float32 samples of the
    same clip must round them as the cache did to give the run's own evaluation's scores. Training
    needs no flag: its batches are float16 already.
    """

    def __init__(self, sample_rate: int, n_mels: int, hop_multiplier: int, log: str, *,
                 pad_mode: str = "constant", pad_to_hop: bool = True, float16_mel: bool = False,
                 float16_waveform: bool = False):
        super().__init__()
        if log not in LOG_TYPES:
            raise ValueError(f"unknown log type {log!r}; expected one of {LOG_TYPES}")
        self.config = MelConfig(sample_rate=sample_rate, n_mels=n_mels, hop_multiplier=hop_multiplier, log=log)
        self.pad_to_hop = pad_to_hop
        self.float16_mel = float16_mel
        self.float16_waveform = float16_waveform
        with empty_bands_unsaid():  # its own filterbank, replaced below
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate,
                n_fft=framing.N_FFT,
                win_length=framing.N_FFT,
                hop_length=framing.hop_length(hop_multiplier),
                f_min=0.0,
                f_max=sample_rate / 2,
                n_mels=n_mels,
                window_fn=torch.hann_window,  # periodic, as librosa's get_window('hann', fftbins=True)
                power=2.0,
                center=True,
                pad_mode=pad_mode,
                norm="slaney",
                mel_scale="slaney",
            )
        self.mel.mel_scale.fb = mel_filterbank(sample_rate, n_mels)

    @classmethod
    def from_config(cls, mel: MelConfig) -> MelFrontend:
        return cls(mel.sample_rate, mel.n_mels, mel.hop_multiplier, mel.log)

    def n_frames(self, n_samples: int) -> int:
        if not self.pad_to_hop:
            return 1 + n_samples // self.config.hop_length
        return framing.frames_for_samples(n_samples, self.config.hop_multiplier)

    def _padded(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(f"expected (batch, samples), got shape {tuple(waveform.shape)}")
        waveform = (waveform.half() if self.float16_waveform else waveform).float()
        if self.pad_to_hop:
            n = waveform.shape[-1]
            waveform = F.pad(waveform, (0, framing.padded_samples(n) - n))
        return waveform

    def _compress(self, power: torch.Tensor) -> torch.Tensor:
        if self.float16_mel:
            power = power.clamp(max=FLOAT16_MAX).half().float()
        return log_compress(power, self.config.log)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        waveform = self._padded(waveform)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            return self._compress(self.mel(waveform))

    def chunks(self, waveform: torch.Tensor, frames: int) -> Iterator[torch.Tensor]:
        """`forward` of one long (1, samples) waveform, `frames` frames at a time: (1, n_mels, <= frames) each,
        whose concatenation along the frames is `forward(waveform)` (up to the FFT's rounding).

        Only one chunk's STFT is held, where `forward` holds the whole file's: 1.35 GB for an hour
        at 16 kHz. Each chunk's centred frames are framed without centring from its slice of the
        signal, with the samples `forward`'s padding puts outside it: zeros (constant), or the signal
        mirrored at its edge (reflect), read from the signal itself. A waveform of at most `frames`
        frames is computed at once."""
        if waveform.dim() != 2 or waveform.shape[0] != 1:
            raise ValueError(f"expected (1, samples), got shape {tuple(waveform.shape)}")
        n = waveform.shape[-1]
        total, hop, half = self.n_frames(n), self.config.hop_length, framing.N_FFT // 2
        length = framing.padded_samples(n) if self.pad_to_hop else n  # the signal `forward` centres
        if total <= frames or length <= framing.N_FFT:  # one chunk; or too short to mirror half a frame
            yield self(waveform)
            return

        def signal(lo: int, hi: int) -> torch.Tensor:  # samples lo..hi-1 of that signal, 0 <= lo <= hi <= length
            piece = waveform[:, lo:min(hi, n)]
            piece = (piece.half() if self.float16_waveform else piece).float()
            return F.pad(piece, (0, hi - lo - piece.shape[-1]))

        def outside(lo: int, count: int) -> torch.Tensor:  # centring's padding: `count` samples from lo
            if self.mel.spectrogram.pad_mode == "constant" or count == 0:
                return waveform.new_zeros(1, count, dtype=torch.float32)
            # reflect: x[-i] = x[i] before the signal, x[L-1+i] = x[L-1-i] after it
            mirror = 1 - (lo + count) if lo < 0 else 2 * (length - 1) - (lo + count - 1)
            return signal(mirror, mirror + count).flip(-1)

        for t0 in range(0, total, frames):
            t1 = min(t0 + frames, total)
            a, b = t0 * hop - half, (t1 - 1) * hop + half
            lo, hi = max(a, 0), min(b, length)
            piece = torch.cat([outside(a, lo - a), signal(lo, hi), outside(hi, b - hi)], dim=-1)
            with torch.autocast(device_type=waveform.device.type, enabled=False):
                yield self._uncentred(piece)

    def _uncentred(self, pieces: torch.Tensor) -> torch.Tensor:
        """The log-mel of (batch, samples) pieces framed without centring: 1 + (samples - N_FFT) // hop frames."""
        stft = self.mel.spectrogram
        power = torchaudio.functional.spectrogram(
            pieces, pad=0, window=stft.window, n_fft=stft.n_fft, hop_length=stft.hop_length,
            win_length=stft.win_length, power=stft.power, normalized=stft.normalized, center=False)
        return self._compress(self.mel.mel_scale(power))

    def frames(self, waveform: torch.Tensor, starts: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Frames `starts[b] .. starts[b] + n_frames - 1` of clip b's mel, computing only those:
        (batch, samples), (batch,) -> (batch, n_mels, n_frames), equal to `forward(waveform)` cut there.

        Centred frame t covers samples [t*hop - n_fft/2, t*hop + n_fft/2) of the clip, zeros outside
        it (constant padding), so each clip's frames come from one slice of the padded waveform framed
        without centring. MusiCNN trains on one random 3 s segment of a 29.1 s clip: this skips the
        other 90 % of the front end's work.
        """
        if self.mel.spectrogram.pad_mode != "constant":
            raise ValueError("frames() reproduces constant-padded framing only")
        waveform = self._padded(waveform)
        half = framing.N_FFT // 2
        waveform = F.pad(waveform, (half, half))
        hop = self.config.hop_length
        length = (n_frames - 1) * hop + framing.N_FFT
        if starts.device.type == "cpu" and waveform.device.type == "cuda":
            starts = starts.pin_memory()  # a non-blocking copy: no host sync in the step loop
        offsets = starts.to(waveform.device, non_blocking=True) * hop
        index = offsets[:, None] + torch.arange(length, device=waveform.device)[None, :]
        chunk = torch.gather(waveform, 1, index)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            return self._uncentred(chunk)
