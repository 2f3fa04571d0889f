"""The released-model presets, the checkpoint import's refusals and `bench tag` (no TensorFlow needed,
except for the refusal of a real TF checkpoint, which is skipped without it)."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

import architectures
from architectures import InputConfig, planning
from architectures.musicnn import max_over_bands
from bench.cli import main
from bench.core.errors import UserError
from bench.core.store import atomic_write_json
from bench.cost.gmac import count_params
from bench.run.runner import run_dir
from bench.spec import LIMITS, load_spec
from bench.tools import pretrained
from bench.tools.pretrained import state_dict_from_tf, variable_mapping
from bench.tools.tag import run_tag_names

from .conftest import MINIMAL_SPEC

RELEASED_INPUT = InputConfig(sample_rate=16000, n_mels=96, hop_multiplier=1, n_frames=187)


def buffers(model) -> int:
    return sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))


@pytest.mark.parametrize("arch,params,statistics", [("musicnn-787k", 787_159, 4_920), ("vgg-605k", 605_748, 1_282)])
def test_parameter_counts_of_the_released_models(arch, params, statistics):
    # Published with musicnn: 787,159 / 605,748 trainable, plus the BatchNorm moving statistics.
    model = architectures.build(arch, RELEASED_INPUT, 50)
    assert count_params(model) == params
    assert buffers(model) == statistics


def test_musicnn_787k_sizes():
    model = architectures.build("musicnn-787k", RELEASED_INPUT, 50)
    assert [tuple(b[0].kernel_size) for b in model.timbral] == [(38, 7), (67, 7)]  # int(0.4 x 96), int(0.7 x 96)
    assert [b[0].out_channels for b in model.timbral] == [204, 204]
    assert [tuple(b[1].kernel_size) for b in model.temporal] == [(1, 128), (1, 64), (1, 32)]
    assert [b[1].out_channels for b in model.temporal] == [51, 51, 51]
    # TF 'same' for even kernels: the extra zero at the end
    assert [b[0].padding for b in model.temporal] == [(63, 64, 0, 0), (31, 32, 0, 0), (15, 16, 0, 0)]
    assert model.mid[0][0].in_channels == 2 * 204 + 3 * 51
    assert model.back[0].num_features == 2 * (561 + 3 * 64)
    assert (model.input_frames, model.segments) == (187, 1)


def test_musicnn_787k_heights_round_as_the_released_code():
    # The released models.py builds kernel_size=[7, int(0.4 * yInput)] and [7, int(0.7 * yInput)]
    # in floating point: 0.7 x 90 is 62.999... there, so 62 rows, not 63.
    plan = planning.musicnn_787k_plan(16000, 90, 1, 187)
    assert plan.heights == (36, 62)
    assert planning.musicnn_787k_plan(16000, 128, 1, 187).heights == (51, 89)


def test_vgg_605k_pools_to_2_by_1():
    model = architectures.build("vgg-605k", RELEASED_INPUT, 50).eval()
    with torch.no_grad():
        features = model.features(torch.zeros(3, 96, 187))
    assert features.shape == (3, 2, 1, 128)  # TF layout (batch, time, freq, channel), as pool5


@pytest.mark.parametrize("arch", ["musicnn-787k", "vgg-605k"])
@pytest.mark.parametrize("n_mels,frames", [(1, 1), (8, 5), (24, 40), (128, 1820), (96, 187)])
def test_presets_take_any_input(arch, n_mels, frames):
    config = InputConfig(12000, n_mels, 1, frames)
    model = architectures.build(arch, config, 7, width=1 / 16).eval()
    with torch.no_grad():
        y = model(torch.randn(2, n_mels, model.input_frames))
    assert y.shape == (2, 7) and torch.isfinite(y).all()


def test_eval_pools_over_bands_before_relu_and_batchnorm():
    torch.manual_seed(0)
    branch = torch.nn.Sequential(torch.nn.Conv2d(1, 6, (5, 3), padding=(0, 1)), torch.nn.ReLU(),
                                 torch.nn.BatchNorm2d(6, eps=1e-3))
    with torch.no_grad():
        branch[2].weight.copy_(torch.tensor([1.5, -0.7, 0.0, 2.0, -3.0, 0.2]))  # negative scales take the min
        branch[2].bias.normal_()
        branch[2].running_mean.normal_()
        branch[2].running_var.uniform_(0.5, 2)
    x = torch.randn(4, 1, 20, 31)
    branch.eval()
    with torch.no_grad():
        expected = branch(x).amax(dim=2)  # ReLU and BatchNorm on every band, then the max
        # equal up to float32 rounding (on the CPU the convolution's sums run in another order)
        torch.testing.assert_close(max_over_bands(branch, x), expected, rtol=0, atol=1e-5)


def tf_variables(arch, n_tags=50):
    """Zero arrays for every variable a released checkpoint of `arch` holds, in TF's shapes."""
    model = architectures.build(arch, RELEASED_INPUT, n_tags)
    return model, {m.variable: np.zeros(m.tf_shape, np.float32) for m in variable_mapping(model, arch)}


