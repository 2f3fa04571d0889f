"""Spec parsing, grid expansion and run identity."""

import dataclasses
import hashlib
import json
import re

import pytest

from bench.core.errors import SpecError
from bench.spec import load_spec, parse_spec

from .conftest import MINIMAL_SPEC, SPECS


def test_paper_mtat_vgg_is_table_ii():
    spec = load_spec(SPECS / "paper-mtat-vgg.toml")
    configs = spec.configurations()
    # Table II: 2 rates x 3 band counts x 6 hops + 2 rates x 4 band counts x 1 hop = 44, times 2 log types.
    assert len(configs) == 88
    assert len(spec.runs()) == 88 * 3
    keys = {(c.arch, c.mel.sample_rate, c.mel.n_mels, c.mel.hop_multiplier, c.mel.log) for c in configs}
    expected = {
        ("vgg", sr, n, m, log)
        for sr in (12000, 16000)
        for log in ("log", "dB")
        for n, hops in [(128, (1, 2, 3, 4, 5, 10)), (96, (1, 2, 3, 4, 5, 10)), (48, (1, 2, 3, 4, 5, 10)),
                        (32, (1,)), (24, (1,)), (16, (1,)), (8, (1,))]
        for m in hops
    }
    assert keys == expected
    assert len({r.run_id for r in spec.runs()}) == 264


def _keys(spec):
    return {(c.arch, c.mel.sample_rate, c.mel.n_mels, c.mel.hop_multiplier, c.mel.log) for c in spec.configurations()}


def test_paper_musicnn_and_msd_specs():
    # Table IV: MusiCNN on MTAT, 128/96/48 bands at 12 and 16 kHz, hop x1, dB; the log rows come from the
    # authors' results page, so the spec runs both compressions (12 configurations)
    musicnn = load_spec(SPECS / "paper-mtat-musicnn.toml")
    assert _keys(musicnn) == {("musicnn", sr, n, 1, log) for sr in (12000, 16000) for n in (128, 96, 48)
                              for log in ("log", "dB")}
    # Table V, dB only: (a) VGG-CNN 128/96/48 bands x hop x1, x2 x 12, 16 kHz; (b) MusiCNN the same at x1
    msd = load_spec(SPECS / "paper-msd.toml")
    assert _keys(msd) == ({("vgg", sr, n, hop, "dB") for sr in (12000, 16000) for n in (128, 96, 48) for hop in (1, 2)}
                          | {("musicnn", sr, n, 1, "dB") for sr in (12000, 16000) for n in (128, 96, 48)})
    assert msd.dataset.name == "msd"


# runs of each shipped spec, configurations x seeds as each file's header derives them
SHIPPED_RUNS = {
    "demo": 17 * 2,  # VGG 4 mel counts x 3 hops, 12 kHz and dB references, a half-width VGG, MusiCNN x 2
    "jamendo-top50": 12 * 3,  # 2 rates x 3 mel counts x 2 hops
    "paper-msd": 18 * 3,  # Table V: VGG 3 mel counts x 2 hops x 2 rates, MusiCNN 3 x 1 x 2
    "paper-mtat-musicnn": 12 * 3,  # Table IV: 3 mel counts x 2 rates x 2 log types
    "paper-mtat-vgg": 88 * 3,  # Table II, each with both log types
    "scaling-mtat-vgg": 10 * 3,  # input against width
}


def test_every_spec_in_specs_loads():
    """Each shipped spec holds the runs its header derives; a spec a user adds to specs/ (docs/architectures.md)
    need only load, named as its file."""
    runs = {}
    for path in sorted(SPECS.glob("*.toml")):
        spec = load_spec(path)
        assert spec.name == path.stem
        runs[spec.name] = len(spec.runs())
    assert {name: runs.get(name) for name in SHIPPED_RUNS} == SHIPPED_RUNS


