"""What a newcomer trips on: every user error is one line on stderr with exit status 2, checked
before any work starts and before anything is created; Ctrl-C says where a rerun resumes."""

import itertools
import json
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.core.errors import Interrupted, UserError
from bench.core.paths import default_models_dir
from bench.core.store import exclusive_lock
from bench.run import grid
from bench.run.runner import RunLock, RunState
from bench.train import loop as train

from .conftest import MINIMAL_SPEC, ROOT
from .device_fakes import ToyCache, tiny_runs

DEMO = str(ROOT / "tests" / "data" / "demo6.toml")  # a 6-run spec


def one_line_error(capsys, *argv, command=None):
    """Run the CLI; assert exit status 2 and a single stderr line "bench <command>: error: ..."."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bench {command or argv[0]}: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv, says", [
    (("grid", DEMO, "--workers", "-1", "--dry-run"), "argument --workers: must be >= 1, got -1"),
    (("grid", DEMO, "--workers", "0", "--dry-run"), "argument --workers: must be >= 1, got 0"),
    (("grid", DEMO, "--workers", "two"), "argument --workers: expected an integer, got 'two'"),
    (("grid", DEMO, "--runs-per-gpu", "0"), "argument --runs-per-gpu: must be >= 1, got 0"),
    (("prepare", DEMO, "--workers", "-1"), "argument --workers: must be >= 1, got -1"),
    (("synth", "--out", "x", "--clips", "0"), "argument --clips: must be >= 1, got 0"),
    (("synth", "--out", "x", "--seconds", "-3"), "argument --seconds: must be a positive number, got -3"),
    (("synth", "--out", "x", "--seconds", "nan"), "argument --seconds: must be a positive number, got nan"),
    (("synth", "--out", "x", "--seconds", "0.5"),
     "argument --seconds: must be between 1 and 3600 (as in a spec's dataset.clip_seconds), got 0.5"),
    (("synth", "--out", "x", "--seed", str(2**32)), "argument --seed: must be between 0 and 4294967295 "
     "(as in a spec's dataset.seed), got 4294967296"),
    (("synth", "--out", "x", "--clips", "999999999"), "argument --clips: must be between 1 and 10000000 "),
    (("tag", "a.mp3", "--top", "0"), "argument --top: must be >= 1, got 0"),
    (("perf", DEMO, "--budget", "0"), "argument --budget: must be a positive number, got 0"),
    (("perf", DEMO, "--budget", "inf"), "argument --budget: must be a positive number, got inf"),  # forever
    (("grid", DEMO, "--device", "tpu"), "argument --device: invalid choice: 'tpu'"),
    (("grid", DEMO, "--wrokers", "2"), "unrecognized arguments: --wrokers 2 (see bench grid --help)"),
])
def test_argument_ranges_are_checked_while_parsing(capsys, argv, says):
    status = main(list(argv))
    _, err = capsys.readouterr()
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bench {argv[0]}: error: {says}"), err


def test_the_ends_of_each_range_are_accepted():
    """The ranges are closed, as a spec's are: `--seed 0`, `--seconds 1` and the largest values parse."""
    from bench.cli import build_parser

    for seed, seconds, clips in ((0, 1, 1), (2**32 - 1, 3600, 10**7)):
        args = build_parser().parse_args(["synth", "--out", "x", "--seed", str(seed), "--seconds", str(seconds),
                                          "--clips", str(clips)])
        assert (args.seed, args.seconds, args.clips) == (seed, seconds, clips)


