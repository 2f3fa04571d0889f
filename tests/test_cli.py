"""The CLI contract: outputs, and exit status 2 with one line (no traceback) for user errors."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from bench.cli import main

from .conftest import MINIMAL_SPEC, SPECS
from .test_spec import BAD_SPECS


def run_cli(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_help_and_version_exit_0(capsys):
    """argparse's convention, which make and shells read: asking for help or the version is no error."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "bench 0.1.0\n"  # pyproject.toml's version
    assert main(["--help"]) == 0 and main(["grid", "--help"]) == 0
    assert "usage: bench grid" in capsys.readouterr().out


def test_retry_failed_reaches_the_grid_and_a_dry_run_writes_no_report(monkeypatch, capsys, tmp_path):
    """`--retry-failed` is passed on; the report that follows a grid is not written by a dry run, which
    writes nothing (a read-only results folder included)."""
    from bench.report import report
    from bench.run import grid

    spec = SPECS.parent / "tests" / "data" / "demo6.toml"
    done = tmp_path / "results" / "demo" / "runs" / "vgg-abc" / "result.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    given, reported = [], []
    monkeypatch.setattr(grid, "run_grid", lambda spec, options: given.append(options) or 0)
    monkeypatch.setattr(report, "cli_main", lambda folder, runs: reported.append(folder) or 0)
    results = ["--results", str(tmp_path / "results")]
    assert main(["grid", str(spec), *results, "--retry-failed", "--dry-run"]) == 0
    assert given[-1].retry_failed is True and given[-1].dry_run is True and reported == []
    assert main(["grid", str(spec), *results]) == 0
    assert given[-1].retry_failed is False and reported == [tmp_path / "results" / "demo"]


def test_a_plan_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`bench plan SPEC | head -1`: what was asked for was read; no BrokenPipeError traceback."""
    proc = subprocess.run(f"{sys.executable} -m bench plan {SPECS / 'paper-mtat-vgg.toml'} --no-fvcore | head -1",
                          shell=True, capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(SPECS.parent)})
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1
    assert proc.stderr == ""


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_a_full_disk_under_standard_output_is_named_in_one_line(tmp_path, unbuffered):
    """`bench plan > plan.txt` on a full disk (/dev/full gives every write ENOSPC): Python's stdout names no
    file, and the line said "cannot write No space left on device"; block-buffered, as a shell's redirection
    has it, the rest met at the command's last flush ended in a traceback and exit 120."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    env.update({"PYTHONPATH": str(SPECS.parent), **({"PYTHONUNBUFFERED": "1"} if unbuffered else {})})
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "bench", "plan", str(SPECS / "demo.toml"), "--no-fvcore"],
                              stdout=full, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (2, "bench plan: error: cannot write standard output (/dev/full): "
                                                 "No space left on device; free some space and then rerun\n")


def test_output_lost_to_a_full_disk_is_said_whatever_status_the_command_ended_with(monkeypatch, capsys):
    """`bench tag --json a.wav broken.wav > out.json` on a full disk: the command ends with 2 for the broken
    file, its good file's scores still in stdout's buffer; that their loss went unsaid (only statuses 0 and
    1 were checked) left the user expecting them in out.json."""
    import errno

    from bench.cli import output_written

    class Full(io.StringIO):
        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device", "standard output (out.json)")

    monkeypatch.setattr(sys, "stdout", Full())
    assert output_written(2, "tag") == 2
    assert output_written(0, "tag") == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["bench tag: error: cannot write standard output (out.json): No space left on device; free some "
                     "space and then rerun"] * 2


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["grid", "--help"]])
def test_help_into_a_full_disk_with_stdout_unbuffered_is_one_line_not_silence(tmp_path, argv):
    """argparse drops a help or version text that stdout cannot take; with stdout unbuffered (PYTHONUNBUFFERED,
    `python -u`) nothing else met the error, and `bench --help > /dev/full` ended with 0. Into a pipe
    whose reader has gone it still ends with 0, as `bench --help | head -1` should."""
    env = {**os.environ, "PYTHONPATH": str(SPECS.parent), "PYTHONUNBUFFERED": "1"}
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "bench", *argv], stdout=full, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (2, "bench: error: cannot write standard output (/dev/full): "
                                                 "No space left on device; free some space and then rerun\n")
    assert bench_into_a_closed_pipe(tmp_path, *argv, stderr_too=False, unbuffered=True) == (0, "")