def test_blocks_union_and_deduplicate(write_spec):
    text = MINIMAL_SPEC + """
[[grid]]
arch = ["vgg", "musicnn"]
sample_rate = [12000, 12000]
n_mels = [96, 48]
hop_multiplier = 1
log = "log"
"""
    spec = load_spec(write_spec(text))
    keys = [(c.arch, c.mel.n_mels) for c in spec.configurations()]
    # block 1 gives vgg/96; block 2 gives vgg/96 (duplicate), vgg/48, musicnn/96, musicnn/48
    assert keys == [("vgg", 96), ("vgg", 48), ("musicnn", 96), ("musicnn", 48)]


def test_run_id_is_stable_for_equal_content(write_spec):
    a = load_spec(write_spec(MINIMAL_SPEC, "a.toml")).runs()[0]
    # Same content written differently (scalars for lists, explicit defaults, other path) -> same id.
    b_text = MINIMAL_SPEC.replace('n_mels = [96]', 'n_mels = 96').replace(
        '[dataset]\nname = "synthetic"', '[dataset]\nname = "synthetic"\npath = "/elsewhere"\nclip_seconds = 29.1'
    ) + "\n[arch.vgg]\nwidth = 1\n"
    b = load_spec(write_spec(b_text, "b.toml")).runs()[0]
    assert a.run_id == b.run_id
    # The id is a readable prefix plus the sha256 of the canonical content, written out here in full
    # so that a change to what identifies a run (which would orphan existing results) is deliberate.
    canonical = {
        "arch": "vgg", "options": {"width": 1.0},
        "sample_rate": 12000, "n_mels": 96, "hop_multiplier": 1, "log": "log", "seed": 0,
        "dataset": {"name": "synthetic", "clip_seconds": 29.1, "n_tags": 50, "drop_untagged": False,
                    "clips": None, "seed": 0},
        "protocol": {"batch_size": 32, "lr": 0.001, "max_epochs": 100, "patience": 10, "lr_patience": 3,
                     "lr_factor": 0.5, "weight_decay": 0.0, "precision": "auto"},
    }
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert a.run_id == f"vgg-12k-96mel-x1-log-s0-{digest[:10]}"


def _all_variants(run):
    """Every single-field change of a run's content."""
    c = run.configuration
    replace = dataclasses.replace
    yield replace(run, seed=run.seed + 1)
    yield replace(run, configuration=replace(c, arch="musicnn"))
    yield replace(run, configuration=replace(c, options=replace(c.options, width=0.5)))
    for name, value in [("sample_rate", 16000), ("n_mels", 48), ("hop_multiplier", 2), ("log", "dB")]:
        yield replace(run, configuration=replace(c, mel=replace(c.mel, **{name: value})))
    for name, value in [("name", "mtat"), ("clip_seconds", 10.0), ("n_tags", 10), ("drop_untagged", True),
                        ("clips", 100), ("seed", 7), ("split", "won"), ("split_file", "splits/"), ("subset", "genre")]:
        yield dataclasses.replace(run, dataset=dataclasses.replace(run.dataset, **{name: value}))
    for f in dataclasses.fields(run.protocol):
        value = getattr(run.protocol, f.name)
        changed = "fp32" if f.name == "precision" else value * 2 + 1
        yield dataclasses.replace(run, protocol=dataclasses.replace(run.protocol, **{f.name: changed}))


def test_one_split_folder_spelt_relative_to_the_root_in_several_ways_is_one_run(write_spec):
    """`sp`, `./sp/` and `sp//` name one folder under the dataset root: each had given other run ids, so
    finished runs were trained again. Another folder, or an absolute path, is another identity."""
    run = load_spec(write_spec(MINIMAL_SPEC)).runs()[0]

    def with_split(split_file):
        return dataclasses.replace(run, dataset=dataclasses.replace(run.dataset, split_file=split_file)).run_id

    assert with_split("splits/split-3") == with_split("./splits/split-3/") == with_split("splits//split-3")
    assert len({with_split("splits/split-3"), with_split("splits/split-2"), with_split("/data/splits/split-3"),
                run.run_id}) == 4