def test_unusable_results_and_cache_folders_are_named(capsys, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for extra in ((), ("--dry-run",)):
        line = one_line_error(capsys, "grid", DEMO, "--results", str(a_file), *extra)
        assert line.endswith(f"--results {a_file}: is a file, not a folder")
        line = one_line_error(capsys, "grid", DEMO, "--results", str(a_file / "deeper"), *extra)
        assert line.endswith(f"--results {a_file / 'deeper'}: cannot be created: {a_file} is a file, not a folder")
        line = one_line_error(capsys, "grid", DEMO, "--cache", str(a_file), "--results", str(tmp_path / "r"), *extra)
        assert line.endswith(f"--cache {a_file}: is a file, not a folder")
    if Path("/proc/self").is_dir():  # a place nobody can create files in, even root
        line = one_line_error(capsys, "grid", DEMO, "--results", "/proc/bench-results")
        assert "--results /proc/bench-results: cannot create files in /proc" in line
        # a dry run writes nothing: it may look at a folder it cannot write (an archive, read-only)
        assert main(["grid", DEMO, "--results", "/proc/bench-results", "--dry-run"]) == 0
        assert "would run" in capsys.readouterr().out
        assert "cannot create files in /proc" in one_line_error(capsys, "synth", "--out", "/proc/bench-synth")
    assert "is a file, not a folder" in one_line_error(capsys, "synth", "--out", str(a_file))
    assert "is a file, not a folder" in one_line_error(capsys, "prepare", DEMO, "--cache", str(a_file))
    assert "is a file, not a folder" in one_line_error(capsys, "import", "musicnn", "--out", str(a_file))
    assert one_line_error(capsys, "perf", DEMO, "--out", str(tmp_path)).endswith(
        f"--out {tmp_path}: is a folder, not a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing was created meanwhile


def test_a_grid_with_nowhere_to_read_data_creates_no_folders(capsys, write_spec, tmp_path):
    spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "mtat"'))  # no dataset.path
    line = one_line_error(capsys, "grid", str(spec), "--results", str(tmp_path / "results"),
                          "--cache", str(tmp_path / "cache"), "--device", "cpu")
    assert "dataset.path: not set; give the dataset's location with --data DIR" in line
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_report_takes_a_spec_and_a_typo_is_one_line(capsys, tmp_path):
    line = one_line_error(capsys, "report", "specs/demo-typo.toml")
    assert line.endswith("specs/demo-typo.toml: spec file not found")
    line = one_line_error(capsys, "report", DEMO, "--results", str(tmp_path))
    # the grid that would train them there: with the same --results (without it they went to ./results)
    assert line.endswith(f"results folder {tmp_path / 'demo'}: no such folder; `bench grid {DEMO} --results "
                         f"{tmp_path}` trains its runs there (give another folder with --results)")


def test_imported_models_live_in_a_user_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_MODELS", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_models_dir() == tmp_path / "home" / ".local" / "share" / "bench" / "models"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_models_dir() == tmp_path / "xdg" / "bench" / "models"
    monkeypatch.setenv("BENCH_MODELS", str(tmp_path / "mine"))
    assert default_models_dir() == tmp_path / "mine"
    monkeypatch.delenv("BENCH_MODELS")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")  # not one (the XDG specification): found from any folder
    assert default_models_dir() == tmp_path / "home" / ".local" / "share" / "bench" / "models"


@pytest.mark.parametrize("name, value, command", [
    ("BENCH_CACHE", "~/cache", ("prepare", DEMO)),
    ("BENCH_CACHE", "~nobody_here_at_all/cache", ("grid", DEMO, "--dry-run")),
    ("BENCH_MODELS", "~/models", ("tag", "song.mp3")),
    ("XDG_DATA_HOME", "~nobody_here_at_all/data", ("tag", "song.mp3")),
    ("--cache", "~nobody_here_at_all/cache", ("prepare", DEMO)),  # an option's ~, which no shell expanded
    ("--models", "~/models", ("tag", "song.mp3")),
])
def test_a_home_folder_a_variable_names_that_is_not_there_is_one_line(monkeypatch, capsys, tmp_path, name, value,
                                                                      command):
    """A quoted `export BENCH_CACHE="~/cache"` without $HOME or a passwd entry (a container run as an
    arbitrary uid), or a ~user that is not one: "RuntimeError: Could not determine home directory." and a
    traceback."""
    import pwd

    def no_such_user(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_such_user)
    option = name if name.startswith("--") else f"${name}"
    if option == name:
        command = (*command, name, value)
    else:
        monkeypatch.setenv(name, value)
    home = value.split("/")[0]
    line = one_line_error(capsys, *command, "--results", str(tmp_path)) if command[0] == "grid" else \
        one_line_error(capsys, *command)
    assert line.endswith(f"{option} {value}: no home folder for {home} ($HOME is not set, or no such user); give a "
                         f"path without {home}"), line


def test_no_home_folder_for_the_models_is_one_line(monkeypatch, capsys):
    """A container run as a uid with no passwd entry and no $HOME (`env -i`, a service): `bench import
    musicnn` and `bench tag` (its default model) ended in "RuntimeError: Could not determine home
    directory." and a traceback."""
    import pwd

    def no_such_user(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    for name in ("BENCH_MODELS", "XDG_DATA_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_such_user)
    with pytest.raises(UserError, match=r"no home folder to keep imported models in \(\$HOME is not set\): give "
                                        r"--models DIR, or set \$BENCH_MODELS or \$XDG_DATA_HOME"):
        default_models_dir()
    line = one_line_error(capsys, "import", "musicnn")
    assert "no home folder to keep imported models in" in line


def test_tag_names_the_model_folder_from_anywhere(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_MODELS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, "tag", "song.mp3")
    assert f"{tmp_path / 'xdg' / 'bench' / 'models' / 'MTT_musicnn'}: no imported MTT_musicnn" in line


def test_tag_checks_its_inputs_before_loading_the_model(capsys, monkeypatch, tmp_path):
    from bench.tools import tag

    (tmp_path / "text.mp3").write_text("not audio at all\n")
    (tmp_path / "empty.wav").write_bytes(b"")
    monkeypatch.setattr(tag, "resolve_model", lambda model, models: ("run", tmp_path))
    monkeypatch.setattr(tag, "model_sample_rate", lambda kind, folder: 16000)
    monkeypatch.setattr(tag, "load_folder", lambda *a: pytest.fail("the model was loaded for files it cannot tag"))
    status = main(["tag", str(tmp_path / "text.mp3"), str(tmp_path / "missing.wav"), str(tmp_path / "empty.wav")])
    err = capsys.readouterr().err
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("bench tag: error:")]
    assert lines == [
        f"bench tag: error: {tmp_path / 'text.mp3'}: undecodable (not audio in a format libsndfile reads: wav, flac, "
        "ogg, mp3, ...)",
        f"bench tag: error: {tmp_path / 'missing.wav'}: missing file",
        f"bench tag: error: {tmp_path / 'empty.wav'}: empty file (0 bytes)",
    ]
    assert "possibly a pipe" not in err


@pytest.mark.parametrize("png", ["song.mp3", "{song}"])
def test_tag_refuses_a_png_target_that_would_write_over_its_audio(capsys, monkeypatch, tmp_path, png):
    """`bench tag song.mp3 --png song.mp3` wrote the taggram's PNG bytes over the song; so would any
    `--png` named like an audio file."""
    from bench.tools import tag

    song = tmp_path / "song.mp3"
    song.write_bytes(b"ID3 an mp3's bytes")
    monkeypatch.setattr(tag, "resolve_model", lambda model, models: ("run", tmp_path))
    monkeypatch.setattr(tag, "model_sample_rate", lambda kind, folder: 16000)
    monkeypatch.setattr(tag, "load_folder", lambda *a: pytest.fail("the model was loaded"))
    monkeypatch.chdir(tmp_path)
    assert main(["tag", str(song), "--png", png.format(song=song)]) == 2
    assert capsys.readouterr().err.startswith(f"bench tag: error: --png {png.format(song=song)}: not an image file")
    assert song.read_bytes() == b"ID3 an mp3's bytes"
    (tmp_path / "taggram.png").write_bytes(b"an image named like the audio")  # an input named .png is kept too
    assert main(["tag", str(tmp_path / "taggram.png"), "--png", "taggram.png"]) == 2
    assert capsys.readouterr().err.strip() == "bench tag: error: --png taggram.png: that is an input of this command"
    from matplotlib.backend_bases import FigureCanvasBase

    # every name let through is a format matplotlib writes
    assert {s.lstrip(".") for s in tag.IMAGE_SUFFIXES} <= set(FigureCanvasBase.get_supported_filetypes())


def test_png_names_are_unique_per_input():
    from bench.tools.tag import png_paths

    assert png_paths("out/t.png", ["a.mp3"]) == [Path("out/t.png")]
    assert png_paths("out/t", ["a.mp3"]) == [Path("out/t.png")]  # as matplotlib's savefig named it
    assert png_paths("t.png", ["x/a.mp3", "b.wav"]) == [Path("t-a.png"), Path("t-b.png")]
    assert png_paths("t.png", ["a.mp3", "a.wav"]) == [Path("t-a.mp3.png"), Path("t-a.wav.png")]
    assert png_paths("t", ["x/a.mp3", "y/a.mp3"]) == [Path("t-a.mp3-1.png"), Path("t-a.mp3-2.png")]
    # a counter never lands on another input's name, nor on one that differs only in case (macOS)
    three = png_paths("t.png", ["x/a.wav", "y/a.wav", "a.wav-1.wav"])
    assert len(set(three)) == 3 and Path("t-a.wav-1.png") in three
    cased = png_paths("t.png", ["x/A.mp3", "y/a.mp3"])
    assert len({str(p).casefold() for p in cased}) == 2


# --------------------------------------------------------------------------------------------
# Ctrl-C, grid output


def test_ctrl_c_in_training_says_which_epoch_a_rerun_resumes_from(tmp_path, monkeypatch):
    (run,) = tiny_runs(epochs=4, patience=4)
    cache = ToyCache()
    monkeypatch.setattr(train.CheckpointPolicy, "due", lambda self, now: self.last_written is None)  # epoch 1 only
    real_epoch = train.Trainer.train_epoch

    def interrupted_in_epoch_3(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(train.Trainer, "train_epoch", interrupted_in_epoch_3)
    with pytest.raises(Interrupted) as stopped:
        train.train_run(run, cache, tmp_path, torch.device("cpu"), log=lambda *_: None)
    # the checkpoint holds epoch 1, so a rerun trains epoch 2 again
    assert str(stopped.value) == f"rerun to resume {run.run_id} from epoch 2"
    lines = (tmp_path / train.HISTORY).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]  # appended as each epoch finished

    monkeypatch.setattr(train.Trainer, "train_epoch", real_epoch)
    done = train.train_run(run, cache, tmp_path, torch.device("cpu"), log=lambda *_: None)
    history = [json.loads(line) for line in (tmp_path / train.HISTORY).read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]  # epoch 2 once: rewritten from the checkpoint on resume
    assert history == json.loads(json.dumps(done["history"]))


def test_ctrl_c_before_any_checkpoint_says_the_run_starts_again(tmp_path, monkeypatch):
    """In the first epoch, or while the run is set up (its trainer built, its data moved): no checkpoint
    to resume from, and the line says so rather than name one."""
    (run,) = tiny_runs(epochs=2)
    monkeypatch.setattr(train.Trainer, "train_epoch", lambda self, epoch: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(Interrupted, match=f"^rerun to start {run.run_id} again \\(it had not finished an epoch\\)$"):
        train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=lambda *_: None)
    monkeypatch.setattr(train, "Trainer", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(Interrupted, match=f"^rerun to start {run.run_id} again"):
        train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=lambda *_: None)


def test_ctrl_c_after_the_last_epoch_says_the_rerun_finishes_the_run(tmp_path, monkeypatch):
    # In the test or the latency measurement: the checkpoint holds the last epoch; "resume from epoch 3"
    # of a 2-epoch run would name an epoch that never comes.
    (run,) = tiny_runs(epochs=2, patience=2)
    monkeypatch.setattr(train, "served_inference", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(Interrupted, match=f"^rerun to finish {run.run_id} \\(its training is done"):
        train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=lambda *_: None)


@pytest.mark.parametrize("where", ["freeing its memory", "measuring its cost", "writing model.json",
                                   "writing result.json"])
def test_ctrl_c_once_training_returned_names_the_run_a_rerun_finishes(tmp_path, monkeypatch, where):
    """Ctrl-C after the last epoch, the test and the latency: while the run's memory is freed, its GMAC are
    traced (fvcore: seconds at paper scale), model.json or result.json is written. The grid's line had not
    named the run (a bare KeyboardInterrupt is "rerun to continue"), though a rerun tests it again."""
    from types import SimpleNamespace

    from bench.cost import gmac
    from bench.run import runner
    from bench.train import model_file

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    real_write = runner.atomic_write_json
    target = {"freeing its memory": (train, "release_run_memory", ctrl_c),
              "measuring its cost": (gmac, "model_cost", ctrl_c),
              "writing model.json": (model_file, "write_model_json", ctrl_c),
              "writing result.json": (runner, "atomic_write_json", lambda path, doc: (
                  ctrl_c() if Path(path).name == runner.RESULT else real_write(path, doc)))}[where]
    monkeypatch.setattr(*target)
    (run,) = tiny_runs(epochs=2, patience=2)
    with pytest.raises(Interrupted) as stopped:
        runner.execute_run(SimpleNamespace(name="tiny"), run, tmp_path, lambda rate: ToyCache(), torch.device("cpu"),
                           log=lambda *_: None)
    assert str(stopped.value) == (f"rerun to finish {run.run_id} (its training is done: the test and the latency "
                                  "measurement run again)")
    assert not (tmp_path / runner.RESULT).exists()


def test_ctrl_c_while_best_pt_is_written_names_the_epoch_the_checkpoint_already_holds(tmp_path, monkeypatch):
    # checkpoint.pt is written first, then best.pt (~210 MB for VGG, at every better epoch): a Ctrl-C
    # in the second write resumes after the checkpoint's epoch, and the line must say so
    (run,) = tiny_runs(epochs=3, patience=3)
    real_save, calls, written, nth = train.save_torch, itertools.count(), [], [2]

    def interrupted_writing_best(path, state):  # the best.pt after the nth checkpoint of this train_run
        written.append(Path(path).name)
        if Path(path).name == train.BEST and written.count(train.CHECKPOINT) == nth[0]:
            raise KeyboardInterrupt
        return real_save(path, state)

    monkeypatch.setattr(train.CheckpointPolicy, "due", lambda self, now: True)  # every epoch
    monkeypatch.setattr(train.Trainer, "evaluate", lambda self, split: {"roc_auc": 0.5 + 0.01 * next(calls),
                                                                         "pr_auc": 0.5})  # always better
    monkeypatch.setattr(train, "save_torch", interrupted_writing_best)
    with pytest.raises(Interrupted) as stopped:
        train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=lambda *_: None)
    assert train.read_checkpoint(tmp_path / train.CHECKPOINT, run.run_id)["epoch"] == 2
    assert str(stopped.value) == f"rerun to resume {run.run_id} from epoch 3"
    written.clear()  # the rerun trains epoch 3 and is stopped writing its best.pt: training is over
    nth[0] = 1
    with pytest.raises(Interrupted) as stopped:
        train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=lambda *_: None)
    assert written[-2:] == [train.CHECKPOINT, train.BEST]
    assert str(stopped.value).startswith(f"rerun to finish {run.run_id} ")


def test_cli_prints_an_interruption_as_one_line_and_releases_the_run_lock(capsys, monkeypatch, tmp_path):
    from bench.run import runner

    folder = tmp_path / "run"

    def grid_interrupted(*args, **kwargs):
        lock = RunLock(folder)
        assert lock.acquire()
        try:
            raise Interrupted("rerun to resume vgg-x from epoch 3")
        finally:
            lock.release()

    monkeypatch.setattr(grid, "run_grid", grid_interrupted)
    status = main(["grid", DEMO])
    err = capsys.readouterr().err
    assert status == 130  # 128 + SIGINT, as shells expect
    assert err == "bench grid: interrupted; rerun to resume vgg-x from epoch 3\n"
    assert not runner.RunLock(folder).held_by_other()


def test_ctrl_c_promises_kept_work_only_where_there_is_some(capsys, monkeypatch, tmp_path):
    """`bench tag --json` prints its results at the end: after Ctrl-C nothing is kept, and the line
    must not say otherwise; `bench embed` keeps its cache, and says so."""
    from bench.tools import embed, tag

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tag, "cli_main", ctrl_c)
    monkeypatch.setattr(embed, "cli_main", ctrl_c)
    audio = tmp_path / "a.wav"
    assert main(["tag", str(audio), "--model", "MTT_musicnn", "--json"]) == 130
    assert capsys.readouterr().err == "bench tag: interrupted\n"
    assert main(["embed", "MTT_musicnn", str(audio), "--out", str(tmp_path / "e")]) == 130
    assert capsys.readouterr().err == "bench embed: interrupted; rerun to continue (finished work is kept)\n"
    # an interrupted `bench synth` renders every clip again when rerun: nothing is kept
    import bench.data.synthetic

    monkeypatch.setattr(bench.data.synthetic, "generate", ctrl_c)
    assert main(["synth", "--out", str(tmp_path / "s")]) == 130
    assert capsys.readouterr().err == "bench synth: interrupted\n"
    # a download resumes its partial files, a transfer its cached embeddings, a preparation its cache
    import bench.cli

    for command, argv in (("download", ["mtat", "--to", str(tmp_path / "d")]),
                          ("transfer", ["MTT_musicnn", "--task", str(tmp_path / "t.csv")]),
                          ("prepare", [DEMO])):
        monkeypatch.setattr(bench.cli, f"cmd_{command}", ctrl_c)
        assert main([command, *argv]) == 130
        assert capsys.readouterr().err == f"bench {command}: interrupted; rerun to continue (finished work is kept)\n"


