"""Progress bars for a person at a terminal, and nothing for a log file.

tqdm redraws its bar with carriage returns; redirected to a file (a Slurm log, `> grid.log`) that
is one line of thousands of characters. So bars are drawn only when stderr is a terminal; the
commands print a line when each stage is done either way.
"""

from __future__ import annotations

import sys


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress_bar(total: int, description: str, unit: str = "clip", enabled: bool = True, **options):
    """A tqdm bar over `total` items, disabled unless `enabled` and stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True,
                disable=not (enabled and on_terminal()), **options)