def test_variable_names_follow_the_released_graph():
    _, variables = tf_variables("musicnn-787k")
    assert variables["conv2d/kernel"].shape == (7, 38, 1, 204)  # first timbral filter, (time, freq, in, out)
    assert variables["conv2d_2/kernel"].shape == (128, 1, 1, 51)  # first temporal filter
    assert variables["conv2d_5/kernel"].shape == (7, 561, 1, 64)  # first mid-end layer
    assert variables["batch_normalization_9/gamma"].shape == (1506,)
    assert variables["dense_1/kernel"].shape == (200, 50)
    _, variables = tf_variables("vgg-605k")
    assert variables["1CNN/kernel"].shape == (3, 3, 1, 128) and variables["dense/kernel"].shape == (256, 50)


def test_kernels_are_transposed_into_torch_layout():
    model, variables = tf_variables("musicnn-787k")
    kernel = np.random.default_rng(0).standard_normal((7, 38, 1, 204)).astype(np.float32)
    variables["conv2d/kernel"] = kernel
    state = state_dict_from_tf(model, "musicnn-787k", variables, "test")
    # torch (out, in, freq, time) against TF (time, freq, in, out)
    assert state["timbral.0.0.weight"][5, 0, 11, 2] == kernel[2, 11, 0, 5]


@pytest.mark.parametrize("change,message", [
    (lambda v: v.pop("conv2d_3/kernel"), "variable 'conv2d_3/kernel' is missing (expected shape [64, 1, 1, 51]"),
    (lambda v: v.update({"dense/kernel": np.zeros((1500, 200), np.float32)}),
     "variable 'dense/kernel' has shape [1500, 200], expected [1506, 200]"),
    (lambda v: v.update({"conv2d_8/kernel": np.zeros(3, np.float32)}), "unexpected variable(s) 'conv2d_8/kernel'"),
])
def test_missing_misshaped_or_extra_variables_are_refused(change, message):
    model, variables = tf_variables("musicnn-787k")
    change(variables)
    with pytest.raises(UserError, match="MTT_musicnn") as info:
        state_dict_from_tf(model, "musicnn-787k", variables, "MTT_musicnn")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None and os.environ.get("BENCH_REQUIRE_MUSICNN") != "1",
                    reason="tensorflow is not installed (the optional extra mel-resolution-bench[musicnn])")
