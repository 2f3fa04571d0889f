"""A machine with NVIDIA GPUs whose torch cannot use them is not a machine without CUDA: `--device
auto` says it falls back to the CPU and why, `--device cuda` and gpu-check fail naming the reason.
The GPUs are listed as `nvidia-smi -L` prints them; CUDA's refusal is torch's own message."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from bench.core import machine
from bench.core.errors import UserError
from bench.run.grid import GridOptions, run_grid
from bench.train import devices
from bench.train.loop import resolve_device

# `nvidia-smi -L` on a box with two H100s, the second partitioned into MIG instances (indented)
LISTING = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5c1f4a2e-8b1d-4f3e-9a7c-2d6e8f0a1b3c)\n"
           "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b)\n"
           "  MIG 3g.40gb     Device  0: (UUID: MIG-0a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d)\n")
OLD_DRIVER = ("The NVIDIA driver on your system is too old (found version 12020). Please update your GPU driver "
              "by downloading and installing a new version from the URL: http://www.nvidia.com/Download/index.aspx "
              "Alternatively, go to: https://pytorch.org to install a PyTorch version that has been compiled "
              "with your version of the CUDA driver.")
SPEC = Path(__file__).resolve().parents[1] / "tests" / "data" / "demo6.toml"


def listing(text: str | None):
    def run(argv, **kwargs):
        if text is None:
            raise FileNotFoundError(argv[0])
        return subprocess.CompletedProcess(argv, 0, stdout=text)
    return run


@pytest.fixture
def gpu_box_with_an_old_driver(monkeypatch):
    """Two NVIDIA GPUs, and a CUDA build of torch that the driver is too old for."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "nvidia_gpus", lambda *args: machine.nvidia_gpus(listing(LISTING)))
    monkeypatch.setattr(torch.version, "cuda", "13.0")

    def init():
        raise RuntimeError(OLD_DRIVER)
    monkeypatch.setattr(torch.cuda, "init", init)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_gpus_are_counted_from_nvidia_smi_else_from_the_kernel_driver(tmp_path):
    assert machine.nvidia_gpus(listing(LISTING), tmp_path) == 2  # GPU lines, not the MIG instance
    assert machine.nvidia_gpus(listing(""), tmp_path) == 0
    driver = tmp_path / "gpus"  # /proc/driver/nvidia/gpus: a folder per GPU, named by its PCI address
    for address in ("0000:17:00.0", "0000:65:00.0", "0000:ca:00.0"):
        (driver / address).mkdir(parents=True)
    assert machine.nvidia_gpus(listing(None), driver) == 3
    assert machine.nvidia_gpus(listing(None), tmp_path / "absent") == 0


def test_no_reason_is_given_where_there_is_no_nvidia_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.why_no_cuda(listing(None), {}, tmp_path / "absent") is None
    assert devices.cpu_fallback_note("cpu", torch.device("cpu")) is None


def test_the_reason_names_what_keeps_cuda_from_the_gpus(gpu_box_with_an_old_driver, monkeypatch, tmp_path):
    reason = devices.why_no_cuda()
    assert reason.startswith("this machine has 2 NVIDIA GPU(s), but torch ")
    assert "(CUDA 13.0) cannot use them: The NVIDIA driver on your system is too old (found version 12020)" in reason
    for hidden in ("", "-1", "NoDevFiles"):  # a job that asked for no GPU, or a scheduler's "none"
        assert devices.why_no_cuda(environ={"CUDA_VISIBLE_DEVICES": hidden}) == \
            f"this machine has 2 NVIDIA GPU(s), and CUDA_VISIBLE_DEVICES={hidden!r} hides them all"
    def no_gpus():  # torch's words for a selection that names no GPU of this box
        raise RuntimeError("No CUDA GPUs are available")
    monkeypatch.setattr(torch.cuda, "init", no_gpus)
    assert devices.why_no_cuda(environ={"CUDA_VISIBLE_DEVICES": "GPU-0b1c2d3e"}).endswith(
        "cannot use them: No CUDA GPUs are available (CUDA_VISIBLE_DEVICES='GPU-0b1c2d3e')")
    monkeypatch.setattr(torch.version, "cuda", None)  # a wheel from the CPU-only index
    assert "is a CPU-only build; install one built for CUDA" in devices.why_no_cuda()


def test_device_cuda_fails_naming_the_reason_and_auto_says_it_falls_back(gpu_box_with_an_old_driver):
    with pytest.raises(UserError, match=r"^--device cuda: no CUDA device is available: this machine has 2 NVIDIA "
                                        r"GPU\(s\), .* too old \(found version 12020\).*\(use --device cpu or auto\)$"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    note = devices.cpu_fallback_note("auto", torch.device("cpu"))
    assert note.startswith("--device auto: running on the CPU: this machine has 2 NVIDIA GPU(s)")


def test_a_grid_says_it_falls_back_to_the_cpu_before_it_prepares_data(gpu_box_with_an_old_driver, monkeypatch,
                                                                      tmp_path, capsys):
    from bench.run import prepare

    class Prepared(Exception):
        pass

    def prepare_spec(*args, **kwargs):
        raise Prepared
    monkeypatch.setattr(prepare, "prepare_spec", prepare_spec)
    with pytest.raises(Prepared):
        run_grid(str(SPEC), GridOptions(results=str(tmp_path / "results"), device="auto"))
    warning = capsys.readouterr().err
    assert "bench grid: warning: --device auto: running on the CPU: this machine has 2 NVIDIA GPU(s)" in warning
    assert warning.count("\n") == 1


def test_gpu_check_on_a_gpu_box_cuda_cannot_use_fails(gpu_box_with_an_old_driver, capsys, tmp_path):
    from bench.tools import gpucheck

    out = tmp_path / "gpu-check.json"
    assert gpucheck.main(["--out", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL CUDA ") and "too old (found version 12020)" in lines[0]
    assert "nothing checked" not in "\n".join(lines)
    (check,) = json.loads(out.read_text())["checks"]
    assert check["id"] == "CUDA" and check["ok"] is False and "too old" in check["detail"]


def test_a_slurm_worker_whose_node_cannot_use_its_gpus_stops_instead_of_training_on_the_cpu(
        gpu_box_with_an_old_driver, monkeypatch):
    """`--launcher slurm --device auto` asks Slurm for GPUs: a task on a node whose CUDA is unusable would
    train every run it claims at CPU speed and record them as if nothing were wrong. It stops with the
    reason, its runs left to the next grid; a local grid's worker falls back (its grid said so)."""
    from bench.core.errors import DeviceFailure
    from bench.run.grid import worker_device

    said = []
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")  # submitted from a login node, which could not check
    with pytest.raises(DeviceFailure) as stopped:
        worker_device("auto", 3, 1, said.append)
    line = str(stopped.value)
    assert line.startswith("worker 3 on ") and "the job asked Slurm for GPUs, but CUDA is not usable here" in line
    assert "this machine has 2 NVIDIA GPU(s)" in line and "too old (found version 12020)" in line
    assert said == []
    assert worker_device("cpu", 3, 1, said.append) == (torch.device("cpu"), None)  # asked for no GPU
    monkeypatch.delenv("SUBMITIT_EXECUTOR")  # a local grid said so before it started its workers
    assert worker_device("auto", 0, 1, said.append) == (torch.device("cpu"), None)
    assert said == []
