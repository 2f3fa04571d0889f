"""model.json: a trained network that describes itself, so one loader serves every model.

Written beside the weights by `bench import musicnn` (the released models: `weights.pt`) and by every
run of a grid when it finishes (`best.pt`, whose state dict is under the key "model"):

    name          the model's name (an imported model's, or the run_id)
    arch, options the architecture and its options (`architectures.build(arch, input, n_tags, **options)`)
    input         the InputConfig it was built for: sample_rate, n_mels, hop_multiplier, n_frames
    patch_frames  frames of one network input (a clip's for VGG-CNN, a segment's for MusiCNN)
    frontend      the mel front end it was trained with: sample_rate, n_fft, hop_length, n_mels,
                  mel_scale, norm, fmin, fmax, pad_mode, pad_to_hop, log, float16_mel,
                  float16_waveform (absent: true in a run's folder, whose model.json was written
                  before the key was, false elsewhere)
    tags          tag names in output order
    weights       the weights file in the same folder; weights_key: the key of the state dict in it
                  (absent: the file is the state dict)

plus `pool_padding` for a VGG-CNN whose pools pad their inputs, and what a writer adds (dataset,
published results, source, licence). `load_model` needs nothing else.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from architectures import InputConfig
from bench.core import framing
from bench.core.errors import UserError, one_line
from bench.core.layout import CONFIG, MODEL_JSON
from bench.core.paths import plain_name
from bench.core.store import NOT_REGULAR_FILE, atomic_write_json, read_regular_file
from bench.spec import LIMITS


@dataclass
class LoadedModel:
    name: str
    model: Any
    """The torch module, in eval mode."""
    frontend: Any
    """`bench.train.frontend.MelFrontend` as the model was trained."""
    tags: list[str]
    patch_frames: int


def frontend_settings(sample_rate: int, n_mels: int, hop_multiplier: int, log: str) -> dict:
    """The front end of this suite's training (`MelFrontend`'s defaults), in model.json's terms."""
    return {"sample_rate": sample_rate, "n_fft": framing.N_FFT, "hop_length": framing.hop_length(hop_multiplier),
            "n_mels": n_mels, "mel_scale": "slaney", "norm": "slaney", "fmin": 0.0, "fmax": None,
            "pad_mode": "constant", "pad_to_hop": True, "log": log, "float16_mel": False,
            "float16_waveform": True}  # trained and evaluated on the waveform cache's float16 samples


def model_description(name: str, arch: str, options: dict, input_config: InputConfig, patch_frames: int,
                      frontend: dict, tags: list[str], weights: str, weights_key: str | None = None,
                      **extra: Any) -> dict:
    """model.json's content (see the module docstring); a VGG-CNN whose pools pad their inputs gets
    `pool_padding`, the record `check_pool_padding` asks for."""
    import architectures

    if padding := architectures.pool_padding(arch, input_config, **options):
        extra = {"pool_padding": padding, **extra}
    description = {
        "name": name, "arch": arch, "options": options,
        "input": {"sample_rate": input_config.sample_rate, "n_mels": input_config.n_mels,
                  "hop_multiplier": input_config.hop_multiplier, "n_frames": input_config.n_frames},
        "patch_frames": int(patch_frames), "frontend": frontend, "tags": list(tags), "weights": weights,
    }
    if weights_key is not None:
        description["weights_key"] = weights_key
    return {**description, **extra}


def write_model_json(folder: str | Path, description: dict) -> Path:
    return atomic_write_json(Path(folder) / MODEL_JSON, description)


def read_json(path: Path) -> dict:
    try:
        doc = json.loads(read_regular_file(path))
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        raise UserError(f"{path}: {NOT_REGULAR_FILE}") from None
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{path}: not valid JSON (nested too deep)") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: not a JSON object")
    return doc


def load_weights(path: Path, key: str | None = None) -> dict:
    """A state dict, loaded with weights_only=True (tensors and plain containers, never code), from a file
    whose bytes match its zip archive's CRC-32s (`bench.train.checkpoint.load_torch`)."""
    import zipfile

    from bench.train.checkpoint import load_torch

    try:
        state = load_torch(path)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except zipfile.BadZipFile as exc:  # its bytes changed since it was written
        raise UserError(f"{path}: cannot load the weights ({one_line(exc)})") from None
    except Exception as exc:  # a damaged or foreign file
        raise UserError(f"{path}: cannot load the weights ({type(exc).__name__})") from None
    if key is not None:
        if not isinstance(state, dict) or not isinstance(state.get(key), dict):
            raise UserError(f"{path}: no state dict under {key!r}")
        state = state[key]
    return state


PAD_MODES = ("constant", "reflect")
"""How a front end pads a clip's edges: the suite's runs "constant" (zeros), musicnn's released models
"reflect" (librosa's default of their time)."""


def _check_frontend(fe: dict, path: Path) -> None:
    """Refuse a front end that `MelFrontend` would not compute as described: it takes the sample rate,
    mel bands, hop (a multiple of 256), log and padding from model.json, and has one STFT size and one
    mel filter bank (Slaney scale and norm, 0 Hz to Nyquist)."""
    for name in ("sample_rate", "n_mels"):  # as a spec allows them: a rate of 10**400 was an OverflowError
        low, high = LIMITS[name]
        if not isinstance(fe[name], int) or isinstance(fe[name], bool) or not low <= fe[name] <= high:
            raise UserError(f"{path}: frontend.{name} = {fe[name]!r}; expected an integer from {low:,} to {high:,}")
    fixed = {"n_fft": framing.N_FFT, "mel_scale": "slaney", "norm": "slaney", "fmin": 0.0}
    for name, value in fixed.items():
        if name in fe and fe[name] != value:
            raise UserError(f"{path}: frontend.{name} = {fe[name]!r}; this suite's front end computes {value!r} only")
    if fe.get("fmax") not in (None, fe["sample_rate"] / 2):
        raise UserError(f"{path}: frontend.fmax = {fe['fmax']!r}; this suite's mel bank ends at the Nyquist "
                        f"frequency ({fe['sample_rate'] / 2:g} Hz, or null)")
    hop, largest = fe["hop_length"], framing.BASE_HOP * int(LIMITS["hop_multiplier"][1])
    if not isinstance(hop, int) or isinstance(hop, bool) or not 0 < hop <= largest or hop % framing.BASE_HOP:
        raise UserError(f"{path}: frontend.hop_length = {hop!r}; expected a positive multiple of {framing.BASE_HOP} "
                        f"up to {largest:,}")