def test_import_refuses_a_tf_checkpoint_with_a_misshaped_variable(tmp_path, capsys):
    _, variables = tf_variables("vgg-605k")
    variables["3CNN/kernel"] = np.zeros((3, 3, 128, 64), np.float32)
    package = tmp_path / "musicnn"
    (package / "MTT_vgg").mkdir(parents=True)
    (package / "configuration.py").write_text(f"MTT_LABELS = {[f't{i}' for i in range(50)]!r}\n")
    np.savez(tmp_path / "variables.npz", **variables)
    writer = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        tf.compat.v1.disable_eager_execution()
        data = np.load({str(tmp_path / 'variables.npz')!r})
        for name in data.files:
            tf.compat.v1.Variable(data[name], name=name)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, {str(package / 'MTT_vgg') + '/'!r}, write_meta_graph=False)
    """)
    subprocess.run([sys.executable, "-c", writer], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    status = main(["import", "musicnn", "--from", str(package), "--model", "MTT_vgg", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("bench import: error: MTT_vgg") and "\n" not in err
    assert "variable '3CNN/kernel' has shape [3, 3, 128, 64], expected [3, 3, 128, 128]" in err
    assert not (tmp_path / "m").exists()


class _Distribution:
    """importlib.metadata's view of an installed musicnn whose licence sits under dist-info/licenses/
    (where setuptools >= 80 puts it), not at the top of dist-info."""

    def __init__(self, root):
        from importlib.metadata import PackagePath
        self.root = root
        self.files = [PackagePath("musicnn/__init__.py"), PackagePath("musicnn-0.1.0.dist-info/licenses/LICENSE.md")]
        for file in self.files:
            file.dist = self

    def locate_file(self, path):
        return self.root / path

    def read_text(self, name):
        return None  # no LICENSE.md at the top of dist-info


def test_the_isc_licence_goes_with_the_weights_wherever_the_package_keeps_it(tmp_path, monkeypatch):
    from importlib.metadata import PackageNotFoundError
    clone = tmp_path / "clone"
    (clone / "musicnn").mkdir(parents=True)
    (clone / "LICENSE.md").write_text("the clone's licence\n")
    monkeypatch.setattr("importlib.metadata.distribution", lambda name: _Distribution(tmp_path / "site"))
    assert pretrained._licence_text(clone / "musicnn", installed=False) == "the clone's licence\n"
    # installed: site-packages/LICENSE.md belongs to some other package; dist-info/licenses/ is musicnn's
    site = tmp_path / "site"
    (site / "musicnn-0.1.0.dist-info" / "licenses").mkdir(parents=True)
    (site / "musicnn-0.1.0.dist-info" / "licenses" / "LICENSE.md").write_text("musicnn's licence\n")
    (site / "musicnn").mkdir()
    (site / "LICENSE.md").write_text("another package's licence\n")
    assert pretrained._licence_text(site / "musicnn", installed=True) == "musicnn's licence\n"

    def missing(name):
        raise PackageNotFoundError(name)
    monkeypatch.setattr("importlib.metadata.distribution", missing)
    notice = pretrained._licence_text(tmp_path / "bare", installed=False)
    # musicnn 0.1.0's LICENSE.md: ISC, the copyright of the Music Technology Group, UPF, 2019
    assert notice.startswith("Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019.")
    assert ("Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee "
            "is hereby granted, provided that the above copyright notice and this permission notice appear in all "
            "copies.") in notice.splitlines()


def test_import_without_checkpoint_files_is_a_user_error(tmp_path, capsys):
    package = tmp_path / "musicnn"
    package.mkdir()
    status = main(["import", "musicnn", "--from", str(package), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "configuration.py: missing" in err, err
    (package / "configuration.py").write_text("MTT_LABELS = ['a', 'b']\n")
    status = main(["import", "musicnn", "--from", str(package), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "MTT_musicnn/.index: missing" in err, err


# ------------------------------------------------------------------------------------------------
# bench tag with a run folder of our own (an untrained network: what is checked is the pipeline)


RUN_SPEC = (MINIMAL_SPEC
            .replace('name = "synthetic"', 'name = "synthetic"\nclip_seconds = 8.0\n[arch.musicnn]\nwidth = 0.0625')
            .replace('["vgg"]', '["musicnn"]').replace("[12000]", "[16000]").replace("[96]", "[24]"))
"""MusiCNN at width 1/16, 16 kHz, 24 bands, 8 s clips."""


@pytest.fixture
def run_folder(tmp_path, write_spec):
    """A run folder as the runner writes it (config.json, best.pt, result.json), of an untrained network."""
    spec = load_spec(write_spec(RUN_SPEC))
    run = spec.runs()[0]
    folder = run_dir(tmp_path / "results", spec, run)
    folder.mkdir(parents=True)
    atomic_write_json(folder / "config.json", {"run_id": run.run_id, "spec": spec.name, **run.canonical()})
    torch.manual_seed(0)
    model = architectures.build("musicnn", InputConfig(16000, 24, 1, 501), 3, width=0.0625)
    torch.save({"epoch": 1, "model": model.state_dict()}, folder / "best.pt")
    atomic_write_json(folder / "result.json", {"run_id": run.run_id, "status": "ok", "config": run.canonical(),
                                               "metrics": {"roc_auc": 0.5, "pr_auc": 0.5}, "cost": {"best_epoch": 1},
                                               "tag_names": ["drums", "piano", "voice"]})
    return folder


@pytest.mark.parametrize("field,value", [("sample_rate", 10**400), ("hop_multiplier", 10**30), ("n_mels", 0),
                                         ("sample_rate", 16000.0)])
def test_a_run_config_without_model_json_whose_front_end_no_spec_allows_is_one_line(run_folder, tmp_path, capsys,
                                                                                   field, value):
    """A run finished before runs wrote model.json is tagged from its config.json, whose front end is now
    held to a spec's ranges as model.json's is: a rate of 10**400 ended bench tag in an OverflowError, a
    hop of 256 x 10**30 in torch.stft's."""
    config = json.loads((run_folder / "config.json").read_text())
    config[field] = value
    (run_folder / "config.json").write_text(json.dumps(config))
    assert main(["tag", write_audio(tmp_path / "song.wav", 2.0), "--model", str(run_folder)]) == 2
    assert capsys.readouterr().err == (f"bench tag: error: {run_folder / 'config.json'}: {field} = {value!r}; "
                                       f"expected an integer above 0, at most {LIMITS[field][1]:,g}\n")


def test_a_run_config_without_model_json_from_when_specs_took_clips_under_1_s_still_tags(run_folder, tmp_path,
                                                                                        capsys):
    """Such runs come from versions whose specs allowed a clip under a second, which later specs refuse:
    their config.json is still tagged from."""
    config = json.loads((run_folder / "config.json").read_text())
    config["dataset"]["clip_seconds"] = 0.9
    (run_folder / "config.json").write_text(json.dumps(config))
    assert main(["tag", write_audio(tmp_path / "song.wav", 2.0), "--model", str(run_folder)]) == 0


