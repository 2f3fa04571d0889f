"""Device selection (the CPU versions of the CUDA-selected paths)."""

import subprocess

import numpy as np
import pytest
import torch

from bench.core.errors import UserError
from bench.train.loop import resolve_device


@pytest.mark.parametrize("cuda", [True, False])
def test_resolve_device(monkeypatch, cuda):
    from bench.train import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(devices, "nvidia_gpus", lambda *args: 0)  # no GPU this torch cannot use
    assert resolve_device("cpu") == torch.device("cpu")
    if cuda:
        assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda")
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(UserError, match=r"^--device cuda: no CUDA device is available \(use --device cpu or auto"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="auto, cpu or cuda"):
        resolve_device("tpu")


@pytest.mark.parametrize("arch", ["vgg", "musicnn"])
def test_a_training_split_smaller_than_the_architectures_fewest_clips_is_refused_before_training(arch):
    """A split smaller than a batch trains as one batch of all its clips: one clip is a batch torch
    refuses to train MusiCNN on (its back end's BatchNorm sees one value per channel), not VGG."""
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(archs=(arch,), epochs=1)
    one = ToyCache(clips=(1, 9, 9))
    if arch == "vgg":
        _, seen, _ = train.Trainer(run, one, torch.device("cpu"), log=lambda *_: None).train_epoch(1)
        assert seen == 1
        return
    with pytest.raises(UserError, match=r"^the train split has 1 decodable clip\(s\); musicnn trains on batches "
                                        r"of at least 2 "):
        train.Trainer(run, one, torch.device("cpu"), log=lambda *_: None)
    _, seen, _ = train.Trainer(run, ToyCache(clips=(2, 9, 9)), torch.device("cpu"), log=lambda *_: None).train_epoch(1)
    assert seen == 2


@pytest.mark.parametrize("split", ["valid", "test"])
def test_an_unscorable_evaluation_split_is_refused_before_training(split):
    """A valid or test split where no tag has both clips with it and clips without it (the audio of the
    others missing) has no ROC-AUC: the run failed at its first validation, or only after its last epoch."""
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(epochs=1)
    cache = ToyCache(clips=(8, 4, 4))
    cache._targets[cache.rows(split)] = 1.0  # every tag on every clip
    with pytest.raises(UserError, match=rf"^no tag of the {split} split \(4 decodable clips\) has both clips with it "
                                        "and clips without it"):
        train.Trainer(run, cache, torch.device("cpu"), log=lambda *_: None)


def test_ctrl_c_just_after_the_first_checkpoint_is_written_names_the_epoch_a_rerun_resumes_from(tmp_path,
                                                                                                 monkeypatch):
    """A Ctrl-C that lands after checkpoint.pt is in place but before the run has recorded which epoch it
    holds said "rerun to start <run> again (it had not finished an epoch)" (seen in the suite's Ctrl-C
    test under load), though a rerun resumes from that checkpoint."""
    import os
    import signal

    from bench.core.errors import Interrupted
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    real = train.save_torch

    def save_then_ctrl_c(path, state):
        real(path, state)
        if path.name == train.CHECKPOINT:
            os.kill(os.getpid(), signal.SIGINT)  # delivered at once, as the terminal's would be

    monkeypatch.setattr(train, "save_torch", save_then_ctrl_c)
    (run,) = tiny_runs(epochs=3)
    with pytest.raises(Interrupted, match=rf"^rerun to resume {run.run_id} from epoch 2$"):
        train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=lambda *_: None)
    assert (tmp_path / train.CHECKPOINT).exists()


def _stopped_after_epoch_1(tmp_path, monkeypatch, run, execution):
    """`run` trained in `tmp_path` until Ctrl-C lands just after its first checkpoint."""
    import os
    import signal

    from bench.core.errors import Interrupted
    from bench.train import loop as train
    from tests.device_fakes import ToyCache

    real = train.save_torch

    def save_then_ctrl_c(path, state):
        real(path, state)
        if path.name == train.CHECKPOINT:
            os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as patched:
        patched.setattr(train, "save_torch", save_then_ctrl_c)
        with pytest.raises(Interrupted):
            train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=lambda *_: None, execution=execution)


