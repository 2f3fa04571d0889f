"""Dataset readers: MTAT (hand-made tree), MSD (pickles, restricted), generic manifests."""

import importlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import UserError
from bench.data.manifest import read_manifest, write_manifest
from bench.data.msd import read_msd
from bench.data.mtat import read_mtat
from bench.data.safe_pickle import UnsafePickleError, safe_load

from .data_fixtures import make_mtat, published_tags

NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
"""Where this numpy keeps its core (numpy 2 renamed numpy.core to numpy._core)."""


def test_mtat_top_tags_splits_and_exclusions(tmp_path):
    index = read_mtat(make_mtat(tmp_path / "mtat", write_audio=False), n_tags=3)
    # guitar 5, slow 5 (tie: column order), classical 3 (tie with "no voice": column order)
    assert index.tag_names == ("guitar", "slow", "classical")
    # folders 0, 3, b -> train; c -> valid; d, f, f -> test; 35644 excluded as known broken
    assert index.counts() == {"train": 3, "valid": 1, "test": 3}
    assert index.excluded == (("35644", "known broken MP3"),)
    by_id = {c.clip_id: c for c in index.clips}
    assert by_id["6"].path.endswith("3/artist_b-album, with comma-02-song-30-59.mp3")
    assert [index.tag_names[i] for i in by_id["18"].labels] == ["slow", "classical"]
    assert by_id["22"].labels == ()  # kept by default: the paper's code keeps untagged clips
    y = index.targets(index.split("test"))
    assert y.shape == (3, 3) and y.dtype == np.float32
    assert y.tolist() == [[0, 1, 1], [0, 0, 0], [1, 1, 0]]


def test_an_mtat_clip_whose_mp3_path_holds_a_nul_character_is_excluded(tmp_path):
    """No file name holds a NUL (the OS refuses it: ValueError), so the clip is excluded with the reason,
    where `bench prepare` ended in a traceback in the cache's resolution of its path."""
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    annotations = root / "annotations_final.csv"
    lines = annotations.read_text().splitlines(keepends=True)
    path = lines[1].rstrip("\n").split("\t")[-1].strip('"')
    annotations.write_text("".join([lines[0], lines[1].replace(path, path.replace("/", "/\0", 1)), *lines[2:]]))
    index = read_mtat(root, n_tags=3)
    clip_id = lines[1].split("\t")[0].strip('"')
    assert (clip_id, f"mp3_path {path.replace('/', '/' + chr(0), 1)!r} holds a NUL character, which no file name "
            "can") in index.excluded
    assert clip_id not in {c.clip_id for c in index.clips}


def test_an_audio_path_holding_a_nul_character_is_a_missing_file_not_an_error(tmp_path):
    from bench.data.index import AUDIO_MISSING, audio_file_problem

    assert audio_file_problem(str(tmp_path / "a\0b.mp3")) == AUDIO_MISSING  # os.stat raises ValueError


def test_an_mtat_tag_column_twice_among_the_tags_trained_on_is_refused(tmp_path):
    """Two columns of one name among the tags kept: two outputs of one name, whose per-tag scores (a dict
    by tag) keep one; a repeat among the tags left out changes nothing and is read."""
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    annotations = root / "annotations_final.csv"
    text = annotations.read_text()
    header, rest = text.split("\n", 1)
    columns = header.split("\t")
    kept = read_mtat(root, n_tags=3).tag_names
    left_out = [c for c in columns[1:-1] if c.strip('"') not in kept]
    annotations.write_text("\t".join(c if c != left_out[0] else left_out[1] for c in columns) + "\n" + rest)
    assert read_mtat(root, n_tags=3).tag_names == kept
    annotations.write_text(header.replace(f'"{kept[2]}"', f'"{kept[0]}"') + "\n" + rest)
    with pytest.raises(UserError, match=f"tag column\\(s\\) '{kept[0]}' twice in the header, among the 3 tags"):
        read_mtat(root, n_tags=3)


def test_mtat_drop_untagged(tmp_path):
    index = read_mtat(make_mtat(tmp_path / "mtat", write_audio=False), n_tags=3, drop_untagged=True)
    assert index.counts() == {"train": 3, "valid": 1, "test": 2}
    assert ("22", "none of the top 3 tags") in index.excluded


def test_mtat_missing_root_and_annotations(tmp_path):
    with pytest.raises(UserError, match="MTAT root not found: expected a folder holding annotations_final.csv"):
        read_mtat(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="MTAT annotations not found: expected .*annotations_final.csv"):
        read_mtat(tmp_path / "empty")


def test_mtat_annotations_with_a_clip_twice_or_a_value_other_than_0_or_1_are_refused(tmp_path):
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    annotations = root / "annotations_final.csv"
    lines = annotations.read_text().splitlines(keepends=True)
    annotations.write_text("".join([*lines, lines[1]]))
    with pytest.raises(UserError, match=rf"line {len(lines) + 1}: clip_id 2 again \(first on line 2\)"):
        read_mtat(root)
    # one recording under two ids (MTAT's 25,863 rows name 25,863 files): counted twice, perhaps in two splits
    path = lines[1].rstrip("\n").split("\t")[-1]
    other = lines[2].rstrip("\n").split("\t")
    annotations.write_text("".join([*lines[:2], "\t".join([*other[:-1], path]) + "\n", *lines[3:]]))
    with pytest.raises(UserError, match=rf"line 3: mp3_path {path.strip(chr(34))} again \(first on line 2\)"):
        read_mtat(root)
    annotations.write_text("".join(lines))
    plain = read_mtat(root, n_tags=3)
    annotations.write_bytes(b"\xef\xbb\xbf" + "".join(lines).encode())  # as a spreadsheet saves it
    assert read_mtat(root, n_tags=3) == plain
    for value in ("2", "-1"):  # int() reads both; a 2 would count as a positive, a -1 lower the tag's count
        annotations.write_text("".join([lines[0], lines[1].replace('"1"', f'"{value}"', 1), *lines[2:]]))
        with pytest.raises(UserError, match="line 2: tag values must be 0 or 1"):
            read_mtat(root)
    # an unbalanced quote reads the rest of a large file as one field, past csv's field limit
    plain_lines = [line.replace('"', "") for line in lines]  # quoting is optional; one opening quote left
    annotations.write_text("".join([plain_lines[0], '"' + plain_lines[1], *plain_lines[2:] * 2000]))
    with pytest.raises(UserError, match="not tab-separated text .*field larger than field limit"):
        read_mtat(root)


