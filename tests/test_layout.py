"""The results contract (bench.core.layout) and the one model loader (bench.train.model_file)."""

import json

import numpy as np
import pytest
import torch

import architectures
from architectures import InputConfig
from bench.core import layout
from bench.spec import load_spec
from bench.tools.tag import load_folder, resolve_model, taggram
from bench.train.model_file import frontend_settings, model_description, write_model_json

from .conftest import ROOT
from .test_pretrained import run_folder  # noqa: F401 - the fixture

DEMO6 = ROOT / "tests" / "data" / "demo6.toml"

DEMO_REFERENCE = "vgg-16k-96mel-x1-log-s0-179c0daded"
"""The reference run of the earlier demo (tests/data/demo6.toml), whose rule-planned time pools pad
its 8 s clips (test_width_axis: its id before they did was ...-f89d7cb291)."""


def test_run_ids_are_formatted_and_parsed_by_the_layout():
    run = load_spec(DEMO6).runs()[0]
    assert run.run_id == DEMO_REFERENCE
    assert layout.parse_run_id(DEMO_REFERENCE) == {"arch": "vgg", "sample_rate": 16000, "n_mels": 96,
                                                   "hop_multiplier": 1, "log": "log", "seed": 0}
    assert layout.parse_run_id("musicnn-787k-12k-48mel-x10-dB-s2-0123456789")["arch"] == "musicnn-787k"
    assert layout.format_run_id("vgg", 22050, 8, 3, "dB", 7, "ab" * 32) == "vgg-22050-8mel-x3-dB-s7-ababababab"
    assert layout.parse_run_id("not-a-run") is None


def test_schema_version_is_written_and_checked(tmp_path):
    ok = {"run_id": "r", "status": "ok", "config": {}, "cost": {}, "metrics": {"roc_auc": 0.9, "pr_auc": 0.5}}
    assert layout.result_problem(ok, "r") is None  # written before schema_version existed: version 0
    assert layout.result_problem({**ok, "schema_version": layout.SCHEMA_VERSION}, "r") is None
    assert "schema_version 2" in layout.result_problem({**ok, "schema_version": 2}, "r")
    assert "schema_version True" in layout.result_problem({**ok, "schema_version": True}, "r")


def test_a_result_whose_macro_auc_rounded_above_one_is_done_and_one_past_rounding_is_not():
    """A macro average of average precisions that scikit-learn summed to 1 + 2**-52 each is above 1 by as
    much: the run is done (else the grid would redo it on every start), 1.01 is no AUC."""
    ok = {"run_id": "r", "status": "ok", "config": {}, "cost": {}, "metrics": {"roc_auc": 0.9, "pr_auc": 1 + 2 ** -52}}
    assert layout.result_problem(ok, "r") is None
    assert layout.result_problem({**ok, "metrics": {"roc_auc": 0.9, "pr_auc": 1.01}}, "r") == "metrics.pr_auc is 1.01"


def test_a_run_with_model_json_loads_like_an_imported_model_and_like_before(run_folder, tmp_path):  # noqa: F811
    """The fixture is a run folder as older versions wrote it (no model.json); with the model.json a run
    writes now, the same weights load through the one loader and tag identically."""
    waveform = np.random.default_rng(0).standard_normal(16000 * 4).astype(np.float32) * 0.1
    kind, folder = resolve_model(str(run_folder))
    assert kind == "legacy-run"
    legacy = load_folder(kind, folder)
    config = json.loads((run_folder / layout.CONFIG).read_text())
    write_model_json(run_folder, model_description(
        config["run_id"], "musicnn", config["options"], InputConfig(16000, 24, 1, 501), legacy.patch_frames,
        frontend_settings(16000, 24, 1, config["log"]), ["drums", "piano", "voice"], weights=layout.BEST,
        weights_key="model"))
    kind, folder = resolve_model(str(run_folder))
    assert kind == "model"
    described = load_folder(kind, folder)
    assert described.tags == legacy.tags == ["drums", "piano", "voice"]
    assert described.patch_frames == legacy.patch_frames
    assert np.array_equal(taggram(described, waveform), taggram(legacy, waveform))