def test_a_manifest_that_cannot_be_written_is_refused_before_the_pickles_are_read(capsys, tmp_path):
    """bench convert-msd reads Lee et al.'s pickles (minutes for 242k tracks) only where it can write."""
    (tmp_path / "notes.txt").write_text("x")
    line = one_line_error(capsys, "convert-msd", str(tmp_path / "no-msd-here"), "--out",
                          str(tmp_path / "notes.txt" / "manifest.csv"))
    assert line.endswith(f"--out {tmp_path / 'notes.txt' / 'manifest.csv'}: cannot be created: "
                         f"{tmp_path / 'notes.txt'} is a file, not a folder")


@pytest.mark.parametrize("argv, suffix", [
    (("perf", DEMO, "--device", "cpu", "--out"), ".json"),
    (("convert-msd", "no-msd-here", "--out"), ".csv"),
])
def test_an_output_file_named_like_an_input_is_refused_before_it_is_replaced(capsys, tmp_path, argv, suffix):
    """`--out specs/demo.toml` (an input named by mistake) had been replaced by the measurements or the
    manifest: an output file's name ends in its format's suffix."""
    spec = tmp_path / "demo.toml"
    spec.write_text("kept")
    line = one_line_error(capsys, *argv, str(spec))
    assert line.endswith(f"--out {spec}: a name that does not end in {suffix} (out{suffix}, say); the output is "
                         "written there, replacing any file of that name")
    assert spec.read_text() == "kept"