def test_a_resumed_musicnn_run_draws_the_dropout_masks_and_segments_it_would_have(tmp_path, monkeypatch):
    """MusiCNN's dropout draws from torch's global generator (VGG draws nothing from it while training):
    a run resumed in a fresh process, whose generator is elsewhere, takes the uninterrupted run's path
    only if the checkpoint brings the generator's state back."""
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(archs=("musicnn",), epochs=3)
    from architectures import InputConfig, build

    assert any(isinstance(m, torch.nn.Dropout) for m in build("musicnn", InputConfig(16000, 48, 1, 188), 3).modules())
    whole = train.train_run(run, ToyCache(), tmp_path / "whole", torch.device("cpu"), log=lambda *_: None)
    _stopped_after_epoch_1(tmp_path / "stopped", monkeypatch, run, {})
    torch.manual_seed(12345)  # what a new process's generator holds is not the stopped one's
    resumed = train.train_run(run, ToyCache(), tmp_path / "stopped", torch.device("cpu"), log=lambda *_: None)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert resumed["test"]["roc_auc"] == whole["test"]["roc_auc"]


def test_a_run_resumed_with_other_torch_threads_trains_the_rest_on_its_earlier_ones(tmp_path, monkeypatch):
    """On the CPU a step's sums depend on torch's thread count. The same `bench grid --workers 2`
    command, rerun after a kill, resumed the last run in one worker with every thread, where it had
    trained on half of them: it ended with other results than without the kill, and result.json gave
    only the last count. The rest of the run now trains on its earlier count, which each epoch's
    history records; the process's own count is back afterwards."""
    from bench.train import fastpath
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(epochs=3)
    monkeypatch.setattr(train, "usable_cpus", lambda: 4)
    with fastpath.torch_threads(1):
        whole = train.train_run(run, ToyCache(), tmp_path / "whole", torch.device("cpu"), log=lambda *_: None)
        _stopped_after_epoch_1(tmp_path / "stopped", monkeypatch, run, {})
    seen, said = [], []
    real_epoch = train.Trainer.train_epoch
    monkeypatch.setattr(train.Trainer, "train_epoch",
                        lambda self, epoch: (seen.append(torch.get_num_threads()), real_epoch(self, epoch))[1])
    with fastpath.torch_threads(2):
        resumed = train.train_run(run, ToyCache(), tmp_path / "stopped", torch.device("cpu"), log=said.append)
        assert torch.get_num_threads() == 2
    assert seen == [1, 1] and resumed["torch_threads"] == 1
    assert [h["torch_threads"] for h in resumed["history"]] == [1, 1, 1]
    assert "  its earlier epochs trained on 1 torch thread(s): so does the rest of it (this process has 2), as it " \
           "would have without the stop" in said
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert resumed["test"]["roc_auc"] == whole["test"]["roc_auc"]


def test_a_run_resumed_under_other_code_says_so_and_names_each_execution(tmp_path, monkeypatch):
    """A run stopped at one commit and resumed at another did so without a word, and its result named
    only the last commit. The resume now says what changed, and the run returns each execution with the
    epoch it started at."""
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(epochs=3)
    first = {"started": 1.0, "host": "a", "git_commit": "1a2b3c4", "versions": {"bench": "0.9.0", "torch": "2.14.1"}}
    _stopped_after_epoch_1(tmp_path, monkeypatch, run, first)
    second = {**first, "started": 2.0, "git_commit": "5d6e7f8"}
    said = []
    resumed = train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=said.append, execution=second)
    assert "  its earlier epochs ran with git commit 1a2b3c4 (now 5d6e7f8); the rest runs with this code " \
           "(result.json's provenance.executions names each)" in said
    assert resumed["executions"] == [{**first, "from_epoch": 1}, {**second, "from_epoch": 2}]


