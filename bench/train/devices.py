"""Why a machine with NVIDIA GPUs gives this process no CUDA device.

`torch.cuda.is_available()` answers False alike on a laptop and on a GPU box whose driver is older than
torch's CUDA, whose torch is a CPU-only build, or whose `CUDA_VISIBLE_DEVICES` hides every GPU. On
the GPU box `--device auto` would train on the CPU for days and gpu-check would have nothing to check:
the reason, in one line, says which of these it is.
"""

from __future__ import annotations

import os
import sys

from bench.core.errors import first_line
from bench.core.machine import nvidia_gpus

HIDING = ("", "-1", "NoDevFiles")
"""`CUDA_VISIBLE_DEVICES` values that select no GPU (an empty list, as submitit sets for a job asking
none; -1; NoDevFiles, as some schedulers set)."""


def why_no_cuda(run=None, environ=None, driver_gpus=None) -> str | None:
    """One line on why CUDA shows this process no device although the machine has NVIDIA GPUs; None
    where CUDA works or the machine has none (nvidia-smi and the kernel driver know of none)."""
    import torch

    if torch.cuda.is_available():
        return None
    n = nvidia_gpus(run, driver_gpus)
    if not n:
        return None
    gpus = f"this machine has {n} NVIDIA GPU(s)"
    environ = os.environ if environ is None else environ
    selection = environ.get("CUDA_VISIBLE_DEVICES")
    if selection is not None and selection.strip() in HIDING:
        return f"{gpus}, and CUDA_VISIBLE_DEVICES={selection!r} hides them all"
    if torch.version.cuda is None:
        return f"{gpus}, but this torch ({torch.__version__}) is a CPU-only build; install one built for CUDA"
    try:
        torch.cuda.init()  # raises CUDA's own reason: an old driver, no driver loaded, a bad selection
    except Exception as exc:  # noqa: BLE001 - any reason CUDA gives is the one to show
        reason = first_line(exc)
    else:
        reason = "CUDA started but shows no device"
    if selection is not None:  # a stale or mistyped selection shows as "no CUDA GPUs are available"
        reason += f" (CUDA_VISIBLE_DEVICES={selection!r})"
    return f"{gpus}, but torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use them: {reason}"


def cpu_fallback_note(name: str, device) -> str | None:
    """The line to print where `--device auto` resolved to the CPU on a machine with NVIDIA GPUs."""
    if name != "auto" or device.type != "cpu":
        return None
    reason = why_no_cuda()
    return f"--device auto: running on the CPU: {reason}" if reason else None


def warn_of_cpu_fallback(name: str, device, command: str) -> None:
    """`cpu_fallback_note` as `command`'s warning on stderr, where there is one."""
    note = cpu_fallback_note(name, device)
    if note:
        print(f"{command}: warning: {note}", file=sys.stderr)
