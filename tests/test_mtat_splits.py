"""MTAT as the field reads it: the published top-50 order, the split names, and published split files
in their real formats (sota-music-tagging-models' .npy, musicnn-training's tsv, Lee et al.'s Python 2
pickles)."""

from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import UserError
from bench.data.mtat import MTAT_TOP50, read_mtat
from bench.data.safe_pickle import safe_load
from bench.spec import parse_spec

from .data_fixtures import make_mtat, make_mtat_top50, published_tags


def test_top50_in_the_published_order_despite_the_metal_female_voice_tie(tmp_path):
    index = read_mtat(make_mtat_top50(tmp_path / "mtat"), n_tags=50)
    assert index.tag_names[47:49] == ("metal", "female voice")
    assert index.tag_names == published_tags("mtat")
    # labels follow the names: clip "2" (row 0) carries every top-50 tag, including both tied ones
    clip = next(c for c in index.clips if c.clip_id == "2")
    assert {index.tag_names[i] for i in clip.labels} == set(published_tags("mtat"))
    row_12 = next(c for c in index.clips if c.clip_id == str(2 + 12))  # on tags with count > 12 only
    assert index.tag_names[row_12.labels[-1]] == "female voice"


def test_the_built_in_lists_are_the_published_ones():
    from bench.data.jamendo import JAMENDO_TOP50
    from bench.data.msd import MSD_TAGS

    assert MTAT_TOP50 == published_tags("mtat")  # musicnn's MTT_LABELS
    assert MSD_TAGS == published_tags("msd")  # musicnn's MSD_LABELS
    assert JAMENDO_TOP50 == published_tags("jamendo")  # mtg-jamendo-dataset's data/tags/top50.txt


def test_the_published_order_is_musicnns_mtt_labels():
    configuration = pytest.importorskip("musicnn.configuration")
    assert published_tags("mtat") == tuple(configuration.MTT_LABELS)
    assert published_tags("msd") == tuple(configuration.MSD_LABELS)


def test_a_file_with_another_top50_is_an_error_naming_the_tags(tmp_path):
    root = make_mtat_top50(tmp_path / "mtat")
    path = root / "annotations_final.csv"
    path.write_bytes(path.read_bytes().replace(b'"choral"', b'"chorale"'))
    with pytest.raises(UserError, match=r"chorale in the file's top 50 only; choral in the published list only"):
        read_mtat(root, n_tags=50)
    # other tag counts rank by frequency, ties in column order
    assert read_mtat(root, n_tags=3).tag_names == ("guitar", "classical", "slow")


def test_folder_split_keeps_untagged_clips_and_won_drops_them(tmp_path):
    root = make_mtat_top50(tmp_path / "mtat")
    folders = read_mtat(root, n_tags=50)
    won = read_mtat(root, n_tags=50, split="won")
    # 62 rows into folders 0-f by row mod 16: 0-b train, c valid, d-f test (rows 48-61 reach folder d)
    assert folders.counts() == {"train": 48, "valid": 4, "test": 10}
    # rows 60 (folder c: only the rare tags) and 61 (folder d: no tag) carry no top-50 tag
    assert won.counts() == {"train": 48, "valid": 3, "test": 9}
    assert {("62", "none of the top 50 tags"), ("63", "none of the top 50 tags")} <= set(won.excluded)
    with pytest.raises(UserError, match="dataset.split = 'lee'"):
        read_mtat(root, split="lee")