def test_weights_trained_before_the_vgg_rule_padded_are_refused(tmp_path, write_spec, capsys):
    """A VGG-CNN on 8 s clips at 16 kHz (501 frames: the rule pools time, padding 3, 4 and 6 frames).
    Its weights load into either network, shape for shape; a run whose records carry no padding was
    trained by the version that dropped the remainders, and is refused rather than silently run as the
    other network. With its padding recorded, as the runner now writes it, it loads."""
    from bench.train.model_file import frontend_settings, model_description, write_model_json

    spec = load_spec(write_spec(RUN_SPEC.replace('["musicnn"]', '["vgg"]').replace("[arch.musicnn]", "[arch.vgg]")))
    (run,) = spec.runs()
    assert run.pool_padding() == {"freq": [0, 0, 0, 0], "time": [3, 4, 6, 0]}
    input_config = InputConfig(16000, 24, 1, 501)
    model = architectures.build("vgg", input_config, 3, width=0.0625)
    for name, recorded in (("legacy", None), ("described", None), ("padded", run.pool_padding())):
        folder = tmp_path / name
        folder.mkdir()
        canonical = {k: v for k, v in run.canonical().items() if k != "pool_padding" or recorded}
        atomic_write_json(folder / "config.json", {"run_id": run.run_id, **canonical})
        torch.save({"epoch": 1, "model": model.state_dict()}, folder / "best.pt")
        atomic_write_json(folder / "result.json", {"run_id": run.run_id, "status": "ok", "config": canonical,
                                                   "metrics": {"roc_auc": 0.5, "pr_auc": 0.5}, "cost": {},
                                                   "tag_names": ["drums", "piano", "voice"]})
        if name != "legacy":  # a run written since runs write model.json (as this version writes it, or before)
            description = model_description(
                run.run_id, "vgg", {"width": 0.0625}, input_config, 501, frontend_settings(16000, 24, 1, "log"),
                ["drums", "piano", "voice"], weights="best.pt", weights_key="model")
            assert description["pool_padding"] == run.pool_padding()
            write_model_json(folder, description if recorded else
                             {k: v for k, v in description.items() if k != "pool_padding"})
    audio = write_audio(tmp_path / "song.wav", 9.0)
    for name in ("legacy", "described"):
        assert main(["tag", audio, "--model", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"bench tag: error: {tmp_path / name}: trained by an earlier version whose VGG-CNN pools "
                              "dropped the frames or bands they did not divide") and err.count("\n") == 1
    assert main(["tag", audio, "--model", str(tmp_path / "padded")]) == 0


def write_audio(path, seconds, rate=22050, channels=2):
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, np.stack([tone] * channels, axis=1), rate)
    return str(path)


@pytest.mark.parametrize(("field", "value"), [("name", "../../outside"), ("name", 5), ("name", ""),
                                            ("weights", 5), ("weights", None), ("weights_key", ["model"]),
                                            ("patch_frames", 0), ("patch_frames", 10**12),  # 9 PiB a file
                                            ("tags", "abc"), ("tags", []),
                                            ("frontend.pad_mode", "wrap")])
def test_a_model_json_field_of_the_wrong_type_is_one_line(run_folder, tmp_path, capsys, field, value):
    """model.json is read by one loader (tag, embed, export, transfer), which promised "not a model
    description" for what it cannot use; these fields gave a TypeError, a ZeroDivisionError or torch's
    NotImplementedError, and tags = "abc" was three tags named a, b and c. The name names the model's
    result files (`bench transfer`'s <name>.json): "../../outside" would write one outside its folder."""
    from bench.train.model_file import frontend_settings, model_description, write_model_json

    description = model_description("mine", "musicnn", {"width": 0.0625}, InputConfig(16000, 24, 1, 501), 501,
                                    frontend_settings(16000, 24, 1, "log"), ["drums", "piano", "voice"],
                                    weights="best.pt", weights_key="model")
    where, name = (description["frontend"], "pad_mode") if field.startswith("frontend.") else (description, field)
    where[name] = value
    write_model_json(run_folder, description)
    assert main(["tag", write_audio(tmp_path / "song.wav", 2.0), "--model", str(run_folder)]) == 2
    assert capsys.readouterr().err == (f"bench tag: error: {run_folder / 'model.json'}: not a model description "
                                       f"(ValueError: {field} = {value!r})\n")


@pytest.mark.parametrize(("field", "value", "built"), [("n_mels", 96, 24), ("sample_rate", 8000, 16000),
                                                     ("hop_length", 512, 256)])
def test_a_model_json_whose_front_end_is_not_its_networks_input_is_one_line(run_folder, tmp_path, capsys, field,
                                                                            value, built):
    """The network is built from `input`, the mel computed from `frontend`: 96 bands into a network of 24
    ended `bench tag` in a traceback (and `bench embed` wrote embeddings of a wrong network, exit 0), and a
    front end at 8 kHz tagged a network of 16 kHz without a word."""
    from bench.train.model_file import frontend_settings, model_description, write_model_json

    description = model_description("mine", "musicnn", {"width": 0.0625}, InputConfig(16000, 24, 1, 501), 501,
                                    frontend_settings(16000, 24, 1, "log"), ["drums", "piano", "voice"],
                                    weights="best.pt", weights_key="model")
    description["frontend"][field] = value
    write_model_json(run_folder, description)
    song = write_audio(tmp_path / "song.wav", 2.0)
    for command in (["tag", song, "--model", str(run_folder)], ["embed", str(run_folder), song, "--out",
                                                                  str(tmp_path / "emb"), "-q"]):
        assert main(command) == 2
        assert capsys.readouterr().err == (
            f"bench {command[0]}: error: {run_folder / 'model.json'}: not a model description "
            f"(ValueError: frontend.{field} = {value!r}, where the network's input has {built!r})\n")