@pytest.mark.parametrize("name", ["result.json", "config.json"])
def test_an_output_file_named_like_a_run_file_is_refused_before_the_run_loses_it(capsys, tmp_path, name):
    """`bench perf --out RUN/result.json` had replaced a trained run's result with the measurements (the
    next grid set the run aside and trained it again): a run folder's own files are no command's output."""
    run = tmp_path / "runs" / "vgg-16k-8mel-x10-log-s0-a647a4997d"
    run.mkdir(parents=True)
    (run / "result.json").write_text('{"kept": true}')
    line = one_line_error(capsys, "perf", DEMO, "--device", "cpu", "--out", str(run / name))
    assert line.endswith(f"--out {run / name}: is a file of the run in {run}, which the output would replace; "
                         "give another name")
    assert (run / "result.json").read_text() == '{"kept": true}' and not (run / "config.json").exists()
    unstarted = tmp_path / "runs" / "vgg-16k-16mel-x10-log-s0-5e6f17a536"  # no folder yet: its result.json too
    assert "is a file of the run in" in one_line_error(capsys, "perf", DEMO, "--device", "cpu", "--out",
                                                       str(unstarted / name))
    assert not unstarted.exists()


def test_an_output_named_like_a_run_file_outside_a_results_folder_is_written(tmp_path, monkeypatch):
    """A project folder holding a config.json of its own is no run folder: --out result.json there is fine."""
    from bench.core.paths import writable_file

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert writable_file("result.json", "--out", ".json") == Path("result.json")


def test_a_gpu_peak_for_bench_perf_on_the_cpu_is_refused_not_recorded_unused(capsys):
    """--bf16-peak-tflops 100 on the CPU had ended 0, its value in the JSON's settings and used nowhere."""
    line = one_line_error(capsys, "perf", DEMO, "--device", "cpu", "--bf16-peak-tflops", "100")
    assert line.endswith("--bf16-peak-tflops: only for GPUs (bench perf measures the CPU here: --device cpu); on the "
                         "CPU it measures the convolutions' own peak")


@pytest.mark.parametrize("name, value, says", [
    ("LOKY_MAX_CPU_COUNT", "", "not a whole number, the most CPUs a process may use (joblib)"),
    ("LOKY_MAX_CPU_COUNT", "2.0", "not a whole number, the most CPUs a process may use (joblib)"),
    ("SOURCE_DATE_EPOCH", "", "not a whole number from 0 to 253402300799, seconds since 1970"),
    ("SOURCE_DATE_EPOCH", "10000000000000", "not a whole number from 0 to 253402300799, seconds since 1970"),
    ("TORCHINDUCTOR_CACHE_DIR", " ", "an empty path (an unset variable?); torch.compile would write into the "
                                     "working folder"),
    # the GPU slots that two grids on a box share, in a folder relative to each one's working folder
    ("BENCH_GPU_LOCKS", " ", "not an absolute path; every grid on this machine must find the GPU slots in the same "
                             "folder"),
    ("BENCH_GPU_LOCKS", "slots", "not an absolute path"),
    ("BENCH_GPU_LOCKS", "/dev/null", "is a file, not a folder"),
    ("BENCH_GPU_LOCKS", "", None),  # empty: the default folder, as the workers read it
    ("LOKY_MAX_CPU_COUNT", " 1", None),  # what joblib's int() reads
])
def test_a_variable_a_library_cannot_read_is_one_line_before_any_work(capsys, tmp_path, monkeypatch, name, value,
                                                                       says):
    """Read by joblib (the CPUs a grid's workers and the cache's readers share), numpy's f2py (loaded with
    scikit-learn at a run's first evaluation: every run of a grid failed after its first epoch, then the
    report stopped in a traceback) and torch.compile (an empty folder is the working folder to torch)."""
    monkeypatch.setenv(name, value)
    if says is None:  # accepted: the command goes on (a dry run here)
        assert main(["grid", DEMO, "--results", str(tmp_path / "results"), "--dry-run"]) == 0
        return
    line = one_line_error(capsys, "grid", DEMO, "--results", str(tmp_path / "results"), "--cache",
                          str(tmp_path / "cache"), "--device", "cpu")
    assert f"error: {name}={value!r}: {says}" in line, line
    assert not any(tmp_path.iterdir())


def test_an_architecture_registered_with_a_misspelt_builder_is_one_line(capsys, monkeypatch):
    import architectures
    import bench.cli

    def plan(args):
        raise architectures.BuilderError("architecture 'probe': its builder 'architectures.vgg:biuld' is not there")

    monkeypatch.setattr(bench.cli, "cmd_plan", plan)
    assert one_line_error(capsys, "plan", DEMO).endswith("its builder 'architectures.vgg:biuld' is not there")


def test_prepare_quiet_draws_no_progress(monkeypatch, tmp_path):
    from bench.run import prepare

    given = []
    monkeypatch.setattr(prepare, "prepare_spec", lambda *args, **kwargs: given.append(kwargs["progress"]))
    for argv, progress in ((["--quiet"], False), ([], True)):
        assert main(["prepare", DEMO, "--cache", str(tmp_path / "cache"), "--data", str(tmp_path / "d"), *argv]) == 0
        assert given.pop() is progress


def test_a_spec_whose_name_does_not_end_in_toml_is_read_as_a_spec_by_bench_report(capsys, tmp_path, write_spec):
    spec = write_spec(MINIMAL_SPEC, "t.spec")
    line = one_line_error(capsys, "report", str(spec), "--results", str(tmp_path / "nowhere"))
    assert line.endswith(f"results folder {tmp_path / 'nowhere' / 't'}: no such folder; `bench grid {spec} --results "
                         f"{tmp_path / 'nowhere'}` trains its runs there (give another folder with --results)")


def test_lock_files_are_removed_when_released(tmp_path):
    path = tmp_path / ".synthetic.lock"
    with exclusive_lock(path):
        assert path.exists()
    assert not path.exists()
    with pytest.raises(KeyboardInterrupt):
        with exclusive_lock(path):
            raise KeyboardInterrupt
    assert not path.exists()


