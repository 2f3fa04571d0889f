from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"


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
