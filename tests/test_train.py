"""Device and precision selection (the CPU versions of the CUDA-selected paths)."""

import pytest
import torch

from bench.errors import UserError
from bench.train import autocast_dtype, resolve_device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="auto, cpu or cuda"):
        resolve_device("tpu")


def test_autocast_dtype_by_device_and_precision():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") is None  # measured slower on the CPU at reduced width
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), "fp32") is None