def test_file_names_that_are_not_utf8_or_hold_dollars_are_tagged_drawn_and_embedded(run_folder, tmp_path, capsys):
    """A Latin-1 name ("café", as old archives have them) stopped `bench tag --png` (matplotlib cannot draw
    a lone surrogate) and `bench embed` (index.csv encoded as strict UTF-8: every rerun failed again); a
    `$` pair in a name ("Ke$ha_$") was read as TeX by the taggram's title: a traceback, or math italics."""
    latin = str(tmp_path / os.fsdecode(b"caf\xe9.wav"))
    os.rename(write_audio(tmp_path / "cafe.wav", 1.5, channels=1), latin)  # soundfile writes UTF-8 names only
    dollars = write_audio(tmp_path / "Ke$ha_$.wav", 1.5, channels=1)
    assert main(["tag", latin, dollars, "--model", str(run_folder), "--png", str(tmp_path / "t.png")]) == 0
    assert "caf\\xe9.wav: " in capsys.readouterr().out  # printed: a UTF-8 stdout takes no lone surrogate
    drawn = sorted(path.name for path in tmp_path.glob("t-*.png"))
    assert drawn == sorted([f"t-{os.fsdecode(b'caf' + bytes([0xe9]))}.png", "t-Ke$ha_$.png"])
    assert main(["embed", str(run_folder), latin, dollars, "--out", str(tmp_path / "emb"), "-q"]) == 0
    index = (tmp_path / "emb" / "index.csv").read_bytes().splitlines()
    assert [row.split(b",")[1] for row in index[1:]] == [os.fsencode(latin), os.fsencode(dollars)]
    capsys.readouterr()


