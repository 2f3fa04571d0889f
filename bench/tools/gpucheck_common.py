"""What every check of `make gpu-check` shares (`bench.tools.gpucheck`): a check's record, the deadline
they keep to, the targets the performance checks judge, and the paper's spec they time."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.spec import shipped_spec
from bench.tools.peaks import HEADLINE_FRACTION_OF_BF16_PEAK

PAPER_SPEC = "paper-mtat-vgg.toml"


def paper_spec_path() -> Path:
    """The paper's VGG spec, whose configurations the performance checks time (`shipped_spec`)."""
    return shipped_spec(PAPER_SPEC)


TARGETS = {"headline_fraction_of_peak": HEADLINE_FRACTION_OF_BF16_PEAK, "busy_headline": 0.80,
           "busy_smallest_shared": 0.60}


@dataclass
class Check:
    id: str
    title: str
    ok: bool | None = None
    detail: str = ""
    numbers: dict = field(default_factory=dict)
    seconds: float | None = None
    """Wall time the check took (checks run together, C4 and C5, share theirs); None where it did not
    start. The first functional check's includes generating their dataset (`data_seconds` says how long)."""

    def as_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "ok": self.ok, "detail": self.detail, "numbers": self.numbers,
                "seconds": self.seconds}

    def line(self) -> str:
        word = {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]
        took = "" if self.seconds is None else f" [{self.seconds:.0f} s]"
        return f"{word} {self.id} {self.title}: {self.detail}{took}"


class Deadline:
    """When the whole check must be done (`--deadline`): a check starts only with the time it needs
    left, and a grid or a group of processes is given at most the time left."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return math.inf if self.end is None else self.end - time.monotonic()

    def bound(self, timeout: float) -> float:
        """`timeout`, or less where less time is left (at least a second: a process gets to start)."""
        return max(1.0, min(timeout, self.left()))


class NoData(Exception):
    """The functional checks' synthetic dataset could not be generated."""


class DeadlineReached(Exception):
    """A check's grid was stopped because `--deadline` came: the check was not run to the end, which
    says nothing of what it checks (a cold compile on a new box can take minutes)."""

