"""`bench export`: ONNX files checked with onnxruntime against PyTorch and against the released models'
reference outputs (tests/data/musicnn, computed by musicnn's own TensorFlow code)."""

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch

import architectures
from architectures import InputConfig
from bench.cli import main
from bench.train.model_file import frontend_settings, model_description, write_model_json

from .test_released import DATA, needs_musicnn

needs_onnx = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
                                reason="onnx, onnxscript and onnxruntime are not installed (the extra [onnx])")


def untrained_model(folder, arch: str, n_frames: int, n_tags: int = 5):
    """A model folder (model.json + weights.pt) of an untrained network at 16 kHz, 96 bands, hop 256."""
    torch.manual_seed(0)
    options = architectures.make_options(arch)
    input_config = InputConfig(16000, 96, 1, n_frames)
    model = architectures.build(arch, input_config, n_tags, **dataclasses.asdict(options))
    for module in model.modules():  # BatchNorm statistics away from 0/1, so that they matter
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    folder.mkdir()
    torch.save(model.state_dict(), folder / "weights.pt")
    write_model_json(folder, model_description(folder.name, arch, dataclasses.asdict(options), input_config,
                                               model.input_frames, frontend_settings(16000, 96, 1, "log"),
                                               [f"t{i}" for i in range(n_tags)], weights="weights.pt"))
    return model.eval(), folder


def run_onnx(path, name: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {name: x})[0]


