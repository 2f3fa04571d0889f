"""A spec's `[dataset]` table as a frozen value: which dataset, where, and how it is read. The readers
(`bench.data.datasets`) take it; `bench.spec` validates it. It belongs to the data layer, so reading
data never needs the spec parser or the architectures."""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass
from typing import Any

from bench.core import framing

JAMENDO_TAGS = {"top50tags": 50, "genre": 87, "instrument": 40, "moodtheme": 56, "all": 183}
"""Tags of each MTG-Jamendo subset present in all of its splits (87 + 40 + 56 = 183)."""
MSD_TAG_COUNT = 50
"""The Last.fm tags of Lee et al.'s MSD split (`bench.data.msd.MSD_TAGS`)."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    """One of DATASETS."""
    path: str | None = None
    """Dataset root (or manifest file); `--data` overrides it. Not part of a run's identity."""
    clip_seconds: float = framing.PAPER_CLIP_SECONDS
    """Centre crop of each track, zero-padded when shorter."""
    n_tags: int = 50
    """The N most frequent tags (a dataset with fewer keeps them all). A jamendo spec without n_tags
    gets its subset's tag count (`bench.spec`): the benchmark's task is every tag of the subset."""
    drop_untagged: bool = False
    """Drop clips with none of the top-N tags instead of keeping them (MTAT: the same as split = "won")."""
    split: str = "folders"
    """MTAT: "folders" (the paper's and musicnn's split) or "won" (sota-music-tagging-models')."""
    split_file: str | None = None
    """MTAT: a folder of published split lists (`bench.data.splits`); MTG-Jamendo: the official split
    folder (default splits/split-0). Relative to the dataset root."""
    subset: str | None = None
    """MTG-Jamendo: top50tags (default), genre, instrument, moodtheme or all."""
    clips: int | None = None
    """Synthetic only: number of clips to generate."""
    seed: int = 0
    """Synthetic only: generator seed."""

    @property
    def drops_untagged(self) -> bool:
        """Whether clips with none of the top-N tags are left out: drop_untagged, or MTAT's "won" split."""
        return self.drop_untagged or self.split == "won"

    def identity(self) -> dict[str, Any]:
        """The fields that change what a run sees (the path is where it lives, not what it is).
        The split fields appear only when set, so run ids from before they existed stay valid."""
        ident = dataclasses.asdict(self)
        del ident["path"]
        if self.split == "folders":
            del ident["split"]
        if self.split_file is None:
            del ident["split_file"]
        else:  # one folder, one identity: `./sp/` is `sp` (an absolute path stays one: where the root is
            # is not identity, so it cannot be made relative to it)
            ident["split_file"] = posixpath.normpath(self.split_file)
        if self.subset is None:
            del ident["subset"]
        if self.name == "jamendo" and self.n_tags < JAMENDO_TAGS.get(self.subset or "top50tags", 0):
            # fewer than the subset's tags are its most frequent ones; they were once the first by name,
            # and a run of those must not pass for a run of these
            ident["tags"] = "most frequent"
        if self.name == "msd" and self.n_tags < MSD_TAG_COUNT:
            # the most frequent on the split's tracks, not the first of the published list as they once were
            ident["tags"] = "most frequent"
        return ident
