"""Million Song Dataset with the Lee et al. split used by the paper (50 Last.fm tags).

Expected in the MSD root (the split files as distributed, Python 2 pickles)::

    filtered_list_train.cP   list of MSD ids: the first 201,680 train, the remaining 11,774 valid
    filtered_list_test.cP    list of 28,435 MSD ids: test
    msd_id_to_tag_vector.cP  dict MSD id -> 50 binary tag values
    MSD_id_to_7D_id.pkl      dict MSD id -> 7digital id
    7D_id_to_path.pkl        dict 7digital id -> relative audio path, e.g. "8/9/8947470.clip.mp3"
    50tagList.txt            the tag names in vector order (optional: the published list is built in)
    audio/                   the 7digital previews at those relative paths (or directly in the root)

The pickles are read with a restricted unpickler (`bench.data.safe_pickle`). `bench convert msd`
turns them into a plain manifest once (`bench.data.manifest`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.index import Clip, DatasetIndex
from bench.data.safe_pickle import safe_load
from bench.errors import UserError

N_TRAIN = 201_680
SPLIT_FILES = ("filtered_list_train.cP", "filtered_list_test.cP", "msd_id_to_tag_vector.cP",
               "MSD_id_to_7D_id.pkl", "7D_id_to_path.pkl")
TAG_LIST = "50tagList.txt"
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
    "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
    "indie pop", "sad", "House", "happy",
)
"""The 50 tags in vector order, as published with the split (50tagList.txt)."""


def _as_str(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def read_msd(root: str | Path, n_tags: int = 50, drop_untagged: bool = False) -> DatasetIndex:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"MSD root not found: expected a folder holding {', '.join(SPLIT_FILES)} at {root}")
    missing = [name for name in SPLIT_FILES if not (root / name).is_file()]
    if missing:
        raise UserError(f"MSD split file(s) not found in {root}: {', '.join(missing)}")
    train_valid = [_as_str(i) for i in safe_load(root / "filtered_list_train.cP")]
    test = [_as_str(i) for i in safe_load(root / "filtered_list_test.cP")]
    tag_vectors = {_as_str(k): v for k, v in safe_load(root / "msd_id_to_tag_vector.cP").items()}
    msd_to_7d = {_as_str(k): _as_str(v) for k, v in safe_load(root / "MSD_id_to_7D_id.pkl").items()}
    path_of_7d = {_as_str(k): _as_str(v) for k, v in safe_load(root / "7D_id_to_path.pkl").items()}

    tag_list = root / TAG_LIST
    all_tags = (tuple(t.strip() for t in tag_list.read_text().splitlines() if t.strip())
                if tag_list.is_file() else MSD_TAGS)
    names = all_tags[:n_tags]
    audio_root = root / "audio" if (root / "audio").is_dir() else root

    splits = [(i, "train") for i in train_valid[:N_TRAIN]] + [(i, "valid") for i in train_valid[N_TRAIN:]]
    splits += [(i, "test") for i in test]
    clips, excluded = [], []
    for msd_id, split in splits:
        vector = tag_vectors.get(msd_id)
        seven = msd_to_7d.get(msd_id)
        if vector is None or seven is None or seven not in path_of_7d:
            excluded.append((msd_id, "no tag vector or audio path in the split files"))
            continue
        values = np.asarray(vector).reshape(-1)[: len(names)]
        labels = tuple(int(i) for i in np.flatnonzero(values > 0))
        if drop_untagged and not labels:
            excluded.append((msd_id, f"none of the top {n_tags} tags"))
            continue
        clips.append(Clip(clip_id=msd_id, path=str(audio_root / path_of_7d[seven]), split=split, labels=labels))
    return DatasetIndex(name="msd", root=str(root), tag_names=names, clips=tuple(clips), excluded=tuple(excluded))