def test_the_grid_header_says_what_it_will_do(tmp_path):
    from bench.spec import load_spec

    spec = load_spec(DEMO)
    runs = spec.runs()[:6]
    actions = ["run"] * 4 + ["skip-running", "skip"]
    states = [RunState(r, tmp_path, a, "") for r, a in zip(runs, actions, strict=True)]
    assert grid.header(spec, runs, Path("results"), states) == (
        "demo: 6 runs in results/demo: 4 to run, 1 done, 1 running in another worker")


def test_a_worker_exits_0_when_the_only_runs_left_are_held_by_live_workers(capsys, tmp_path):
    from bench.run.runner import run_dir
    from bench.spec import load_spec

    spec = load_spec(DEMO)
    runs = spec.runs()[:2]
    locks = [RunLock(run_dir(tmp_path, spec, r)) for r in runs]
    assert all(lock.acquire() for lock in locks)  # another worker is training both
    try:
        assert grid.summarise(spec, tmp_path, runs) == 0
        out = capsys.readouterr().out
        assert "0 ok, 0 failed, 0 not run, 2 still training in other workers" in out
        assert "2 run(s) are being trained by other live workers" in out
    finally:
        locks[0].release()
    assert grid.summarise(spec, tmp_path, runs) == 1  # one of them was dropped, unfinished: not run
    locks[1].release()


def test_progress_bars_only_on_a_terminal(monkeypatch, capsys):
    from bench.core import progress

    monkeypatch.setattr(progress, "on_terminal", lambda: False)  # a log file, a pipe, a Slurm job
    with progress.progress_bar(3, "clips") as bar:
        bar.update(3)
    assert capsys.readouterr() == ("", "")  # work done within a minute says nothing in a log
    bar = progress.progress_bar(3, "clips")
    bar.last -= 61
    bar.update()
    assert capsys.readouterr().out == ""  # stdout may be JSON (`bench plan --latency --format json`)
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    assert not progress.progress_bar(3, "clips").disable
    assert progress.progress_bar(3, "clips", enabled=False).disable  # --quiet


def test_a_log_gets_a_progress_line_a_minute_with_what_is_left():
    """Preparing MSD's 242k files takes a quarter of an hour or more: a Slurm or nohup log used to show
    nothing between the dataset's line and the end. In a log, one line a minute: count, share, time."""
    from bench.core.progress import LogProgress

    now, lines = [0.0], []
    bar = LogProgress(25_860, "decode+resample mtat -> 12000, 16000 Hz", clock=lambda: now[0], out=lines.append)
    for _ in range(239):  # 4 clips a second: no line within the first minute
        now[0] += 0.25
        bar.update()
    assert lines == []
    now[0] += 0.25
    bar.update()  # 240 clips in 60 s; 25,620 left at 4 a second: 6,405 s
    assert lines == ["decode+resample mtat -> 12000, 16000 Hz: 240/25,860 clips (1 %) in 1 min, about 1 h 47 min left"]
    download = LogProgress(2_000_000_000, "mtat.zip", unit="B", unit_scale=True, initial=500_000_000,
                           clock=lambda: now[0], out=lines.append)
    now[0] += 3600
    download.update(500_000_000)
    assert lines[-1] == "mtat.zip: 1.00 GB/2.00 GB (50 %) in 1 h 00 min, about 2 h 00 min left"  # 0.5 GB an hour
    now[0] = 0.0
    nearly = LogProgress(400, "synthetic clips", clock=lambda: now[0], out=lines.append)
    now[0] = 60.0
    nearly.update(397)  # 3 clips left at 6.6 a second: not "about 1 min left"
    assert lines[-1] == "synthetic clips: 397/400 clips (99 %) in 1 min, under a minute left"
    unknown = LogProgress(None, "mtat.zip", unit="B", unit_scale=True, clock=lambda: now[0], out=lines.append)
    now[0] += 60  # a server that sends no Content-Length
    unknown.update(300_000_000)
    assert lines[-1] == "mtat.zip: 0.30 GB/? in 1 min"


def test_the_grid_summary_reads_a_valid_result_that_records_little(capsys, tmp_path):
    """A result.json that passes the done-marker check but was written by another tool or edited by
    hand (an empty config and cost) is listed, not a KeyError after the grid."""
    import json

    from bench.run.runner import run_dir
    from bench.spec import load_spec

    spec = load_spec(DEMO)
    (run,) = spec.runs()[:1]
    folder = run_dir(tmp_path, spec, run)
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"run_id": run.run_id, "status": "ok", "config": {}, "cost": {},
                                                    "metrics": {"roc_auc": 0.9, "pr_auc": 0.5}}))
    assert grid.summarise(spec, tmp_path, [run]) == 0
    assert "1 ok, 0 failed, 0 not run" in capsys.readouterr().out


@pytest.mark.parametrize("name, value, says", [
    ("BENCH_COMPILE_BACKEND", "nonsense", "BENCH_COMPILE_BACKEND='nonsense': not a torch.compile backend"),
    ("BENCH_COMPILE_MODE", "turbo", "BENCH_COMPILE_MODE='turbo': not a torch.compile mode (this torch has default, "),
    ("BENCH_COMPILE_MODE", "max-autotune", "BENCH_COMPILE_MODE='max-autotune': a mode of inductor's, which "
     "BENCH_COMPILE_BACKEND='eager' would ignore"),
    ("BENCH_RESIDENT", "maybe", "BENCH_RESIDENT='maybe': expected one of auto, 1, true"),
    ("BENCH_COMPILE", "sometimes", "BENCH_COMPILE='sometimes': expected one of auto"),
])
def test_a_mistyped_setting_stops_the_grid_before_any_work(capsys, monkeypatch, tmp_path, name, value, says):
    """An unknown compile backend failed every run (recorded as failed: --retry-failed needed after the
    fix); a mistyped switch was silently taken as auto; a compile mode the backend ignores was recorded
    as if it had been used."""
    monkeypatch.setenv(name, value)
    if "BENCH_COMPILE_BACKEND='eager'" in says:
        monkeypatch.setenv("BENCH_COMPILE_BACKEND", "eager")
    line = one_line_error(capsys, "grid", DEMO, "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"),
                          "--data", str(tmp_path / "d"))
    assert says in line
    assert not (tmp_path / "d").exists() and not (tmp_path / "c").exists()


