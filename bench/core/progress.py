"""Progress bars for a person at a terminal, and nothing for a log file.

tqdm redraws its bar with carriage returns; redirected to a file (a Slurm log, `> grid.log`) that
is one line of thousands of characters. So bars are drawn only when stderr is a terminal; in a log,
work that lasts longer than a minute prints a line a minute instead (`LogProgress`: done, rate and
what is left), and the commands print a line when each stage is done either way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def on_terminal() -> bool:
    return sys.stderr.isatty()


LOG_EVERY_SECONDS = 60.0


class LogProgress:
    """Progress for a log file: one line every LOG_EVERY_SECONDS (none for work done sooner), with
    the count, the rate and an estimate of the time left, on stderr as tqdm's bars (stdout may be a
    command's JSON or CSV). Takes what a tqdm bar is given here; `total` None: an unknown size."""

    def __init__(self, total: int, description: str, unit: str = "clip", initial: int = 0,
                 unit_scale: bool = False, every: float = LOG_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic, out: Callable[[str], None] | None = None, **_):
        self.total, self.description, self.unit, self.scale = total, description, unit, unit_scale
        self.done = self.initial = initial
        self.every, self.clock = every, clock
        self.out = out or (lambda line: print(line, file=sys.stderr, flush=True))
        self.started = self.last = clock()

    def _count(self, n: float | None) -> str:
        if n is None:
            return "?"
        return f"{n / 1e9:.2f} G{self.unit}" if self.scale else f"{int(n):,}"

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        left = f", {_time_left((self.total - self.done) / rate)}" if rate > 0 and self.total else ""
        share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        unit = "" if self.scale else f" {self.unit}s"
        self.out(f"{self.description}: {self._count(self.done)}/{self._count(self.total)}{unit}{share} in "
                 f"{_duration(elapsed)}{left}")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def _time_left(seconds: float) -> str:
    return "under a minute left" if seconds < 30 else f"about {_duration(seconds)} left"


def progress_bar(total: int, description: str, unit: str = "clip", enabled: bool = True, **options):
    """A tqdm bar over `total` items where stderr is a terminal; in a log, a line a minute
    (`LogProgress`); nothing unless `enabled`."""
    from tqdm import tqdm

    if enabled and not on_terminal():
        return LogProgress(total, description, unit, **options)
    return tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True, disable=not enabled, **options)