def test_help_past_the_file_size_limit_names_its_file(tmp_path):
    """`bench --help > help.txt` under `ulimit -f`: argparse wrote it to the buffer, whose flush at exit
    failed ("Exception ignored", exit 120); the file is named in one line, exit 2."""
    import resource

    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    with open(tmp_path / "help.txt", "w") as handle:
        proc = subprocess.run([sys.executable, "-m", "bench", "--help"], stdout=handle, stderr=subprocess.PIPE,
                              text=True, env={**env, "PYTHONPATH": str(SPECS.parent)},
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512)))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"bench: error: cannot write standard output ({tmp_path / 'help.txt'}): "
                                  "File too large")


def bench_into_a_closed_pipe(tmp_path, *argv: str, stderr_too: bool, unbuffered: bool,
                             code: str = "from bench.cli import main") -> tuple[int, str]:
    """Run `bench ARGV` (`code` may stub part of it first) with its stdout (and its stderr, `stderr_too`:
    `2>&1 | head`) going into a pipe whose reader has already gone, so that its first line meets the
    closed pipe whatever the timing; stdout block-buffered as Python has it, or not (`unbuffered`:
    PYTHONUNBUFFERED=1, `python -u`). Returns its exit status and what it wrote on a stderr that stayed
    open."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    env.update({"PYTHONPATH": str(SPECS.parent), **({"PYTHONUNBUFFERED": "1"} if unbuffered else {})})
    proc = subprocess.Popen([sys.executable, "-c", f"import sys; {code}; sys.exit(main(sys.argv[1:]))", *argv],
                            cwd=tmp_path, stdout=subprocess.PIPE, text=True, env=env,
                            stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE)
    proc.stdout.close()
    err = "" if stderr_too else proc.stderr.read()
    return proc.wait(timeout=120), err


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("stderr_too", [False, True], ids=["stdout", "both"])
def test_a_grid_whose_reader_has_gone_stops_as_interrupted_and_its_dry_run_ends_quietly(write_spec, tmp_path,
                                                                                         stderr_too, unbuffered):
    """`bench grid | head` stops the grid as Ctrl-C does (exit 130, docs/running.md), at its first line,
    before any work; with stderr in the pipe too (`2>&1 | head`) the line saying so has nowhere to go,
    and the exit status still says it (it was 1, from a second BrokenPipeError raised by that line). A
    dry run's listing is only read: exit 0 and no line, as `bench plan | head` (buffered, it had met the
    closed pipe in Python's flush at exit, which made the status 120)."""
    spec = write_spec(MINIMAL_SPEC)
    results = ["--results", str(tmp_path / "results"), "--data", str(tmp_path / "data")]
    status, err = bench_into_a_closed_pipe(tmp_path, "grid", str(spec), *results, "--dry-run", stderr_too=stderr_too,
                                           unbuffered=unbuffered)
    assert (status, err) == (0, "")
    status, err = bench_into_a_closed_pipe(tmp_path, "grid", str(spec), *results, stderr_too=stderr_too,
                                           unbuffered=unbuffered)
    assert status == 130
    assert err == ("" if stderr_too else "bench grid: interrupted; its output was closed (the reader of its pipe "
                   "ended); rerun to continue (finished work is kept)\n")
    assert not (tmp_path / "data").exists()  # stopped at its first line, before generating the dataset


