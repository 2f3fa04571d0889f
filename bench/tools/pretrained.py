"""`bench import musicnn`: the released musicnn models (Essentia paper, Table 1) as PyTorch weights.

The PyPI package `musicnn==0.1.0` (ISC licence) ships four TF1 checkpoints, `MTT_musicnn`,
`MSD_musicnn`, `MTT_vgg` and `MSD_vgg`, as `musicnn/<MODEL>/` prefixes with an empty basename. Each is
read with TensorFlow's checkpoint reader in a child process (`bench.tools.tf_checkpoint`; TensorFlow is
the optional extra `mel-resolution-bench[musicnn]`), mapped onto the `musicnn-787k` / `vgg-605k` presets and written as

    <models>/<MODEL>/weights.pt    state dict (tensors only: torch.load(..., weights_only=True))
    <models>/<MODEL>/model.json    architecture, tag names, the front end the model expects,
                                   patch length, published results, source and licence

`<models>` is `--out`, else `$BENCH_MODELS`, else `$XDG_DATA_HOME/bench/models` (by default
`~/.local/share/bench/models`): the same from any working directory.

Mapping: the torch modules of a preset are created in the order in which the released code creates
its TF layers, so the k-th Conv / BatchNorm / Dense module takes the TF layer `conv2d_k` /
`batch_normalization_k` / `dense_k` (the VGG's convolutions are named `1CNN` ... `5CNN`). Kernels are
transposed from TF's (time, freq, in, out) to torch's (out, in, freq, time). Every variable must be
present with exactly the expected shape, and nothing else may be left over: anything else is refused
with one line naming the variable.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.core.layout import MODEL_JSON  # noqa: F401 - where an imported model is described
from bench.core.paths import default_models_dir

WEIGHTS = "weights.pt"
LICENCE = "ISC (musicnn 0.1.0, Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019)"


@dataclass(frozen=True)
class Released:
    arch: str
    labels: str
    """Name of the tag list in the package's configuration.py."""
    dataset: str


RELEASED = {
    "MTT_musicnn": Released("musicnn-787k", "MTT_LABELS", "MagnaTagATune"),
    "MSD_musicnn": Released("musicnn-787k", "MSD_LABELS", "Million Song Dataset"),
    "MTT_vgg": Released("vgg-605k", "MTT_LABELS", "MagnaTagATune"),
    "MSD_vgg": Released("vgg-605k", "MSD_LABELS", "Million Song Dataset"),
}
CHECKPOINT_FILES = (".index", ".data-00000-of-00001")


def models_dir(path: str | os.PathLike | None = None) -> Path:
    """Where imported models live: `path`, else the user-level default (`bench.core.paths.default_models_dir`)."""
    return Path(path).expanduser() if path else default_models_dir()


def musicnn_package_dir() -> Path:
    """The installed `musicnn` package's folder (found without importing it: it imports TensorFlow)."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the musicnn package is not installed: pip install musicnn==0.1.0 --no-deps "
                        "(only its checkpoint files are needed), or pass --from PATH")
    return Path(list(spec.submodule_search_locations)[0])


def read_configuration(package: Path) -> dict:
    """The constants of the package's configuration.py, read as literals (the file is not executed)."""
    path = package / "configuration.py"
    if not path.is_file():
        raise UserError(f"{path}: missing (expected a musicnn package folder: configuration.py and one "
                        f"folder per model)")
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the musicnn configuration ({type(exc).__name__})") from None
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return constants


def published_results(folder: Path) -> dict:
    """ROC-AUC and PR-AUC from the package's experiment.result (empty when the file is absent).

    The files say either "ROC-AUC: x / PR-AUC: y" or "AUC: x / AUC: y", always ROC-AUC first.
    """
    try:
        text = (folder / "experiment.result").read_text()
    except OSError:
        return {}
    values = [float(v) for v in re.findall(r"AUC:\s*([0-9.]+)", text)]
    return dict(zip(("roc_auc", "pr_auc"), values[:2], strict=False))


