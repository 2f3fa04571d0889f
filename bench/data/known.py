"""What is known of each dataset without reading it: how many tags it can give a model, and how many
clips its usual split holds. `bench plan` and `bench perf` use these before any data is on disk."""

from __future__ import annotations

import re

from bench.data.config import JAMENDO_TAGS, MSD_TAG_COUNT, DatasetSpec


def lowest_source_rate(dataset: str) -> int | None:
    """The lowest sample rate of a dataset's audio files, in Hz, where it is known: MagnaTagATune's MP3s
    are all 16 kHz, the MSD's 7digital previews 22.05 or 44.1 kHz, the synthetic data is rendered at
    SYNTHETIC_SAMPLE_RATE. A grid rate above it upsamples those files: their mel bands above the files'
    Nyquist frequency hold no audio."""
    from bench.data.datasets import SYNTHETIC_SAMPLE_RATE

    return {"mtat": 16_000, "msd": 22_050, "synthetic": SYNTHETIC_SAMPLE_RATE}.get(dataset)


SPLIT_SIZES = {"mtat": (18_706, 1_825, 5_329), "msd": (201_680, 11_774, 28_435)}
"""(train, valid, test) clips of the paper's splits: MagnaTagATune's 16 folders as 12:1:3 (the three
undecodable clips left out), and Lee et al.'s MSD lists."""

MTAT_WON_SPLIT = (15_247, 1_529, 4_332)
"""MTAT's `split = "won"` (sota-music-tagging-models): the same folders without the clips that carry
none of the top 50 tags."""

JAMENDO_TRACKS = {"top50tags": 54_380, "genre": 55_215, "instrument": 25_135, "moodtheme": 18_486, "all": 55_525}
"""Tracks of each MTG-Jamendo subset (the dataset's published counts; `all`: those in the splits)."""

JAMENDO_SPLITS = {
    "top50tags": ((32_136, 10_888, 11_356), (32_395, 10_619, 11_366), (32_010, 11_961, 10_409),
                  (33_173, 10_468, 10_739), (30_868, 11_593, 11_919)),
    "genre": ((32_572, 11_043, 11_479), (32_746, 10_833, 11_515), (32_360, 12_185, 10_549),
              (33_515, 10_656, 10_923), (31_305, 11_804, 11_985)),
    "instrument": ((14_395, 5_466, 5_115), (14_943, 4_960, 5_073), (14_702, 5_066, 5_208),
                   (14_875, 5_068, 5_033), (14_829, 5_159, 4_988)),
    "moodtheme": ((9_949, 3_802, 4_231), (10_190, 3_594, 4_198), (10_484, 4_085, 3_413),
                  (10_920, 3_500, 3_562), (10_241, 3_706, 4_035)),
}
"""(train, validation, test) tracks of MTG-Jamendo's official splits 0-4 for each subset: the lines of
`splits/split-N/autotagging_<subset>-{train,validation,test}.tsv`. A split holds the subset's tracks
that keep a tag once the tags missing from some split are dropped, so genre, instrument and mood/theme
hold fewer tracks than their published counts (55,094, 24,976 and 17,982 in every split)."""

TAGS_AVAILABLE = {"mtat": 188, "msd": MSD_TAG_COUNT}
"""Tags a dataset has: MTAT's annotations_final.csv columns, the 50 of Lee et al.'s MSD lists."""



def tag_count(dataset: DatasetSpec) -> int | None:
    """The number of outputs a model of this dataset has: `n_tags`, or fewer where the dataset has
    fewer tags; None where that depends on files not seen (a manifest's tag list, a dataset with no
    entry here)."""
    if dataset.name == "synthetic":
        from bench.data.synthetic import TAG_NAMES

        available = len(TAG_NAMES)
    elif dataset.name == "jamendo":
        available = JAMENDO_TAGS[dataset.subset or "top50tags"]
    else:
        available = TAGS_AVAILABLE.get(dataset.name)
    return None if available is None else min(dataset.n_tags, available)


def split_sizes(dataset: DatasetSpec) -> tuple[int, int, int] | None:
    """(train, valid, test) clips of the dataset's split, where known before reading it: MTAT's two
    built-in splits, Lee et al.'s MSD lists, MTG-Jamendo's official splits 0-4 (a folder
    `[...]/splits/split-N`, as the dataset's metadata has them), the synthetic set's folders. None
    where `unknown_split_why` says why: a split read from other files (a `split_file` other than
    those), clips dropped for lacking a tag among fewer tags than the published counts assume, a
    manifest or a dataset with no entry here."""
    if dataset.name == "synthetic":
        if dataset.split_file is not None or dataset.drops_untagged:
            return None
        from bench.data.datasets import SYNTHETIC_DEFAULT_CLIPS
        from bench.data.synthetic.plan import split_counts

        counts = split_counts(dataset.clips or SYNTHETIC_DEFAULT_CLIPS)
        return counts["train"], counts["valid"], counts["test"]
    drops = dataset.drop_untagged or (dataset.name == "mtat" and dataset.split == "won")
    if dataset.name == "mtat" and dataset.split_file is None:
        if not drops:
            return SPLIT_SIZES["mtat"]
        return MTAT_WON_SPLIT if dataset.n_tags == 50 else None
    if dataset.name == "msd" and not (drops and dataset.n_tags < TAGS_AVAILABLE["msd"]):
        return SPLIT_SIZES["msd"]
    subset = dataset.subset or "top50tags"
    if dataset.name == "jamendo" and subset in JAMENDO_SPLITS and not (drops and dataset.n_tags < JAMENDO_TAGS[subset]):
        match = re.fullmatch(r"(?:.*/)?splits/split-([0-4])/?", dataset.split_file or "splits/split-0")
        if match:
            return JAMENDO_SPLITS[subset][int(match.group(1))]
    return None


def unknown_split_why(dataset: DatasetSpec) -> str:
    """Why `split_sizes` does not know the dataset's split sizes before reading its files, in a phrase
    ("" where it knows them)."""
    if split_sizes(dataset) is not None:
        return ""
    if dataset.name == "manifest":
        return "a manifest's splits are counted only when its CSV is read"
    if dataset.split_file is not None:
        return f"the split is read from split_file {dataset.split_file!r}"
    if dataset.drops_untagged:
        setting = "drop_untagged = true" if dataset.drop_untagged else 'split = "won"'
        return (f"clips lacking one of the {n_outputs(dataset)} tags are dropped ({setting}), and which those are "
                "is known only when the annotations are read")
    return f"no split sizes are known for dataset {dataset.name!r} before its files are read"


def n_outputs(dataset: DatasetSpec) -> int:
    """The model's output count to plan with: `tag_count`, else the spec's `n_tags` (an upper bound)."""
    return tag_count(dataset) or dataset.n_tags


def clip_count(dataset: DatasetSpec) -> int | None:
    """Clips the dataset's cache will hold, where known before reading it."""
    if dataset.name == "synthetic":
        from bench.data.datasets import SYNTHETIC_DEFAULT_CLIPS

        return dataset.clips or SYNTHETIC_DEFAULT_CLIPS
    sizes = split_sizes(dataset)
    if sizes is not None:
        return sum(sizes)
    if dataset.name == "jamendo":  # a split folder of another name: at most the subset's tracks
        return JAMENDO_TRACKS[dataset.subset or "top50tags"]
    return dataset.clips