def test_tags_holding_dollars_are_drawn_in_a_taggram(tmp_path):
    """A tag "money $$" (a manifest's) had ended `bench tag --png` in matplotlib's formula ValueError, before
    any score was printed."""
    from bench.tools.tag import save_taggram_png

    save_taggram_png(tmp_path / "t.png", np.full((4, 3), 0.5), ["money $$", "a$_$b", "$uicideboy$"], 3.0, "song.wav")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tagging_with_weights_whose_bytes_changed_is_one_line(run_folder, tmp_path, capsys):
    """best.pt with one weight's bytes changed (size and zip structure intact) loaded, and `bench tag`
    tagged with weights the run never trained: torch's reader does not check the archive's CRC-32s."""
    data = bytearray((run_folder / "best.pt").read_bytes())
    weights = torch.load(run_folder / "best.pt", weights_only=True)["model"]
    largest = max(weights.values(), key=lambda t: t.numel())
    data[data.index(largest.numpy().tobytes()) + 101] ^= 0x01
    (run_folder / "best.pt").write_bytes(bytes(data))
    assert main(["tag", write_audio(tmp_path / "song.wav", 4.0), "--model", str(run_folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bench tag: error: {run_folder / 'best.pt'}: cannot load the weights (") and \
        "does not match its CRC-32" in err and err.count("\n") == 1


def test_a_tag_holding_a_comma_is_printed_as_one(run_folder, tmp_path, capsys):
    """`bench tag` printed "a.wav: rock, pop (0.491), folk (0.494)": four tags to a reader, of three."""
    result = json.loads((run_folder / "result.json").read_text())
    result["tag_names"] = ["rock, pop", "folk", "jazz"]
    atomic_write_json(run_folder / "result.json", result)
    assert main(["tag", write_audio(tmp_path / "a.wav", 4.0), "--model", str(run_folder), "--top", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{tmp_path / 'a.wav'}: ") and '"rock, pop" (0.' in line
    assert sorted(re.findall(r'("[^"]+"|[a-z]+) \(0\.\d{3}\)', line)) == ['"rock, pop"', "folk", "jazz"]


def test_tag_lines_show_a_names_escape_sequence_and_newline_not_act_on_them(run_folder, tmp_path, capsys):
    """A manifest dataset's tag text and a file's name reach the terminal: `bench tag` printed them raw,
    so an escape sequence cleared the screen or coloured the line, and a newline split one file's line."""
    result = json.loads((run_folder / "result.json").read_text())
    result["tag_names"] = ["gui\x1b[31mtar", "new\nline", "ja\ud800zz"]  # JSON's "\ud800": a lone surrogate
    atomic_write_json(run_folder / "result.json", result)
    song = write_audio(tmp_path / "a\x1b[2Jb.wav", 4.0)
    assert main(["tag", song, "--model", str(run_folder), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.count("\n") == 1
    assert out.startswith(str(tmp_path / "a\\x1b[2Jb.wav") + ": ")
    assert "gui\\x1b[31mtar (0." in out and "new\\nline (0." in out and "ja\\ud800zz (0." in out


def test_tag_a_run_folder_json_and_png(run_folder, tmp_path, capsys):
    long, short = write_audio(tmp_path / "long.wav", 10.0), write_audio(tmp_path / "short.wav", 1.5, channels=1)
    status = main(["tag", long, short, "--model", str(run_folder), "--json", "--top", "2",
                   "--png", str(tmp_path / "taggram.png")])
    out, err = capsys.readouterr()
    assert status == 0
    results = json.loads(out)
    assert [r["file"] for r in results] == [long, short]
    assert [r["patches"] for r in results] == [3, 1]  # 626 frames // 187; a short file is padded to one patch
    assert results[0]["seconds"] == pytest.approx(10.0, abs=1e-3)
    assert results[1]["seconds"] == pytest.approx(1.5, abs=1e-3)
    for result in results:  # the top tags are the highest scores, highest first
        scores = result["scores"]
        assert set(scores) == {"drums", "piano", "voice"} and all(0 <= v <= 1 for v in scores.values())
        assert [t["tag"] for t in result["top"]] == sorted(scores, key=scores.get, reverse=True)[:2]
    assert "s end to end" in err
    for name in ("taggram-long.png", "taggram-short.png"):  # one taggram per file, as PNG
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tag_refuses_text_and_a_half_second_file_in_one_line_each_before_the_model_loads(run_folder, tmp_path,
                                                                                          capfd, monkeypatch):
    (tmp_path / "notes.mp3").write_bytes(b"not audio at all" * 100)  # mpg123 writes "Note: ..." lines to fd 2
    tiny = write_audio(tmp_path / "tiny.wav", 0.5)
    monkeypatch.setattr("bench.tools.tag.load_folder", lambda *a: pytest.fail("the model loaded with nothing to tag"))
    assert main(["tag", str(tmp_path / "notes.mp3"), tiny, "--model", str(run_folder)]) == 2
    out, err = capfd.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"bench tag: error: {tmp_path / 'notes.mp3'}: undecodable (not audio in a format libsndfile reads: "
        "wav, flac, ogg, mp3, ...)",
        f"bench tag: error: {tiny}: too short (0.50 s < 1.0 s)"]


def test_a_file_name_with_a_line_break_stays_on_its_one_error_line(run_folder, tmp_path, capfd, monkeypatch):
    """A name may hold a line break (or an escape sequence): the error about it is still one line, the
    break written as `\\n`, as printable names are elsewhere."""
    (tmp_path / "new\nline.mp3").write_bytes(b"not audio at all" * 100)
    monkeypatch.setattr("bench.tools.tag.load_folder", lambda *a: pytest.fail("the model loaded with nothing to tag"))
    assert main(["tag", str(tmp_path / "new\nline.mp3"), "--model", str(run_folder)]) == 2
    assert capfd.readouterr().err.splitlines() == [
        f"bench tag: error: {tmp_path}/new\\nline.mp3: undecodable (not audio in a format libsndfile reads: "
        "wav, flac, ogg, mp3, ...)"]


def test_tag_reports_a_bad_file_in_one_line_and_tags_the_rest(run_folder, tmp_path, capsys):
    good = write_audio(tmp_path / "good.wav", 4.0)
    (tmp_path / "bad.mp3").write_bytes(b"not audio at all" * 100)
    status = main(["tag", str(tmp_path / "bad.mp3"), good, str(tmp_path / "missing.wav"), "--model", str(run_folder)])
    out, err = capsys.readouterr()
    assert status == 2
    assert out.startswith(f"{good}: ")
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 2 and "bad.mp3: undecodable" in errors[0] and "missing.wav: missing file" in errors[1]


def test_tag_refuses_a_float_file_of_integer_scaled_samples_as_the_cache_does(run_folder, tmp_path, capsys):
    """16-bit values written as floats (peaks near 32767, not 1): the cache skips such a clip, and the
    network would score its clipped, 90 dB too loud mel as noise, so `bench tag` refuses it too."""
    rate = 22050
    t = np.arange(4 * rate) / rate
    sf.write(tmp_path / "scaled.wav", 20000 * np.sin(2 * np.pi * 440 * t), rate, subtype="FLOAT")
    status = main(["tag", str(tmp_path / "scaled.wav"), "--model", str(run_folder)])
    err = capsys.readouterr().err
    assert status == 2 and "scaled.wav: samples out of range (peak 20000 > 16" in err


def test_a_run_folder_copied_under_another_name_is_still_that_run(run_folder, tmp_path, capsys):
    """`cp -r runs/<run_id> my_tagger`: the folder's name no longer is the run id, its config.json says it."""
    audio = write_audio(tmp_path / "a.wav", 2.0)
    assert main(["tag", audio, "--model", str(run_folder), "--json"]) == 0
    original = json.loads(capsys.readouterr().out)
    copy = tmp_path / "my tagger"
    shutil.copytree(run_folder, copy)
    assert main(["tag", audio, "--model", str(copy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["scores"] == original[0]["scores"]
    (copy / "config.json").write_text(json.dumps({"run_id": "another-run"}))  # the files disagree: refused
    assert main(["tag", audio, "--model", str(copy)]) == 2
    assert "not a finished run (run_id" in capsys.readouterr().err


def test_tag_refuses_a_run_folder_without_a_valid_result(run_folder, tmp_path, capsys):
    (run_folder / "result.json").write_text('{"status": "ok"')  # truncated by a kill
    status = main(["tag", write_audio(tmp_path / "a.wav", 2.0), "--model", str(run_folder)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "not a finished run (not valid JSON" in err and "\n" not in err


@pytest.mark.parametrize("fault,message", [
    ("weights of another network", "best.pt: does not fit"),
    ("an option this version does not know", "config.json: not a network this version builds (TypeError"),
    ("an architecture this version does not know", "config.json: not a network this version builds (Unknown"),
])
def test_a_run_without_model_json_that_this_version_cannot_build_is_one_line(run_folder, tmp_path, capsys,
                                                                             fault, message):
    """A run finished before runs wrote model.json is built from its config.json: what does not fit is
    one line and exit status 2, as for a run with model.json (`load_model`), not a traceback."""
    config = json.loads((run_folder / "config.json").read_text())
    if fault == "weights of another network":
        vgg = architectures.build("vgg", InputConfig(16000, 24, 1, 501), 3, width=0.0625)
        torch.save({"epoch": 1, "model": vgg.state_dict()}, run_folder / "best.pt")
    elif fault == "an option this version does not know":
        atomic_write_json(run_folder / "config.json", {**config, "options": {**config["options"], "dropout": 0.5}})
    else:
        atomic_write_json(run_folder / "config.json", {**config, "arch": "transformer"})
    status = main(["tag", write_audio(tmp_path / "a.wav", 2.0), "--model", str(run_folder)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and message in err and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("model,message", [
    ("MTT_musicnn", "no imported MTT_musicnn (run `bench import musicnn` first"),
    ("nonsense", "--model nonsense: neither an imported model"),
])
def test_tag_with_an_unknown_or_unimported_model_exits_2(tmp_path, capsys, model, message):
    status = main(["tag", write_audio(tmp_path / "a.wav", 2.0), "--model", model, "--models", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and message in err and "\n" not in err


def test_macs_of_the_released_models_by_hand():
    musicnn = architectures.build("musicnn-787k", RELEASED_INPUT, 50)
    timbral = 59 * 187 * 38 * 7 * 204 + 30 * 187 * 67 * 7 * 204  # valid in frequency: 96-38+1, 96-67+1
    temporal = 96 * 187 * (128 + 64 + 32) * 51  # on every band
    mid = 187 * 7 * (561 * 64 + 64 * 64 + 64 * 64)
    assert musicnn.analytic_macs() == timbral + temporal + mid + 1506 * 200 + 200 * 50
    vgg = architectures.build("vgg-605k", RELEASED_INPUT, 50)
    sizes = [(96, 187), (48, 92), (24, 46), (12, 23), (6, 11)]  # before each conv; pool5 gives 1 x 2
    convs = sum(f * t * c_in * 128 * 9 for (f, t), c_in in zip(sizes, [1, 128, 128, 128, 128], strict=True))
    assert vgg.analytic_macs() == convs + 2 * 128 * 50


def test_presets_in_a_spec(capsys, write_spec):
    spec = write_spec("""
        name = "released"
        seeds = [0]
        [dataset]
        name = "mtat"  # 50 tags, as the released models
        [[grid]]
        arch = ["musicnn-787k", "vgg-605k"]
        sample_rate = [16000]
        n_mels = [96, 48]
        hop_multiplier = [1]
        log = ["log"]
    """)
    assert main(["plan", str(spec), "--format", "json", "--no-fvcore"]) == 0
    rows = {(r["arch"], r["n_mels"]): r for r in json.loads(capsys.readouterr().out)["configurations"]}
    assert rows[("musicnn-787k", 96)]["params"] == 787_159 and rows[("vgg-605k", 96)]["params"] == 605_748
    assert rows[("musicnn-787k", 96)]["filter_heights"] == "38-67"
    assert rows[("musicnn-787k", 48)]["filter_heights"] == "19-33"
    assert rows[("vgg-605k", 96)]["segments"] == 9  # 1820 frames of a 29.1 s clip // 187


def test_tag_names_of_runs_written_before_they_were_stored():
    per_tag = {"b": {}, "a": {}, "c": {}}  # in output order, as the metrics write them
    assert run_tag_names({"metrics": {"per_tag": per_tag, "excluded_tags": []}}, 3) == ["b", "a", "c"]
    # with an excluded tag the order cannot be known
    assert run_tag_names({"metrics": {"per_tag": per_tag, "excluded_tags": ["d"]}}, 4) == [f"tag_{i}" for i in range(4)]
    assert run_tag_names(None, 2) == ["tag_0", "tag_1"]


def test_a_taggram_on_several_threads_equals_one_and_restores_torchs_threads(run_folder):
    """Batches of patches on worker threads, each single-threaded: the same scores as one pass, and
    torch's own thread count as it was."""
    from bench.tools.tag import load_folder, resolve_model, taggram

    tagger = load_folder(*resolve_model(str(run_folder)))
    waveform = np.random.default_rng(0).standard_normal(16000 * 8).astype(np.float32) * 0.1
    threads = torch.get_num_threads()
    alone = taggram(tagger, waveform, batch=1, workers=1)
    shared = taggram(tagger, waveform, batch=1, workers=2)
    assert alone.shape[0] >= 2 and np.allclose(shared, alone, atol=1e-6)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("seconds", [4.0, 2.0])
@pytest.mark.parametrize("described", ["model.json", "model.json written before float16_waveform", "no model.json"])
def test_a_dB_run_tags_a_clip_as_its_evaluation_scored_it(tmp_path, described, seconds):
    """A run trains and is evaluated on its waveform cache's float16 samples (float16 rounding noise sits
    about 66 dB under each sample). Fed the same clip's float32 samples, a dB run's quietest mel bands
    fell to the -100 dB floor instead of that noise, and `bench tag` scored the clip otherwise than the
    run's evaluation did. Each way a run folder describes itself gives the evaluation's scores. A file
    shorter than the run's 4 s clips (2 s) is zero-padded, as the cache pads a short file: its mel was
    padded with its minimum, -84 dB where the padded silence is -100."""
    import soundfile

    from bench.tools.tag import load_tagger, taggram
    from bench.train.frontend import MelFrontend
    from bench.train.model_file import frontend_settings, model_description, write_model_json

    input_config = InputConfig(16000, 24, 1, 251)  # 4 s clips: 64,000 samples, one patch
    torch.manual_seed(0)
    model = architectures.build("vgg", input_config, 3, width=0.0625).eval()
    folder = tmp_path / "run"
    folder.mkdir()
    config = {"run_id": "vgg-16k-24mel-x1-dB-s0-0123456789", "arch": "vgg", "options": {"width": 0.0625},
              "sample_rate": 16000, "n_mels": 24, "hop_multiplier": 1, "log": "dB", "dataset": {"clip_seconds": 4.0},
              "pool_padding": architectures.pool_padding("vgg", input_config, width=0.0625)}
    atomic_write_json(folder / "config.json", config)
    torch.save({"epoch": 1, "model": model.state_dict()}, folder / "best.pt")
    atomic_write_json(folder / "result.json", {"run_id": config["run_id"], "status": "ok", "config": config,
                                               "metrics": {"roc_auc": 0.5, "pr_auc": 0.5}, "cost": {"best_epoch": 1},
                                               "tag_names": ["a", "b", "c"]})
    if described != "no model.json":
        frontend = frontend_settings(16000, 24, 1, "dB")
        if described != "model.json":
            del frontend["float16_waveform"]
        write_model_json(folder, model_description(config["run_id"], "vgg", {"width": 0.0625}, input_config, 251,
                                                   frontend, ["a", "b", "c"], weights="best.pt", weights_key="model"))
    t = np.arange(int(seconds * 16000)) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # nothing but one tone: quiet upper bands
    soundfile.write(tmp_path / "clip.wav", clip, 16000, subtype="FLOAT")  # read back as these samples
    clip = np.pad(clip, (0, 64000 - len(clip)))  # the cache's clip: zero-padded to 4 s

    def scores(samples: np.ndarray) -> np.ndarray:  # the run's evaluation: its front end on the batch given
        with torch.inference_mode():
            mel = MelFrontend(16000, 24, 1, "dB")(torch.from_numpy(samples)[None].float())
            return torch.sigmoid(model(mel))[0].numpy()

    evaluated = scores(clip.astype(np.float16))  # as the cache holds the clip
    assert np.abs(scores(clip) - evaluated).max() > 1e-3  # the rounding matters to this run
    tagger = load_tagger(str(folder))
    assert tagger.frontend.float16_waveform
    from bench.data.audio import decode_file

    tagged = taggram(tagger, decode_file(tmp_path / "clip.wav", 16000)).mean(axis=0)
    np.testing.assert_allclose(tagged, evaluated, atol=1e-6)


def test_a_folder_named_after_an_imported_model_that_holds_no_model_does_not_hide_it(tmp_path, monkeypatch):
    """`bench embed MTT_musicnn song.wav --out MTT_musicnn` (one --out per model, as the docs advise) made
    a folder of that name in the working directory: every later `bench tag`, `embed` or `transfer` of
    MTT_musicnn there took the folder for the model and stopped."""
    from pathlib import Path

    from bench.tools.tag import MODEL_JSON, resolve_model

    models = tmp_path / "models"
    (models / "MTT_musicnn").mkdir(parents=True)
    (models / "MTT_musicnn" / MODEL_JSON).write_text("{}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "MTT_musicnn").mkdir()
    (tmp_path / "MTT_musicnn" / "embeddings.csv").write_text("path\n")
    assert resolve_model("MTT_musicnn", str(models)) == ("model", models / "MTT_musicnn")
    (tmp_path / "MTT_musicnn" / MODEL_JSON).write_text("{}")  # a model there is the one named
    assert resolve_model("MTT_musicnn", str(models)) == ("model", Path("MTT_musicnn"))


def test_a_whole_file_is_held_once_at_the_models_rate_while_it_is_decoded(tmp_path):
    """`bench tag` decodes a whole track (an hour is 230 MB at 16 kHz): its blocks were joined by
    np.concatenate, which held them and their join at once, twice the track's samples (an hour-long file
    took 2.2 GB where the docs said 1.1). The samples are now written into one array as they come; the
    peak of what numpy allocates (tracemalloc, not timing) stays near the result's size. A file longer
    than its header says grows the array as it is read, the same samples."""
    import tracemalloc

    from bench.data.audio import _Samples, decode_file

    rate, t = 44100, np.arange(44100 * 120) / 44100
    sf.write(tmp_path / "two.wav", np.stack([0.1 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1), rate)
    tracemalloc.start()
    try:
        samples = decode_file(str(tmp_path / "two.wav"), 16000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert samples.shape == (16000 * 120,)
    assert peak < 1.5 * samples.nbytes  # measured 1.21x; 2.10x with np.concatenate
    blocks = [np.arange(n, dtype=np.float32) for n in (3, 5, 0, 9)]
    grown = _Samples(4)
    for block in blocks:
        grown.add(block)
    np.testing.assert_array_equal(grown.joined(), np.concatenate(blocks))