def frontend_settings(configuration: dict, experiment: dict, where: str) -> dict:
    """The front end a released model expects, checked against what `MelFrontend` can compute."""
    from bench.core import framing

    rep = experiment.get("audio_rep", {})
    settings = {
        "sample_rate": int(rep.get("resample_sr", configuration.get("SR", 16000))),
        "n_fft": int(rep.get("n_fft", configuration.get("FFT_SIZE", 512))),
        "hop_length": int(rep.get("hop", configuration.get("FFT_HOP", 256))),
        "n_mels": int(rep.get("n_mels", configuration.get("N_MELS", 96))),
        "mel_scale": "slaney", "norm": "slaney", "fmin": 0.0, "fmax": None,
        "pad_mode": "reflect", "pad_to_hop": False,  # librosa's melspectrogram defaults of 2019
        "log": "log", "float16_mel": True,  # log10(10000 x + 1) of the float16-stored mel power
        "float16_waveform": False,  # trained on float32 audio
    }
    if rep.get("spectrogram_type", "mel") != "mel" or experiment.get("pre_processing", "logC") != "logC":
        raise UserError(f"{where}: unsupported input representation "
                        f"{rep.get('spectrogram_type')!r} / {experiment.get('pre_processing')!r}")
    if settings["n_fft"] != framing.N_FFT or settings["hop_length"] % framing.BASE_HOP:
        raise UserError(f"{where}: n_fft {settings['n_fft']} / hop {settings['hop_length']} are not supported "
                        f"(the mel front end has n_fft {framing.N_FFT} and hops of {framing.BASE_HOP} x m)")
    return settings


# ------------------------------------------------------------------------------------------------
# TF variables -> state dict


@dataclass(frozen=True)
class Mapping:
    key: str
    """state_dict key."""
    variable: str
    """TF variable name."""
    tf_shape: tuple[int, ...]
    kind: str
    """How the array is laid out in TF: conv2d, conv1d (a TF conv2d over the full channel axis), dense,
    vector."""


def _tf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if kind == "conv2d":  # torch (out, in, freq, time) <- TF (time, freq, in, out)
        return tuple(reversed(shape))
    if kind == "conv1d":  # torch (out, in, time) <- TF (time, in, 1, out)
        return (shape[2], shape[1], 1, shape[0])
    if kind == "dense":  # torch (out, in) <- TF (in, out)
        return (shape[1], shape[0])
    return shape


def to_torch_layout(kind: str, array: np.ndarray) -> np.ndarray:
    if kind == "conv2d":
        return array.transpose(3, 2, 1, 0)
    if kind == "conv1d":
        return array[:, :, 0, :].transpose(2, 1, 0)
    if kind == "dense":
        return array.T
    return array


def variable_mapping(model, arch: str) -> list[Mapping]:
    """Which TF variable fills which state_dict entry, in the released code's layer order."""
    from torch import nn

    counters: Counter = Counter()

    def layer_name(kind: str) -> str:
        n = counters[kind]
        counters[kind] += 1
        if kind == "conv2d" and arch == "vgg-605k":
            return f"{n + 1}CNN"
        return kind if n == 0 else f"{kind}_{n}"

    mapping = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            layer = layer_name("conv2d")
            kind = "conv1d" if isinstance(module, nn.Conv1d) else "conv2d"
            params = {"weight": ("kernel", kind), "bias": ("bias", "vector")}
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            layer = layer_name("batch_normalization")
            params = {"weight": ("gamma", "vector"), "bias": ("beta", "vector"),
                      "running_mean": ("moving_mean", "vector"), "running_var": ("moving_variance", "vector")}
        elif isinstance(module, nn.Linear):
            layer = layer_name("dense")
            params = {"weight": ("kernel", "dense"), "bias": ("bias", "vector")}
        else:
            continue
        state = module.state_dict()
        for param, (variable, kind) in params.items():
            shape = tuple(state[param].shape)
            mapping.append(Mapping(f"{name}.{param}", f"{layer}/{variable}", _tf_shape(kind, shape), kind))
    return mapping


def state_dict_from_tf(model, arch: str, variables: dict[str, np.ndarray], source: str) -> dict:
    """`model`'s state dict filled from TF variables; refuses missing, mis-shaped or extra variables."""
    import torch

    state = model.state_dict()
    used = set()
    for m in variable_mapping(model, arch):
        if m.variable not in variables:
            raise UserError(f"{source}: variable {m.variable!r} is missing (expected shape {list(m.tf_shape)} "
                            f"for {arch} {m.key})")
        array = np.asarray(variables[m.variable])
        if tuple(array.shape) != m.tf_shape:
            raise UserError(f"{source}: variable {m.variable!r} has shape {list(array.shape)}, expected "
                            f"{list(m.tf_shape)} for {arch} {m.key}")
        state[m.key] = torch.from_numpy(np.ascontiguousarray(to_torch_layout(m.kind, array), dtype=np.float32))
        used.add(m.variable)
    extra = sorted(set(variables) - used)
    if extra:
        raise UserError(f"{source}: unexpected variable(s) {', '.join(map(repr, extra[:5]))}"
                        f"{' ...' if len(extra) > 5 else ''}: not a {arch} checkpoint")
    return state


