"""`bench dataset`: what a grid will train on, from fixtures in the datasets' real formats."""

import json

import pytest

from bench.cli import main

from .data_fixtures import ROWS, make_mtat, published_tags, tone, write_mp3
from .test_jamendo import make_jamendo
from .test_readers import write_msd_split


def spec_for(write_spec, dataset: str, path, extra: str = "") -> str:
    return str(write_spec(f"""
name = "inspect"
seeds = [0]
[dataset]
name = "{dataset}"
path = "{path}"
n_tags = 3
{extra}
[[grid]]
arch = ["vgg"]
sample_rate = [16000]
n_mels = [96]
hop_multiplier = [1]
log = ["log"]
"""))


def test_mtat_with_audio_as_json(tmp_path, write_spec, capsys):
    root = make_mtat(tmp_path / "mtat")
    assert main(["dataset", spec_for(write_spec, "mtat", root), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["name"] == "mtat" and report["root"] == str(root)
    # the fixture's folders: 0, 3, b train; c valid; d, f, f test; 35644 known broken
    assert report["splits"] == {"train": 3, "valid": 1, "test": 3}
    assert report["tags"] == ["guitar", "slow", "classical"]  # 3 tags: by frequency, ties in column order
    # positives counted by hand from the fixture's rows
    assert report["positives"]["train"] == {"guitar": 2, "slow": 2, "classical": 1}
    assert report["positives"]["valid"] == {"guitar": 1, "slow": 0, "classical": 0}
    assert report["positives"]["test"] == {"guitar": 1, "slow": 2, "classical": 1}
    assert report["excluded"] == {"known broken MP3": 1}
    assert report["excluded_examples"] == {"known broken MP3": ["35644"]}
    # the one validation clip is a guitar clip: every tag is all positive or all negative there
    assert report["warnings"] == ["2 tag(s) with no positive in valid: slow, classical",
                                  "1 tag(s) with no negative in valid: guitar"]
    assert report["audio"]["usable"] == {"train": 3, "valid": 1, "test": 3}
    assert not report["can_run"] and report["blockers"] == [
        "no tag of the valid split (1 clip with audio) has both clips with it and clips without it, so no ROC-AUC "
        "can be computed there"]


def test_a_split_whose_missing_audio_leaves_no_scorable_tag_cannot_run(tmp_path, write_spec, capsys):
    """The test split defines a rock clip and a pop clip, but the rock clip's file is missing: the clips a
    run scores on hold pop alone, so no tag has an ROC-AUC there. It said the grid could run ("warnings:
    none", exit 0), and every run trained all its epochs before it failed at the test."""
    for name in "abcde":
        (tmp_path / f"{name}.wav").write_bytes(b"RIFF")  # only existence and size are checked
    (tmp_path / "m.csv").write_text("path,split,tags\na.wav,train,rock\nb.wav,train,pop\nc.wav,valid,rock\n"
                                    "d.wav,valid,pop\nmissing.wav,test,rock\ne.wav,test,pop\n")
    assert main(["dataset", spec_for(write_spec, "manifest", tmp_path / "m.csv"), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["positives"]["test"] == {"rock": 1, "pop": 1}  # as the metadata defines them
    assert report["usable_positives"]["test"] == {"rock": 0, "pop": 1}
    assert report["warnings"] == ["1 tag(s) with no positive in test: rock (of its clips with audio)",
                                  "1 tag(s) with no negative in test: pop (of its clips with audio)"]
    assert report["blockers"] == ["no tag of the test split (1 clip with audio) has both clips with it and clips "
                                  "without it, so no ROC-AUC can be computed there"]


def test_mtat_metadata_only_reports_missing_audio_and_exits_2(tmp_path, write_spec, capsys):
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    assert main(["dataset", spec_for(write_spec, "mtat", root)]) == 2
    captured = capsys.readouterr()
    assert "clips (as the metadata defines them): train 3, valid 1, test 3 (total 7)" in captured.out
    assert "7 audio file missing (train 3, valid 1, test 3), e.g. 2, 6, 10, 14, 18" in captured.out
    assert captured.err.count("\n") == 1
    assert f"the grid cannot run on {root}: no usable audio in the train, valid, test split(s)" in captured.err


def test_msd_and_jamendo_metadata_only(tmp_path, write_spec, capsys, monkeypatch):
    from bench.data import msd

    monkeypatch.setattr(msd, "N_TRAIN", 4)
    ids, vectors = write_msd_split(tmp_path / "msd", n_train=6, n_test=3)
    assert main(["dataset", spec_for(write_spec, "msd", tmp_path / "msd"), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["splits"] == {"train": 4, "valid": 2, "test": 3}  # what the split files define
    assert report["audio"]["problems"] == {"audio file missing": {"train": 4, "valid": 2, "test": 3}}
    tracks_with = {tag: sum(int(vectors[i][k, 0]) for i in ids) for k, tag in enumerate(published_tags("msd"))}
    most = sorted(tracks_with, key=lambda tag: (-tracks_with[tag], published_tags("msd").index(tag)))[:3]
    assert report["tags"] == most and sorted(tracks_with.values())[-3] > 0

    rows = {"train": ["track_0000382\tartist_000020\talbum_000046\t82/382.mp3\t211.1\tgenre---classical\t"
                      "instrument---voice"],
            "validation": ["track_0917539\tartist_378901\talbum_108650\t39/917539.mp3\t219.6\tgenre---funk\t"
                           "genre---soundtrack"],
            "test": ["track_0006008\tartist_000795\talbum_000925\t08/6008.mp3\t162.0\tgenre---reggae"]}
    root = make_jamendo(tmp_path / "jamendo", rows, low=(), missing=("39/917539.mp3",))
    assert main(["dataset", spec_for(write_spec, "jamendo", root), "--json"]) == 2  # no valid audio
    report = json.loads(capsys.readouterr().out)
    assert report["splits"] == {"train": 1, "valid": 1, "test": 1}
    assert report["audio"]["usable"] == {"train": 1, "valid": 0, "test": 1}
    assert "the valid split has no audio yet (1 clips defined)" in report["warnings"]


def test_audio_is_found_wherever_the_grid_would_read_it(tmp_path, write_spec, capsys, monkeypatch):
    """`bench dataset` judges the file the grid reads: MSD's track-id audio as `.clip.mp3` (7digital's
    preview name) though the 7digital pickles are there, MTG-Jamendo's `.low.mp3` (what the low-quality
    archives hold); it counted such audio missing and said the grid could not run."""
    from bench.data import msd

    monkeypatch.setattr(msd, "N_TRAIN", 4)
    ids, _ = write_msd_split(tmp_path / "msd", n_train=6, n_test=3)  # its 7digital paths have no files
    for k, track in enumerate(ids):
        relative = f"{track[2]}/{track[3]}/{track[4]}/{track}" + (".clip.mp3" if k % 2 else ".mp3")
        (tmp_path / "msd" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "msd" / relative).write_bytes(b"" if track == ids[-1] else b"ID3")
    main(["dataset", spec_for(write_spec, "msd", tmp_path / "msd"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["audio"]["usable"] == {"train": 4, "valid": 2, "test": 2}
    assert report["audio"]["problems"] == {"audio file empty": {"train": 0, "valid": 0, "test": 1}}

    rows = {"train": ["track_0000382\tartist_000020\talbum_000046\t82/382.mp3\t211.1\tgenre---classical"],
            "validation": ["track_0917539\tartist_378901\talbum_108650\t39/917539.mp3\t219.6\tgenre---funk"],
            "test": ["track_0006008\tartist_000795\talbum_000925\t08/6008.mp3\t162.0\tgenre---reggae"]}
    root = make_jamendo(tmp_path / "jamendo", rows, low=("82/382.mp3", "39/917539.mp3", "08/6008.mp3"), missing=())
    main(["dataset", spec_for(write_spec, "jamendo", root), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["audio"]["usable"] == {"train": 1, "valid": 1, "test": 1} and report["audio"]["problems"] == {}


def test_missing_dataset_folder_is_one_line(tmp_path, write_spec, capsys):
    assert main(["dataset", spec_for(write_spec, "mtat", tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MTAT root not found" in err


def test_a_synthetic_set_too_small_to_score_and_one_the_grid_would_remake(tmp_path, write_spec, capsys):
    """16 clips: a validation split of one clip has no tag with both positive and negative clips, so
    every run would fail at its first validation; the spec asking for them is refused (exit 2) before
    anything is read. A folder of 16 clips under a spec asking for 40 is described with a warning that
    the grid makes it anew, and does not stop the grid (it would not train on these clips)."""
    from bench.data import synthetic

    root = tmp_path / "syn"
    synthetic.generate(root, clips=16, seed=0, clip_seconds=2.0, workers=1, progress=False)
    spec = spec_for(write_spec, "synthetic", root, "clips = 16\nclip_seconds = 2.0")
    assert main(["dataset", spec, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"bench dataset: error: {spec}: dataset.clips: 16 leaves the valid split without a tag "
                            "that has both a positive and a negative clip, so no run could be scored; at least 29 "
                            "clips (seed 0)\n")

    spec = spec_for(write_spec, "synthetic", root, "clips = 40\nclip_seconds = 2.0")
    assert main(["dataset", spec, "--json"]) == 0  # the grid would make 40 clips first, not train on these 16
    report = json.loads(capsys.readouterr().out)
    assert report["warnings"][0].startswith("not the complete synthetic dataset the spec asks for")
    assert report["splits"]["valid"] == 1 and report["can_run"]  # the folder as it is: nothing was generated


def test_a_synthetic_set_not_generated_yet_is_described_from_its_plan(tmp_path, write_spec, capsys):
    """`bench grid` and `bench prepare` generate a missing synthetic dataset, so the grid can run (exit 0,
    where it was one line and exit 2): its clips per split, tags and positives are those of the dataset
    generated afterwards, and nothing is written where it will be."""
    from bench.data import synthetic

    root = tmp_path / "syn"
    spec = spec_for(write_spec, "synthetic", root, "clips = 40\nclip_seconds = 2.0")
    assert main(["dataset", spec, "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert not root.exists() and planned["can_run"] and planned["root"] == str(root)
    assert planned["warnings"][0].startswith("not generated yet: described from its generator's plan (40 clips, "
                                             "seed 0)")
    synthetic.generate(root, clips=40, seed=0, clip_seconds=2.0, workers=1, progress=False)
    assert main(["dataset", spec, "--json"]) == 0
    generated = json.loads(capsys.readouterr().out)
    for key in ("splits", "tags", "positives", "excluded"):
        assert planned[key] == generated[key], key
    assert sum(generated["audio"]["usable"].values()) == 40
    # a folder made but without annotations (empty, or a generation stopped before writing them): the grid
    # generates it there, so it is described from the plan too
    (root / synthetic.ANNOTATIONS).unlink()
    assert main(["dataset", spec, "--json"]) == 0
    stopped = json.loads(capsys.readouterr().out)
    assert stopped["warnings"][0].endswith("(the folder holds no annotations yet: empty, or a generation stopped "
                                           "early)")
    assert all(stopped[key] == generated[key] for key in ("splits", "tags", "positives", "excluded"))


def test_a_synthetic_folder_the_grid_would_refuse_to_generate_into_stops_bench_dataset(tmp_path, write_spec,
                                                                                        capsys):
    """docs/datasets.md: exit 0 where the grid could run, 2 where it could not. A synthetic path holding
    someone's MP3, or a file in the way, read "`bench grid` generates it first", exit 0, where `bench grid`
    (and its dry run) refuse it."""
    root = tmp_path / "syn"
    (root / "0").mkdir(parents=True)
    (root / "0" / "song.mp3").write_bytes(b"ID3")
    spec = spec_for(write_spec, "synthetic", root, "clips = 40\nclip_seconds = 2.0")
    assert main(["dataset", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bench dataset: error: {spec}: the grid cannot run on {root}: {root}: holds files "
                          "`bench synth` did not write (0/song.mp3)") and err.count("\n") == 1
    in_the_way = tmp_path / "file"
    in_the_way.write_text("")
    spec = spec_for(write_spec, "synthetic", in_the_way / "syn", "clips = 40\nclip_seconds = 2.0")
    assert main(["dataset", spec, "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    (blocker,) = report["blockers"]
    assert not report["can_run"] and "dataset.path" in blocker and str(in_the_way) in blocker


def test_a_tag_holding_a_comma_reads_as_one_tag(tmp_path, write_spec, capsys):
    """Tags were listed joined with ", ", so the manifest tag `rock, pop` read as two tags, `rock` and
    `pop`, beside the one tag `folk`. A tag holding a comma is now written in double quotes, as CSV
    would write it."""
    for name in "abcdef":
        (tmp_path / f"{name}.wav").write_bytes(b"RIFF")
    (tmp_path / "m.csv").write_text('path,split,tags\na.wav,train,"rock, pop"\nb.wav,train,folk\n'
                                    'c.wav,valid,"rock, pop"\nd.wav,valid,folk\n'
                                    'e.wav,test,"rock, pop"\nf.wav,test,folk\n')
    main(["dataset", spec_for(write_spec, "manifest", tmp_path / "m.csv")])
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tags (")]
    assert line == "tags (2, in the model's output order): \"rock, pop\", folk"


def test_tags_a_manifests_tag_list_leaves_out_are_named_as_not_trained_on(tmp_path, write_spec, capsys):
    """docs/datasets.md: the .tags.txt beside a manifest sets which tags are trained on. `bench dataset`
    listed only those, and said nothing of the manifest's other tags, which no run learns."""
    for name in "abcdef":
        (tmp_path / f"{name}.wav").write_bytes(b"RIFF")
    rows = "".join(f"{n}.wav,{s},rock;pop;jazz;folk;metal;soul;funk;disco\n"
                   for n, s in zip("abcdef", ("train", "train", "valid", "valid", "test", "test"), strict=True))
    (tmp_path / "m.csv").write_text("path,split,tags\n" + rows)
    (tmp_path / "m.tags.txt").write_text("pop\n")
    main(["dataset", spec_for(write_spec, "manifest", tmp_path / "m.csv")])
    out = capsys.readouterr().out.splitlines()
    assert "tags (1, in the model's output order): pop" in out
    assert ("  7 tag(s) of the manifest not in m.tags.txt, not trained on: rock, jazz, folk, metal, soul and 2 "
            "more") in out
    (tmp_path / "m.tags.txt").write_text("pop\nrock\njazz\nfolk\nmetal\nsoul\nfunk\ndisco\n")
    main(["dataset", spec_for(write_spec, "manifest", tmp_path / "m.csv")])
    assert "not trained on" not in capsys.readouterr().out


def test_a_tag_holding_an_escape_sequence_or_a_newline_is_shown_not_acted_on(tmp_path, write_spec, capsys):
    """A manifest's tag text reached the terminal raw in `bench dataset`'s lists and table: an escape
    sequence coloured it, a newline split a row. They are shown escaped, as `bench tag` shows them."""
    for name in "abcdef":
        (tmp_path / f"{name}.wav").write_bytes(b"RIFF")
    red, broken = "\x1b[31mred\x1b[0m", "new\nline"
    rows = [f"{name}.wav,{split},{tag}" for name, split, tag in zip(
        "abcdef", ("train", "train", "valid", "valid", "test", "test"), (red, '"new\nline"') * 3, strict=True)]
    (tmp_path / "m.csv").write_text("path,split,tags\n" + "\n".join(rows) + "\n")
    main(["dataset", spec_for(write_spec, "manifest", tmp_path / "m.csv")])
    out = capsys.readouterr().out
    assert "\x1b" not in out and broken not in out
    assert "tags (2, in the model's output order): \\x1b[31mred\\x1b[0m, new\\nline\n" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(" " * 19)]
    assert rows == [["\\x1b[31mred\\x1b[0m", "1", "1", "1"], ["new\\nline", "1", "1", "1"]]


@pytest.mark.parametrize("encoding", ["ascii", "utf-8"])
def test_text_standard_output_cannot_encode_is_escaped_not_a_traceback(tmp_path, write_spec, encoding):
    """Python's stdout is strict outside the C locales: a tag "café" under an ASCII stdout
    (PYTHONIOENCODING=ascii, a legacy locale), or a folder name holding a byte that is not UTF-8 under
    en_US.UTF-8, ended the command in a UnicodeEncodeError traceback, exit 1, after its work."""
    import os
    import subprocess
    import sys

    folder = tmp_path / os.fsdecode(b"m\xff")
    folder.mkdir()
    for name in "abcdef":
        (folder / f"{name}.wav").write_bytes(b"RIFF")
    splits, tags = ("train", "train", "valid", "valid", "test", "test"), ("café", "rock") * 3
    (folder / "m.csv").write_text("path,split,tags\n" + "".join(
        f"{name}.wav,{split},{tag}\n" for name, split, tag in zip("abcdef", splits, tags, strict=True)),
        encoding="utf-8")
    spec = spec_for(write_spec, "manifest", "m.csv")
    env = {**os.environ, "PYTHONIOENCODING": encoding, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-m", "bench", "dataset", spec, "--data", os.fsencode(folder / "m.csv")],
                          capture_output=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout.decode("ascii" if encoding == "ascii" else "utf-8")
    assert f"dataset manifest at {tmp_path}/m\\xff\n" in out
    (line,) = [line for line in out.splitlines() if line.startswith("tags (2")]
    assert ("caf\\xe9" if encoding == "ascii" else "café") in line.split(": ")[1].split(", ")
    # the per-tag table's columns line up: its widths were those of "café", which stdout then escaped
    table = [line for line in out.splitlines() if line.startswith(("positives per tag:", " " * 19))]
    assert len(table) == 3 and len({len(line) for line in table}) == 1, table


def dataset_in_an_ascii_locale(spec: str, cwd):
    """`bench dataset SPEC` under LC_ALL=C without Python's UTF-8 mode: an ASCII file-system encoding."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0"}
    env.pop("PYTHONIOENCODING", None)
    return subprocess.run([sys.executable, "-m", "bench", "dataset", spec], capture_output=True, text=True,
                          env=env, cwd=cwd, encoding="utf-8", errors="replace")


def test_a_path_the_locales_file_system_encoding_cannot_hold_is_one_line(tmp_path, write_spec):
    """Under LC_ALL=C without Python's UTF-8 mode the file-system encoding is ASCII: a dataset.path
    "données" ended in a UnicodeEncodeError traceback from a stat()."""
    spec = spec_for(write_spec, "synthetic", tmp_path / "données")
    proc = dataset_in_an_ascii_locale(spec, tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.endswith("dataset.path " + str(tmp_path) + "/donn\\xe9es: not a name this locale's "
                                "file-system encoding (ascii) can hold; run under a UTF-8 locale (e.g. "
                                "LC_ALL=C.UTF-8) or with PYTHONUTF8=1\n")


@pytest.mark.parametrize("where", ["manifest", "audio file"])
def test_files_the_locales_file_system_encoding_cannot_name_are_not_said_missing(tmp_path, write_spec, where):
    """Under an ASCII file-system encoding, `Path.is_file()` answers False for a name it cannot encode: a
    manifest "dé/m.csv" that is there was "not found", and audio files "é0.wav" were counted missing
    (which would drop them from the dataset). Both are the locale's line."""

    folder = tmp_path / ("dé" if where == "manifest" else "d")
    folder.mkdir()
    audio = [f"{'é' if where == 'audio file' else ''}{name}.wav" for name in "abcdef"]
    for name in audio:
        (folder / name).write_bytes(b"RIFF")
    (folder / "m.csv").write_text("path,split,tags\n" + "".join(
        f"{name},{split},{tag}\n" for name, split, tag in zip(
            audio, ("train", "train", "valid", "valid", "test", "test"), ("rock", "pop") * 3, strict=True)),
        encoding="utf-8")
    spec = spec_for(write_spec, "manifest", folder / "m.csv")
    proc = dataset_in_an_ascii_locale(spec, tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"error: {where} {tmp_path}/" in proc.stderr and proc.stderr.endswith(
        ": not a name this locale's file-system encoding (ascii) can hold; run under a UTF-8 locale (e.g. "
        "LC_ALL=C.UTF-8) or with PYTHONUTF8=1\n")


def test_a_grid_on_msd_without_its_audio_stops_before_preparing_a_cache(tmp_path, write_spec, capsys, monkeypatch):
    """MSD's reader leaves out each track whose audio is missing: on a folder holding only the metadata
    (or the audio under another folder) no clip is left. A cache of no clips was prepared, and every run
    then failed with an internal error about the cache's file."""
    from bench.data import msd

    monkeypatch.setattr(msd, "N_TRAIN", 4)
    write_msd_split(tmp_path / "msd", n_train=6, n_test=3)
    spec = spec_for(write_spec, "msd", tmp_path / "elsewhere")
    assert main(["prepare", spec, "--cache", str(tmp_path / "cache"), "--data", str(tmp_path / "msd")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (f"the grid cannot run on {tmp_path / 'msd'}: no clips in the train, valid, test split(s) (excluded: 9 "
            f"audio file missing); bench dataset {spec} --data {tmp_path / 'msd'} shows what it holds") in err
    assert not list((tmp_path / "cache").rglob("*.f16"))  # nothing prepared


def test_a_dataset_missing_thousands_of_files_says_so_in_a_few_lines(tmp_path, write_spec, capsys, monkeypatch):
    """A partial download of MTAT misses thousands of files: each was a line of its own, at every grid
    start. Few are still named one by one with their file; more, counted per reason."""
    monkeypatch.setattr("bench.run.prepare.SHOWN_FAILURES", 3)  # the fixture's 4 missing files are "more"
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    for n, (clip_id, folder, name, _) in enumerate(ROWS):  # one clip of each split has its file
        if clip_id in ("10", "14", "26"):
            write_mp3(root / folder / name, tone(2.0, freq=220.0 * (n + 1), seed=n))
    assert main(["prepare", spec_for(write_spec, "mtat", root), "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.startswith("  ")]
    # the fixture's clips without a file, in the order of the rows
    assert skipped[0].startswith("  skipped 4 clip(s): ") and skipped[0].endswith(" (2, 6, 18 and 1 more)")
    manifest = next((tmp_path / "cache").rglob("manifest.json"))
    assert skipped[1:] == [f'  every skipped clip, its file and why: "failed" in {manifest}']
    assert [failed[0] for failed in json.loads(manifest.read_text())["failed"]] == ["2", "6", "18", "22"]


def test_a_few_skipped_clips_are_named_one_per_line_with_their_file(tmp_path):
    from types import SimpleNamespace

    from bench.run.prepare import skipped_lines

    failed = [("c1", "audio/c1.mp3", "not audio"), ("c2", "audio/c2.mp3", "not audio"), ("c3", "audio/c3.mp3", "empty")]
    assert skipped_lines(SimpleNamespace(failed=failed, path=tmp_path)) == [
        "  skipped c1: audio/c1.mp3: not audio", "  skipped c2: audio/c2.mp3: not audio",
        "  skipped c3: audio/c3.mp3: empty"]
    # a manifest's clip is named by its path, which may hold a line break: one line each all the same
    failed = [("a\nb.mp3", "audio/a\nb.mp3", "undecodable (not audio)")]
    assert skipped_lines(SimpleNamespace(failed=failed, path=tmp_path)) == [
        "  skipped a\\nb.mp3: audio/a\\nb.mp3: undecodable (not audio)"]


def test_skipped_clips_are_grouped_by_what_failed_not_by_each_files_numbers(tmp_path):
    """A truncated file's reason holds its own durations: grouped by the whole text, 8 truncated copies
    made 8 groups of one."""
    from types import SimpleNamespace

    from bench.run.prepare import skipped_lines

    failed = [(f"c{k:02d}", f"audio/c{k:02d}.wav", f"truncated: the header says 5.00 s, the file holds {k / 4:.2f} s")
              for k in range(8)]
    failed.append(("z", "audio/z.wav", "too short (0.50 s < 1 s)"))
    assert skipped_lines(SimpleNamespace(failed=failed, path=tmp_path)) == [
        "  skipped 8 clip(s): truncated (c00, c01, c02 and 5 more)",
        "  skipped 1 clip(s): too short (0.50 s < 1 s) (z)",
        f'  every skipped clip, its file and why: "failed" in {tmp_path / "manifest.json"}']


def test_a_grid_on_mtat_without_its_audio_stops_before_preparing_a_cache(tmp_path, write_spec, capsys):
    """MTAT's reader keeps a clip whose file is missing, for the cache to record as skipped: on a folder
    holding only annotations_final.csv the grid sized and allocated the whole cache (42 GB for the paper's
    rates), found every file missing, and recorded every run failed, where bench dataset said it could not
    run. A split with no audio file at all now stops it as it stops MSD's."""
    root = make_mtat(tmp_path / "mtat", write_audio=False)
    spec = spec_for(write_spec, "mtat", root)
    assert main(["prepare", spec, "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err == (f"bench prepare: error: {spec}: the grid cannot run on {root}: no usable audio in the train, valid, "
                   f"test split(s) (every audio file missing or empty); bench dataset {spec} shows what it holds\n")
    assert not list((tmp_path / "cache").rglob("*.f16"))
    # a cache prepared while the audio was there trains without it: nothing is stopped
    make_mtat(root)
    assert main(["prepare", spec, "--cache", str(tmp_path / "cache")]) == 0
    for mp3 in root.rglob("*.mp3"):
        mp3.unlink()
    assert main(["prepare", spec, "--cache", str(tmp_path / "cache")]) == 0
    assert "already prepared" in capsys.readouterr().out