def test_a_run_resumed_under_other_code_of_the_same_release_says_so(tmp_path, monkeypatch):
    """An installed copy has no git commit and keeps its release's version through every change, and a
    checkout's `-dirty` commit does not say which changes: the code's own digest does."""
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(epochs=3)
    first = {"started": 1.0, "host": "a", "git_commit": None, "code_sha256": "a" * 64,
             "versions": {"bench": "0.1.0", "torch": "2.14.1"}}
    _stopped_after_epoch_1(tmp_path, monkeypatch, run, first)
    said = []
    train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=said.append,
                    execution={**first, "started": 2.0, "code_sha256": "b" * 64})
    assert f"  its earlier epochs ran with code {'a' * 12} (now {'b' * 12}); the rest runs with this code " \
           "(result.json's provenance.executions names each)" in said


def test_a_checkpoint_of_an_earlier_release_that_names_no_code_is_said_to_be_of_other_code(tmp_path, monkeypatch):
    """A checkpoint written before executions were recorded names no commit, digest or version: resumed, it
    said only "resuming ... after epoch 1", though its epochs were trained by other code."""
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(epochs=3)
    execution = {"started": 1.0, "host": "a", "git_commit": "1a2b3c4", "versions": {"bench": "0.1.0"}}
    _stopped_after_epoch_1(tmp_path, monkeypatch, run, execution)
    state = torch.load(tmp_path / train.CHECKPOINT, weights_only=True)
    del state["executions"]  # as an earlier release wrote it
    train.save_torch(tmp_path / train.CHECKPOINT, state)
    said = []
    resumed = train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=said.append,
                              execution={**execution, "started": 2.0})
    assert "  its earlier epochs ran with the code of an earlier release, which its checkpoint does not name; the " \
           "rest runs with this code (result.json's provenance.executions names each)" in said
    assert resumed["executions"] == [{"from_epoch": 1}, {**execution, "started": 2.0, "from_epoch": 2}]


def _lose_an_interrupt() -> None:
    """What Python does with a KeyboardInterrupt raised in a callback: hands it to `sys.unraisablehook`."""
    import sys
    from types import SimpleNamespace

    sys.unraisablehook(SimpleNamespace(exc_value=KeyboardInterrupt(), exc_type=KeyboardInterrupt))


def _stopped_by_a_lost_interrupt(tmp_path, run) -> bool:
    """`run` trained under `interrupts_noted` until an interrupt it lost stops it; whether one was noted."""
    from bench.core.interrupts import interrupts_noted
    from bench.train import loop as train
    from tests.device_fakes import ToyCache

    with interrupts_noted() as noted, pytest.raises(KeyboardInterrupt):
        train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=lambda *_: None)
    return noted()


def test_an_interrupt_lost_in_a_callback_stops_training_at_the_next_step(tmp_path, monkeypatch):
    """A Ctrl-C that Python could only print (raised in a callback of the garbage collection, which runs
    between any two steps) trained on to the end of the run and of the grid; the next step stops now,
    the run resumable as after any Ctrl-C."""
    from bench.train import loop as train
    from tests.device_fakes import tiny_runs

    (run,) = tiny_runs(epochs=3)
    steps = []
    real = train.optimise

    def optimise(*args) -> None:
        real(*args)
        steps.append(len(steps))
        if len(steps) == 1:
            _lose_an_interrupt()

    monkeypatch.setattr(train, "optimise", optimise)
    assert _stopped_by_a_lost_interrupt(tmp_path, run) and steps == [0]


