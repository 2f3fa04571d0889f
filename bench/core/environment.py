"""Environment variables that the field's libraries read on their own, checked before a command's work.

A library reads each of these where the suite cannot catch it: at its import, at its first use, in a
worker process. A value it cannot read then fails late, in a traceback, or in every run of a grid:

    LOKY_MAX_CPU_COUNT       joblib's loky (the CPUs a process may use): int(), at the first count
    SOURCE_DATE_EPOCH        numpy's f2py, loaded with scikit-learn at a run's first evaluation: int();
                             matplotlib's PDF dates: datetime's range
    TORCHINDUCTOR_CACHE_DIR  torch.compile's folder: an empty value is the working folder to torch
    MPLBACKEND               matplotlib, at its import: a name it does not know is a ValueError

The figures are drawn without pyplot, so no backend is ever used: MPLBACKEND is dropped, not judged.
The suite's own BENCH_GPU_LOCKS (the folder of the GPU slots every grid on a machine shares) is read by
the workers alone, so it is checked here too: an absolute path, not a file (empty: the default).
"""

from __future__ import annotations

import os

from bench.core.errors import UserError

WHOLE_NUMBERS = {
    "LOKY_MAX_CPU_COUNT": ("the most CPUs a process may use (joblib)", None),
    # matplotlib dates a PDF with it too: datetime's range, to the end of year 9999
    "SOURCE_DATE_EPOCH": ("seconds since 1970, a reproducible build's timestamp (numpy, matplotlib)",
                          (0, 253_402_300_799)),
}
"""Variables read as a whole number with Python's int(): what they are, and the range they are read in."""


def check_library_settings() -> None:
    """UserError naming the first variable a library cannot read; MPLBACKEND removed from the environment
    (this process's, and so its workers')."""
    for name, (what, bounds) in WHOLE_NUMBERS.items():
        value = os.environ.get(name)
        if value is None:
            continue
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or (bounds is not None and not bounds[0] <= number <= bounds[1]):
            within = f" from {bounds[0]} to {bounds[1]}" if bounds else ""
            raise UserError(f"{name}={value!r}: not a whole number{within}, {what}; give one or unset it")
    folder = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if folder is not None and not folder.strip():
        raise UserError(f"TORCHINDUCTOR_CACHE_DIR={folder!r}: an empty path (an unset variable?); torch.compile "
                        "would write into the working folder: give a folder or unset it")
    locks = os.environ.get("BENCH_GPU_LOCKS")  # empty: the default folder, as for an unset one
    if locks and (not os.path.isabs(locks) or os.path.exists(locks) and not os.path.isdir(locks)):
        what = "is a file, not a folder" if os.path.isabs(locks) else "not an absolute path"
        raise UserError(f"BENCH_GPU_LOCKS={locks!r}: {what}; every grid on this machine must find the GPU slots in "
                        "the same folder: give an absolute one or unset it (/tmp/bench-gpu-slots-<uid>)")
    os.environ.pop("MPLBACKEND", None)