def test_ctrl_c_with_the_output_pipes_reader_gone_too_is_still_130(tmp_path):
    """Ctrl-C reaches every process of the terminal's group: `bench grid | tee log` loses its reader as
    it stops. What the grid still buffered for it does not fail at exit (which made the status 120)."""
    stub = ("import bench.run.grid as grid; from bench.cli import main; "
            "grid.run_grid = lambda spec, options: (print('a line for tee'), exec('raise KeyboardInterrupt'))")
    status, err = bench_into_a_closed_pipe(tmp_path, "grid", str(SPECS / "demo.toml"), "--no-report",
                                           stderr_too=False, unbuffered=False, code=stub)
    assert (status, err) == (130, "bench grid: interrupted; rerun to continue (finished work is kept)\n")


def bench_with_stderr_closed(tmp_path, *argv: str, module: str = "-m bench") -> tuple[int, str]:
    """(exit status, stdout) of `bench ARGV` started with its stderr closed (`2>&-`)."""
    with (tmp_path / "stdout").open("w") as handle:
        status = subprocess.run([sys.executable, *module.split(" ", 1), *argv], cwd=tmp_path, stdout=handle,
                                stderr=subprocess.DEVNULL, preexec_fn=lambda: os.close(2),
                                env={**os.environ, "PYTHONPATH": str(SPECS.parent)}).returncode
    return status, (tmp_path / "stdout").read_text()


def test_errors_and_warnings_with_stderr_closed_stay_out_of_the_commands_output(write_spec, tmp_path):
    """With stderr closed (`2>&-`) its lines go nowhere. They went into stdout (print(file=None) writes
    there), e.g. into a CSV being written: the error line, and each warning."""
    assert bench_with_stderr_closed(tmp_path, "plan", str(tmp_path / "missing.toml")) == (2, "")
    # 2 s clips are far outside the usual 3-60 s: `bench plan` warns of it on stderr
    spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "synthetic"\nclip_seconds = 2.0'))
    status, out = bench_with_stderr_closed(tmp_path, "plan", str(spec), "--format", "csv", "--no-fvcore")
    assert status == 0 and out.splitlines()[0].startswith("arch,") and "warning" not in out


def test_a_warning_naming_a_file_that_is_not_utf8_with_stderr_closed_is_dropped_not_an_error(tmp_path):
    """The stand-in for a closed stderr (/dev/null) was opened strict: a warning naming a spec whose folder
    name is not UTF-8 (b"lat\\xe9") ended `bench plan 2>&-` in exit 1, where `2>/dev/null` gave 0."""
    folder = tmp_path / os.fsdecode(b"lat\xe9")
    folder.mkdir()
    short = MINIMAL_SPEC.replace('name = "synthetic"', 'name = "synthetic"\nclip_seconds = 2.0')  # warned of
    (folder / "spec.toml").write_text(short)
    status, out = bench_with_stderr_closed(tmp_path, "plan", os.fsencode(folder / "spec.toml"), "--no-fvcore")
    assert status == 0 and out.count("\n") > 3


def test_bench_tag_with_its_output_closed_ends_with_its_status(tmp_path):
    """`bench tag` leaves through os._exit once its streams are flushed; a closed one (None) ended it in an
    AttributeError (exit 1) instead of its own status: 2 for a file it cannot tag."""
    code = "import sys; sys.argv[0] = 'bench'; from bench.cli import console; console()"
    status, out = bench_with_stderr_closed(tmp_path, "tag", str(tmp_path / "missing.wav"), module=f"-c {code}")
    assert (status, out) == (2, "")


def test_a_command_started_with_its_standard_streams_closed_writes_nowhere_and_no_file_takes_their_number(
        write_spec, tmp_path):
    """`bench status --json >&-` ended in an AttributeError (stdout None). And the first file a command
    started without stdout opened took descriptor 1: what a library's C code then wrote to its stdout went
    into that file (a lock, a checkpoint). Here a write to descriptor 1 after the command, into the file
    opened next."""
    spec = write_spec(MINIMAL_SPEC)
    opened, said = tmp_path / "opened.txt", tmp_path / "status.txt"
    code = ("import os; from bench.cli import main; "
            f"status = main(['status', {str(spec)!r}, '--results', {str(tmp_path / 'results')!r}, '--json']); "
            f"fd = os.open({str(opened)!r}, os.O_WRONLY | os.O_CREAT); os.write(1, b'a line for stdout'); "
            f"open({str(said)!r}, 'w').write(str(status))")

    def close_standard_descriptors():
        for descriptor in (0, 1, 2):
            os.close(descriptor)

    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, preexec_fn=close_standard_descriptors,
                   env={**os.environ, "PYTHONPATH": str(SPECS.parent)}, check=True, timeout=120)
    assert said.read_text() == "0"
    assert opened.read_text() == ""