def test_an_interrupt_lost_in_a_callback_stops_an_evaluation_at_its_next_batch(tmp_path, monkeypatch):
    """A validation or test pass of a large split takes a while: a Ctrl-C Python could only print during it
    waited for the pass to end."""
    from bench.train import loop as train
    from tests.device_fakes import tiny_runs

    (run,) = tiny_runs(epochs=1)
    batches = []
    real = train.Trainer._forward

    def forward(self, x):
        if not self.model.training:
            batches.append(len(x))
            if len(batches) == 1:
                _lose_an_interrupt()
        return real(self, x)

    monkeypatch.setattr(train.Trainer, "_forward", forward)
    monkeypatch.setattr(train, "eval_batch_size", lambda run, path: 2)  # 5 batches of the 10 validation clips
    assert _stopped_by_a_lost_interrupt(tmp_path, run) and batches == [2]


def test_a_commit_that_cannot_be_read_now_is_no_change_of_code(monkeypatch):
    """A node without git, or a checkout git refuses to read (another user's: "dubious ownership"), has no
    commit: the run said its earlier epochs ran with "git commit 1a2b3c4 (now None)" though the code was
    the same. Where a commit is unknown, the code's digest says; and a worker reads the commit once, as
    it reads the digest, so that a checkout updated under a running grid is not named beside the old
    code's digest."""
    from bench.run import runner
    from bench.train.loop import changed_code

    same, other = "5809e541cb5f" + "0" * 52, "c25c9b177f76" + "0" * 52
    before = [{"git_commit": "1a2b3c4", "code_sha256": same, "versions": {"bench": "0.1.0"}}]
    assert changed_code(before, {"git_commit": None, "code_sha256": same, "versions": {"bench": "0.1.0"}}) == []
    assert changed_code(before, {"git_commit": None, "code_sha256": other, "versions": {"bench": "0.1.0"}}) == [
        "code 5809e541cb5f (now c25c9b177f76)"]
    commits = iter(["1a2b3c4", "5d6e7f8"])
    monkeypatch.setattr(runner, "git_commit", lambda: next(commits))
    runner.running_commit.cache_clear()
    try:
        assert [runner.running_commit(), runner.running_commit()] == ["1a2b3c4", "1a2b3c4"]
    finally:
        runner.running_commit.cache_clear()


def test_the_code_digest_is_what_sha256sum_says_of_the_python_files(tmp_path):
    """`code_sha256` can be checked by hand: the command in its docstring (and docs/results.md), run in
    a folder holding the packages, gives it; any change of a byte changes it, and files that are not
    Python source (caches, data) do not count."""
    from bench.run.runner import code_sha256

    files = {("bench", "a.py"): "x = 1\n", ("bench", "B.py"): "", ("bench", "sub", "z.py"): "é = 2\n",
             ("architectures", "vgg.py"): "v\n", ("bench", "__pycache__", "a.cpython-311.pyc"): "compiled",
             ("bench", "notes.txt"): "not code", ("other", "o.py"): "o"}
    for parts, text in files.items():
        tmp_path.joinpath(*parts).parent.mkdir(parents=True, exist_ok=True)
        tmp_path.joinpath(*parts).write_text(text, encoding="utf-8")
    by_hand = subprocess.run("find bench architectures -name '*.py' -type f | LC_ALL=C sort | xargs sha256sum "
                             "| sha256sum", shell=True, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert code_sha256(tmp_path) == by_hand.stdout.split()[0]
    tmp_path.joinpath("bench", "sub", "z.py").write_text("é = 3\n", encoding="utf-8")
    (tmp_path / "other" / "o.py").write_text("changed")
    assert code_sha256.__wrapped__(tmp_path) != by_hand.stdout.split()[0]
    assert code_sha256.__wrapped__(tmp_path / "other") is None  # no package there


def test_an_execution_that_only_ran_the_test_trained_no_epoch(tmp_path, monkeypatch):
    """Stopped during its test evaluation, a run is resumed to run the test alone: that execution trained
    no epoch, and was recorded as starting at the epoch after the last."""
    from bench.core.errors import Interrupted
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(epochs=3)
    real_evaluate = train.Trainer.evaluate

    def stopped_at_the_test(self, split):
        if split == "test":
            raise KeyboardInterrupt
        return real_evaluate(self, split)

    with monkeypatch.context() as patched:
        patched.setattr(train.Trainer, "evaluate", stopped_at_the_test)
        with pytest.raises(Interrupted):
            train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=lambda *_: None,
                            execution={"git_commit": "1a2b3c4"})
    done = train.train_run(run, ToyCache(), tmp_path, torch.device("cpu"), log=lambda *_: None,
                           execution={"git_commit": "5d6e7f8"})
    assert done["epochs"] == 3
    assert done["executions"] == [{"git_commit": "1a2b3c4", "from_epoch": 1},
                                  {"git_commit": "5d6e7f8", "from_epoch": None}]