def test_run_id_changes_with_any_field(write_spec):
    run = load_spec(write_spec(MINIMAL_SPEC)).runs()[0]
    variants = list(_all_variants(run))
    assert len(variants) == 16 + len(dataclasses.fields(run.protocol))
    ids = {v.run_id for v in variants}
    assert run.run_id not in ids
    assert len(ids) == len(variants)
    # The dataset path says where the data lives, not what it is.
    assert dataclasses.replace(run, dataset=dataclasses.replace(run.dataset, path="/x")).run_id == run.run_id


BAD_SPECS = [
    # (edit applied to MINIMAL_SPEC, field named in the message, value named in the message)
    (lambda s: 'colour = "red"\n' + s, "colour", "unknown key"),
    (lambda s: s.replace('log = ["log"]', 'log = ["log"]\nwindow = "hann"'), "grid[0].window", "unknown key"),
    (lambda s: s.replace('n_mels = [96]', 'n_mels = ["96"]'), "grid[0].n_mels[0]", "'96'"),
    (lambda s: s.replace('n_mels = [96]', 'n_mels = [96.0]'), "grid[0].n_mels[0]", "96.0"),
    (lambda s: s.replace('n_mels = [96]', 'n_mels = [0]'), "grid[0].n_mels[0]", "0"),
    (lambda s: s.replace('n_mels = [96]', 'n_mels = [258]'), "grid[0].n_mels[0]", "258"),
    (lambda s: s.replace('hop_multiplier = [1]', 'hop_multiplier = [0]'), "grid[0].hop_multiplier[0]", "0"),
    (lambda s: s.replace('log = ["log"]', 'log = ["ln"]'), "grid[0].log[0]", "'ln'"),
    (lambda s: s.replace('arch = ["vgg"]', 'arch = ["resnet"]'), "grid[0].arch[0]", "'resnet'"),
    (lambda s: s.replace('arch = ["vgg"]\n', ''), "grid[0].arch", "missing"),
    (lambda s: s.replace('log = ["log"]', 'log = ["log"]\nwidth = [1.0, -0.5]'), "grid[0].width[1]", "-0.5"),
    (lambda s: s.replace('log = ["log"]', 'log = ["log"]\nwidth = ["wide"]'), "grid[0].width[0]", "'wide'"),
    (lambda s: s.replace('seeds = [0]', 'seeds = [true]'), "seeds[0]", "True"),
    (lambda s: s.replace('seeds = [0]', 'seeds = [0, 1, 0]'), "seeds", "duplicates"),  # one run_id twice
    (lambda s: s.replace('name = "synthetic"', 'name = "gtzan"'), "dataset.name", "'gtzan'"),
    (lambda s: s + '\n[arch.vgg]\nwidht = 0.5\n', "arch.vgg.widht", "unknown key"),
    (lambda s: s + '\n[arch.vgg]\nwidth = -1\n', "arch.vgg.width", "-1"),
    (lambda s: s + '\n[arch.transformer]\n', "arch.transformer", "'transformer'"),
    (lambda s: s + '\n[protocol]\nlr = "fast"\n', "protocol.lr", "'fast'"),
    (lambda s: s + '\n[protocol]\nbatch_size = 0\n', "protocol.batch_size", "0"),
    # MusiCNN's back end normalises one value per clip: every step of a batch of one would fail
    (lambda s: s.replace('arch = ["vgg"]', 'arch = ["vgg", "musicnn"]') + '\n[protocol]\nbatch_size = 1\n',
     "protocol.batch_size", "1 is fewer clips than musicnn trains on at 12000 Hz, 96 mels, hop x1: at least 2"),
    # so does VGG's block 4 where Table III pools 8 mels at 12 kHz x10 to 1 x 1 after block 3
    (lambda s: s.replace("n_mels = [96]", "n_mels = [96, 8]").replace("hop_multiplier = [1]", "hop_multiplier = [10]")
     + '\n[protocol]\nbatch_size = 1\n',
     "protocol.batch_size", "1 is fewer clips than vgg trains on at 12000 Hz, 8 mels, hop x10: at least 2"),
    (lambda s: s + '\n[protocol]\nprecision = "fp8"\n', "protocol.precision", "'fp8'"),
    (lambda s: s.replace('name = "t"', 'name = "a/b"'), "name", "'a/b'"),
    # hidden (and sorted apart) as a folder; an accented letter is not portable in a path
    (lambda s: s.replace('name = "t"', 'name = "_demo"'), "name", "'_demo' must be ASCII letters, digits, '.', '_' "
                                                                  "or '-', starting with a letter or digit"),
    (lambda s: s.replace('name = "t"', 'name = "démo"'), "name", "'démo' must be ASCII letters"),
    (lambda s: s.replace('name = "t"\n', ''), "name", "missing"),
    (lambda s: 'description = 5\n' + s, "description", "5"),
    (lambda s: s + "\n[[grid]\n", "", "not valid TOML"),
    # tomllib's position of the fault: MINIMAL_SPEC's 11 lines, an empty one, then the broken header
    (lambda s: s + "\n[[grid]\n", "", "(at line 13, column 7)"),
    (lambda s: s.replace('seeds = [0]', 'seeds = [0]\ngrid = []').split("[[grid]]")[0], "grid",
     "[] needs at least one [[grid]] block"),
    # docs/specs.md's bounds: at least one epoch and one epoch of patience, a learning rate of at most 10,
    # no negative weight decay
    (lambda s: s + '\n[protocol]\nmax_epochs = 0\n', "protocol.max_epochs", "0"),
    (lambda s: s + '\n[protocol]\npatience = 0\n', "protocol.patience", "0"),
    (lambda s: s + '\n[protocol]\nlr = 11.0\n', "protocol.lr", "11.0"),
    (lambda s: s + '\n[protocol]\nweight_decay = -0.1\n', "protocol.weight_decay", "-0.1"),
    # a trailing newline would end up in the results folder's name
    (lambda s: s.replace('name = "t"', 'name = "t\\n"'), "name", "'t\\n'"),
    # torch's ReduceLROnPlateau refuses a factor of 1: every run would fail when it starts
    (lambda s: s + '\n[protocol]\nlr_factor = 1\n', "protocol.lr_factor", "1"),
    # the synthetic generator's settings would only change the run ids of another dataset's runs
    (lambda s: s.replace('name = "synthetic"', 'name = "mtat"\nseed = 5'), "dataset.seed", "5"),
    (lambda s: s.replace('name = "synthetic"', 'name = "msd"\nclips = 100'), "dataset.clips", "100"),
    (lambda s: s.replace('name = "synthetic"', 'name = "mtat"\nsplit_file = ""'), "dataset.split_file", "''"),
    (lambda s: s.replace('name = "synthetic"', 'name = "mtat"\nsplit = "won"\nsplit_file = "x"'),
     "dataset.split", "'won'"),
    # the won split would only change the run ids of another dataset's runs
    (lambda s: s.replace('name = "synthetic"', 'name = "msd"\nsplit = "won"'), "dataset.split",
     "'won' is for MTAT-format datasets only"),
    # TOML can write a NUL character, which the OS refuses in a path (ValueError: embedded null byte)
    (lambda s: s.replace('name = "synthetic"', 'name = "mtat"\npath = "da\\u0000ta"'), "dataset.path",
     "'da\\x00ta' holds a NUL character"),
    (lambda s: s.replace('name = "synthetic"', 'name = "mtat"\nsplit_file = "s\\u0000"'), "dataset.split_file",
     "'s\\x00' holds a NUL character"),
    # an integer beyond any float where a number is asked for: as inf (it had been an OverflowError)
    (lambda s: s.replace('name = "synthetic"', f'name = "synthetic"\nclip_seconds = {10**400}'),
     "dataset.clip_seconds", "must be a finite number"),
    (lambda s: s + f'\n[protocol]\nlr = {10**400}\n', "protocol.lr", "must be a finite number"),
    # an integer of more digits than Python converts from text (4,300): tomllib's ValueError had been a traceback
    (lambda s: s.replace("seeds = [0]", "seeds = [1" + "0" * 5000 + "]"), "", "not valid TOML here (Exceeds the limit"),
    # an unknown key that is empty or holds control characters is quoted: named, and not acted on by a terminal
    (lambda s: '"" = 1\n' + s, "''", "unknown key"),
    (lambda s: s.replace('name = "synthetic"', 'name = "synthetic"\n"\\u001b[2J" = 1'), "dataset.'\\x1b[2J'",
     "unknown key"),
    (lambda s: s + '\n[arch."\\u001b[31mRED"]\n', "arch.'\\x1b[31mRED'", "unknown architecture"),
]