@needs_onnx
@pytest.mark.parametrize("arch, n_frames", [("vgg-605k", 187), ("musicnn", 187)])
def test_exported_network_matches_pytorch_on_the_reference_patches(tmp_path, arch, n_frames, capsys):
    model, folder = untrained_model(tmp_path / arch, arch, n_frames)
    x = np.load(DATA / "inputs.npz")["x"].astype(np.float32).transpose(0, 2, 1)  # (8, 96 bands, 187 frames)
    assert main(["export", str(folder), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    got = run_onnx(tmp_path / "m.onnx", "mel", x)  # batch 8: the batch axis is dynamic (exported at 3)
    assert got.shape == (8, 5)
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    sidecar = json.loads((tmp_path / "m.onnx.json").read_text())
    assert sidecar["input"] == {"name": "mel", "shape": ["batch", 96, 187], "dtype": "float32",
                                "what": "log-mel patch (bands x frames), the front end below"}
    assert {k: sidecar["output"][k] for k in ("name", "shape", "dtype")} == {
        "name": "logits", "shape": ["batch", 5], "dtype": "float32"}
    assert sidecar["tags"] == ["t0", "t1", "t2", "t3", "t4"] and sidecar["check"]["max_abs_difference"] <= 1e-5
    if arch == "musicnn":  # its timbral filters as written: 2-D kernels of the plan's heights
        import onnx

        kernels = [list(attribute.ints) for node in onnx.load(str(tmp_path / "m.onnx")).graph.node
                   if node.op_type == "Conv" for attribute in node.attribute if attribute.name == "kernel_shape"]
        assert {tuple(k) for k in kernels} >= {(int(0.9 * 96), 7), (int(0.4 * 96), 7)}  # 90 % and 40 % of 96 bands


@needs_onnx
def test_export_with_the_front_end_takes_one_patch_of_waveform(tmp_path):
    """VGG-CNN at 16 kHz on 4 s clips: 251 frames, the paper's framing (zero-padded to a multiple of the
    hop, centred frames): 250 hops of 256 samples = 64000 samples, hand-computed."""
    model, folder = untrained_model(tmp_path / "vgg", "vgg", 251)
    assert main(["export", str(folder), "--onnx", str(tmp_path / "v.onnx"), "--with-frontend"]) == 0
    sidecar = json.loads((tmp_path / "v.onnx.json").read_text())
    assert sidecar["input"]["name"] == "waveform" and sidecar["input"]["shape"] == ["batch", 64000]
    assert sidecar["frontend"]["float16_waveform"] is True  # a run's: trained on its cache's float16 samples
    signal = np.load(DATA / "inputs.npz")["signal"][None, :64000].astype(np.float32)
    from bench.train.frontend import MelFrontend

    with torch.inference_mode():  # what the run was evaluated on: the signal as its cache held it
        expected = model(MelFrontend(16000, 96, 1, "log")(torch.from_numpy(signal.astype(np.float16)))).numpy()
    got = run_onnx(tmp_path / "v.onnx", "waveform", signal)
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


@needs_onnx
def test_the_sidecar_describes_the_front_end_enough_to_compute_it_with_librosa(tmp_path):
    """The network-only file is run outside this suite from the sidecar's words: librosa's mel with the
    stated settings, the stated padding and the stated log formula, on a patch of patch_samples, gives
    the model's input (the suite's own front end) and so its logits."""
    import librosa

    model, folder = untrained_model(tmp_path / "vgg", "vgg", 251)
    assert main(["export", str(folder), "--onnx", str(tmp_path / "n.onnx")]) == 0
    sidecar = json.loads((tmp_path / "n.onnx.json").read_text())
    fe = sidecar["frontend"]
    assert sidecar["patch_samples"] == 64000 and fe["pad_to_hop"] is True
    assert fe["log_formula"] == "log10(1 + 10000 * power)"
    assert fe["frames"].startswith("the waveform is zero-padded on the right to a multiple of 256 samples")
    assert fe["float16_waveform"] is True
    signal = np.load(DATA / "inputs.npz")["signal"][:sidecar["patch_samples"]].astype(np.float16).astype(np.float32)
    padded = np.pad(signal, (0, -len(signal) % 256))  # as "frames" says
    power = librosa.feature.melspectrogram(
        y=padded, sr=sidecar["sample_rate"], n_fft=fe["n_fft"], hop_length=fe["hop_length"], n_mels=fe["n_mels"],
        window={"hann (periodic)": "hann"}[fe["window"]], center=fe["center"], pad_mode=fe["pad_mode"],
        power=fe["power"], htk={"slaney": False, "htk": True}[fe["mel_scale"]], norm=fe["norm"],
        fmin=fe["fmin"], fmax=fe["fmax"])
    mel = np.log10(1 + 10000 * power).astype(np.float32)[None]
    assert mel.shape[2] == sidecar["patch_frames"] == 251
    got = run_onnx(tmp_path / "n.onnx", "mel", mel)
    from bench.train.frontend import MelFrontend

    with torch.inference_mode():
        expected = model(MelFrontend(16000, 96, 1, "log")(torch.from_numpy(signal[None]))).numpy()
    assert np.abs(got - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())


@needs_onnx
@needs_musicnn
def test_exported_released_model_reproduces_the_tensorflow_taggram(models, reference, tmp_path):
    x, ref = reference
    assert main(["export", "MTT_musicnn", "--models", str(models), "--onnx", str(tmp_path / "mtt.onnx")]) == 0
    taggram = 1 / (1 + np.exp(-run_onnx(tmp_path / "mtt.onnx", "mel", x.numpy())))
    assert np.abs(taggram - ref["MTT_musicnn/taggram"]).max() <= 1e-5
    # with the front end: musicnn's framing (reflect padding, 1 + samples // 256 frames) makes 187 frames
    # of 186 * 256 = 47616 samples
    from bench.tools.tag import load_tagger

    assert load_tagger("MTT_musicnn", str(models)).patch_samples == 47616


def test_export_without_onnx_is_one_line(tmp_path, capsys, monkeypatch):
    _, folder = untrained_model(tmp_path / "vgg", "vgg", 251)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert main(["export", str(folder), "--onnx", str(tmp_path / "v.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "onnxruntime missing" in err and "[onnx]" in err
    assert not (tmp_path / "v.onnx").exists()


def test_an_onnx_target_that_is_not_an_onnx_file_name_is_refused_before_it_is_replaced(tmp_path, capsys):
    """`bench export RUN --onnx song.wav` (arguments swapped) had replaced the recording with the model."""
    _, folder = untrained_model(tmp_path / "vgg", "vgg", 251)
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF recording")
    assert main(["export", str(folder), "--onnx", str(song)]) == 2
    assert capsys.readouterr().err == (f"bench export: error: --onnx {song}: a name that does not end in .onnx "
                                       "(out.onnx, say); the output is written there, replacing any file of that "
                                       "name\n")
    assert song.read_bytes() == b"RIFF recording"
    (tmp_path / "folder.onnx").mkdir()
    assert main(["export", str(folder), "--onnx", str(tmp_path / "folder.onnx")]) == 2
    assert "--onnx " + str(tmp_path / "folder.onnx") + ": is a folder, not a file" in capsys.readouterr().err


@needs_onnx
def test_an_export_killed_before_its_sidecar_leaves_no_old_sidecar_beside_the_new_model(tmp_path, monkeypatch):
    """FILE.json describes FILE (input name and shape, tags): re-exporting another model to the same FILE
    and being killed between the two writes must not leave the first model's description beside it. The
    file's folder need not exist yet."""
    from bench.tools import export as export_module

    _, vgg = untrained_model(tmp_path / "vgg", "vgg", 251)
    _, musicnn = untrained_model(tmp_path / "musicnn", "musicnn", 187, n_tags=3)
    assert main(["export", str(vgg), "--onnx", str(tmp_path / "new" / "m.onnx"), "--with-frontend"]) == 0
    assert json.loads((tmp_path / "new" / "m.onnx.json").read_text())["input"]["name"] == "waveform"

    def killed(path, data):
        raise KeyboardInterrupt  # SIGKILL after the .onnx is replaced, before the sidecar is

    original = export_module.atomic_write_json
    monkeypatch.setattr(export_module, "atomic_write_json", killed)
    assert main(["export", str(musicnn), "--onnx", str(tmp_path / "new" / "m.onnx")]) != 0
    assert not (tmp_path / "new" / "m.onnx.json").exists()
    monkeypatch.setattr(export_module, "atomic_write_json", original)


@needs_onnx
def test_two_exports_to_one_file_take_turns_so_its_sidecar_describes_it(tmp_path, monkeypatch):
    """Two `bench export` to one --onnx at once: the writes A.onnx, B.onnx, B.json, A.json left MusiCNN's
    model described as VGG's (another input shape, other tags). Each export writes both files holding a
    lock a second one waits for."""
    from bench.core.store import lock_held
    from bench.tools import export as export_module

    _, vgg = untrained_model(tmp_path / "vgg", "vgg", 251)
    target, real, held = tmp_path / "m.onnx", export_module.atomic_write_bytes, []

    def writing(path, data):
        held.append(lock_held(export_module.export_lock(target)))  # another export would wait here
        return real(path, data)

    monkeypatch.setattr(export_module, "atomic_write_bytes", writing)
    assert main(["export", str(vgg), "--onnx", str(target)]) == 0
    assert held == [True] and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@needs_onnx
def test_the_exporters_log_warnings_stay_off_the_console(tmp_path, capfd, monkeypatch):
    """Where torchvision is not installed, torch's exporter logs "torchvision is not installed. Skipping
    torchvision::nms" and three more; torch 2.11 writes them through a handler bound to the stderr of
    torch's import, out of redirect_stderr's reach. Export's output is its one line all the same. The
    handler is set up here as torch 2.11 does, and the warning logged whether torchvision is there or not."""
    import logging
    import sys

    _, folder = untrained_model(tmp_path / "vgg", "vgg", 251)
    real = torch.onnx.export
    # torch 2.11 gives "torch.onnx" (which does not propagate) this handler; 2.14 one that looks
    # sys.stderr up at each record, so that redirect_stderr catches it
    monkeypatch.setattr(logging.getLogger("torch.onnx"), "handlers", [logging.StreamHandler(sys.stderr)])

    def logging_export(*args, **kwargs):
        logging.getLogger("torch.onnx._internal.exporter._registration").warning(
            "torchvision is not installed. Skipping torchvision::nms")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", logging_export)
    assert main(["export", str(folder), "--onnx", str(tmp_path / "v.onnx")]) == 0
    out, err = capfd.readouterr()
    assert "torchvision" not in out + err and out.count("\n") == 1 and "onnxruntime matches PyTorch" in out
    assert logging.getLogger("torch.onnx").level == logging.NOTSET  # left as it was