def _split_folder(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    return folder


def test_split_files_in_sota_npy_format(tmp_path):
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    folder = _split_folder(tmp_path, "sota")
    # sota-music-tagging-models: split/mtat/{train,valid,test}.npy, "<row>\t<mp3_path>" strings whose
    # first field is the row of annotations_final.csv (clip 2 is row 0), not the clip id
    np.save(folder / "train.npy", np.array(["0\t0/artist_a-album-01-track_one-0-29.mp3",
                                            "4\td/artist_e-album-05-song-0-29.mp3"]))
    np.save(folder / "valid.npy", np.array(["1\t3/artist_b-album, with comma-02-song-30-59.mp3"]))
    np.save(folder / "test.npy", np.array(["3\tc/artist_d-album-04-song-0-29.mp3"]))
    index = read_mtat(root, n_tags=3, split_file=str(folder))
    assert {c.clip_id: c.split for c in index.clips} == {"2": "train", "18": "train", "6": "valid", "14": "test"}
    assert ("10", f"not in the split files of {folder}") in index.excluded


def test_split_files_as_npy_arrays_of_bytes(tmp_path):
    """The same lists saved as byte strings (dtype S, as Python 2's numpy saved str): each entry is its
    text, "<row>\t<mp3_path>", not the repr of a bytes object (b'0\\t0/...')."""
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    folder = _split_folder(tmp_path, "sota-bytes")
    np.save(folder / "train.npy", np.array([b"0\t0/artist_a-album-01-track_one-0-29.mp3",
                                            b"4\td/artist_e-album-05-song-0-29.mp3"]))
    np.save(folder / "valid.npy", np.array([b"1\t3/artist_b-album, with comma-02-song-30-59.mp3"]))
    np.save(folder / "test.npy", np.array([b"3\tc/artist_d-album-04-song-0-29.mp3"]))
    assert np.load(folder / "train.npy").dtype.kind == "S"
    index = read_mtat(root, n_tags=3, split_file=str(folder))
    assert {c.clip_id: c.split for c in index.clips} == {"2": "train", "18": "train", "6": "valid", "14": "test"}


def test_split_files_in_musicnn_training_tsv_format_with_crlf(tmp_path):
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    folder = _split_folder(tmp_path, "musicnn-training")
    # musicnn-training: {train,val,test}_gt_mtt.tsv, "<id>\t[labels]"
    (folder / "train_gt_mtt.tsv").write_bytes(b"# id\tlabels\r\n2\t[1, 0, 1]\r\n6\t[1, 1, 0]\r\n")  # a comment
    (folder / "val_gt_mtt.tsv").write_bytes(b"10\t[0, 1, 0]\r\n")
    (folder / "test_gt_mtt.tsv").write_bytes(b"18\t[0, 1, 1]\r\n26\t[1, 1, 0]\r\n")
    index = read_mtat(root, n_tags=3, split_file=str(folder))
    assert {c.clip_id: c.split for c in index.clips} == {"2": "train", "6": "train", "10": "valid", "18": "test",
                                                         "26": "test"}
    excluded = {clip: reason for clip, reason in index.excluded}
    assert excluded["14"].startswith("not in the split") and excluded["22"].startswith("not in the split")


def test_split_files_as_python2_pickles_of_paths(tmp_path):
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    folder = _split_folder(tmp_path, "lee")

    def python2_list(items):  # cPickle.dump(list_of_str, f), protocol 0, as Python 2 wrote Lee et al.'s lists
        body = b"".join(b"S'" + item.encode() + b"'\np" + str(i + 1).encode() + b"\na" for i, item in enumerate(items))
        return b"(lp0\n" + body + b"."

    # their lists name their feature files: <folder>/<name>.npy for <folder>/<name>.mp3
    (folder / "train_list_pub.cP").write_bytes(python2_list(["0/artist_a-album-01-track_one-0-29.npy"]))
    (folder / "valid_list_pub.cP").write_bytes(python2_list(["c/artist_d-album-04-song-0-29.npy"]))
    (folder / "test_list_pub.cP").write_bytes(python2_list(["f/artist_f-album-06-song-0-29.npy",
                                                            "f/artist_g-album-07-song-0-29.mp3"]))
    index = read_mtat(root, n_tags=3, split_file=str(folder))
    assert {c.clip_id: c.split for c in index.clips} == {"2": "train", "14": "valid", "22": "test", "26": "test"}


def test_split_file_errors_name_the_file_and_line(tmp_path):
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    folder = _split_folder(tmp_path, "bad")
    (folder / "train.txt").write_text("2\n999\n")
    (folder / "valid.txt").write_text("6\n")
    (folder / "test.txt").write_text("14\n")
    with pytest.raises(UserError, match=r"train.txt: line 2: '999' is neither a clip id nor an mp3_path"):
        read_mtat(root, n_tags=3, split_file=str(folder))
    (folder / "train.txt").write_text("2\n6\n")
    with pytest.raises(UserError, match=r"valid.txt: line 1: clip 6 is also in the train list \(train.txt:2\)"):
        read_mtat(root, n_tags=3, split_file=str(folder))
    (folder / "test.txt").unlink()
    with pytest.raises(UserError, match="expected exactly one test list"):
        read_mtat(root, n_tags=3, split_file=str(folder))


def test_a_split_array_with_a_corrupt_header_is_one_line(tmp_path):
    """sota's valid.npy with one byte of its header changed (the `)` of its shape): numpy's header
    parser fails with tokenize's error, not a ValueError."""
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    folder = _split_folder(tmp_path, "corrupt")
    for split, clips in {"train": ["2"], "valid": ["6"], "test": ["14"]}.items():
        np.save(folder / f"{split}.npy", np.array([f"{i}\t{c}" for i, c in enumerate(clips)]))
    data = (folder / "valid.npy").read_bytes()
    assert data.count(b"(1,)") == 1
    (folder / "valid.npy").write_bytes(data.replace(b"(1,)", b"(1,\x12"))
    with pytest.raises(UserError, match=r"valid.npy: not an array of strings \("):
        read_mtat(root, n_tags=3, split_file=str(folder))


def _spec(dataset: dict):
    return parse_spec({"name": "s", "seeds": [0], "dataset": dataset,
                       "grid": [{"arch": ["vgg"], "sample_rate": [16000], "n_mels": [96], "hop_multiplier": [1],
                                 "log": ["log"]}]}, "s.toml")


def test_split_fields_in_specs_and_run_identity():
    folders = _spec({"name": "mtat"})
    assert "split" not in folders.runs()[0].canonical()["dataset"]  # run ids from before the field hold
    won = _spec({"name": "mtat", "split": "won"})
    assert won.runs()[0].canonical()["dataset"]["split"] == "won"
    assert won.runs()[0].run_id != folders.runs()[0].run_id
    with pytest.raises(UserError, match="dataset.split"):
        _spec({"name": "mtat", "split": "lee"})
    with pytest.raises(UserError, match="split_file: 'splits/lee' is for MTAT-format datasets and jamendo only"):
        _spec({"name": "msd", "split_file": "splits/lee"})
    with pytest.raises(UserError, match="dataset.subset: 'genre' is for jamendo only"):
        _spec({"name": "mtat", "subset": "genre"})


REAL = Path(__file__).parent / "data" / "mtat_splits"


def real_sample_mtat(root: Path) -> dict[str, str]:
    """annotations_final.csv of the sampled clips (real ids and paths, one tag column); path -> id."""
    rows = [line.split("\t") for line in (REAL / "index_mtt_sample.tsv").read_text().splitlines()]
    root.mkdir()
    quoted = ['"clip_id"\t"guitar"\t"mp3_path"'] + [f'"{cid}"\t"1"\t"{path}"' for cid, path in rows]
    (root / "annotations_final.csv").write_text("\n".join(quoted) + "\n")
    return {path: cid for cid, path in rows}


def test_the_published_split_files_of_sota_and_lee_read_as_published(tmp_path):
    """Entries sampled from the real files (tests/data/mtat_splits/README.md): sota's "<row>\t<path>"
    strings and Lee et al.'s pickled "<folder>/<name>.npy" lists put every clip in its split, and the
    two agree where they list the same clips (sota's valid and test lists are Lee et al.'s): every
    train clip (sota's train list is made here from Lee et al.'s sample) and, of the sampled valid and
    test entries, the one clip both samples hold, a test clip."""
    root = tmp_path / "mtat"
    id_of = real_sample_mtat(root)
    sota = tmp_path / "sota"
    sota.mkdir()
    for split in ("valid", "test"):
        (sota / f"{split}.npy").write_bytes((REAL / "sota" / f"{split}.npy").read_bytes())
    lee_train = safe_load(REAL / "lee" / "train_list_pub.cP")
    # sota's train.npy is in no public snapshot: the same format, from Lee et al.'s train sample
    np.save(sota / "train.npy", np.array([f"{row}\t{p[:-4]}.mp3" for row, p in enumerate(lee_train)]))
    # the first field is a row of annotations_final.csv, not a clip id: row 0 is clip 2
    first = "f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3"
    assert str(np.load(REAL / "sota" / "test.npy")[0]) == f"0\t{first}" and id_of[first] == "2"
    expected = {}
    for split in ("valid", "test"):
        for entry in np.load(REAL / "sota" / f"{split}.npy"):
            expected[id_of[str(entry).split("\t")[1]]] = split
    expected |= {id_of[p[:-4] + ".mp3"]: "train" for p in lee_train}
    read = read_mtat(root, n_tags=1, split_file=str(sota))
    assert {c.clip_id: c.split for c in read.clips} == expected

    lee = read_mtat(root, n_tags=1, split_file=str(REAL / "lee"))
    lee_split = {c.clip_id: c.split for c in lee.clips}
    assert lee.counts() == {"train": 153, "valid": 16, "test": 44}  # every 100th of 15,244 / 1,529 / 4,332
    assert all(lee_split[clip] == split for clip, split in expected.items() if clip in lee_split)
    shared = (set(lee_split) & set(expected)) - {id_of[p[:-4] + ".mp3"] for p in lee_train}
    assert [(expected[clip], lee_split[clip]) for clip in shared] == [("test", "test")]
    unlisted = [line.split("\t")[0] for line in (REAL / "index_mtt_sample.tsv").read_text().splitlines()[-5:]]
    for index in (read, lee):
        assert set(unlisted) <= {clip for clip, reason in index.excluded if reason.startswith("not in the split")}


def test_a_folder_holding_sotas_and_lees_lists_is_chosen_from_by_suffix(tmp_path):
    # sota-music-tagging-models' split/mtat/ keeps its train/valid/test.npy beside Lee et al.'s
    # *_list_pub.cP: two splits in one folder
    root = tmp_path / "mtat"
    real_sample_mtat(root)
    both = tmp_path / "split" / "mtat"
    both.mkdir(parents=True)
    for split in ("valid", "test"):
        (both / f"{split}.npy").write_bytes((REAL / "sota" / f"{split}.npy").read_bytes())
    lee_train = safe_load(REAL / "lee" / "train_list_pub.cP")
    np.save(both / "train.npy", np.array([f"{row}\t{p[:-4]}.mp3" for row, p in enumerate(lee_train)]))
    for split in ("train", "valid", "test"):
        (both / f"{split}_list_pub.cP").write_bytes((REAL / "lee" / f"{split}_list_pub.cP").read_bytes())
    with pytest.raises(UserError, match=r"expected exactly one train list .* found train.npy, train_list_pub.cP; "
                                        r"the folder holds more than one split, choose one by its files' suffix: "
                                        r".*split/mtat/\*.cP or .*split/mtat/\*.npy"):
        read_mtat(root, n_tags=1, split_file=str(both))
    lee = read_mtat(root, n_tags=1, split_file=str(both / "*.cP"))
    assert lee.counts() == {"train": 153, "valid": 16, "test": 44}  # every 100th of 15,244 / 1,529 / 4,332
    sota = read_mtat(root, n_tags=1, split_file=str(both / "*.npy"))
    assert sota.counts()["valid"] == len(np.load(REAL / "sota" / "valid.npy"))
    # and through a spec, relative to the dataset root
    assert _spec({"name": "mtat", "split_file": "split/mtat/*.npy"}).dataset.split_file == "split/mtat/*.npy"


def test_a_split_file_path_longer_than_the_file_system_takes_is_said_of_split_file(tmp_path):
    """The grid's advice for ENAMETOOLONG (a shorter --results, --cache or --data) would not help: the
    error names the spec's split_file."""
    from bench.data.splits import split_files

    long = tmp_path / ("y" * 300)
    with pytest.raises(UserError) as info:
        split_files(long)
    assert str(info.value) == f"split_file {long}: File name too long"