@pytest.mark.parametrize("edit,field,value", BAD_SPECS)
def test_bad_specs_name_file_field_and_value(write_spec, edit, field, value):
    path = write_spec(edit(MINIMAL_SPEC))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert info.value.field == field
    assert value in message
    assert "\n" not in message


@pytest.mark.parametrize("edit,message", [
    # a misspelt key: the closest allowed one is named
    (lambda s: s.replace("n_mels = [96]", "n_mel = [96]"), "grid[0].n_mel: unknown key (did you mean 'n_mels'? "),
    (lambda s: s + "\n[protocol]\nlearning_rate = 0.01\n", "protocol.learning_rate: unknown key (allowed here"),
    # a value written without a list is named without an index, as written in the file
    (lambda s: s.replace("n_mels = [96]", 'n_mels = "96"'), "grid[0].n_mels: '96' must be an integer"),
    (lambda s: s.replace("seeds = [0]", "seeds = true"), "seeds: True must be an integer"),
    (lambda s: s.replace("sample_rate = [12000]", "sample_rate = 500"),
     "grid[0].sample_rate: 500 must be between 1000 and 192000"),
    (lambda s: s.replace('log = ["log"]', 'log = "ln"'), "grid[0].log: 'ln' must be one of 'log', 'dB'"),
    (lambda s: s.replace('arch = ["vgg"]', 'arch = "resnet"'), "grid[0].arch: unknown architecture 'resnet'"),
    (lambda s: s.replace('log = ["log"]', 'log = ["log", "ln"]'), "grid[0].log[1]: 'ln' must be one of"),
    (lambda s: s.replace("n_mels = [96]", "n_mels = [96.0]"),
     "grid[0].n_mels[0]: 96.0 must be an integer, written without a decimal point (96, not 96.0)"),
    # the name is the results folder's: a file name has at most 255 bytes
    (lambda s: s.replace('name = "t"', f'name = "{"a" * 300}"'), "name: 'aaaaaaaaaaaaaaaaaaaa...' is 300 characters"),
])
def test_spec_errors_say_what_was_written(write_spec, edit, message):
    path = write_spec(edit(MINIMAL_SPEC))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_a_spec_path_longer_than_the_file_system_takes_is_one_line(tmp_path):
    """Said of the spec, not with the advice to shorten --results, --cache or --data that an
    ENAMETOOLONG under a grid gets."""
    path = tmp_path / ("a" * 300 + ".toml")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: File name too long"


