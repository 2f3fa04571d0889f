"""What the CLI prints as one line: errors that are the user's to fix (exit status 2), and Ctrl-C (exit 130)."""

from __future__ import annotations

import os
import re
import signal


def one_line(message: object) -> str:
    """A message on one line (a user error is one line on stderr, whatever the text it quotes): line
    breaks and the blanks around them become one space; other spacing, as in a quoted value, stays."""
    return re.sub(r"[ \t]*[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+[ \t]*", " ", str(message)).strip() or "no detail"


def first_line(message: object) -> str:
    """The first non-blank line of a message (an error whose text carries a traceback or a tool's log)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[0] if lines else "no detail"


class UserError(Exception):
    """Bad input from the user (spec, paths, data). Printed without a traceback."""


class SpecError(UserError):
    """A spec file that cannot be used; the message names the file, the field and the value."""

    def __init__(self, path: object, field: str, problem: str):
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        super().__init__(where + problem)


class DeviceFailure(UserError):
    """The GPU failed under a run with an error that leaves this process unable to use it (a CUDA
    error such as an illegal memory access): the worker stops, printing one line, and the run, not
    recorded as failed, resumes in the next grid. Not the user's doing, but not a traceback either."""


ALLOCATION_FAILURES = ("CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")
"""Words of the errors that mean the GPU's memory ran out outside torch's caching allocator (which
raises OutOfMemoryError): cudaErrorMemoryAllocation, raised as AcceleratorError "CUDA error: out of
memory", and cuBLAS or cuDNN failing to allocate their workspaces. None leaves the GPU unusable."""


HOST_ALLOCATION_FAILURES = ("DefaultCPUAllocator: can't allocate memory",)
"""Words of torch's error where the host's memory ran out (a limit such as `ulimit -v`, or no overcommit)."""


def is_host_out_of_memory(exc: BaseException) -> bool:
    """The host's memory ran out, in torch's words or numpy's (MemoryError)."""
    return isinstance(exc, MemoryError) or any(words in str(exc) for words in HOST_ALLOCATION_FAILURES)


def is_out_of_memory(exc: BaseException) -> bool:
    """The device's memory ran out, however torch words it (`ALLOCATION_FAILURES`)."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or any(words in str(exc) for words in ALLOCATION_FAILURES)


SUBMITIT_HANDLER = "checkpoint_and_try_requeue"
"""The method of submitit's SignalHandler that runs at the signal before a job's time limit (or a
preemption): it checkpoints and requeues the job, or raises."""


def is_job_stop(exc: BaseException) -> bool:
    """The scheduler stopping the job, not a failure of the run it was training: whatever submitit's signal
    handler raises, wherever the job's code was when the signal came. It raises UncompletedJobError when a
    job reaches its time limit and cannot be requeued (timed out too often); its requeue itself
    (`scontrol requeue`) can fail, refused by the cluster or timed out, and raise CalledProcessError,
    TimeoutExpired or FileNotFoundError from inside the handler. So is any error once the scheduler
    has signalled the job's end (`bench.core.interrupts.job_ending`): the signal reaches the job's child
    processes too, and one killed by it fails the run's next step. The run keeps its checkpoint and
    resumes in a later grid."""
    import sys

    from bench.core.interrupts import job_ending

    if job_ending():
        return True
    utils = sys.modules.get("submitit.core.utils")  # only a submitit job can have raised it
    if utils is None:
        return False
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # and what it was raised from or during (torch.compile wraps)
        seen.add(id(exc))
        if isinstance(exc, utils.UncompletedJobError):
            return True
        trace = exc.__traceback__
        while trace is not None:
            code = trace.tb_frame.f_code
            if code.co_name == SUBMITIT_HANDLER and f"submitit{os.sep}core" in code.co_filename:
                return True
            trace = trace.tb_next
        exc = exc.__cause__ or exc.__context__
    return False


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what a rerun will do: the CLI prints "interrupted; <message>" as one line.

    A KeyboardInterrupt, so code that lets Ctrl-C through (and only it) lets this through too."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


RERUN_TO_CONTINUE = "rerun to continue (finished work is kept)"
"""What a rerun does after a Ctrl-C that no run's epoch can be named for."""


def resume_hint(run_id: str, next_epoch: int | None, trained: bool = False) -> str:
    """What rerunning does for an interrupted run (`next_epoch` None: from its checkpoint; 1: from the
    start, no epoch checkpointed; `trained`: stopped after its last epoch, in the test or the latency
    measurement)."""
    if trained:
        return f"rerun to finish {run_id} (its training is done: the test and the latency measurement run again)"
    if next_epoch is None:
        return f"rerun to resume {run_id} from its last checkpoint"
    if next_epoch <= 1:  # nothing to resume from
        return f"rerun to start {run_id} again (it had not finished an epoch)"
    return f"rerun to resume {run_id} from epoch {next_epoch}"


def exit_description(exitcode: int) -> str:
    """How a child process ended, from its exit code as subprocess and multiprocessing give it: "killed by
    SIGKILL" (a negative code: the signal; the out-of-memory killer's prints nothing), or "exit status 1"."""
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            return f"killed by signal {-exitcode}"
        if -exitcode == getattr(signal, "SIGBUS", None):  # a read through a memory map (the waveform cache's)
            return (f"killed by {name}: a memory-mapped file could not be read (its disk failed or is full, or "
                    "the file was cut short); check the disk (`dmesg`)")
        return f"killed by {name}"
    return f"exit status {exitcode}"
