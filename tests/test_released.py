"""The imported musicnn 0.1.0 models reproduce the original TensorFlow models' outputs.

tests/data/musicnn/ holds the reference inputs and outputs, made by the package's own model code in
TensorFlow (see its README). Tolerances: the taggram within 1e-5; features within 1e-4 of each
tensor's largest value. The import needs TensorFlow and the musicnn package's checkpoint files;
without them those tests are skipped with the reason (CI installs both: .ci/run).
"""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bench.cli import main
from bench.cost.gmac import count_params
from bench.tools.tag import load_tagger
from bench.train.frontend import MelFrontend

DATA = Path(__file__).resolve().parent / "data" / "musicnn"
MTT_LABELS_START = ["guitar", "classical", "slow", "techno", "strings"]
MSD_LABELS_START = ["rock", "pop", "alternative", "indie", "electronic"]


def _missing() -> str | None:
    if importlib.util.find_spec("tensorflow") is None:
        return "tensorflow is not installed (the optional extra mel-resolution-bench[musicnn])"
    if importlib.util.find_spec("musicnn") is None:
        return "the musicnn package is not installed (pip install musicnn==0.1.0 --no-deps)"
    return None


# BENCH_REQUIRE_MUSICNN=1 (CI) runs these tests whatever is missing, so that a failed optional install
# fails them instead of skipping the only checks against the original models
needs_musicnn = pytest.mark.skipif(_missing() is not None and os.environ.get("BENCH_REQUIRE_MUSICNN") != "1",
                                   reason=_missing() or "")


def close_to_largest(ours: torch.Tensor, ref: np.ndarray, fraction: float = 1e-4) -> float:
    error = float(np.abs(ours.numpy() - ref).max())
    assert error <= fraction * np.abs(ref).max(), (error, np.abs(ref).max())
    return error


@needs_musicnn
@pytest.mark.parametrize("name", ["MTT_musicnn", "MSD_musicnn", "MTT_vgg"])
def test_imported_models_reproduce_the_reference(models, reference, name):
    x, ref = reference
    tagger = load_tagger(name, str(models))
    model = tagger.model
    with torch.inference_mode():
        logits = model(x)
        assert float(np.abs(torch.sigmoid(logits).numpy() - ref[f"{name}/taggram"]).max()) <= 1e-5
        close_to_largest(logits, ref[f"{name}/logits"])
        if name.endswith("musicnn"):
            pooled = model.pooled(x)  # interleaved (max0, mean0, max1, mean1, ...)
            close_to_largest(pooled[:, 0::2], ref[f"{name}/max_pool"])
            close_to_largest(pooled[:, 1::2], ref[f"{name}/mean_pool"])
            close_to_largest(model.back[:5](pooled), ref[f"{name}/penultimate"])  # dense -> ReLU -> BatchNorm
        else:
            close_to_largest(model.features(x), ref[f"{name}/pool5"])


@needs_musicnn
def test_imported_files_tags_and_parameters(models):
    for name, arch, params, labels in [("MTT_musicnn", "musicnn-787k", 787_159, MTT_LABELS_START),
                                       ("MSD_musicnn", "musicnn-787k", 787_159, MSD_LABELS_START),
                                       ("MTT_vgg", "vgg-605k", 605_748, MTT_LABELS_START),
                                       ("MSD_vgg", "vgg-605k", 605_748, MSD_LABELS_START)]:
        meta = json.loads((models / name / "model.json").read_text())
        assert meta["arch"] == arch and meta["tags"][:5] == labels and len(meta["tags"]) == 50
        assert meta["frontend"]["sample_rate"] == 16000 and meta["frontend"]["n_mels"] == 96
        assert meta["frontend"]["hop_length"] == 256 and meta["patch_frames"] == 187
        state = torch.load(models / name / "weights.pt", weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        assert count_params(load_tagger(name, str(models)).model) == params
        assert (models / name / "LICENSE.md").read_text().startswith(
            "Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019.")  # ISC: the notice goes along
    # The package's experiment files (two formats): MTT_musicnn .9067 / .3831, MSD_vgg .8768 / .2819
    for name, roc_auc, pr_auc in [("MTT_musicnn", 0.9067, 0.3831), ("MSD_vgg", 0.8768, 0.2819)]:
        published = json.loads((models / name / "model.json").read_text())["published"]
        assert published == {"roc_auc": pytest.approx(roc_auc, abs=1e-4), "pr_auc": pytest.approx(pr_auc, abs=1e-4)}


@needs_musicnn
def test_bench_tag_on_the_reference_signal(models, reference, tmp_path, capsys):
    """decode -> mel -> patch -> network end to end: the first patch of the reference signal."""
    _, ref = reference
    signal = np.load(DATA / "inputs.npz")["signal"]
    sf.write(tmp_path / "signal.wav", signal, 16000, subtype="FLOAT")
    assert main(["tag", str(tmp_path / "signal.wav"), "--model", "MTT_musicnn", "--models", str(models),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert result["patches"] == 1  # 313 frames: one whole patch of 187
    scores = np.array(list(result["scores"].values()))
    # Our input differs from the reference's float16 arithmetic by float16 rounding (<= 2e-3 here), which
    # moves the taggram by ~1e-4 (measured 9e-5).
    assert np.abs(scores - ref["MTT_musicnn/taggram"][0]).max() < 5e-4


def test_released_front_end_against_librosa():
    """mel power against librosa's (reflect padding, as musicnn used), and the float16 log."""
    inputs = np.load(DATA / "inputs.npz")
    front = MelFrontend(16000, 96, 1, "log", pad_mode="reflect", pad_to_hop=False, float16_mel=True)
    signal = torch.from_numpy(inputs["signal"])[None]
    assert front.n_frames(signal.shape[1]) == 313
    with torch.no_grad():
        power = front.mel(signal)[0].T.numpy()[:312]
        logmel = front(signal)[0].T.numpy()[:312]
    ref_power = inputs["mel_power"]
    np.testing.assert_allclose(power, ref_power, rtol=0, atol=1e-5 * ref_power.max())
    # log10(10000 x + 1) of the float16-rounded power, in float32; the reference did the arithmetic in
    # float16, so it differs by float16 rounding of the result: at most one float16 step (2^-8 at 4.5).
    ref_log = inputs["logmel"].astype(np.float32)
    assert np.abs(logmel - ref_log).max() <= 2.0**-8
