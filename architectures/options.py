"""Per-architecture options as they appear in a spec's `[arch.<name>]` table (no torch here).

Each field has a default, so a spec names only what it changes. The spec loader checks keys and
types against these dataclasses, so a typo in a spec fails before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VGGOptions:
    width: float = 1.0
    """Multiplier on the channel counts 128, 384, 768, 2048 (1.0 = the paper's network)."""

    def validate(self) -> list[tuple[str, object, str]]:
        return [("width", self.width, "must be > 0")] if not self.width > 0 else []


@dataclass(frozen=True)
class MusiCNNOptions:
    width: float = 1.0
    """Multiplier on the filter counts (base 16 front-end filters, 512 mid-end, 500 dense)."""
    segment_seconds: float = 3.0
    """Length of the segments the network sees (the paper uses 3 s)."""

    def validate(self) -> list[tuple[str, object, str]]:
        problems: list[tuple[str, object, str]] = []
        if not self.width > 0:
            problems.append(("width", self.width, "must be > 0"))
        if not self.segment_seconds > 0:
            problems.append(("segment_seconds", self.segment_seconds, "must be > 0"))
        return problems


@dataclass(frozen=True)
class ReleasedOptions(MusiCNNOptions):
    """Options of the released presets `musicnn-787k` and `vgg-605k`: `width` scales every filter
    count (1.0 = as released, the only width the released weights fit); `segment_seconds` is the
    segment the network sees (3 s as released: 187 frames at 16 kHz, hop 256)."""