def read_checkpoints(prefixes: list[str]) -> list[dict[str, np.ndarray]]:
    """Variables of each TF checkpoint prefix, read by TensorFlow in a child process."""
    if importlib.util.find_spec("tensorflow") is None:
        raise UserError("reading the TF checkpoints needs TensorFlow: pip install 'mel-resolution-bench[musicnn]' "
                        "(or pip install tensorflow-cpu)")
    with tempfile.TemporaryDirectory(prefix="bench-tf-") as tmp:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run([sys.executable, "-m", "bench.tools.tf_checkpoint", tmp, *prefixes],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            lines = [line for line in done.stdout.splitlines() if "\t" in line]
            if lines:
                prefix, reason = lines[-1].split("\t", 1)
                raise UserError(f"{prefix}: cannot read the checkpoint: {reason}")
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"the TensorFlow checkpoint reader failed: {tail}")
        out = []
        for i in range(len(prefixes)):
            with np.load(os.path.join(tmp, f"{i}.npz")) as data:
                out.append({name: data[name] for name in data.files})
        return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# musicnn 0.1.0's LICENSE.md, word for word: written beside the weights where no copy can be read
# (the ISC licence asks for its notice in all copies)
ISC_NOTICE = """\
Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. Code developed by Jordi Pons (www.jordipons.me).

Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is \
hereby granted, provided that the above copyright notice and this permission notice appear in all copies.

THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS SOFTWARE \
INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR \
ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE, \
DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN \
CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.

"""


def _licence_text(package: Path, installed: bool) -> str:
    """The licence of the checkpoints under `package`: its LICENSE.md, or a clone's above it (not for an
    `installed` package, whose parent is site-packages), else the installed distribution's (at the top
    of its dist-info, or under licenses/ as newer setuptools puts it), else musicnn 0.1.0's notice."""
    from importlib.metadata import PackageNotFoundError, distribution

    for candidate in (package / "LICENSE.md", package.parent / "LICENSE.md")[:1 if installed else 2]:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace")
    try:
        files = distribution("musicnn").files or []
    except PackageNotFoundError:
        files = []
    for file in files:
        if file.name.upper().startswith("LICEN") and ".dist-info" in str(file):
            text = file.read_text(encoding="utf-8")
            if text:
                return text
    return ISC_NOTICE


def import_musicnn(source: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                   names: list[str] | None = None, log=print) -> list[Path]:
    """Convert the released checkpoints under `source` (default: the installed musicnn package).

    `source` is a musicnn package folder: configuration.py and one folder per model. Returns the
    written model folders.
    """
    import torch

    import architectures
    from architectures import InputConfig
    from bench.core import framing
    from bench.core.store import atomic_write_bytes
    from bench.train.model_file import model_description, write_model_json

    package = Path(source) if source is not None else musicnn_package_dir()
    if not package.is_dir():
        raise UserError(f"{package}: not a folder (expected the musicnn package folder)")
    configuration = read_configuration(package)
    names = names or list(RELEASED)
    prefixes = []
    for name in names:
        folder = package / name
        for suffix in CHECKPOINT_FILES:
            if not (folder / suffix).is_file():
                raise UserError(f"{folder / suffix}: missing (the {name} checkpoint is {folder}/{suffix} "
                                "and its companion, with an empty basename)")
        prefixes.append(str(folder) + os.sep)
    variables = read_checkpoints(prefixes)

    root = models_dir(out)
    licence = _licence_text(package, installed=source is None)
    written = []
    for name, prefix, tf_vars in zip(names, prefixes, variables, strict=True):
        released = RELEASED[name]
        folder = package / name
        where = str(folder)
        try:
            experiment = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            experiment = {}
        tags = configuration.get(released.labels)
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise UserError(f"{package / 'configuration.py'}: no tag list {released.labels}")
        frontend = frontend_settings(configuration, experiment, where)
        patch_frames = int(experiment.get("n_frames", 187))
        input_config = InputConfig(frontend["sample_rate"], frontend["n_mels"],
                                   frontend["hop_length"] // framing.BASE_HOP, patch_frames)
        model = architectures.build(released.arch, input_config, len(tags))
        state = state_dict_from_tf(model, released.arch, tf_vars, f"{name} ({prefix})")
        model.load_state_dict(state)  # strict: every key filled, every shape right

        target = root / name
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(target / WEIGHTS, buffer.getvalue())
        write_model_json(target, model_description(
            name, released.arch, dataclasses.asdict(architectures.make_options(released.arch)),
            dataclasses.replace(input_config, n_frames=patch_frames), patch_frames, frontend, tags, weights=WEIGHTS,
            dataset=released.dataset, published=published_results(folder),
            source={"package": "musicnn 0.1.0", "checkpoint": prefix, "sha256": _sha256(folder / CHECKPOINT_FILES[1])},
            licence=LICENCE))
        atomic_write_bytes(target / "LICENSE.md", licence.encode())
        log(f"{name}: {released.arch}, {len(tags)} tags -> {target}")
        written.append(target)
    return written