def test_a_model_json_that_does_not_fit_its_weights_is_one_line(tmp_path):
    from bench.core.errors import UserError
    from bench.train.model_file import load_model

    model = architectures.build("vgg", InputConfig(16000, 16, 2, 63), 3, width=0.0625)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    write_model_json(tmp_path, model_description("m", "vgg", {"width": 0.0625}, InputConfig(16000, 16, 2, 63), 63,
                                                 frontend_settings(16000, 16, 2, "log"), ["a", "b"],
                                                 weights="weights.pt"))
    with pytest.raises(UserError, match="weights.pt: does not fit .*model.json"):
        load_model(tmp_path)


def test_a_model_json_whose_patch_the_network_cannot_take_is_refused(tmp_path):
    """patch_frames is the length every file is cut into for the network: one it cannot take (1 frame,
    from a hand edit) ended bench tag in max_pool2d's RuntimeError. Another that it can take (an earlier
    version's rounding of a MusiCNN segment, 434 frames for a network planned for 435) still loads."""
    from bench.core.errors import UserError
    from bench.train.model_file import load_model

    config = InputConfig(16000, 16, 2, 63)
    torch.save(architectures.build("vgg", config, 2, width=0.0625).state_dict(), tmp_path / "weights.pt")
    for frames, fits in ((63, True), (1, False), (62, True)):
        write_model_json(tmp_path, model_description("m", "vgg", {"width": 0.0625}, config, frames,
                                                     frontend_settings(16000, 16, 2, "log"), ["a", "b"],
                                                     weights="weights.pt"))
        if fits:
            assert load_model(tmp_path).patch_frames == frames
        else:
            with pytest.raises(UserError, match=f"patch_frames = {frames}: the network it describes cannot take"):
                load_model(tmp_path)
    # MusiCNN at 48 kHz, 2.32 s segments: written as 434 frames before the segment's rounding was mended
    config = InputConfig(48000, 16, 1, 500)
    options = {"width": 0.0625, "segment_seconds": 2.32}
    network = architectures.build("musicnn", config, 2, **options)
    assert network.input_frames == 435
    torch.save(network.state_dict(), tmp_path / "weights.pt")
    write_model_json(tmp_path, model_description("m", "musicnn", options, config, 434,
                                                 frontend_settings(48000, 16, 1, "log"), ["a", "b"],
                                                 weights="weights.pt"))
    assert load_model(tmp_path).patch_frames == 434


@pytest.mark.parametrize("field,value,message", [
    ("n_fft", 1024, r"frontend.n_fft = 1024; this suite's front end computes 512 only"),
    ("mel_scale", "htk", r"frontend.mel_scale = 'htk'"),
    ("fmax", 4000, r"frontend.fmax = 4000; this suite's mel bank ends at the Nyquist frequency \(8000 Hz"),
    ("hop_length", 160, r"frontend.hop_length = 160; expected a positive multiple of 256"),
    ("hop_length", 384, r"frontend.hop_length = 384"),
    # as a spec allows them: a rate of 10**400 was an OverflowError, 1e308 torch's RuntimeError
    ("sample_rate", 10**400, r"frontend.sample_rate = 1000+; expected an integer from 1,000 to 192,000"),
    ("sample_rate", 1e308, r"frontend.sample_rate = 1e\+308"),
    ("n_mels", 0, r"frontend.n_mels = 0; expected an integer from 1 to 257"),
    ("hop_length", 256 * 10**30, r"expected a positive multiple of 256 up to 25,600"),  # torch.stft's overflow
])
def test_a_model_json_whose_front_end_this_suite_cannot_compute_is_refused(tmp_path, field, value, message):
    """A hand-written model.json asking for another STFT, mel bank or hop was loaded with the suite's
    own front end (the same tags as before), or crashed in the STFT (hop 160 // 256 = 0)."""
    from bench.core.errors import UserError
    from bench.train.model_file import load_model

    config = InputConfig(16000, 16, 2, 63)
    model = architectures.build("vgg", config, 2, width=0.0625)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    frontend = {**frontend_settings(16000, 16, 2, "log"), field: value}
    write_model_json(tmp_path, model_description("m", "vgg", {"width": 0.0625}, config, 63, frontend, ["a", "b"],
                                                 weights="weights.pt"))
    with pytest.raises(UserError, match=message):
        load_model(tmp_path)
    write_model_json(tmp_path, model_description("m", "vgg", {"width": 0.0625}, config, 63,
                                                 {**frontend_settings(16000, 16, 2, "log"), "fmax": 8000.0},
                                                 ["a", "b"], weights="weights.pt"))
    assert load_model(tmp_path).tags == ["a", "b"]  # Nyquist written out is the same bank
