"""`bench export`: a run of a grid or an imported model as an ONNX file that runs in other toolkits.

The network alone takes `mel`, float32 (batch, n_mels, patch_frames): the log-mel patch the model was
trained on (`bench.train.frontend.MelFrontend`, settings in the sidecar JSON). With `--with-frontend`
the file takes `waveform`, float32 (batch, samples) mono at the model's sample rate, exactly the
samples of one patch, and computes the mel front end itself (STFT, mel filterbank, log) inside the
graph. Either way the output is `logits`, float32 (batch, n_tags), in the sidecar's tag order; a
sigmoid gives tag probabilities, and a track's prediction is the mean over its patches (as `bench
tag` takes them: non-overlapping, from the start). The batch axis is dynamic.

The export (torch.onnx, opset 18) is checked before it is kept: onnxruntime runs it on a batch of 3
inputs (real log-mel patches of a synthetic signal, or the signal) and every logit must match
PyTorch's within 1e-5 of the largest logit's magnitude (at least 1e-5 absolute); the measured
difference is written in the sidecar `<file>.json`, next to the input and output names and shapes,
the front end's settings and the tags.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import UserError
from bench.core.framing import BASE_HOP
from bench.core.paths import writable_file
from bench.core.store import atomic_write_bytes, atomic_write_json, exclusive_lock, fsync_folder
from bench.core.text import visible
from bench.tools.tag import Tagger, load_tagger
from bench.train.frontend import DB_FLOOR, LOG_SCALE

OPSET = 18
TOLERANCE = 1e-5
"""Largest allowed |ONNX - PyTorch| over the logits, relative to the largest |logit| (and at least 1e-5)."""
CHECK_BATCH = 3
NEEDED = ("onnx", "onnxscript", "onnxruntime")


LOG_FORMULAS = {"log": f"log10(1 + {LOG_SCALE:g} * power)", "dB": f"10 * log10(max(power, {DB_FLOOR:g}))"}
"""The sidecar's statement of each log compression (`bench.train.frontend.log_compress`), for a user who
computes the front end outside this suite."""


def _network(tagger: Tagger):
    model = tagger.model.eval()
    if hasattr(model, "rearrange"):  # MusiCNN: the timbral convolutions as written (plain Conv2d in the graph)
        model.rearrange = False
    return model


class WithFrontend(torch.nn.Module):
    """waveform -> log-mel -> network, as one module."""

    def __init__(self, tagger: Tagger):
        super().__init__()
        self.frontend = tagger.frontend
        self.network = _network(tagger)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.network(self.frontend(waveform))


def check_inputs(tagger: Tagger, with_frontend: bool, seed: int = 0):
    """A batch of CHECK_BATCH inputs: patches of a synthetic chord with noise (or its waveform)."""
    samples = tagger.patch_samples
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / tagger.sample_rate
    waves = []
    for _ in range(CHECK_BATCH):
        f0 = rng.uniform(110, 440)
        tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 1.25, 1.5, 2))
        waves.append(0.1 * tone + 0.01 * rng.standard_normal(samples))
    waveform = torch.from_numpy(np.stack(waves).astype(np.float32))
    if with_frontend:
        return waveform
    with torch.inference_mode():
        return tagger.frontend(waveform).clone()


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.ERROR):
    """The logger `name` and its children drop records below `level` while inside. torch 2.11 gives its
    loggers a handler bound to the stderr of torch's import, which redirect_stderr does not reach, and its
    exporter warns of each torchvision operator it skips where torchvision is not installed (four lines)."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def export(model: str, onnx_path: str | Path, models: str | None = None, with_frontend: bool = False) -> dict:
    """Export, check with onnxruntime, then write the file and its sidecar JSON; returns the sidecar."""
    writable_file(onnx_path, "--onnx", ".onnx")  # before the export's minutes
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"bench export needs {', '.join(NEEDED)} ({', '.join(missing)} missing): "
                        "pip install 'mel-resolution-bench[onnx]'")
    import onnxruntime

    tagger = load_tagger(model, models, argument="RUN|MODEL")
    module = WithFrontend(tagger).eval() if with_frontend else _network(tagger)
    example = check_inputs(tagger, with_frontend)
    input_name = "waveform" if with_frontend else "mel"
    batch = torch.export.Dim("batch", min=1, max=4096)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), quiet_logger("torch.onnx"):
            program = torch.onnx.export(module, (example,), None, input_names=[input_name], output_names=["logits"],
                                        dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True,
                                        verbose=False)
    except Exception as exc:  # the exporter's own failure, in one line
        raise UserError(f"ONNX export of {tagger.name} failed: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    data = program.model_proto.SerializeToString()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = module(example).numpy()
    got = session.run(["logits"], {input_name: example.numpy()})[0]
    difference = float(np.abs(got - expected).max())
    allowed = TOLERANCE * max(1.0, float(np.abs(expected).max()))
    if not difference <= allowed:
        raise UserError(f"ONNX export of {tagger.name}: onnxruntime differs from PyTorch by {difference:.3g} "
                        f"(allowed {allowed:.3g}); file not written")
    fe = tagger.frontend
    input_shape = ["batch", tagger.patch_samples] if with_frontend else ["batch", fe.config.n_mels,
                                                                          tagger.patch_frames]
    sidecar = {
        "model": tagger.name, "opset": OPSET, "with_frontend": with_frontend,
        "input": {"name": input_name, "shape": input_shape, "dtype": "float32",
                  "what": "mono waveform at sample_rate, one patch" if with_frontend
                  else "log-mel patch (bands x frames), the front end below"},
        "output": {"name": "logits", "shape": ["batch", len(tagger.tags)], "dtype": "float32",
                   "what": "tag logits (sigmoid: probabilities); a track's score is the mean over its patches"},
        "tags": list(tagger.tags), "sample_rate": tagger.sample_rate, "patch_frames": tagger.patch_frames,
        "patch_seconds": round(tagger.patch_seconds, 4),
        "patch_samples": tagger.patch_samples,
        "frontend": {"n_fft": fe.mel.spectrogram.n_fft, "hop_length": fe.config.hop_length,
                     "n_mels": fe.config.n_mels, "window": "hann (periodic)", "center": True,
                     "pad_mode": fe.mel.spectrogram.pad_mode, "mel_scale": "slaney", "norm": "slaney",
                     "fmin": 0.0, "fmax": tagger.sample_rate / 2, "power": 2.0, "log": fe.config.log,
                     "log_formula": LOG_FORMULAS[fe.config.log], "float16_mel": fe.float16_mel,
                     "float16_waveform": fe.float16_waveform,
                     "waveform": ("rounded to float16 (IEEE 754 half precision) first, as the run's training "
                                  "cache stored it") if fe.float16_waveform else "float32, as given",
                     "pad_to_hop": fe.pad_to_hop,
                     "frames": (f"the waveform is zero-padded on the right to a multiple of {BASE_HOP} samples, "
                                f"then framed centred: 1 + padded // {fe.config.hop_length} frames") if fe.pad_to_hop
                     else f"framed centred, unpadded: 1 + samples // {fe.config.hop_length} frames"},
        "check": {"runtime": f"onnxruntime {onnxruntime.__version__}", "batch": CHECK_BATCH,
                  "max_abs_difference": difference, "allowed": allowed},
    }
    path = Path(onnx_path)
    sidecar_path = path.with_name(path.name + ".json")
    # an earlier export's sidecar goes first: a kill between the two writes leaves a model without one,
    # never a new model described by the old sidecar (another input, other tags)
    path.parent.mkdir(parents=True, exist_ok=True)  # --onnx may name a folder that does not exist yet
    # two exports to one --onnx take turns: interleaved, one's model would stand beside the other's sidecar
    with exclusive_lock(export_lock(path)):
        sidecar_path.unlink(missing_ok=True)
        fsync_folder(path.parent)
        atomic_write_bytes(path, data)
        atomic_write_json(sidecar_path, sidecar)
    return sidecar


def export_lock(onnx_path: Path) -> Path:
    """The lock file two exports to `onnx_path` take turns on, hidden beside it."""
    return onnx_path.with_name(f".{onnx_path.name}.lock")


def cli_main(model: str, onnx_path: str, models: str | None, with_frontend: bool) -> int:
    sidecar = export(model, onnx_path, models, with_frontend)
    shape = "x".join(str(d) for d in sidecar["input"]["shape"])
    check = sidecar["check"]["max_abs_difference"]
    print(f"{visible(sidecar['model'])}: {onnx_path} ({sidecar['input']['name']} {shape} -> logits "
          f"batchx{len(sidecar['tags'])}); onnxruntime matches PyTorch within {check:.2g}; "
          f"described in {onnx_path}.json", file=sys.stdout)
    return 0
