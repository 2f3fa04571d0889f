"""MTG-Jamendo from its official split files, written as published (tab-separated, CRLF, the header
TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS, every field after DURATION a tag)."""

from pathlib import Path

import pytest

from bench.core.errors import UserError
from bench.data.jamendo import read_jamendo
from bench.spec import load_spec

from .conftest import SPECS
from .data_fixtures import published_tags

HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
ROWS = {  # real rows of split-0 (train 382 and 948 from the top-50 train file; 214, a genre-test row, brings
    # a tag outside the top 50), in the files' order
    "train": ["track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t124.6\tgenre---punkrock",
              "track_0000382\tartist_000020\talbum_000046\t82/382.mp3\t211.1\tgenre---classical\tinstrument---voice",
              "track_0000948\tartist_000087\talbum_000149\t48/948.mp3\t212.7\tgenre---chillout\tgenre---downtempo\t"
              "genre---easylistening\tgenre---electronic\tgenre---lounge\tinstrument---synthesizer"],
    "validation": ["track_0917538\tartist_378901\talbum_108650\t38/917538.mp3\t126.5\tgenre---easylistening\t"
                   "genre---soundtrack\tinstrument---piano",
                   "track_0917539\tartist_378901\talbum_108650\t39/917539.mp3\t219.6\tgenre---funk\tgenre---soundtrack",
                   "track_0919631\tartist_373214\talbum_108909\t31/919631.mp3\t67.4\tgenre---classical",
                   "track_1050697\tartist_432424\talbum_123718\t97/1050697.mp3\t248.0\tgenre---reggae"],
    "test": ["track_0006007\tartist_000795\talbum_000925\t07/6007.mp3\t368.9\tgenre---pop\tgenre---reggae",
             "track_0006008\tartist_000795\talbum_000925\t08/6008.mp3\t162.0\tgenre---reggae",
             "track_0017170\tartist_002534\talbum_002430\t70/17170.mp3\t65.4\tgenre---classical\tgenre---soundtrack"],
}


def make_jamendo(root, rows=ROWS, subset="autotagging_top50tags", low=("82/382.mp3",), missing=("31/919631.mp3",)):
    folder = root / "splits" / "split-0"
    folder.mkdir(parents=True)
    for split, lines in rows.items():
        (folder / f"{subset}-{split}.tsv").write_bytes(("\r\n".join([HEADER, *lines]) + "\r\n").encode())
        for line in lines:
            fields = line.split("\t")
            relative = fields[3] if len(fields) > 3 else None
            if relative is None or relative in missing:
                continue
            if relative in low:
                relative = relative[:-4] + ".low.mp3"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(b"ID3")
    return root


def test_official_split_files_and_audio(tmp_path):
    rows = {**ROWS, "train": [ROWS["train"][1], ROWS["train"][2]]}  # punkrock is not a top-50 tag
    index = read_jamendo(make_jamendo(tmp_path / "jamendo", rows))
    assert index.tag_names == published_tags("jamendo")
    # the shipped spec asks for n_tags = 50, all of them: the published order, not one by frequency
    assert read_jamendo(tmp_path / "jamendo", n_tags=50).tag_names == published_tags("jamendo")
    assert index.counts() == {"train": 2, "valid": 3, "test": 3}
    assert index.excluded == (("track_0919631", "audio file missing"),)
    by_id = {c.clip_id: c for c in index.clips}
    assert by_id["track_0000382"].path.endswith("82/382.low.mp3")  # the low-quality variant
    assert [index.tag_names[i] for i in by_id["track_0917538"].labels] == \
        ["genre---easylistening", "genre---soundtrack", "instrument---piano"]
    assert [index.tag_names[i] for i in by_id["track_0000948"].labels] == \
        ["genre---chillout", "genre---downtempo", "genre---easylistening", "genre---electronic", "genre---lounge",
         "instrument---synthesizer"]


def test_tags_outside_the_top50_and_malformed_rows_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match=r"autotagging_top50tags-\w+\.tsv: line \d+: track_\d+ has tags outside "
                                        r"MTG-Jamendo's published top 50: genre---punkrock"):
        read_jamendo(make_jamendo(tmp_path / "a"))
    bad = {**ROWS, "test": [ROWS["test"][0], "track_0006008\tartist_000795\t08/6008.mp3"]}
    with pytest.raises(UserError, match=r"autotagging_top50tags-test.tsv: line 3: expected TRACK_ID, ARTIST_ID"):
        read_jamendo(make_jamendo(tmp_path / "b", bad))
    with pytest.raises(UserError, match="MTG-Jamendo split file not found"):
        read_jamendo(make_jamendo(tmp_path / "c"), subset="genre")


def test_other_subsets_order_their_tags_as_the_published_lists(tmp_path):
    index = read_jamendo(make_jamendo(tmp_path / "j", subset="autotagging_genre"), subset="genre")
    assert index.tag_names == tuple(sorted(index.tag_names)) and "genre---punkrock" in index.tag_names


def test_fewer_tags_than_the_subset_keeps_the_most_frequent(tmp_path):
    root = make_jamendo(tmp_path / "j", subset="autotagging_genre")
    assert len(read_jamendo(root, subset="genre").tag_names) == 14  # the task: every tag of the subset
    # classical, reggae and soundtrack are on 3 tracks each, easylistening on 2, every other tag on 1 (a
    # track whose audio is missing counts: the split files define the task); by name, chillout and
    # classical would come first
    index = read_jamendo(root, subset="genre", n_tags=2)
    assert index.tag_names == ("genre---classical", "genre---reggae")
    assert [c.clip_id for c in index.clips if c.labels] == ["track_0000382", "track_1050697", "track_0006007",
                                                             "track_0006008", "track_0017170"]
    # ties keep the published order
    assert read_jamendo(root, subset="genre", n_tags=4).tag_names == \
        ("genre---classical", "genre---reggae", "genre---soundtrack", "genre---easylistening")