def test_the_one_line_error_quotes_the_value_as_written(write_spec, capsys):
    from bench.cli import main

    path = write_spec(MINIMAL_SPEC.replace("seeds = [0]", 'seeds = ["0  1\\n2"]'))
    assert main(["plan", str(path), "--no-fvcore"]) == 2
    # its inner spacing kept (the repr shows the line break as \n): what the user looks for in the file
    assert capsys.readouterr().err == \
        f"bench plan: error: {path}: seeds[0]: '0  1\\n2' must be an integer, not a string\n"


def test_synthetic_data_too_small_to_score_any_run_is_refused_before_it_is_made(write_spec):
    # MTAT's folder split: clips go to folders 0-f in turn, c is valid, d-f test. 28 clips leave one
    # clip in folder c (clip 12), and one clip cannot hold a tag both present and absent
    with pytest.raises(SpecError, match=r"dataset.clips: 28 leaves the valid split without a tag that has both a "
                                        r"positive and a negative clip, so no run could be scored; at least \d+ clips"):
        load_spec(write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "synthetic"\nclips = 28')))
    with pytest.raises(SpecError, match="dataset.clips: 3 leaves the valid and test split"):
        load_spec(write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "synthetic"\nclips = 3')))
    load_spec(write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "synthetic"\nclips = 400')))  # the demo's
    # what the runs train on: the n_tags most frequent tags, and with drop_untagged only clips with one
    with pytest.raises(SpecError, match="dataset.clips: 29 leaves the valid split without a tag"):
        load_spec(write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "synthetic"\nclips = 29\nn_tags = 2\n'
                                                                        'drop_untagged = true')))
    with pytest.raises(SpecError, match="dataset.n_tags: 1 with drop_untagged = true keeps only the clips that carry"):
        load_spec(write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "mtat"\nn_tags = 1\n'
                                                                        'drop_untagged = true')))