def test_a_file_in_the_way_of_an_output_is_named(capsys, tmp_path):
    """`--out notes.txt/x.json` when notes.txt is a file: the message named x.json "a file"; and
    `bench export --onnx m.onnx` with a folder where its m.onnx.json goes wrote m.onnx, then failed."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    line = one_line_error(capsys, "perf", DEMO, "--out", str(a_file / "x.json"))
    assert line.endswith(f"--out {a_file / 'x.json'}: cannot be created: {a_file} is a file, not a folder")
    (tmp_path / "m.onnx.json").mkdir()
    line = one_line_error(capsys, "export", "MTT_musicnn", "--onnx", str(tmp_path / "m.onnx"))
    assert "m.onnx.json: is a folder, not a file" in line and not (tmp_path / "m.onnx").exists()


def test_a_spec_saved_with_a_byte_order_mark_loads(tmp_path):
    """Editors on Windows save "UTF-8 with BOM"; TOML parsers refuse the mark at line 1, column 1."""
    from bench.spec import load_spec

    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + Path(DEMO).read_bytes())
    assert load_spec(bom).name == load_spec(DEMO).name


def test_a_cache_folder_from_the_environment_is_named_as_such(capsys, monkeypatch, tmp_path):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    monkeypatch.setenv("BENCH_CACHE", str(a_file))
    line = one_line_error(capsys, "grid", DEMO, "--results", str(tmp_path / "r"), "--dry-run")
    assert line.endswith(f"$BENCH_CACHE {a_file}: is a file, not a folder")


def test_a_dataset_text_file_that_is_not_utf8_is_one_line(tmp_path, capsys, write_spec):
    """A Latin-1 annotations file, split list, tag list or musicnn-training tsv: one line naming the file
    and the byte, from every reader, not a UnicodeDecodeError."""
    from bench.core.errors import UserError
    from bench.data.jamendo import read_jamendo
    from bench.data.manifest import read_manifest
    from bench.data.msd import read_msd
    from bench.data.mtat import read_mtat
    from bench.data.task import read_task

    from .data_fixtures import make_mtat

    latin1 = "caf\xe9".encode("latin-1")  # 0xe9: not UTF-8 on its own
    mtat = make_mtat(tmp_path / "mtat", write_audio=False)
    (mtat / "annotations_final.csv").write_bytes((mtat / "annotations_final.csv").read_bytes() + latin1)
    splits = tmp_path / "splits"
    splits.mkdir()
    for name in ("train.tsv", "valid.tsv", "test.tsv"):
        (splits / name).write_bytes(b"2\n" + latin1)
    jamendo = tmp_path / "jamendo" / "splits" / "split-0"
    jamendo.mkdir(parents=True)
    for name in ("train", "validation", "test"):
        (jamendo / f"autotagging_top50tags-{name}.tsv").write_bytes(b"TRACK_ID\t" + latin1)
    msd = tmp_path / "msd"
    msd.mkdir()
    for name in ("train_gt_msd.tsv", "val_gt_msd.tsv", "test_gt_msd.tsv"):
        (msd / name).write_bytes(latin1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,split,tags\na.mp3,train,rock\n")
    (tmp_path / "m.tags.txt").write_bytes(latin1)
    latin1_manifest = tmp_path / "n.csv"  # a spreadsheet's plain "CSV", not its "CSV UTF-8"
    latin1_manifest.write_bytes(b"path,split,tags\n" + latin1 + b".mp3,train,rock\n")
    task = tmp_path / "task.csv"
    task.write_bytes(b"path,label\n" + latin1 + b".mp3,x\n")
    cases = [(lambda: read_mtat(mtat), mtat / "annotations_final.csv"),
             (lambda: read_mtat(make_mtat(tmp_path / "m2", write_audio=False), n_tags=3, split_file=str(splits)),
              splits / "train.tsv"),
             (lambda: read_jamendo(tmp_path / "jamendo"), jamendo / "autotagging_top50tags-train.tsv"),
             (lambda: read_msd(msd), msd / "train_gt_msd.tsv"),
             (lambda: read_manifest(manifest), tmp_path / "m.tags.txt"),
             (lambda: read_manifest(latin1_manifest), latin1_manifest),
             (lambda: read_task(task), task)]
    for read, path in cases:
        with pytest.raises(UserError) as error:
            read()
        assert str(error.value).startswith(f"{path}: not UTF-8 text (byte 0xe9 at offset "), str(error.value)
    # and through the CLI
    spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', f'name = "mtat"\npath = "{mtat}"'))
    assert "not UTF-8 text (byte 0xe9" in one_line_error(capsys, "dataset", str(spec))


def test_an_empty_or_pickled_npy_split_list_is_one_line(tmp_path):
    import numpy as np

    from bench.core.errors import UserError
    from bench.data.splits import entries

    (tmp_path / "train.npy").write_bytes(b"")
    with pytest.raises(UserError, match=r"train.npy: not an array of strings \(an empty file\)"):
        entries(tmp_path / "train.npy")
    # a list saved as text under the name: numpy 1 would call it pickled data
    (tmp_path / "test.npy").write_text("0/a.mp3\n1/b.mp3\n")
    with pytest.raises(UserError, match=r"test.npy: not an array of strings \(not a .npy file\)"):
        entries(tmp_path / "test.npy")
    # cut short after its header
    np.save(tmp_path / "short.npy", np.array(["0/a.mp3", "1/b.mp3"]))
    (tmp_path / "short.npy").write_bytes((tmp_path / "short.npy").read_bytes()[:-8])
    with pytest.raises(UserError, match=r"short.npy: not an array of strings \("):
        entries(tmp_path / "short.npy")
    np.save(tmp_path / "valid.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match=r"valid.npy: not an array of strings \(it holds Python objects, which are "
                                        r"not unpickled\)"):
        entries(tmp_path / "valid.npy")


def test_a_file_where_a_results_folder_should_be_is_one_line(tmp_path, capsys, write_spec):
    """`bench status` and `bench grid --dry-run` look at every run's result.json: a file named like the
    spec's results folder, or its runs/, is named in one line (runs/ as a file had been read as no runs
    at all: "1 not started", "would run"), not a NotADirectoryError."""
    spec = write_spec(MINIMAL_SPEC)
    for blocked in ("t", "t/runs"):
        results = tmp_path / f"results-{blocked.replace('/', '-')}"
        (results / blocked).parent.mkdir(parents=True, exist_ok=True)
        (results / blocked).write_text("not a folder")
        for argv in (["status", str(spec), "--results", str(results)],
                     ["grid", str(spec), "--results", str(results), "--dry-run"]):
            line = one_line_error(capsys, *argv)
            assert line.endswith(f"--results {results}: {results / blocked} is a file, not a folder (where the "
                                 "spec's runs go); move it aside, then rerun")


def test_a_file_named_like_the_specs_results_folder_stops_every_command_before_any_work(tmp_path, capsys, write_spec):
    """A file at results/<spec name>: `bench status` said "1 not started", `bench grid --dry-run` "would
    run", and `bench grid` prepared the cache before it stopped, naming a run's folder."""
    spec = write_spec(MINIMAL_SPEC)
    (tmp_path / "t").write_text("not a folder")
    cache = tmp_path / "cache"
    for argv in (["status"], ["grid", "--dry-run"], ["grid", "--cache", str(cache)]):
        line = one_line_error(capsys, argv[0], str(spec), "--results", str(tmp_path), *argv[1:])
        assert line.endswith(f"--results {tmp_path}: {tmp_path / 't'} is a file, not a folder (where the spec's "
                             "runs go); move it aside, then rerun"), argv
    assert not cache.exists()


def test_a_grid_given_the_specs_own_results_folder_points_one_level_up(tmp_path, capsys, write_spec):
    """`--results results/<spec>` (as `bench report` takes it): `bench status` refused it, `bench grid`
    trained every finished run again in results/<spec>/<spec>."""
    spec = write_spec(MINIMAL_SPEC)
    (tmp_path / "t" / "runs").mkdir(parents=True)
    for extra in ((), ("--dry-run",)):
        line = one_line_error(capsys, "grid", str(spec), "--results", str(tmp_path / "t"), *extra)
        assert line.endswith(f"holds runs itself; --results is the folder above it (did you mean --results "
                             f"{tmp_path}?)")
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["runs"]