def test_an_interrupted_command_whose_stderr_reader_has_gone_keeps_its_exit_status(monkeypatch):
    """Ctrl-C, or a grid whose output was closed, with stderr a pipe whose reader has gone too: the
    line saying so cannot be written, and `bench` still returns 130, not a BrokenPipeError."""
    from bench.core.errors import Interrupted
    from bench.run import grid

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    def stopped(spec, options):
        raise Interrupted("its output was closed (the reader of its pipe ended); rerun to continue")

    monkeypatch.setattr(grid, "run_grid", stopped)
    monkeypatch.setattr(sys, "stderr", ClosedPipe())
    assert main(["grid", str(SPECS / "demo.toml"), "--no-report"]) == 130


def test_plan_csv_has_one_row_per_configuration(capsys):
    status, out, _ = run_cli(capsys, "plan", str(SPECS / "paper-mtat-vgg.toml"), "--format", "csv", "--no-fvcore")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 88
    first = rows[0]
    key = (first["sample_rate"], first["n_mels"], first["hop_multiplier"], first["log"])
    assert key == ("12000", "128", "1", "log")
    assert first["n_frames"] == "1366"
    # 128 mels x 1366 frames x 4 bytes, and x 2 bytes in float16
    assert first["storage_bytes_f32"] == str(128 * 1366 * 4)
    assert first["storage_bytes_f16"] == str(128 * 1366 * 2)
    frames = {(r["sample_rate"], r["hop_multiplier"]): int(r["n_frames"]) for r in rows}
    assert frames[("16000", "10")] == 182 and frames[("12000", "3")] == 456
    # Architecture columns: the paper's Table III pools and the GMAC hand-counted from them.
    by_key = {(r["sample_rate"], r["n_mels"], r["hop_multiplier"], r["log"]): r for r in rows}
    ref = by_key[("12000", "96", "1", "log")]
    assert (ref["arch"], ref["width"], ref["input_shape"]) == ("vgg", "1.0", "96x1366")
    assert (ref["pool_freq"], ref["pool_time"]) == ("2-4-3-4", "4-5-8-8")
    assert round(float(ref["gmac_analytic"]), 2) == 10.01 and ref["params"] == "17365940"
    assert by_key[("16000", "8", "1", "dB")]["pool_freq"] == "2-2-2-1"
    assert by_key[("16000", "128", "10", "dB")]["pool_time"] == "4-5-9-1"
    assert round(float(by_key[("12000", "48", "10", "dB")]["gmac_analytic"]), 2) == 0.49


def test_plan_with_fvcore_for_musicnn_and_vgg(capsys, write_spec):
    text = MINIMAL_SPEC.replace('arch = ["vgg"]', 'arch = ["vgg", "musicnn"]').replace(
        'n_mels = [96]', 'n_mels = [48]').replace('hop_multiplier = [1]', 'hop_multiplier = [10]')
    status, out, _ = run_cli(capsys, "plan", str(write_spec(text)), "--format", "csv")
    assert status == 0
    vgg, musicnn = list(csv.DictReader(io.StringIO(out)))
    assert round(float(vgg["gmac"]), 2) == 0.49  # 48 mels x10 hop: 0.49 GMAC, counted by hand in tests/test_cost.py
    assert float(vgg["gmac"]) == pytest.approx(float(vgg["gmac_analytic"]), rel=0.01)
    assert json.loads(vgg["fvcore_unsupported"]) == {"aten::elu": 4, "aten::max_pool2d": 4}
    assert musicnn["filter_heights"] == "43-19"  # int(0.9 * 48), int(0.4 * 48)
    # 12 kHz x10: 3 s segments are int(3 * 12000 / 2560) = 14 frames; 137 frames hold 9 of them
    assert musicnn["segments"] == "9"
    assert musicnn["pool_freq"] == "" and vgg["filter_heights"] == ""


