"""What is known of each dataset without reading it: how many tags it can give a model, and how many
clips its usual split holds. `bench plan` and `bench perf` use these before any data is on disk."""

from __future__ import annotations

from bench.data.config import DatasetSpec

SPLIT_SIZES = {"mtat": (18_706, 1_825, 5_329), "msd": (201_680, 11_774, 28_435)}
"""(train, valid, test) clips of the paper's splits: MagnaTagATune's 16 folders as 12:1:3 (the three
undecodable clips left out), and Lee et al.'s MSD lists."""

JAMENDO_TRACKS = {"top50tags": 54_380, "genre": 55_215, "instrument": 25_135, "moodtheme": 18_486, "all": 55_525}
"""Tracks of each MTG-Jamendo subset (the dataset's published counts; `all`: those in the splits)."""

TAGS_AVAILABLE = {"mtat": 188, "msd": 50}
"""Tags a dataset has: MTAT's annotations_final.csv columns, the 50 of Lee et al.'s MSD lists."""

JAMENDO_TAGS = {"top50tags": 50, "genre": 87, "instrument": 40, "moodtheme": 56, "all": 183}
"""Tags of each MTG-Jamendo subset present in all of its splits (87 + 40 + 56 = 183)."""


def tag_count(dataset: DatasetSpec) -> int | None:
    """The number of outputs a model of this dataset has: `n_tags`, or fewer where the dataset has
    fewer tags; None where that depends on files not seen (a manifest's tag list)."""
    if dataset.name == "synthetic":
        from bench.data.synthetic import TAG_NAMES

        available = len(TAG_NAMES)
    elif dataset.name == "jamendo":
        available = JAMENDO_TAGS[dataset.subset or "top50tags"]
    else:
        available = TAGS_AVAILABLE.get(dataset.name)
    return None if available is None else min(dataset.n_tags, available)


def n_outputs(dataset: DatasetSpec) -> int:
    """The model's output count to plan with: `tag_count`, else the spec's `n_tags` (an upper bound)."""
    return tag_count(dataset) or dataset.n_tags


def clip_count(dataset: DatasetSpec) -> int | None:
    """Clips the dataset's cache will hold, where known before reading it."""
    if dataset.name == "synthetic":
        from bench.data.datasets import SYNTHETIC_DEFAULT_CLIPS

        return dataset.clips or SYNTHETIC_DEFAULT_CLIPS
    if dataset.name in SPLIT_SIZES:
        return sum(SPLIT_SIZES[dataset.name])
    if dataset.name == "jamendo":
        return JAMENDO_TRACKS[dataset.subset or "top50tags"]
    return dataset.clips