def test_a_history_with_bytes_that_are_not_utf8_is_read_up_to_them(tmp_path):
    from bench.run.status import read_history

    path = tmp_path / "history.jsonl"
    path.write_bytes(b'{"epoch": 1}\n{"epoch": 2}\n{"epoch": \xff3}\n')
    assert read_history(path) == [{"epoch": 1}, {"epoch": 2}]


def test_a_file_that_cannot_be_read_is_not_said_to_be_unwritable(tmp_path, monkeypatch):
    """Permission errors reach the CLI as one OSError kind: reading a spec of mode 600, or a file inside a
    folder that cannot be entered, is not "cannot write ... choose another --results folder"."""
    import errno
    import os

    from bench.cli import resource_message

    secret = tmp_path / "secret.toml"
    secret.write_text("")
    closed = tmp_path / "closed"
    closed.mkdir()
    real = os.access
    shared = tmp_path / "history.jsonl"  # another user's, mode 600, in a shared results folder
    shared.write_text("")
    denied = {str(secret): {os.R_OK}, str(closed): {os.X_OK}, str(shared): {os.R_OK, os.W_OK}}
    monkeypatch.setattr(os, "access",
                        lambda path, mode: False if mode in denied.get(str(path), ()) else real(path, mode))
    read = PermissionError(errno.EACCES, "Permission denied", str(secret))
    assert resource_message(read) == f"cannot read {secret}: Permission denied; make it readable, then rerun"
    # its permissions are the fix: another --results or --cache did not help a file of the dataset's
    either = PermissionError(errno.EACCES, "Permission denied", str(shared))
    assert resource_message(either) == (f"cannot read or write {shared}: Permission denied; change its "
                                        "permissions, then rerun")
    inside = PermissionError(errno.EACCES, "Permission denied", str(closed / "ds" / "annotations_final.csv"))
    assert resource_message(inside).startswith(f"cannot reach {closed}/ds/annotations_final.csv: Permission denied "
                                               f"(the folder {closed} cannot be entered)")
    write = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "results" / "x.json"))
    assert resource_message(write).startswith("cannot write ")


@pytest.mark.parametrize(("command", "advice"), [
    ("grid", "free some space and then rerun (finished runs are kept, interrupted ones resume)"),
    ("embed", "free some space and then rerun (what it finished is kept)"),
    ("export", "free some space and then rerun"),
    ("prepare", "free some space and then rerun (what it finished is kept)"),
])
def test_a_full_disk_is_advised_as_the_command_that_met_it_keeps_its_work(command, advice):
    """`bench export` and `bench synth` have no runs, and a rerun of `bench synth` renders every clip
    again: "finished runs are kept, interrupted ones resume" was a grid's advice given to every command,
    as were `--results / --cache` folders and `--workers` that only the grid and `bench prepare` have."""
    import errno

    from bench.cli import resource_message

    full = OSError(errno.ENOSPC, "No space left on device", "/scratch/out/model.onnx")
    assert resource_message(full, command) == f"cannot write /scratch/out/model.onnx: No space left on device; {advice}"
    many = OSError(errno.EMFILE, "Too many open files")
    assert ("--workers" in resource_message(many, command)) is (command in ("grid", "prepare"))
    denied = PermissionError(errno.EROFS, "Read-only file system", "/scratch/out/model.onnx")
    assert ("--results" in resource_message(denied, command)) is (command == "grid")  # prepare has none
    assert ("--cache" in resource_message(denied, command)) is (command in ("grid", "prepare"))