def test_plan_json_and_table(capsys, write_spec):
    status, out, _ = run_cli(capsys, "plan", str(SPECS / "paper-mtat-musicnn.toml"), "--format", "json")
    assert status == 0
    rows = json.loads(out)["configurations"]
    assert len(rows) == 12 and {r["arch"] for r in rows} == {"musicnn"}
    # JSON types: what does not apply is null, not the table's empty cell; the operators an object
    assert {r["pool_freq"] for r in rows} == {None} and {r["segments"] for r in rows} == {9}
    assert all(isinstance(r["fvcore_unsupported"], dict) and r["fvcore_unsupported"] for r in rows)
    status, out, _ = run_cli(capsys, "plan", str(write_spec(MINIMAL_SPEC)), "--format", "json", "--no-fvcore")
    ((row,), totals) = json.loads(out).values()
    assert row["gmac"] is None and row["fvcore_unsupported"] is None and row["filter_heights"] is None
    assert row["pool_time"] == "4-5-8-8"  # 12 kHz, 96 x 1366: Table III
    # one run of the paper's network at 96 x 1366: 10,010,669,056 MACs with 50 tags, hand-counted from Table
    # III's pools; the synthetic set's 17 tags take 33 fewer outputs from the 2,048-channel last block
    gmac = (10_010_669_056 - 33 * 2048) / 1e9
    assert totals["gmac_per_clip_sum_over_runs"] == row["gmac_analytic"] == pytest.approx(gmac, abs=1e-12)
    status, out, _ = run_cli(capsys, "plan", str(write_spec(MINIMAL_SPEC)), "--no-fvcore")
    assert " 10.011 " in out.splitlines()[2]  # the table's GMAC to 5 significant figures
    status, out, _ = run_cli(capsys, "plan", str(SPECS / "paper-mtat-musicnn.toml"))
    assert status == 0
    assert "12 configurations x 3 seeds = 36 runs" in out


def test_a_dry_run_says_it_would_generate_the_synthetic_data_first(capsys, write_spec, tmp_path):
    """The grid generates the synthetic dataset the spec asks for before it trains, replacing a folder of
    other clips: the dry run, which is for seeing what would happen, says so."""
    data = tmp_path / "synth"
    spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', f'name = "synthetic"\npath = "{data}"'))
    status, out, _ = run_cli(capsys, "grid", str(spec), "--results", str(tmp_path / "results"), "--dry-run")
    assert status == 0
    assert out.splitlines()[-1] == f"  would first generate the synthetic dataset in {data}, where there is none yet"
    data.mkdir()
    (data / "synthetic.json").write_text('{"clips": 5}')  # an earlier generation's, of other clips
    status, out, _ = run_cli(capsys, "grid", str(spec), "--results", str(tmp_path / "results"), "--dry-run")
    assert out.splitlines()[-1].startswith(f"  would first generate the synthetic dataset in {data}, replacing what "
                                           "is there")


