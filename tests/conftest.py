from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """The four released musicnn models, imported once per test session (needs TensorFlow and the musicnn
    package: the tests that use it are marked `needs_musicnn`)."""
    from bench.tools.pretrained import import_musicnn

    out = tmp_path_factory.mktemp("models")
    import_musicnn(out=out, log=lambda _: None)  # all four, with one TensorFlow process
    return out


@pytest.fixture(scope="session")
def reference():
    """tests/data/musicnn: the reference patches (8, 96 bands, 187 frames) and musicnn's outputs by key."""
    import numpy as np
    import torch

    data = ROOT / "tests" / "data" / "musicnn"
    inputs, outputs = np.load(data / "inputs.npz"), np.load(data / "outputs.npz")
    x = torch.from_numpy(inputs["x"].astype(np.float32)).transpose(1, 2)  # (8, mel, time), as our models take it
    return x, {key: outputs[key] for key in outputs.files}


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec file from TOML text; returns its path."""

    def write(text: str, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


MINIMAL_SPEC = """
name = "t"
seeds = [0]
[dataset]
name = "synthetic"
[[grid]]
arch = ["vgg"]
sample_rate = [12000]
n_mels = [96]
hop_multiplier = [1]
log = ["log"]
"""


@pytest.fixture
def one_run(write_spec, tmp_path):
    """(spec, run, run folder) of MINIMAL_SPEC's single run, its results under tmp_path/results."""
    from bench.run.runner import run_dir
    from bench.spec import load_spec

    spec = load_spec(write_spec(MINIMAL_SPEC))
    (run,) = spec.runs()
    return spec, run, run_dir(tmp_path / "results", spec, run)