def test_an_audio_file_that_cannot_be_read_says_so(tmp_path, monkeypatch):
    """libsndfile reports a file it may not open as "System error": the reason recorded (and printed by
    `bench tag`) says what is wrong."""
    import os

    from bench.data.audio import BadAudio, decode_clip, decode_file

    from .data_fixtures import tone, write_mp3

    path = str(write_mp3(tmp_path / "secret.mp3", tone(2.0)))
    real = os.open

    def refusing(file, flags, *args, **kwargs):  # what a file of another user's, mode 600, gets (root is let in)
        if os.fsdecode(file) == path:
            raise PermissionError(13, "Permission denied", path)
        return real(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    for decode in (lambda: decode_file(path, 16000), lambda: decode_clip(path, (16000,), 1.0)):
        with pytest.raises(BadAudio, match=r"^cannot read \(Permission denied\)$"):
            decode()


def test_an_audio_file_in_a_folder_that_cannot_be_entered_is_not_called_missing(tmp_path, monkeypatch):
    import os

    from bench.data.audio import BadAudio, decode_clip

    from .data_fixtures import tone, write_mp3

    path = str(write_mp3(tmp_path / "closed" / "a.mp3", tone(2.0)))
    real = os.stat

    def refusing(file, *args, **kwargs):  # a folder of mode 700 of another user's (root is let in)
        if os.fsdecode(file) == path:
            raise PermissionError(13, "Permission denied", path)
        return real(file, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refusing)
    with pytest.raises(BadAudio, match=r"^cannot read \(Permission denied: a folder on its path cannot be entered\)$"):
        decode_clip(path, (16000,), 1.0)
    with pytest.raises(BadAudio, match="^missing file$"):
        decode_clip(str(tmp_path / "closed" / "b.mp3"), (16000,), 1.0)
    loop = tmp_path / "loop.mp3"
    loop.symlink_to(loop)  # ELOOP: one clip skipped, not a traceback that stops `bench prepare`
    with pytest.raises(BadAudio, match=r"^cannot read \(Too many levels of symbolic links\)$"):
        decode_clip(str(loop), (16000,), 1.0)


def test_bench_dataset_before_the_synthetic_data_exists_says_what_makes_it(tmp_path, capsys, write_spec):
    spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', f'name = "synthetic"\npath = "{tmp_path / "synth"}"'))
    assert main(["dataset", str(spec)]) == 0  # the grid can run: it generates the data first
    assert "not generated yet: described from its generator's plan" in capsys.readouterr().out
    assert not (tmp_path / "synth").exists()  # looking generates nothing
    (tmp_path / "synth").write_text("a file")  # where the folder should go: no `bench synth --out <file>` advice
    line = one_line_error(capsys, "dataset", str(spec))
    assert line.endswith(f"synthetic dataset: {tmp_path / 'synth'} is a file, not a folder; give a folder to "
                         "generate it in")


@pytest.mark.parametrize("argv, names", [
    (("grid", DEMO, "--partition", "gpu", "--dry-run"), "--partition"),
    (("grid", DEMO, "--launcher", "submitit-local", "--mem-gb", "64", "--gpus", "2", "--dry-run"),
     "--gpus, --mem-gb"),
    (("grid", DEMO, "--gpu-mem-gb", "80", "--dry-run"), "--gpu-mem-gb"),
    (("grid", DEMO, "--slurm-arg", "account=proj1", "--dry-run"), "--slurm-arg"),
    (("grid", DEMO, "--time", "10", "--cpus", "4", "--dry-run"), "--time, --cpus"),
    (("grid", DEMO, "--cpus", "8", "--dry-run"), "--cpus"),
    (("grid", DEMO, "--launcher", "submitit-local", "--cpus", "8", "--dry-run"), "--cpus"),
    (("grid", DEMO, "--runs-per-gpu", "3", "--device", "cpu", "--dry-run"), "--runs-per-gpu"),
    # a Slurm grid on the CPU: its jobs had been submitted without the GPUs asked, or holding a gres's unused
    (("grid", DEMO, "--launcher", "slurm", "--device", "cpu", "--gpus", "4", "--gpu-mem-gb", "80", "--dry-run"),
     "--gpus, --gpu-mem-gb"),
    (("grid", DEMO, "--launcher", "slurm", "--device", "cpu", "--slurm-arg", "gres=gpu:a100:2", "--dry-run"),
     "--slurm-arg gres=gpu:a100:2"),
])
def test_slurm_only_options_without_slurm_are_refused_not_ignored(capsys, tmp_path, argv, names):
    line = one_line_error(capsys, *argv, "--results", str(tmp_path))
    on_the_cpu = "--device" in argv and argv[argv.index("--device") + 1] == "cpu"
    assert f"error: {names}: only for " + ("GPUs (this grid runs on the CPU: --device cpu)" if on_the_cpu
                                           else "--launcher slurm") in line
    assert not any(tmp_path.iterdir())


def test_an_sbatch_option_the_grid_sets_is_one_line_before_any_work(capsys, tmp_path):
    line = one_line_error(capsys, "grid", DEMO, "--launcher", "slurm", "--slurm-arg", "time=60", "--results",
                          str(tmp_path / "r"), "--data", str(tmp_path / "d"))
    assert line.endswith("--slurm-arg time=60: the grid sets --time itself (give --time)")
    assert not any(tmp_path.iterdir())


def test_an_sbatch_option_of_gpus_on_the_cpu_does_not_advise_a_gpu_option(capsys, tmp_path):
    line = one_line_error(capsys, "grid", DEMO, "--launcher", "slurm", "--device", "cpu", "--slurm-arg", "gpus=2",
                          "--results", str(tmp_path / "r"), "--data", str(tmp_path / "d"))
    assert line.endswith("--slurm-arg gpus=2: the grid sets --gpus itself, and on the CPU (--device cpu) a job "
                         "runs one task and asks for no GPU")
    assert not any(tmp_path.iterdir())


def test_download_quality_is_refused_for_mtat(capsys, tmp_path):
    line = one_line_error(capsys, "download", "mtat", "--to", str(tmp_path / "mtat"), "--quality", "full")
    assert "--quality: only for jamendo" in line
    assert not (tmp_path / "mtat").exists()


def test_a_spec_that_cannot_be_read_says_so_not_that_it_cannot_be_written(capsys, tmp_path, monkeypatch, write_spec):
    spec = write_spec(MINIMAL_SPEC)
    real = Path.read_text

    def read_text(path, *args, **kwargs):
        if path == spec:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    line = one_line_error(capsys, "plan", str(spec))
    assert line.endswith(f"{spec}: cannot read it (Permission denied); make it readable")


def test_a_folder_where_a_file_belongs_or_a_file_where_a_folder_belongs_is_one_line(capsys, tmp_path, write_spec):
    """A copy gone wrong: a result.json that is a folder, a report/ that is a file. One line naming the
    path, not an IsADirectoryError / NotADirectoryError traceback."""
    from bench.core.layout import RESULT

    from .test_report import TAGS, result_doc, write_doc

    spec = write_spec(MINIMAL_SPEC)
    results = tmp_path / "results"
    assert main(["grid", str(spec), "--results", str(results), "--dry-run"]) == 0
    run_id = capsys.readouterr().out.split("vgg-", 1)[1].split()[0]
    (results / "t" / "runs" / f"vgg-{run_id}" / RESULT).mkdir(parents=True)
    line = one_line_error(capsys, "status", str(spec), "--results", str(results))
    assert line.endswith(f"vgg-{run_id}/{RESULT}: a folder where a file belongs; move it aside, then rerun")
    folder = tmp_path / "other"
    write_doc(folder, result_doc(("vgg", 12000, 96, 1, "log"), 0, 1.0, {t: 0.8 for t in TAGS}, 0.4))
    (folder / "report").write_text("a file")
    line = one_line_error(capsys, "report", str(folder))
    assert "a file stands where a folder belongs on this path; move it aside" in line
    (folder / "report").unlink()
    (folder / "report" / "summary.csv").mkdir(parents=True)  # the target of a rename: named, not the temp file
    line = one_line_error(capsys, "report", str(folder))
    assert line.endswith(f"{folder / 'report' / 'summary.csv'}: a folder where a file belongs; move it aside, "
                         "then rerun")


@pytest.mark.parametrize("argv, option, give", [
    (("synth", "--out", "", "--clips", "3"), "--out", "give a folder, or . for this one"),
    (("grid", DEMO, "--results", "", "--dry-run"), "--results", "give a folder, or . for this one"),
    (("status", DEMO, "--results", " "), "--results", "give a folder, or . for this one"),
    # an option that names a file: `.` is then refused as a folder
    (("perf", DEMO, "--out", ""), "--out", "give a file name"),  # which ran the measurements, then wrote nothing
    (("tag", "a.mp3", "--png", " "), "--png", "give a file name"),
    # options whose empty value had meant their default (BENCH_CACHE, the models folder, the spec's data)
    (("grid", DEMO, "--cache", "", "--dry-run"), "--cache", "give a folder, or . for this one"),
    (("prepare", DEMO, "--data", ""), "--data", "give a folder, or . for this one"),
    (("import", "musicnn", "--out", ""), "--out", "give a folder, or . for this one"),
    (("embed", "MTT_musicnn", "a.mp3", "--models", "", "--out", "e"), "--models", "give a folder, or . for this one"),
    (("report", DEMO, "--results", ""), "--results", "give a folder, or . for this one"),
    # arguments: the working directory had been read as a results folder
    (("report", ""), "RESULTS_DIR|SPEC", "give a folder, or . for this one"),
    (("plan", " "), "SPEC", "give a file name"),
])
def test_an_empty_path_is_refused_not_taken_as_the_working_directory(capsys, tmp_path, monkeypatch, argv, option,
                                                                      give):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, *argv)
    assert line.endswith(f"{option}: an empty path (an unset variable?); {give}")
    assert not any(tmp_path.iterdir())


def test_a_results_folder_given_for_a_spec_or_a_specs_folder_for_results_says_what_was_meant(capsys, tmp_path,
                                                                                             write_spec):
    """`bench status results/demo` said only "not a file"; `make report RESULTS=results/demo` said the runs
    were missing (`results/demo/demo: no such folder`), where `bench grid` and `bench status` ask
    "did you mean --results results?"."""
    spec = write_spec(MINIMAL_SPEC)
    results = tmp_path / "results"
    (results / "t" / "runs").mkdir(parents=True)
    line = one_line_error(capsys, "status", str(results / "t"))
    assert line.endswith(f"{results / 't'}: a folder, not a spec file (.toml)")
    line = one_line_error(capsys, "report", str(spec), "--results", str(results / "t"))
    assert line.endswith(f"--results {results / 't'}: holds runs itself; --results is the folder above it (did you "
                         f"mean --results {results}?)")