def test_the_won_split_is_judged_as_drop_untagged_is(write_spec):
    """MTAT's "won" split is the folders split without untagged clips, as drop_untagged = true is: the
    same refusals before any work (both were accepted with split = "won", and every run failed later)."""
    with pytest.raises(SpecError, match='dataset.n_tags: 1 with split = "won" keeps only the clips that carry'):
        load_spec(write_spec(MINIMAL_SPEC.replace('name = "synthetic"',
                                                  'name = "mtat"\nn_tags = 1\nsplit = "won"')))
    with pytest.raises(SpecError, match="dataset.clips: 5 leaves the valid and test split without a tag"):
        load_spec(write_spec(MINIMAL_SPEC.replace('name = "synthetic"',
                                                  'name = "synthetic"\nclips = 5\nsplit = "won"')))


def test_a_spec_nested_too_deeply_to_read_is_one_line(write_spec):
    """tomllib reads nested arrays recursively: thousands of levels ran out of Python's stack, a traceback."""
    path = write_spec(MINIMAL_SPEC.replace("seeds = [0]", "seeds = " + "[" * 5000 + "0" + "]" * 5000))
    with pytest.raises(SpecError, match="not valid TOML \\(arrays or tables nested too deeply to read\\)"):
        load_spec(path)


@pytest.mark.parametrize(("written", "named"), [("-1", "seeds: -1"), ("[0, -1]", "seeds[1]: -1")])
def test_a_seed_written_without_a_list_is_named_without_an_index(write_spec, written, named):
    with pytest.raises(SpecError, match=re.escape(f"{named} must be between 0 and")):
        load_spec(write_spec(MINIMAL_SPEC.replace("seeds = [0]", f"seeds = {written}")))


def test_negative_zero_is_zero_in_the_run_id(write_spec):
    ids = [load_spec(write_spec(MINIMAL_SPEC + f"\n[protocol]\nweight_decay = {v}\n")).runs()[0].run_id
           for v in ("0.0", "-0.0", "0")]
    assert len(set(ids)) == 1