def test_one_mtat_recording_under_two_spellings_of_its_path_is_refused(tmp_path):
    """`d/../0/x.mp3` (or `0/./x.mp3`, `0//x.mp3`) beside `0/x.mp3`: one recording in train and test,
    read without a word; a clip's split is the folder its file is in."""
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    annotations = root / "annotations_final.csv"
    lines = annotations.read_text().splitlines(keepends=True)
    first = lines[1].rstrip("\n").split("\t")[-1].strip('"')
    folder, name = first.split("/")
    for spelling in (f"d/../{first}", f"{folder}/./{name}", f"{folder}//{name}"):
        other = lines[2].rstrip("\n").split("\t")
        annotations.write_text("".join([*lines[:2], "\t".join([*other[:-1], f'"{spelling}"']) + "\n", *lines[3:]]))
        with pytest.raises(UserError, match=rf"line 3: mp3_path {spelling} again \(first on line 2\)"):
            read_mtat(root)


def test_an_mtat_file_cut_inside_a_quoted_field_is_refused_and_a_line_of_spaces_is_blank(tmp_path):
    """A download cut inside its last quoted field (`"f/clip.mp3` without its closing quote): the csv
    module read the cut field to the end of the file, a path that names no file, and the clip was left
    out as missing. A line of spaces, or of empty fields, is a blank line, as the other readers have it."""
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    annotations = root / "annotations_final.csv"
    text = annotations.read_text()
    plain = read_mtat(root, n_tags=3)
    annotations.write_text(text.rstrip("\n")[:-4])
    with pytest.raises(UserError, match=rf"the row from line {text.count(chr(10))}: not tab-separated text "
                                        r"\(unexpected end of data; an unbalanced quote\?\)"):
        read_mtat(root)
    annotations.write_text(text + "   \n" + "\t" * 5 + "\n")
    assert read_mtat(root, n_tags=3) == plain


def test_an_mtat_format_folder_of_fewer_than_50_tags_says_how_to_train_on_them(tmp_path):
    """The default n_tags (50) on an annotations file of 3 tag columns (an MTAT-format folder that is not
    MTAT: a subset, or the synthetic data under name = "mtat"): one line saying what to set, not an error
    about MTAT's published top 50 naming tags the file cannot have; with n_tags = 3 it reads them all."""
    rows = ['"clip_id"\t"drums"\t"piano"\t"voice"\t"mp3_path"']
    for i, folder in enumerate("0123456789abcdef" * 2):  # voice on every clip, drums on half, piano on half
        rows.append(f'"{i}"\t"{i % 2}"\t"{(i // 2) % 2}"\t"1"\t"{folder}/clip{i}.mp3"')
    (tmp_path / "annotations_final.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(UserError, match=r"annotations_final.csv: 3 tag columns, not MTAT's 188, so not its top 50 "
                                        r"\(the default n_tags\): set dataset.n_tags to at most 3"):
        read_mtat(tmp_path)
    index = read_mtat(tmp_path, n_tags=3)
    assert index.tag_names == ("voice", "drums", "piano")  # 32, 16, 16 clips: ties in column order
    assert index.counts() == {"train": 24, "valid": 2, "test": 6}  # folders 0-b, c, d-f


def write_msd_split(root, n_train=201_680 + 3, n_test=4, protocol=2, audio=False):
    """The five split files with the published structure, written as protocol-2 pickles (and, with
    `audio`, a non-empty file at every 7digital path)."""
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"TR{i:016d}" for i in range(n_train + n_test)]
    rng = np.random.default_rng(0)
    vectors = {i: (rng.random((50, 1)) < 0.1).astype(np.int64) for i in ids}
    seven = {i: str(1000 + k) for k, i in enumerate(ids)}
    paths = {s: f"{s[-1]}/{s[-2]}/{s}.clip.mp3" for s in seven.values()}
    for name, obj in [("filtered_list_train.cP", ids[:n_train]), ("filtered_list_test.cP", ids[n_train:]),
                      ("msd_id_to_tag_vector.cP", vectors), ("MSD_id_to_7D_id.pkl", seven),
                      ("7D_id_to_path.pkl", paths)]:
        (root / name).write_bytes(pickle.dumps(obj, protocol=protocol))
    if audio:
        for relative in paths.values():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(b"ID3")
    return ids, vectors


def test_msd_split_from_pickles(tmp_path, monkeypatch):
    from bench.data import msd

    ids, vectors = write_msd_split(tmp_path / "msd")
    # 201,687 audio files are not written: every track's file "exists" (checking it is tested below)
    monkeypatch.setattr(msd, "first_audio_file", lambda audio_root, candidates: (f"{audio_root}/{candidates[0]}", ""))
    index = read_msd(tmp_path / "msd")
    # Lee et al.'s split: the first 201,680 tracks of filtered_list_train.cP train, the rest validate
    assert index.counts() == {"train": 201_680, "valid": 3, "test": 4}
    assert index.tag_names == published_tags("msd")
    clip = index.clips[-1]
    assert clip.clip_id == ids[-1] and clip.split == "test"
    assert list(clip.labels) == list(np.flatnonzero(vectors[ids[-1]].ravel()))
    assert clip.path.endswith(".clip.mp3")
    assert all(list(c.labels) == np.flatnonzero(vectors[c.clip_id].ravel()).tolist() for c in index.clips)