def check_pool_padding(model: Any, recorded: object, where: Path) -> None:
    """Refuse weights trained before VGG-CNN's rule-planned pools padded their inputs: where this
    version's network pads (`plan.padded`) and `recorded` (the run's own record of its padding) is
    absent, the weights were trained by a network that dropped what its pools did not divide; they
    load into this one, shape for shape, and would compute another function."""
    if getattr(getattr(model, "plan", None), "padded", False) and not recorded:
        raise UserError(f"{where}: trained by an earlier version whose VGG-CNN pools dropped the frames or bands they "
                        "did not divide, where this version pads them (docs/architectures.md); its weights would "
                        "compute another network: train the run again")


MAX_PATCH_SECONDS = 3600
"""The longest network input a model description may name, in seconds: a spec's longest clip (an hour).
A larger patch_frames (a hand-edited file) would have every file padded to it, petabytes for 10**12."""


def _refused_input(meta: dict, n_tags: int, frames: int) -> str | None:
    """Why the network `meta` describes cannot take `frames` frames, or None: its forward pass on the meta
    device (shapes only; nothing computed or allocated). A network planned for one length may take
    others (MusiCNN any segment; VGG-CNN pads), but not every one (VGG-CNN's pools need a few frames)."""
    import torch

    import architectures

    try:
        with torch.device("meta"):
            twin = architectures.build(meta["arch"], InputConfig(**meta["input"]), n_tags, **meta["options"])
        with torch.no_grad():
            twin.eval()(torch.empty(1, meta["input"]["n_mels"], frames, device="meta"))
    except (RuntimeError, ValueError) as exc:
        return one_line(exc)[:200]
    return None


def load_model(folder: str | Path) -> LoadedModel:
    """The network, its front end and its tags, from `folder`'s model.json and weights."""
    import architectures
    from bench.train.frontend import MelFrontend

    folder = Path(folder)
    meta = read_json(folder / MODEL_JSON)
    try:
        fe = meta["frontend"]
        _check_frontend(fe, folder / MODEL_JSON)
        float16_waveform = fe.get("float16_waveform", (folder / CONFIG).is_file())  # every run trains on float16
        frontend = MelFrontend(fe["sample_rate"], fe["n_mels"], fe["hop_length"] // framing.BASE_HOP, fe["log"],
                               pad_mode=fe["pad_mode"], pad_to_hop=fe["pad_to_hop"], float16_mel=fe["float16_mel"],
                               float16_waveform=bool(float16_waveform))
        weights, key = meta.get("weights", "weights.pt"), meta.get("weights_key")
        name, tags, patch_frames = meta["name"], meta["tags"], meta["patch_frames"]
        for field, value, right in (("name", name, isinstance(name, str) and name.strip() not in ("", ".", "..")
                                     and "/" not in name and os.sep not in name),  # it names result files
                                    ("weights", weights, plain_name(weights)),  # the file beside it, no other
                                    ("weights_key", key, key is None or isinstance(key, str)),
                                    ("tags", tags, isinstance(tags, list) and tags
                                     and all(isinstance(t, str) for t in tags)),
                                    ("patch_frames", patch_frames, isinstance(patch_frames, int)
                                     and not isinstance(patch_frames, bool)
                                     and 1 <= patch_frames <= framing.n_frames(
                                         MAX_PATCH_SECONDS, fe["sample_rate"], fe["hop_length"] // framing.BASE_HOP)),
                                    ("frontend.pad_mode", fe["pad_mode"], fe["pad_mode"] in PAD_MODES)):
            if not right:
                raise ValueError(f"{field} = {value!r}")
        inputs = InputConfig(**meta["input"])
        for field, value in (("sample_rate", inputs.sample_rate), ("n_mels", inputs.n_mels),
                             ("hop_length", framing.BASE_HOP * inputs.hop_multiplier)):
            if fe[field] != value:  # the network is built for its input: another front end feeds it wrong
                raise ValueError(f"frontend.{field} = {fe[field]!r}, where the network's input has {value!r}")
        model = architectures.build(meta["arch"], inputs, len(tags), **meta["options"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{folder / MODEL_JSON}: not a model description ({type(exc).__name__}: {exc})") from None
    check_pool_padding(model, meta.get("pool_padding"), folder)
    if patch_frames != model.input_frames:  # an earlier version's rounding of a segment, or a hand edit
        refused = _refused_input(meta, len(tags), patch_frames)
        if refused:
            raise UserError(f"{folder / MODEL_JSON}: patch_frames = {patch_frames}: the network it describes "
                            f"cannot take that many frames ({refused})")
    try:
        model.load_state_dict(load_weights(folder / weights, key))
    except RuntimeError as exc:  # shapes that do not fit the description
        raise UserError(f"{folder / weights}: does not fit {folder / MODEL_JSON} ({one_line(exc)[:200]})") from None
    return LoadedModel(name, model.eval(), frontend, tags, patch_frames)
