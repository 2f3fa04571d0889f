"""Device selection (the CPU versions of the CUDA-selected paths)."""

import pytest
import torch

from bench.core.errors import UserError
from bench.train.loop import resolve_device


@pytest.mark.parametrize("cuda", [True, False])
def test_resolve_device(monkeypatch, cuda):
    from bench.train import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(devices, "nvidia_gpus", lambda *args: 0)  # no GPU this torch cannot use
    assert resolve_device("cpu") == torch.device("cpu")
    if cuda:
        assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda")
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(UserError, match=r"^--device cuda: no CUDA device is available \(use --device cpu or auto"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="auto, cpu or cuda"):
        resolve_device("tpu")