def test_convert_msd_to_manifest(tmp_path, capsys, monkeypatch):
    from bench.cli import main
    from bench.data import msd

    monkeypatch.setattr(msd, "N_TRAIN", 4)  # a small split: the real boundary is tested above
    write_msd_split(tmp_path / "msd", n_train=6, n_test=3, audio=True)
    assert main(["convert-msd", str(tmp_path / "msd"), "--out", str(tmp_path / "msd" / "manifest.csv")]) == 0
    assert "train 4, valid 2, test 3" in capsys.readouterr().out
    direct = read_msd(tmp_path / "msd")
    converted = read_manifest(tmp_path / "msd" / "manifest.csv")
    assert converted.tag_names == direct.tag_names
    assert [(c.clip_id, c.path, c.split, c.labels) for c in converted.clips] == \
        [(c.clip_id, c.path, c.split, c.labels) for c in direct.clips]


def test_convert_msd_with_a_relative_root(tmp_path, capsys, monkeypatch):
    # `bench convert-msd data/msd --out data/msd/manifest.csv`: the reader's paths are relative to the
    # working directory, the manifest's to its own folder
    from bench.cli import main
    from bench.data import msd

    monkeypatch.setattr(msd, "N_TRAIN", 4)
    write_msd_split(tmp_path / "data" / "msd", n_train=6, n_test=3, audio=True)
    monkeypatch.chdir(tmp_path)
    assert main(["convert-msd", "data/msd", "--out", "data/msd/manifest.csv"]) == 0
    assert main(["convert-msd", "data/msd", "--out", "elsewhere/manifest.csv"]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "data")  # read from anywhere
    for manifest in (tmp_path / "data" / "msd" / "manifest.csv", tmp_path / "elsewhere" / "manifest.csv"):
        converted = read_manifest(manifest)
        assert len(converted.clips) == 9 and all(Path(c.path).is_file() for c in converted.clips)
    rows = (tmp_path / "data" / "msd" / "manifest.csv").read_text().splitlines()
    assert rows[1].split(",")[1].endswith(".clip.mp3") and not rows[1].split(",")[1].startswith(("/", "data"))
    assert (tmp_path / "elsewhere" / "manifest.csv").read_text().splitlines()[1].split(",")[1].startswith("/")


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    bad = tmp_path / "msd_id_to_tag_vector.cP"
    bad.write_bytes(pickle.dumps({"TR1": Exploit()}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle (posix|os)\.system"):
        safe_load(bad)
    # and through the reader, with the other files in place
    write_msd_split(tmp_path / "msd", n_train=3, n_test=1)
    (tmp_path / "msd" / "msd_id_to_tag_vector.cP").write_bytes(bad.read_bytes())
    with pytest.raises(UnsafePickleError):
        read_msd(tmp_path / "msd")


def test_a_pickle_that_would_fill_memory_is_refused(tmp_path):
    """bytes(n) and bytearray(n): 30 bytes of pickle had made 300 MB of zeros before any check."""
    path = tmp_path / "split.cP"
    path.write_bytes(b"c__builtin__\nbytearray\n(I300000000\ntR.")
    with pytest.raises(UnsafePickleError, match="refusing to unpickle __builtin__.bytearray"):
        safe_load(path)
    path.write_bytes(b"cbuiltins\nbytes\n(I300000000\ntR.")
    with pytest.raises(UnsafePickleError, match=r"refusing bytes\(int\)"):
        safe_load(path)
    size = pickle.dumps(np.int64(300_000_000), protocol=2)[2:-1]  # the size as a numpy integer
    path.write_bytes(b"\x80\x02c__builtin__\nbytes\n" + size + b"\x85R.")
    with pytest.raises(UnsafePickleError, match=r"refusing bytes\(int64\)"):
        safe_load(path)
    path.write_bytes(pickle.dumps([b"", b"TRAAAAW128F429D538"], protocol=2))  # Python 3's bytes at protocol 2
    assert safe_load(path) == [b"", b"TRAAAAW128F429D538"]


def test_a_corrupt_pickle_is_one_line_however_it_fails(tmp_path, monkeypatch):
    """One byte changed in a split pickle fails in the unpickler's or numpy's words, not only as an
    UnpicklingError: the name of an encoding numpy's array pickle carries (LookupError), a length field
    past what can be held (OverflowError), a length that cannot be allocated (MemoryError, here
    raised where the unpickler would)."""
    import numpy as np

    from bench.data import safe_pickle

    vectors = pickle.dumps({"TRAAAAK128F9318786": np.zeros((50, 1))}, protocol=2)
    assert vectors.count(b"latin1") == 1
    cases = {"encoding.cP": vectors.replace(b"latin1", b"uatin1"),
             "length.cP": b"\x80\x04\x8e" + b"\xff" * 7 + b"\x7f"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match=rf"{name}: not a readable pickle \((LookupError|OverflowError): "):
            safe_load(tmp_path / name)

    def allocation_fails(self):
        raise MemoryError
    monkeypatch.setattr(safe_pickle._RestrictedUnpickler, "load", allocation_fails)
    with pytest.raises(UserError, match=r"length.cP: not a readable pickle \(MemoryError"):
        safe_load(tmp_path / "length.cP")


def test_safe_load_reads_python2_style_pickles(tmp_path):
    # Protocol 0 and 2 with numpy arrays, as cPickle wrote them; 4 and 5 (Python 3's default) as a file
    # re-saved by anyone since: protocol 5 carries an array as its raw buffer (numpy's _frombuffer).
    for protocol in (0, 2, 4, 5):
        path = tmp_path / f"p{protocol}.cP"
        path.write_bytes(pickle.dumps({"a": np.arange(3), "m": np.eye(2, dtype=np.float32)[:, ::-1],
                                       "b": ["x", 1.5]}, protocol=protocol))
        data = safe_load(path)
        assert data["a"].tolist() == [0, 1, 2] and data["b"] == ["x", 1.5]
        assert data["m"].tolist() == [[0, 1], [1, 0]] and data["m"].dtype == np.float32
    # an object array through _frombuffer would not be numbers: numpy refuses to make one from a buffer
    _frombuffer = importlib.import_module(f"{NUMPY_CORE}.numeric")._frombuffer

    class ObjectArray:
        def __reduce__(self):
            return _frombuffer, (b"\0" * 8, np.dtype("O"), (1,), "C")

    path = tmp_path / "objects.cP"
    path.write_bytes(pickle.dumps(ObjectArray(), protocol=5))
    with pytest.raises(UserError, match="cannot create an OBJECT array from memory buffer"):
        safe_load(path)


@pytest.mark.parametrize("written_by", ["numpy.core", "numpy._core"])
def test_a_pickle_written_by_either_numpy_loads(tmp_path, written_by):
    """numpy 1 writes numpy.core.multiarray into a pickle and numpy 2 numpy._core.multiarray: the MSD
    split files carry the first, a file re-saved since may carry the second, and either loads whichever
    numpy reads it (numpy 1 has no numpy._core)."""
    data = pickle.dumps({"ids": np.arange(3), "m": np.eye(2, dtype=np.float32)}, protocol=2)
    assert f"c{NUMPY_CORE}.multiarray\n".encode() in data  # protocol 2 names a global as text
    path = tmp_path / "split.cP"
    path.write_bytes(data.replace(f"c{NUMPY_CORE}.".encode(), f"c{written_by}.".encode()))
    loaded = safe_load(path)
    assert loaded["ids"].tolist() == [0, 1, 2] and loaded["m"].dtype == np.float32


def test_msd_fewer_tags_are_the_most_frequent_on_the_tracks_of_the_splits(tmp_path, monkeypatch):
    """msd_id_to_tag_vector.cP holds vectors of tracks the split lists do not name: they must not decide
    which tags a top-N grid keeps (counting them too had passed every test)."""
    from bench.data import msd

    write_msd_split(tmp_path / "msd", n_train=3, n_test=1)
    path = tmp_path / "msd" / "msd_id_to_tag_vector.cP"
    vectors = safe_load(path)
    listed = {i: np.zeros((50, 1), dtype=np.int64) for i in vectors}
    for i, vector in enumerate(listed.values()):
        vector[[0, 1 + i % 2]] = 1  # the 1st published tag on every listed track, the 2nd and 3rd on half each
    unlisted = {f"TRX{k:015d}": np.zeros((50, 1), dtype=np.int64) for k in range(10)}
    for vector in unlisted.values():
        vector[[5, 6]] = 1  # the 6th and 7th on ten tracks no split names
    path.write_bytes(pickle.dumps({**listed, **unlisted}, protocol=2))
    monkeypatch.setattr(msd, "first_audio_file", lambda audio_root, candidates: (f"{audio_root}/{candidates[0]}", ""))
    tags = published_tags("msd")
    assert read_msd(tmp_path / "msd", n_tags=1).tag_names == (tags[0],)
    assert set(read_msd(tmp_path / "msd", n_tags=3).tag_names) == set(tags[:3])


@pytest.mark.parametrize("size", [30, 60])
def test_msd_tag_vector_of_another_length_than_the_tags(tmp_path, size):
    write_msd_split(tmp_path / "msd", n_train=3, n_test=1)
    vectors = safe_load(tmp_path / "msd" / "msd_id_to_tag_vector.cP")
    vectors["TR0000000000000002"] = np.zeros(size, dtype=np.int64)
    (tmp_path / "msd" / "msd_id_to_tag_vector.cP").write_bytes(pickle.dumps(vectors, protocol=2))
    with pytest.raises(UserError, match=r"^\S*msd_id_to_tag_vector.cP: the tag vector of TR0000000000000002 has "
                                        f"{size} values, but the published list of 50 Last.fm tags names 50 tags"):
        read_msd(tmp_path / "msd", n_tags=3)


def test_an_msd_tag_list_a_line_short_of_the_vectors_is_refused(tmp_path):
    """Without "jazz" (line 10 of the published 50tagList.txt) every later column would be read under the
    tag of the column after it: column 10 (jazz) as "beautiful", and so on."""
    write_msd_split(tmp_path / "msd", n_train=3, n_test=1)
    tags = [t for t in published_tags("msd") if t != "jazz"]
    (tmp_path / "msd" / "50tagList.txt").write_text("\n".join(tags) + "\n")
    with pytest.raises(UserError, match=r"^\S*msd_id_to_tag_vector.cP: the tag vector of TR0000000000000000 has "
                                        r"50 values, but \S*50tagList.txt names 49 tags: one value per tag, in its "
                                        "order$"):
        read_msd(tmp_path / "msd")


def test_msd_missing_files(tmp_path):
    (tmp_path / "msd").mkdir()
    with pytest.raises(UserError, match="MSD split file\\(s\\) not found .*filtered_list_train.cP"):
        read_msd(tmp_path / "msd")


def test_manifest_roundtrip_and_tag_order(tmp_path):
    csv_text = "path,split,tags\na.mp3,train,rock;pop\nb.mp3,valid,pop\nc.mp3,test,jazz;pop\nd.mp3,train,\n"
    (tmp_path / "m.csv").write_text(csv_text)
    index = read_manifest(tmp_path / "m.csv", n_tags=2)
    assert index.tag_names == ("pop", "rock")  # pop 3; rock and jazz 1 each, rock seen first
    assert index.counts() == {"train": 2, "valid": 1, "test": 1}
    assert index.clips[0].path == str(tmp_path / "a.mp3")
    out = write_manifest(index, tmp_path / "copy" / "manifest.csv")
    again = read_manifest(out, n_tags=2)
    assert again.tag_names == index.tag_names
    assert [c.labels for c in again.clips] == [c.labels for c in index.clips]
    # an explicit tag order file wins
    (tmp_path / "m.tags.txt").write_text("jazz\nrock\npop\n")
    assert read_manifest(tmp_path / "m.csv", n_tags=2).tag_names == ("jazz", "rock")


def test_manifest_errors(tmp_path):
    with pytest.raises(UserError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "tracks.csv").write_text("path,split,tags\n")
    with pytest.raises(UserError, match="folder is a folder; the dataset path names the CSV file itself "
                                        "\\(it holds tracks.csv\\)"):
        read_manifest(tmp_path / "folder")
    (tmp_path / "bad.csv").write_text("path,split\na.mp3,train\n")
    with pytest.raises(UserError, match="missing column\\(s\\) tags"):
        read_manifest(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("path,split,tags\na.mp3,training,rock\n")
    with pytest.raises(UserError, match="line 2: split 'training'"):
        read_manifest(tmp_path / "bad2.csv")
    (tmp_path / "short.csv").write_text("path,split,tags\na.mp3,train,rock\nb.mp3\n")
    with pytest.raises(UserError, match="line 3: no split"):
        read_manifest(tmp_path / "short.csv")
    (tmp_path / "twice.csv").write_text("path,split,tags\na.mp3,train,rock\nb.mp3,train,jazz\na.mp3,test,rock\n")
    with pytest.raises(UserError, match="line 4: path 'a.mp3' again \\(line 2, train\\)"):
        read_manifest(tmp_path / "twice.csv")  # scored on a clip it trained on
    (tmp_path / "spelt.csv").write_text("path,split,tags\na.mp3,train,rock\n./a.mp3,test,rock\n")
    with pytest.raises(UserError, match="line 3: path './a.mp3' again \\(line 2, train\\)"):
        read_manifest(tmp_path / "spelt.csv")  # one file, however it is spelt
    (tmp_path / "full.csv").write_text(f"path,split,tags\na.mp3,train,rock\n{tmp_path / 'a.mp3'},valid,rock\n")
    with pytest.raises(UserError, match="line 3: path .* again \\(line 2, train\\)"):
        read_manifest(tmp_path / "full.csv")
    (tmp_path / "ids.csv").write_text("clip_id,path,split,tags\nX,a.mp3,train,rock\nX,b.mp3,valid,jazz\n")
    with pytest.raises(UserError, match="line 3: clip_id 'X' again \\(line 2, train\\)"):
        read_manifest(tmp_path / "ids.csv")
    (tmp_path / "latin1.csv").write_bytes("path,split,tags\nbj\u00f6rk.mp3,train,rock\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8 text"):
        read_manifest(tmp_path / "latin1.csv")
    (tmp_path / "commas.csv").write_text("path,split,tags\na.mp3,train,rock\nb.mp3,train,rock,pop\n")
    with pytest.raises(UserError, match="line 3: 4 fields where the header has 3; tags are separated by ';'"):
        read_manifest(tmp_path / "commas.csv")  # pop would be lost
    (tmp_path / "cols.csv").write_text("path,split,tags,tags\na.mp3,train,rock,pop\n")
    with pytest.raises(UserError, match="line 1: column\\(s\\) 'tags' twice in the header"):
        read_manifest(tmp_path / "cols.csv")  # the last `tags` was read, the first lost unsaid
    # a spreadsheet's empty unnamed columns, and a column no reader reads, may repeat
    (tmp_path / "sheet.csv").write_text("path,split,tags,,,notes,notes\na.mp3,train,rock,,,x,y\nb.mp3,test,rock,,,,\n")
    assert read_manifest(tmp_path / "sheet.csv").tag_names == ("rock",)
    (tmp_path / "nul.csv").write_text("path,split,tags\na.mp3,train,rock\nb\0.mp3,valid,pop\n")
    with pytest.raises(UserError, match="line 3: path 'b\\\\x00.mp3' holds a NUL character"):
        read_manifest(tmp_path / "nul.csv")  # no file has such a name: os.stat and realpath raise ValueError
    (tmp_path / "m.csv").write_text("path,split,tags\na.mp3,train,rock\nb.mp3,valid,pop\n")
    (tmp_path / "m.tags.txt").write_text("rock\npop\n\nrock\n")
    with pytest.raises(UserError, match="m.tags.txt: line 4: tag 'rock' again \\(line 1\\)"):
        read_manifest(tmp_path / "m.csv")  # a second output for rock would never be trained


def test_manifest_errors_name_the_files_lines_and_tags_count_once_per_clip(tmp_path):
    """An error names the line an editor shows, past blank lines and fields that hold a line break; a tag
    written twice in a row (`pop;pop`, merged tag columns) is one clip with it, and tags are ordered by
    the clips that have them: rock on 3 clips before pop on 2."""
    (tmp_path / "blank.csv").write_bytes(b"path,split,tags\r\n\r\n\r\na.mp3,train,rock\r\nb.mp3,valid,rock\r\n"
                                         b"a.mp3,test,pop\r\n")
    with pytest.raises(UserError, match="line 6: path 'a.mp3' again \\(line 4, train\\)"):
        read_manifest(tmp_path / "blank.csv")
    (tmp_path / "broken.csv").write_text('path,split,tags\na.mp3,train,"rock;\npop"\nb.mp3,validation,rock\n')
    with pytest.raises(UserError, match="line 4: split 'validation'"):
        read_manifest(tmp_path / "broken.csv")
    (tmp_path / "twice.csv").write_text("path,split,tags\na.mp3,train,pop;pop;pop\nb.mp3,train,rock;pop\n"
                                        "c.mp3,valid,rock\nd.mp3,test,rock\n")
    index = read_manifest(tmp_path / "twice.csv")
    assert index.tag_names == ("rock", "pop") and read_manifest(tmp_path / "twice.csv", n_tags=1).tag_names == ("rock",)
    assert [c.labels for c in index.clips] == [(1,), (0, 1), (0,), (0,)]


def test_a_manifest_row_without_tags_and_one_with_a_stray_quote(tmp_path):
    """A row that stops before its tags field is an untagged clip (it was a KeyError once rows were read
    by position); an unbalanced quote takes in the rest of the file as one field, past csv's limit: one
    line naming where that row starts, not a _csv.Error traceback."""
    (tmp_path / "short.csv").write_text("path,split,tags\na.mp3,train,rock\nb.mp3,test\n")
    assert [c.labels for c in read_manifest(tmp_path / "short.csv").clips] == [(0,), ()]
    rows = [f"{i:05d}.mp3,train,rock" for i in range(9000)]
    rows[10] = '"Weird Al - 1.mp3,train,rock'
    (tmp_path / "quote.csv").write_text("path,split,tags\n" + "\n".join(rows) + "\n")
    with pytest.raises(UserError, match=r"quote.csv: the row from line 12: not CSV text \(field larger than field "
                                        r"limit"):
        read_manifest(tmp_path / "quote.csv")


def test_a_file_listed_twice_is_found_with_the_manifest_named_relative(tmp_path, monkeypatch):
    """A manifest named from the working directory (`--data man/m.csv`) listing a file once by its
    relative path and once by its full path: one file, whichever way the manifest is named."""
    (tmp_path / "man").mkdir()
    full = tmp_path / "man" / "a.mp3"
    (tmp_path / "man" / "m.csv").write_text(f"path,split,tags\na.mp3,train,rock\n{full},test,rock\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="line 3: path .* again \\(line 2, train\\)"):
        read_manifest("man/m.csv")  # scored on a clip it trained on


def test_msd_split_files_of_the_wrong_kind_are_named(tmp_path, monkeypatch):
    """msd_id_to_tag_vector.cP is a dict by MSD id; a file holding a list (another pickle saved under its
    name) is one line, not an AttributeError."""
    from bench.data import msd

    monkeypatch.setattr(msd, "N_TRAIN", 4)  # a small split: the real boundary is tested above
    write_msd_split(tmp_path / "msd", n_train=6, n_test=3)
    (tmp_path / "msd" / "msd_id_to_tag_vector.cP").write_bytes(pickle.dumps(["TRAAAAK128F9318786"]))
    with pytest.raises(UserError, match="msd_id_to_tag_vector.cP: holds a list, not the dict"):
        read_msd(tmp_path / "msd")


def test_msd_audio_layouts_and_missing_files(tmp_path, monkeypatch):
    """7digital paths and track-id folders (A/B/C/TRABC...) are both found; a missing or empty file
    excludes its track with the reason, counted in one summary line."""
    from bench.data import msd

    monkeypatch.setattr(msd, "N_TRAIN", 4)
    root = tmp_path / "msd"
    ids, _ = write_msd_split(root, n_train=6, n_test=3, audio=True)
    by_seven = sorted(root.rglob("*.clip.mp3"))  # 9 previews at their 7digital paths
    # one track only in the track-id layout, one empty file, one missing in both layouts
    moved = by_seven[0]
    moved_id = next(i for k, i in enumerate(ids) if moved.name == f"{1000 + k}.clip.mp3")
    moved.unlink()
    (root / (msd.track_id_path(moved_id) + ".mp3")).parent.mkdir(parents=True, exist_ok=True)
    (root / (msd.track_id_path(moved_id) + ".mp3")).write_bytes(b"ID3")
    by_seven[1].write_bytes(b"")
    by_seven[2].unlink()
    index = read_msd(root)
    assert len(index.clips) == 9 - 2
    assert index.excluded_summary() == "excluded: 1 audio file empty, 1 audio file missing"
    by_id = {c.clip_id: c for c in index.clips}
    assert by_id[moved_id].path == str(root / (msd.track_id_path(moved_id) + ".mp3"))


def test_msd_from_musicnn_training_tsv_files(tmp_path):
    """musicnn-training's ground truth (`<id>\\t[50 values]`) and index (`<id>\\t<path>`) as the split source."""
    from bench.data import msd

    root = tmp_path / "msd"
    root.mkdir()
    ids = ["TRAAAAW128F429D538", "TRAAABD128F429CF47", "TRYOGXX128F42483A6", "TRZZZZZ12903CB277E"]
    vector = "[" + ", ".join(["1"] + ["0"] * 49) + "]"
    (root / "train_gt_msd.tsv").write_text(f"{ids[0]}\t{vector}\n{ids[1]}\t{vector}\n")
    (root / "val_gt_msd.tsv").write_text(f"{ids[2]}\t{vector}\n")
    (root / "test_gt_msd.tsv").write_bytes(f"{ids[3]}\t{vector}\r\n".encode())
    (root / "index_msd.tsv").write_text(f"{ids[1]}\tsomewhere/{ids[1]}.clip.mp3\n")
    for msd_id in (ids[0], ids[2], ids[3]):
        path = root / "audio" / (msd.track_id_path(msd_id) + ".mp3")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"ID3")
    (root / "audio" / "somewhere").mkdir()
    (root / "audio" / "somewhere" / f"{ids[1]}.clip.mp3").write_bytes(b"ID3")
    index = read_msd(root)
    assert index.counts() == {"train": 2, "valid": 1, "test": 1}
    assert index.clips[2].path.endswith("audio/Y/O/G/TRYOGXX128F42483A6.mp3")
    assert all(c.labels == (0,) for c in index.clips) and index.tag_names[0] == "rock"
    (root / "val_gt_msd.tsv").write_text(f"{ids[2]}\t[1, 0]\n")
    with pytest.raises(UserError, match=r"val_gt_msd.tsv: line 1: 2 tag values, expected 50"):
        read_msd(root)
    # musicnn-training's scripts (aux/msd/create_MSD_gt.py, create_MSD_index.py) write the names in capitals
    (root / "val_gt_msd.tsv").write_text(f"{ids[2]}\t{vector}\n")
    for name in ("train_gt_msd.tsv", "val_gt_msd.tsv", "test_gt_msd.tsv", "index_msd.tsv"):
        (root / name).rename(root / name.replace("msd", "MSD"))
    capitals = read_msd(root)
    assert capitals.counts() == index.counts() and [c.path for c in capitals.clips] == [c.path for c in index.clips]


def test_msd_n_tags_keeps_the_most_frequent_tags_of_the_splits(tmp_path):
    """n_tags = 3 of MSD is the 3 tags on the most tracks of the splits (as MTAT's and MTG-Jamendo's
    top N), descending, ties in the published order; not the first 3 of the published list (rock, pop,
    alternative), which is no frequency order: on Lee et al.'s validation tracks its 38th most frequent
    tag, 00s, is its 8th. The positions of a clip's labels are the kept tags' order."""
    from bench.data.config import DatasetSpec

    root = tmp_path / "msd"
    root.mkdir()
    published = published_tags("msd")
    counts = {"rock": 1, "pop": 4, "indie": 3, "electronic": 3, "jazz": 2}  # by hand: pop, indie, electronic
    tracks = [f"TR{k:016d}" for k in range(6)]
    vectors = {t: [0] * 50 for t in tracks}
    for tag, n in counts.items():
        for track in tracks[:n]:
            vectors[track][published.index(tag)] = 1
    lines = [f"{t}\t[{', '.join(map(str, vectors[t]))}]\n" for t in tracks]
    (root / "train_gt_msd.tsv").write_text("".join(lines[:4]))
    (root / "val_gt_msd.tsv").write_text(lines[4])
    (root / "test_gt_msd.tsv").write_text(lines[5])
    index = read_msd(root, n_tags=3, check_audio=False)
    assert index.tag_names == ("pop", "indie", "electronic")
    by_id = {c.clip_id: c.labels for c in index.clips}
    assert by_id[tracks[0]] == (0, 1, 2) and by_id[tracks[3]] == (0,) and by_id[tracks[4]] == ()
    assert read_msd(root, check_audio=False).tag_names == published  # all 50: the published order
    # runs of the first-N tags (as MSD's fewer tags once were) do not share ids with these
    assert DatasetSpec("msd", n_tags=10).identity()["tags"] == "most frequent"
    assert "tags" not in DatasetSpec("msd").identity()


def test_an_msd_track_in_two_split_lists_is_refused(tmp_path, monkeypatch):
    """A track in the train and the test list would be scored on what it trained on (and in the tsv
    files its tags would be overwritten by the later line): one line naming it, as for every other
    dataset's split files."""
    from bench.data import msd

    monkeypatch.setattr(msd, "first_audio_file", lambda audio_root, candidates: (f"{audio_root}/{candidates[0]}", ""))
    monkeypatch.setattr(msd, "N_TRAIN", 4)  # a small split: the real boundary is tested above
    ids, _ = write_msd_split(tmp_path / "lee", n_train=8, n_test=2)
    train = ids[:4]
    (tmp_path / "lee" / "filtered_list_test.cP").write_bytes(pickle.dumps([ids[-1], train[2]], protocol=2))
    lee = tmp_path / "lee"
    with pytest.raises(UserError) as error:
        read_msd(lee)
    assert str(error.value) == (f"{lee / 'filtered_list_test.cP'}: item 1: track {train[2]} (test) is listed already, "
                                f"at {lee / 'filtered_list_train.cP'}: item 2 (train); each track once")
    root = tmp_path / "tsv"
    root.mkdir()
    vector = "[" + ", ".join(["1"] + ["0"] * 49) + "]"
    (root / "train_gt_msd.tsv").write_text(f"TRAAAAW128F429D538\t{vector}\n")
    (root / "val_gt_msd.tsv").write_text(f"TRAAABD128F429CF47\t{vector}\n")
    (root / "test_gt_msd.tsv").write_text(f"TRAAABD128F429CF47\t{vector}\n")
    with pytest.raises(UserError, match=r"test_gt_msd.tsv: line 1: track TRAAABD128F429CF47 \(test\) is listed "
                                        r"already, at \S*val_gt_msd.tsv: line 1 \(valid\); each track once"):
        read_msd(root)


def test_msd_files_saved_with_a_byte_order_mark_read_as_without(tmp_path):
    """A spreadsheet's BOM had become part of the first tag's name ('\\ufeffrock'), hidden the first
    track of index_msd.tsv (its audio then 'missing') and refused the first line of a ground-truth file."""
    root = tmp_path / "msd"
    root.mkdir()
    ids = ["TRAAAAW128F429D538", "TRAAABD128F429CF47", "TRYOGXX128F42483A6"]
    vector = "[" + ", ".join(["1"] + ["0"] * 49) + "]"
    for name, track in zip(("train_gt_msd.tsv", "val_gt_msd.tsv", "test_gt_msd.tsv"), ids, strict=True):
        (root / name).write_text(f"{track}\t{vector}\n")
    (root / "index_msd.tsv").write_text("".join(f"{t}\t{t}.clip.mp3\n" for t in ids))
    (root / "50tagList.txt").write_text("\n".join(published_tags("msd")) + "\n")
    for track in ids:
        (root / f"{track}.clip.mp3").write_bytes(b"ID3")
    clean = read_msd(root)
    for name in ("train_gt_msd.tsv", "index_msd.tsv", "50tagList.txt"):
        (root / name).write_bytes(b"\xef\xbb\xbf" + (root / name).read_bytes())
    marked = read_msd(root)
    assert (marked.tag_names, marked.clips, marked.excluded) == (clean.tag_names, clean.clips, clean.excluded)
    assert marked.tag_names[0] == "rock" and len(marked.clips) == 3


def test_msd_tag_values_other_than_0_or_1_and_a_tag_named_twice_are_refused(tmp_path):
    """2 or 0.5 had been read as a positive and -1 as a negative, and a tag named twice in 50tagList.txt
    became two outputs of one name (as MTAT and manifests refuse)."""
    write_msd_split(tmp_path / "msd", n_train=3, n_test=1)
    path = tmp_path / "msd" / "msd_id_to_tag_vector.cP"
    vectors = safe_load(path)
    for value in (2, -1, 0.5):
        changed = dict(vectors)
        changed["TR0000000000000001"] = np.full(50, value)
        path.write_bytes(pickle.dumps(changed, protocol=2))
        with pytest.raises(UserError) as error:
            read_msd(tmp_path / "msd", check_audio=False)
        assert str(error.value) == (f"{path}: the tag vector of TR0000000000000001 holds {value!r} for 'rock'; "
                                    "expected values 0 or 1")
    path.write_bytes(pickle.dumps(vectors, protocol=2))
    tags = list(published_tags("msd"))
    tags[2] = "rock"
    (tmp_path / "msd" / "50tagList.txt").write_text("\n".join(tags) + "\n")
    with pytest.raises(UserError, match=r"50tagList.txt: line 3: tag 'rock' again \(line 1\); each tag once"):
        read_msd(tmp_path / "msd", check_audio=False)
    root = tmp_path / "tsv"
    root.mkdir()
    for name, value in (("train_gt_msd.tsv", 2), ("val_gt_msd.tsv", 0), ("test_gt_msd.tsv", 0)):
        (root / name).write_text("TRAAAAW128F429D538\t[" + ", ".join([str(value)] + ["0"] * 49) + "]\n")
    with pytest.raises(UserError, match=r"train_gt_msd.tsv: line 1: expected '<MSD id><TAB>\[50 values 0 or 1\]'"):
        read_msd(root, check_audio=False)


def test_an_msd_split_entry_that_is_not_a_track_id_is_one_line(tmp_path):
    """A track's audio folders are its id's 3rd-5th characters: a short id (a stray "TRX") stopped
    `bench dataset`, `bench prepare` and the grid with an IndexError."""
    vector = "[" + ", ".join(["1"] + ["0"] * 49) + "]"
    root = tmp_path / "tsv"
    root.mkdir()
    (root / "train_gt_msd.tsv").write_text(f"TRAAAAW128F429D538\t{vector}\nTRX\t{vector}\n")
    (root / "val_gt_msd.tsv").write_text(f"TRAAABD128F429CF47\t{vector}\n")
    (root / "test_gt_msd.tsv").write_text(f"TRYOGXX128F42483A6\t{vector}\n")
    with pytest.raises(UserError, match=r"^\S*train_gt_msd.tsv: line 2: 'TRX' is not an MSD track id \(TR and 16 "
                                        r"capital letters or digits, as in TRAAAAV128F421A322\)$"):
        read_msd(root)
    ids, _ = write_msd_split(tmp_path / "lee", n_train=3, n_test=2)
    (tmp_path / "lee" / "filtered_list_test.cP").write_bytes(pickle.dumps([ids[-1], ""], protocol=2))
    with pytest.raises(UserError, match=r"filtered_list_test.cP: item 1: '' is not an MSD track id"):
        read_msd(tmp_path / "lee")


def test_msd_split_files_as_protocol_0_pickles(tmp_path, monkeypatch):
    """Lee et al.'s files are Python 2 cPickle dumps: protocol 0 (text opcodes) reads the same."""
    from bench.data import msd

    monkeypatch.setattr(msd, "N_TRAIN", 4)
    ids, vectors = write_msd_split(tmp_path / "msd", n_train=6, n_test=3, protocol=0, audio=True)
    assert (tmp_path / "msd" / "filtered_list_train.cP").read_bytes().startswith(b"(lp0\n")
    index = read_msd(tmp_path / "msd")
    assert index.counts() == {"train": 4, "valid": 2, "test": 3}
    assert [list(c.labels) for c in index.clips] == [list(np.flatnonzero(vectors[i].ravel())) for i in ids]


def test_a_dataset_name_with_no_reader_is_refused_not_read_as_a_manifest(tmp_path):
    # a reader added to DATASETS but not dispatched to was read as a manifest ("manifest not found")
    from bench.data.config import DatasetSpec
    from bench.data.datasets import load_index

    with pytest.raises(UserError, match="dataset 'tagfolder' has no reader: dispatch to one in load_index"):
        load_index(DatasetSpec(name="tagfolder"), tmp_path)
