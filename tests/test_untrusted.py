"""Files from someone else: a results folder, a run or a model folder received from a colleague or the
internet. What they hold names no file outside their folder, cannot hang or exhaust a command, and is
shown, not acted on, by the terminal."""

from __future__ import annotations

import json
import os
import zipfile

import pytest
import torch

from bench.core.errors import UserError
from bench.core.layout import RESULT, load_result
from bench.core.paths import plain_name
from bench.report.reading import read_runs
from bench.run.status import read_history
from bench.tools.tag import run_id_of
from bench.train.checkpoint import check_crcs, load_torch
from bench.train.model_file import load_model, read_json

from .test_export import untrained_model


@pytest.fixture
def fifo(tmp_path):
    """A FIFO no process writes to: reading it waits for good."""
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_a_result_config_or_model_file_that_is_a_fifo_or_a_device_is_refused_not_waited_on(tmp_path, fifo):
    """result.json, model.json or config.json linked to a FIFO hung `bench status`, `bench report` and `bench
    tag` for good; linked to /dev/zero, they filled the memory."""
    for target in (fifo, "/dev/zero"):
        run = tmp_path / "runs" / "vgg-x"
        run.mkdir(parents=True, exist_ok=True)
        for name in (RESULT, "model.json", "config.json"):
            (run / name).unlink(missing_ok=True)
            (run / name).symlink_to(target)
        assert load_result(run) == (None, "not a regular file (a link to a FIFO or a device)")
        ok, not_ok = read_runs([run])
        assert ok == [] and list(not_ok["status"]) == ["unreadable"]
        with pytest.raises(UserError, match="not a regular file"):
            read_json(run / "model.json")
        assert run_id_of(run) is None


def test_weights_that_are_a_fifo_or_a_compressed_archive_are_refused_before_they_are_read(tmp_path, fifo):
    """torch.save stores its archive's entries; one compressed elsewhere is inflated whole by torch.load
    (2 GB of memory from a 1.9 MB best.pt). A FIFO's read would wait for good."""
    with pytest.raises(zipfile.BadZipFile, match="not a regular file"):
        load_torch(fifo)
    bomb = tmp_path / "best.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data/0", b"\0" * 1_000_000)
    assert bomb.stat().st_size < 10_000
    with pytest.raises(zipfile.BadZipFile, match="is compressed, which torch.save never writes"):
        check_crcs(bomb)
    saved = tmp_path / "saved.pt"
    torch.save({"w": torch.zeros(3)}, saved)
    assert torch.equal(load_torch(saved)["w"], torch.zeros(3))  # what torch.save writes loads


def test_a_model_description_naming_weights_outside_its_folder_is_refused(tmp_path):
    """model.json's `weights` is the file beside it (docs/results.md): "../../outside.pt" or an absolute
    path loaded weights from anywhere, "/etc/passwd" was opened."""
    _, folder = untrained_model(tmp_path / "m", "vgg", 251)
    outside = tmp_path / "outside.pt"
    (folder / "weights.pt").rename(outside)
    description = json.loads((folder / "model.json").read_text())
    for weights in ("../outside.pt", str(outside)):
        (folder / "model.json").write_text(json.dumps({**description, "weights": weights}))
        with pytest.raises(UserError, match=r"not a model description \(ValueError: weights = "):
            load_model(folder)


def test_names_read_from_files_name_nothing_outside_their_folder():
    """A run id (an older run's config.json names its transfer result file), an embeddings.json's layer
    (an array to remove) or model.json's weights: "../x" or "/tmp/x" had written or removed files there."""
    for name in ("vgg-16k-96mel-x1-log-s0-83f364e640", "pool4", "best.pt", "weights.pt"):
        assert plain_name(name)
    for name in ("../../tmp/x", "/tmp/victim/precious", "a/b", "..", ".", "", " pool4", "a\0b", None, 3):
        assert not plain_name(name)


def test_an_older_runs_config_naming_a_path_is_no_run_id(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"run_id": "../../../../tmp/victim/settings"}))
    assert run_id_of(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"run_id": "vgg-16k-96mel-x1-log-s0-83f364e640"}))
    assert run_id_of(tmp_path) == "vgg-16k-96mel-x1-log-s0-83f364e640"


def test_json_nested_deeper_than_python_reads_is_one_line_not_a_traceback(tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    (tmp_path / "model.json").write_text(deep)
    with pytest.raises(UserError, match="not valid JSON"):
        read_json(tmp_path / "model.json")
    (tmp_path / "config.json").write_text(deep)
    assert run_id_of(tmp_path) is None
    (tmp_path / "executions.jsonl").write_text(json.dumps({"time": 1.0}) + "\n" + deep + "\n")
    assert read_history(tmp_path / "executions.jsonl") == [{"time": 1.0}]


def test_escape_sequences_in_someone_elses_results_are_shown_not_acted_on(tmp_path, capsys):
    """A failed run's error and a folder's name, read from another's results, reached the terminal raw in
    `bench report`'s lines: `\\x1b]0;...\\x07` set the window's title, `\\x1b[2J` cleared the screen."""
    from bench.cli import main

    folder = tmp_path / "runs" / "vgg-16k-96mel-x1-log-s0-83f364e640"
    folder.mkdir(parents=True)
    (folder / RESULT).write_text(json.dumps({"run_id": folder.name, "status": "failed",
                                             "error": "RuntimeError: boom\x1b[2J\x1b]0;pwned\x07"}))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "RuntimeError: boom\\x1b[2J\\x1b]0;pwned\\x07" in out


def test_a_run_folder_that_is_a_link_is_refused_before_the_grid_writes_through_it(tmp_path, capsys):
    """`runs/<run_id>` linked to a folder elsewhere (`/` in a results folder received from someone): the grid
    set that folder's result.json aside and wrote the run's files there."""
    from bench.cli import main
    from bench.spec import load_spec

    from .conftest import ROOT

    spec_path = ROOT / "specs" / "demo.toml"
    run = load_spec(spec_path).runs()[0]
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / RESULT).write_text("theirs")
    folder = tmp_path / "results" / "demo" / "runs" / run.run_id
    folder.parent.mkdir(parents=True)
    folder.symlink_to(victim)
    assert main(["grid", str(spec_path), "--results", str(tmp_path / "results"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{folder}: a link (to {victim}) where a run's folder belongs; move it aside (or put the "
                        "folder itself there), then rerun"), err
    assert sorted(p.name for p in victim.iterdir()) == [RESULT] and (victim / RESULT).read_text() == "theirs"