def test_a_musicnn_clip_scores_the_mean_of_its_segments_sigmoid_outputs():
    """MusiCNN tags a clip by the mean over its non-overlapping segments of the sigmoid outputs (Pons et
    al.; musicnn averages its taggram the same way), not by the sigmoid of the segments' mean logit."""
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(archs=("musicnn",), epochs=1)
    cache = ToyCache()
    trainer = train.Trainer(run, cache, torch.device("cpu"), log=lambda *_: None)
    trainer.train_epoch(1)
    with torch.no_grad():  # logits far from 0, where a sigmoid's mean and the sigmoid of a mean part
        [m for m in trainer.model.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(100)
    _, scores = trainer.predict("valid")
    with torch.no_grad():
        mel = trainer.frontend(torch.from_numpy(cache.waveforms[cache.rows("valid")]))
        frames = trainer.model.input_frames  # a 1 s clip holds two 0.5 s segments of 15 frames
        assert mel.shape[-1] // frames == 2
        logits = torch.stack([trainer._forward(mel[..., k * frames:(k + 1) * frames].contiguous())
                              for k in range(2)]).double()
    mean_of_sigmoids = torch.sigmoid(logits).mean(0).numpy()
    assert abs(torch.sigmoid(logits.mean(0)).numpy() - mean_of_sigmoids).max() > 1e-4  # the two differ here
    np.testing.assert_allclose(scores, mean_of_sigmoids, rtol=1e-5, atol=1e-6)


def test_each_epoch_visits_the_clips_in_a_new_order_and_musicnn_trains_on_random_segments(monkeypatch):
    """SGD over a fresh permutation of the training clips each epoch, and MusiCNN on one random segment per
    clip per epoch (Pons et al.), its start uniform over every start that keeps it inside the clip."""
    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(archs=("musicnn",), epochs=2, seconds=2.0)  # 63 frames a clip, segments of 15
    cache = ToyCache(seconds=2.0)
    trainer = train.Trainer(run, cache, torch.device("cpu"), log=lambda *_: None)
    orders, starts = [], []
    real_batches, real_frames = train.full_batches, trainer.frontend.frames
    monkeypatch.setattr(train, "full_batches", lambda order, size: (orders.append(order.tolist()),
                                                                     real_batches(order, size))[1])
    trainer.frontend.frames = lambda wave, first, n: (starts.append(first.tolist()), real_frames(wave, first, n))[1]
    highs, randint = [], torch.randint  # the last start that keeps a segment inside the clip is drawn too
    monkeypatch.setattr(torch, "randint", lambda low, high, *a, **k: (highs.append((low, high)),
                                                                      randint(low, high, *a, **k))[1])
    for epoch in (1, 2):
        trainer.train_epoch(epoch)
    assert set(highs) == {(0, 63 - 15 + 1)}  # torch.randint's high is exclusive: starts 0 to 48
    clips = len(cache.rows("train"))
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(clips)) and orders[0] != orders[1]
    per_epoch = [sum(starts[:len(starts) // 2], []), sum(starts[len(starts) // 2:], [])]
    assert [len(s) for s in per_epoch] == [clips // 8 * 8] * 2  # full batches of 8
    drawn = per_epoch[0] + per_epoch[1]
    assert min(drawn) >= 0 and max(drawn) <= 63 - 15 and len(set(drawn)) > 10
    assert per_epoch[0] != per_epoch[1]


def test_the_seeds_of_one_configuration_start_from_other_weights_and_see_other_orders_and_segments(monkeypatch):
    """The seeds are the paper's repeated runs: their spread is the standard deviation every t-test, tie
    margin and Welch p-value of the report rests on. A run's initial weights, its order of clips and
    MusiCNN's segments each follow its seed (and the same seed gives the same again)."""
    import dataclasses

    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(archs=("musicnn",), epochs=1, seconds=2.0)
    cache = ToyCache(seconds=2.0)
    seen = {}
    real_batches = train.full_batches
    for seed in (0, 1, 0):
        trainer = train.Trainer(dataclasses.replace(run, seed=seed), cache, torch.device("cpu"), log=lambda *_: None)
        weights = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
        orders, starts = [], []
        monkeypatch.setattr(train, "full_batches", lambda order, size, orders=orders: (
            orders.append(order.tolist()), real_batches(order, size))[1])
        real_frames = trainer.frontend.frames
        trainer.frontend.frames = lambda wave, first, n, starts=starts, real=real_frames: (
            starts.append(first.tolist()), real(wave, first, n))[1]
        trainer.train_epoch(1)
        if seed in seen:
            assert torch.equal(weights, seen[seed][0]) and (orders, starts) == seen[seed][1:]
        seen[seed] = (weights, orders, starts)
    (w0, orders0, starts0), (w1, orders1, starts1) = seen[0], seen[1]
    assert not torch.equal(w0, w1) and orders0 != orders1 and starts0 != starts1


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_the_specs_learning_rate_and_weight_decay_reach_adam(weight_decay):
    """torch's Adam adds weight_decay x theta to the gradient g (L2), and its first step is lr x m / (sqrt(v) +
    eps) = lr x g / (|g| + 1e-8) after bias correction: with the loss's gradient zero, each weight moves by
    about -lr x sign(theta) when the spec sets a weight decay, and stays where it is without."""
    import dataclasses

    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    (run,) = tiny_runs(epochs=1)
    run = dataclasses.replace(run, protocol=dataclasses.replace(run.protocol, weight_decay=weight_decay, lr=2e-3))
    trainer = train.Trainer(run, ToyCache(), torch.device("cpu"), log=lambda *_: None)
    weights = [p for p in trainer.model.parameters() if p.dim() > 1]
    before = [p.detach().clone() for p in weights]
    for p in trainer.model.parameters():
        p.grad = torch.zeros_like(p)
    trainer.optimizer.step()
    for p, old in zip(weights, before, strict=True):
        g = weight_decay * old
        torch.testing.assert_close(p.detach() - old, -2e-3 * g / (g.abs() + 1e-8), atol=1e-7, rtol=0)


def test_the_epochs_training_loss_is_the_mean_binary_cross_entropy_per_clip_and_tag(monkeypatch):
    """Logits of 0 score sigmoid(0) = 1/2 for every tag: each (clip, tag) term of the binary cross-entropy
    is -ln(1/2) = ln 2 whatever the targets, and so is the epoch's mean loss (history.jsonl's `loss`)."""
    import math

    from bench.train import loop as train
    from tests.device_fakes import ToyCache, tiny_runs

    forward = train.Trainer._forward
    monkeypatch.setattr(train.Trainer, "_forward", lambda self, mel: 0 * forward(self, mel))
    (run,) = tiny_runs(epochs=1)
    loss, seen, _ = train.Trainer(run, ToyCache(), torch.device("cpu"), log=lambda *_: None).train_epoch(1)
    assert seen == 16 and loss == pytest.approx(math.log(2), rel=1e-6)  # 20 clips: two full batches of 8