def test_a_dry_run_says_the_grid_would_stop_for_a_setting_a_device_or_a_launcher(capsys, write_spec, tmp_path,
                                                                                 monkeypatch):
    """A misspelt BENCH_COMPILE, --device cuda without one, --launcher slurm without sbatch: the grid stops
    at once (exit 2); its dry run had said "would run" for every run."""
    import shutil

    import torch

    data = tmp_path / "synth"
    spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', f'name = "synthetic"\npath = "{data}"'))
    args = ["grid", str(spec), "--results", str(tmp_path / "results")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    for extra, env, says in (((), {"BENCH_COMPILE": "maybe"}, "BENCH_COMPILE='maybe': expected one of"),
                             (("--device", "cuda"), {}, "--device cuda: no CUDA device is available"),
                             (("--launcher", "slurm"), {}, "--launcher slurm: no `sbatch` on this machine")):
        with monkeypatch.context() as patched:
            for name, value in env.items():
                patched.setenv(name, value)
            status, out, _ = run_cli(capsys, *args, *extra, "--dry-run")
            assert status == 0 and "would run" in out
            assert out.splitlines()[-1].startswith(f"  would stop before training: {says}"), out  # not the data
            status, _, err = run_cli(capsys, *args, *extra)
            assert status == 2 and says in err
    # the grid's first stop is the dataset's location, before these: the dry run names that one
    no_path = write_spec(MINIMAL_SPEC)
    with monkeypatch.context() as patched:
        patched.setenv("BENCH_COMPILE", "maybe")
        status, out, _ = run_cli(capsys, "grid", str(no_path), "--results", str(tmp_path / "results"), "--dry-run")
        says = out.splitlines()[-1].removeprefix("  would stop before training: ")
        assert "dataset.path: not set" in says
        status, _, err = run_cli(capsys, "grid", str(no_path), "--results", str(tmp_path / "results"))
        assert status == 2 and says in err


def test_a_dry_run_says_the_grid_would_stop_for_the_slurm_jobs_shape_or_runs_per_gpu_on_the_cpu(
        capsys, write_spec, tmp_path, monkeypatch):
    """Refusals that depend only on the options: a Slurm job of more tasks (4 GPUs x 1 run) than --cpus, a
    gres of other GPUs than --gpus, and --runs-per-gpu where --device auto finds no GPU (which the grid had
    ignored). The dry run had said "would run" for each; the grid stops before it prepares any data."""
    import shutil

    import torch

    data = tmp_path / "synth"
    spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', f'name = "synthetic"\npath = "{data}"'))
    args = ["grid", str(spec), "--results", str(tmp_path / "results")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/sbatch" if name == "sbatch" else None)
    for extra, says in ((("--launcher", "slurm", "--gpus", "4", "--cpus", "2"),
                         "--cpus 2 is fewer than the 4 tasks of a job (4 GPU(s) x 1 runs per GPU)"),
                        (("--launcher", "slurm", "--slurm-arg", "gres=gpu:2"),
                         "--slurm-arg gres=gpu:2 asks for 2 GPU(s) a job, --gpus for 1"),
                        (("--runs-per-gpu", "4"), "--runs-per-gpu: only for GPUs (this grid runs on the CPU: "
                                                  "--device auto finds no CUDA device on this machine)"),
                        (("--runs-per-gpu", "4", "--launcher", "submitit-local"), "--runs-per-gpu: only for GPUs")):
        status, out, _ = run_cli(capsys, *args, *extra, "--dry-run")
        assert status == 0 and "would run" in out
        assert out.splitlines()[-1].startswith(f"  would stop before training: {says}"), out
        status, _, err = run_cli(capsys, *args, *extra)
        assert status == 2 and says in err, err
        assert not data.exists() and not (tmp_path / "results" / "minimal" / "slurm").exists()


def test_a_dry_run_says_the_grid_would_stop_where_it_cannot_generate_the_synthetic_data(capsys, write_spec,
                                                                                     tmp_path):
    """The grid refuses, before it trains, a synthetic spec without a dataset.path, a path under a file and
    a folder holding files `bench synth` did not write (another dataset's): the dry run had promised to
    generate the data there, or said nothing."""
    def dry_run_and_run(path_line: str) -> str:
        spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', f'name = "synthetic"{path_line}'))
        status, out, _ = run_cli(capsys, "grid", str(spec), "--results", str(tmp_path / "results"), "--dry-run")
        assert status == 0 and "would run" in out
        last = out.splitlines()[-1]
        assert last.startswith("  would stop before training: "), last
        status, _, err = run_cli(capsys, "grid", str(spec), "--results", str(tmp_path / "results"))
        assert status == 2 and err.strip().endswith(last.removeprefix("  would stop before training: ")), err
        return last

    assert "dataset.path: not set; give the dataset's location with --data DIR" in dry_run_and_run("")
    (tmp_path / "file.txt").write_text("")
    assert "cannot be created: " in dry_run_and_run(f'\npath = "{tmp_path / "file.txt" / "sub"}"')
    other = tmp_path / "other"
    (other / "0").mkdir(parents=True)
    (other / "annotations_final.csv").write_text("clip_id\tmp3_path\n")  # another dataset in MTAT's layout
    assert "holds files `bench synth` did not write (annotations_final.csv)" in dry_run_and_run(f'\npath = "{other}"')
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")  # a disk not mounted: no folder is made in its place
    assert f"is a link to {tmp_path / 'nowhere'}, which does not exist" in \
        dry_run_and_run(f'\npath = "{tmp_path / "dangling"}"')


def test_a_dry_run_says_the_grid_would_stop_where_the_dataset_is_not(capsys, write_spec, tmp_path):
    """A spec whose MTAT folder is not there: the grid stops before it trains, and its dry run, which plans
    without data (a paper spec on a laptop), says so beside what it would run."""
    spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', f'name = "mtat"\npath = "{tmp_path / "mtat"}"'))
    status, out, _ = run_cli(capsys, "grid", str(spec), "--results", str(tmp_path / "results"), "--dry-run")
    assert status == 0 and "would run" in out
    last = out.splitlines()[-1]
    assert last.startswith("  would stop before training: MTAT root not found: ") and str(tmp_path / "mtat") in last
    status, _, err = run_cli(capsys, "grid", str(spec), "--results", str(tmp_path / "results"))
    assert status == 2 and last.removeprefix("  would stop before training: ") in err


@pytest.mark.parametrize("edit,field,value", BAD_SPECS)
def test_bad_spec_exits_2_with_one_line(capsys, write_spec, edit, field, value):
    path = write_spec(edit(MINIMAL_SPEC))
    status, out, err = run_cli(capsys, "plan", str(path))
    assert status == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0] and field in lines[0] and value in lines[0]
    assert "Traceback" not in err


def test_console_script_missing_file_exits_2_without_traceback(tmp_path):
    missing = tmp_path / "missing.toml"
    proc = subprocess.run([sys.executable, "-m", "bench", "plan", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"bench plan: error: {missing}: spec file not found"


def test_report_of_a_missing_folder_exits_2(capsys, tmp_path):
    status, out, err = run_cli(capsys, "report", str(tmp_path / "results" / "nothing"))
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(tmp_path / "results" / "nothing") in err


@pytest.mark.parametrize("name, path, message", [
    ("msd", "no-msd", "MSD root not found: expected a folder holding"),
    ("jamendo", "no-jamendo", "MTG-Jamendo root not found: expected the audio folders 00-99"),
    ("manifest", "no-manifest.csv", "manifest not found: expected a CSV file with columns path,split,tags"),
])
def test_a_grid_says_its_dataset_is_missing_before_anything_else(capsys, write_spec, tmp_path, name, path, message):
    text = MINIMAL_SPEC.replace('name = "synthetic"', f'name = "{name}"\npath = "{tmp_path / path}"')
    status, out, err = run_cli(capsys, "grid", str(write_spec(text)), "--results", str(tmp_path / "r"))
    assert (status, out) == (2, "")
    assert err.startswith(f"bench grid: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_grid_with_a_missing_dataset_exits_2(capsys, write_spec, tmp_path):
    text = MINIMAL_SPEC.replace('name = "synthetic"', f'name = "mtat"\npath = "{tmp_path / "no-mtat"}"')
    status, out, err = run_cli(capsys, "grid", str(write_spec(text)), "--results", str(tmp_path / "r"),
                               "--device", "cpu")
    assert status == 2 and out == ""  # not "1 run ...: 1 to run" first
    assert err.strip().splitlines()[-1].startswith("bench grid: error: MTAT root not found: expected a folder")
    assert err.strip().endswith("(`bench download mtat --to DIR` fetches it; give DIR as --data or dataset.path)")
    assert "Traceback" not in err