def test_a_spec_that_is_not_utf8_names_the_byte_and_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(MINIMAL_SPEC.replace('name = "t"', 'name = "t"\ndescription = "caf\xe9"').encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin1.toml: not UTF-8 text \(byte 0xe9 at line 3\)"):
        load_spec(path)
    # after an editor's byte-order mark, a bad byte at the start of line 2: its offset in the text is
    # 3 bytes short of its offset in the file, on line 1
    path.write_bytes(b"\xef\xbb\xbf" + b'name = "t"\n\xe9 = 1\n')
    with pytest.raises(SpecError, match=r"latin1.toml: not UTF-8 text \(byte 0xe9 at line 2\)"):
        load_spec(path)


def test_empty_mel_bands_match_torchaudio_and_are_warned_about(write_spec):
    import warnings

    import torchaudio.functional as F

    from bench.core.framing import N_FFT, empty_mel_bands
    from bench.spec import spec_warnings

    for rate in (8000, 12000, 16000, 22050, 32000, 44100, 48000):
        for n_mels in (8, 48, 64, 86, 87, 96, 117, 118, 128, 192, 193, 257):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torchaudio's own "all zero values" warning
                bank = F.melscale_fbanks(N_FFT // 2 + 1, 0.0, rate / 2, n_mels, rate, norm="slaney", mel_scale="slaney")
            assert empty_mel_bands(rate, n_mels) == int((bank.amax(dim=0) == 0).sum()), (rate, n_mels)
    spec = load_spec(write_spec(MINIMAL_SPEC.replace("sample_rate = [12000]", "sample_rate = [16000, 48000]")
                                .replace("n_mels = [96]", "n_mels = [128]")))
    (warning,) = [w for w in spec_warnings(spec) if "are empty" in w]  # 128 are fine at 16 kHz, not at 48 kHz
    assert warning.startswith(f"{spec.path}: 13 of 128 mel bands at 48000 Hz are empty (narrower than the 93.75 Hz "
                              "between the FFT bins of a 512-sample frame)")
    assert warning.endswith("at most 86 bands at this rate have none")  # torchaudio: 87 leave one empty
    one_more = load_spec(write_spec(MINIMAL_SPEC.replace("sample_rate = [12000]", "sample_rate = [48000]")
                                    .replace("n_mels = [96]", "n_mels = [87]"), "one-more.toml"))
    (warning,) = [w for w in spec_warnings(one_more) if "are empty" in w]  # at the boundary: one band too many
    assert "1 of 87 mel bands at 48000 Hz are empty" in warning and warning.endswith("at most 86 bands at this rate "
                                                                                     "have none")


@pytest.mark.parametrize(("dataset", "rates", "warned"), [
    ("mtat", (12000, 16000), None), ("mtat", (16000, 22050, 44100), "22050 Hz, 44100 Hz"),
    ("msd", (16000, 22050), None), ("msd", (44100,), "44100 Hz"), ("synthetic", (16000, 22050), "22050 Hz")])
def test_a_grid_rate_above_the_datasets_own_is_warned_about(write_spec, dataset, rates, warned):
    """MagnaTagATune's MP3s are 16 kHz (the paper, section II): a "44.1 kHz" configuration of it is a
    16 kHz one upsampled, with its mel bands above 8 kHz empty of audio; `bench plan` and `bench prepare`
    said nothing (the MSD's previews are 22.05 or 44.1 kHz: some of them, above 22.05 kHz)."""
    from bench.spec import spec_warnings

    text = MINIMAL_SPEC.replace("sample_rate = [12000]", f"sample_rate = {list(rates)}")
    if dataset != "synthetic":
        text = text.replace('name = "synthetic"', f'name = "{dataset}"')
    spec = load_spec(write_spec(text))
    found = [w for w in spec_warnings(spec) if "upsampled" in w]
    if warned is None:
        assert found == []
    else:
        source = {"mtat": 16000, "msd": 22050, "synthetic": 16000}[dataset]
        some = "some of its files are" if dataset == "msd" else "its files are"
        assert found == [f"{spec.path}: sample_rate {warned} is above the {source:,} Hz {some} recorded at: they "
                         f"are upsampled, and the mel bands above {source // 2:,} Hz hold no audio of theirs"]


def test_bench_prepare_warns_of_an_upsampled_rate(write_spec, tmp_path, monkeypatch, capsys):
    """`bench prepare` makes the cache that an upsampled rate fills with files of empty upper bands: it
    says so, as `bench plan` and `bench grid` do, before it decodes."""
    from bench.cli import main
    from bench.run import prepare

    prepared = []
    monkeypatch.setattr(prepare, "prepare_spec", lambda spec, *args, **kwargs: prepared.append(spec.path))
    spec = write_spec(MINIMAL_SPEC.replace("sample_rate = [12000]", "sample_rate = [22050]"))
    assert main(["prepare", str(spec), "--data", str(tmp_path / "data"), "--cache", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().err == (f"bench prepare: warning: {spec}: sample_rate 22050 Hz is above the 16,000 Hz "
                                       "its files are recorded at: they are upsampled, and the mel bands above "
                                       "8,000 Hz hold no audio of theirs\n")
    assert prepared == [str(spec)]


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.toml")


def test_parse_spec_accepts_a_dict():
    spec = parse_spec({"name": "x", "dataset": {"name": "mtat"},
                       "grid": [{"arch": "vgg", "sample_rate": 16000, "n_mels": 128, "hop_multiplier": 10,
                                 "log": "dB"}]})
    assert [c.mel.n_frames(29.1) for c in spec.configurations()] == [182]
    assert spec.seeds == (0, 1, 2)


def test_shards_partition_the_grid():
    from bench.core.errors import UserError
    from bench.run.grid import parse_shard
    from bench.run.runner import shard

    runs = load_spec(SPECS / "paper-mtat-vgg.toml").runs()
    parts = [shard(runs, i, 4) for i in range(4)]
    assert sorted(r.run_id for p in parts for r in p) == sorted(r.run_id for r in runs)  # every run once
    assert [len(p) for p in parts] == [66, 66, 66, 66]
    assert parse_shard("3/4") == (3, 4) and parse_shard(None) == (0, 1)
    for bad in ("4/4", "1", "a/b", "-1/2", "", " "):  # empty: an unset $SLURM_ARRAY_TASK_ID, not the whole grid
        with pytest.raises(UserError, match="--shard"):
            parse_shard(bad)


def test_the_run_id_the_docs_show_is_the_one_the_shipped_spec_gives():
    import re

    (run,) = [r for r in load_spec(SPECS / "paper-mtat-vgg.toml").runs()
              if (r.mel.sample_rate, r.mel.n_mels, r.mel.hop_multiplier, r.mel.log, r.seed) == (12000, 96, 1, "log", 0)]
    for page in (SPECS.parent / "docs" / "specs.md", SPECS.parent / "results" / "README.md"):
        shown = set(re.findall(r"vgg-12k-96mel-x1-log-s0-[0-9a-f]{10}", page.read_text()))
        assert shown == {run.run_id}, page


def test_a_generator_seed_at_its_default_is_accepted_for_any_dataset(write_spec):
    """`seed = 0` under an MTAT [dataset] changes no run id (0 is the default every identity holds)."""
    plain = load_spec(write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "mtat"')))
    written = load_spec(write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "mtat"\nseed = 0')))
    assert [r.run_id for r in written.runs()] == [r.run_id for r in plain.runs()]


def test_the_spec_examples_of_the_readme_and_docs_are_valid_specs(tmp_path):
    """Every TOML example a reader may copy (the README's, docs/specs.md's) loads, and the README's is
    the grid its comments describe: 2 architectures x 2 rates x 3 mel counts x 2 hops x 2 log types."""
    import re

    root = SPECS.parent
    examples = [(page, text) for page in (root / "README.md", root / "docs" / "specs.md")
                for text in re.findall(r"```toml\n(.*?)```", page.read_text(), flags=re.S)]
    assert len(examples) >= 2
    for k, (page, text) in enumerate(examples):
        fragment = not text.startswith("name = ")  # the width axis's two blocks, shown alone
        path = tmp_path / f"example{k}.toml"
        path.write_text('name = "x"\nseeds = [0]\n[dataset]\nname = "synthetic"\n' + text if fragment else text)
        spec = load_spec(path)  # raises on an example that is not a valid spec
        if page.name == "README.md":
            assert len(spec.runs()) == 2 * 2 * 3 * 2 * 2 * 3, page
        elif fragment:
            assert len(spec.runs()) == 4 + 3  # as its comments count
