"""Device selection (the CPU versions of the CUDA-selected paths)."""

import pytest
import torch

from bench.core.errors import UserError
from bench.train.loop import resolve_device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="auto, cpu or cuda"):
        resolve_device("tpu")