def test_a_spec_without_n_tags_trains_on_all_the_subsets_tags(write_spec):
    # the benchmark's tasks: 87 genre, 40 instrument, 56 mood/theme tags (Bogdanov et al. 2019)
    from bench.data.known import tag_count

    from .conftest import MINIMAL_SPEC

    def jamendo(fields):
        return load_spec(write_spec(MINIMAL_SPEC.replace('name = "synthetic"', f'name = "jamendo"\n{fields}')))

    for subset, n in (("genre", 87), ("instrument", 40), ("moodtheme", 56), ("all", 183), ("top50tags", 50)):
        spec = jamendo(f'subset = "{subset}"')
        assert spec.dataset.n_tags == n and tag_count(spec.dataset) == n, subset
        assert "tags" not in spec.dataset.identity()
    fewer = jamendo('subset = "genre"\nn_tags = 20').dataset
    # the 20 most frequent: once the first 20 by name, whose runs must keep their own run_ids
    assert fewer.n_tags == 20 and fewer.identity()["tags"] == "most frequent"


def test_the_jamendo_spec_plans():
    spec = load_spec(SPECS / "jamendo-top50.toml")
    assert spec.dataset.name == "jamendo" and spec.dataset.subset == "top50tags" and len(spec.runs()) == 36


def test_a_track_in_two_splits_a_row_without_tags_and_the_full_quality_file_first(tmp_path, monkeypatch):
    """A track listed in train and test would leak into its own evaluation: refused, naming the file and
    line. A row that stops at DURATION has no TAGS field: malformed, not an untagged track. Where both
    the full-quality NN/ID.mp3 and NN/ID.low.mp3 exist, the full one is read. And a root given relative
    to the working directory finds its splits/ folder."""
    good = {**ROWS, "train": [ROWS["train"][1], ROWS["train"][2]]}
    leaked = {**good, "test": [*good["test"], ROWS["train"][2]]}
    with pytest.raises(UserError, match=r"autotagging_top50tags-test.tsv: line 5: track_0000948 is also in the "
                                        r"train split"):
        read_jamendo(make_jamendo(tmp_path / "a", leaked))
    untagged = {**good, "test": [*good["test"], "track_0006009\tartist_000795\talbum_000925\t09/6009.mp3\t90.0"]}
    with pytest.raises(UserError, match=r"autotagging_top50tags-test.tsv: line 5: expected TRACK_ID"):
        read_jamendo(make_jamendo(tmp_path / "b", untagged))
    root = make_jamendo(tmp_path / "c", good)
    (root / "82" / "382.mp3").write_bytes(b"ID3")  # beside its 382.low.mp3
    by_id = {c.clip_id: c for c in read_jamendo(root).clips}
    assert by_id["track_0000382"].path.endswith("82/382.mp3")
    monkeypatch.chdir(tmp_path)
    assert read_jamendo("c").counts() == {"train": 2, "valid": 3, "test": 3}


def test_split_files_with_a_byte_order_mark_read_as_without_and_one_recording_twice_is_refused(tmp_path):
    """A spreadsheet's BOM had refused the header ("expected the header TRACK_ID ..."); one audio file under
    two track ids (the second written with a trailing space), in train and test, was read, leaking the
    recording into its own evaluation."""
    good = {**ROWS, "train": [ROWS["train"][1], ROWS["train"][2]]}
    clean = read_jamendo(make_jamendo(tmp_path / "a", good))
    root = make_jamendo(tmp_path / "b", good)
    for path in (root / "splits" / "split-0").iterdir():
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    marked = read_jamendo(root)
    assert [c.path.replace(str(root), "") for c in marked.clips] == \
        [c.path.replace(str(tmp_path / "a"), "") for c in clean.clips]
    assert [(c.clip_id, c.split, c.labels) for c in marked.clips] == \
        [(c.clip_id, c.split, c.labels) for c in clean.clips]
    assert marked.excluded == clean.excluded
    copy = "track_0009999 \tartist_000087\talbum_000149\t48/948.mp3\t212.7\tgenre---chillout"
    twice = {**good, "test": [*good["test"], copy]}
    with pytest.raises(UserError, match=r"autotagging_top50tags-test.tsv: line 5: track_0009999's PATH 48/948.mp3 is "
                                        r"listed already \(autotagging_top50tags-train.tsv, line 3\); each recording "
                                        "once"):
        read_jamendo(make_jamendo(tmp_path / "c", twice))


def test_a_relative_split_folder_is_the_relative_roots(tmp_path, monkeypatch):
    """`dataset.split_file = "splits/split-0"` (the shipped spec's) with the root given relative to the
    working directory (`--data jamendo`): the split folder is jamendo/splits/split-0, once."""
    from bench.data.datasets import load_index

    make_jamendo(tmp_path / "jamendo", {**ROWS, "train": ROWS["train"][1:]})  # punkrock: not a top-50 tag
    monkeypatch.chdir(tmp_path)
    dataset = load_spec(SPECS / "jamendo-top50.toml").dataset
    assert dataset.split_file == "splits/split-0"
    index = load_index(dataset, Path("jamendo"), check_audio=False)
    assert index.counts() == {"train": 2, "valid": 4, "test": 3}
