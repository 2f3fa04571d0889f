"""Per-architecture options as they appear in a spec's `[arch.<name>]` table (no torch here).

Each field has a default, so a spec names only what it changes. The spec loader checks keys and
types against these dataclasses, so a typo in a spec fails before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_WIDTH = 64.0
"""Largest width multiplier (64 x the paper's VGG is ~70 billion parameters: beyond any machine)."""
MAX_SEGMENT_SECONDS = 3600.0


def width_of(options) -> float:
    """The width multiplier of an architecture's options; 1.0 for an architecture without a `width` option
    (it has one size, its own)."""
    return float(getattr(options, "width", 1.0))


def _width_problems(width: float) -> list[tuple[str, object, str]]:
    return [] if 0 < width <= MAX_WIDTH else [("width", width, f"must be > 0 and <= {MAX_WIDTH:g}")]


@dataclass(frozen=True)
class VGGOptions:
    width: float = 1.0
    """Multiplier on the channel counts 128, 384, 768, 2048 (1.0 = the paper's network)."""

    def validate(self) -> list[tuple[str, object, str]]:
        return _width_problems(self.width)


@dataclass(frozen=True)
class MusiCNNOptions:
    width: float = 1.0
    """Multiplier on the filter counts (base 16 front-end filters, 512 mid-end, 500 dense)."""
    segment_seconds: float = 3.0
    """Length of the segments the network sees (the paper uses 3 s)."""

    def validate(self) -> list[tuple[str, object, str]]:
        problems = _width_problems(self.width)
        if not 0 < self.segment_seconds <= MAX_SEGMENT_SECONDS:
            problems.append(("segment_seconds", self.segment_seconds, f"must be > 0 and <= {MAX_SEGMENT_SECONDS:g}"))
        return problems


@dataclass(frozen=True)
class ReleasedOptions(MusiCNNOptions):
    """Options of the released presets `musicnn-787k` and `vgg-605k`: `width` scales every filter
    count (1.0 = as released, the only width the released weights fit); `segment_seconds` is the
    segment the network sees (3 s as released: 187 frames at 16 kHz, hop 256)."""
