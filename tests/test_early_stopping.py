"""Early stopping, on fixed sequences of validation ROC-AUC.

The rule (bench/train/loop.py's docstring, as in Keras' EarlyStopping): training stops once validation
ROC-AUC has not improved for `patience` consecutive epochs; an epoch improves only if its score is
strictly higher than the best so far; the test split is then scored with the best epoch's weights.
`max_epochs` bounds the run either way.

The training loop itself runs (train_run on a tiny model and toy data); only the training pass and the
validation scores are replaced, so each case's stop epoch is the one worked out by hand below.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.train import loop as train

from .device_fakes import ToyCache, tiny_runs

CPU = torch.device("cpu")


def _stamp(model) -> torch.Tensor:
    """One weight of `model`, which the stand-in training pass sets to the epoch it trained."""
    return next(model.parameters()).data.view(-1)[:1]


def drive(monkeypatch, tmp_path, scores, patience, max_epochs, tested=None, **protocol):
    """train_run with validation ROC-AUC taken from `scores` (one per epoch); returns (result, valid calls).
    Each epoch's training pass writes its epoch number into one weight; `tested` receives that weight as
    the test split is scored, i.e. the epoch whose weights are scored."""
    queue = list(scores)
    valid_calls = []
    real_evaluate = train.Trainer.evaluate

    def evaluate(self, split):
        if split != "valid":
            if tested is not None and split == "test":
                tested.append(int(_stamp(self.model).item()))
            return real_evaluate(self, split)
        valid_calls.append(len(valid_calls) + 1)
        roc = queue.pop(0)
        return {"roc_auc": roc, "pr_auc": roc / 2}

    def train_epoch(self, epoch):
        _stamp(self.model).fill_(epoch)
        return 0.5, len(self.data["train"]), 0

    monkeypatch.setattr(train.Trainer, "evaluate", evaluate)
    monkeypatch.setattr(train.Trainer, "train_epoch", train_epoch)
    (run,) = tiny_runs(epochs=max_epochs, patience=patience)
    run = dataclasses.replace(run, protocol=dataclasses.replace(run.protocol, **protocol))  # lr, lr_patience, ...
    result = train.train_run(run, ToyCache(), tmp_path, CPU, log=lambda *_: None)
    return result, valid_calls


# (scores, patience, max_epochs, epochs trained, best epoch, best score), each derived by hand:
CASES = [
    # best 0.6 at epoch 2; epochs 3 (0.55) and 4 (0.58) do not improve: 2 epochs without improvement
    # = patience 2, so the run stops after epoch 4; 0.59 and the later 0.9 are never seen.
    ([0.5, 0.6, 0.55, 0.58, 0.59, 0.9, 0.9, 0.9, 0.9, 0.9], 2, 10, 4, 2, 0.6),
    # a tie is not an improvement: best 0.6 at epoch 2, epoch 3 (0.6 again) is 1 epoch without
    # improvement = patience 1, stop after epoch 3.
    ([0.5, 0.6, 0.6, 0.7, 0.8, 0.9], 1, 6, 3, 2, 0.6),
    # an improvement restarts the count: best 0.6 (epoch 2), 0.65 (epoch 4); epochs 5 and 6 do not
    # improve on 0.65, so with patience 2 the run stops after epoch 6.
    ([0.5, 0.6, 0.55, 0.65, 0.6, 0.62, 0.9, 0.9, 0.9, 0.9], 2, 10, 6, 4, 0.65),
    # patience 3: best 0.6 at epoch 2, epochs 3, 4, 5 do not improve, stop after epoch 5.
    ([0.5, 0.6, 0.55, 0.58, 0.59, 0.9, 0.9, 0.9], 3, 8, 5, 2, 0.6),
    # never 2 epochs without improvement: all 5 epochs of max_epochs run, best is the last.
    ([0.5, 0.4, 0.6, 0.55, 0.7], 2, 5, 5, 5, 0.7),
    # max_epochs comes first: 3 epochs without improvement would stop at epoch 5, max_epochs 4 ends it.
    ([0.5, 0.6, 0.55, 0.58, 0.59, 0.9], 3, 4, 4, 2, 0.6),
]


@pytest.mark.parametrize("scores,patience,max_epochs,epochs,best_epoch,best_score", CASES)
def test_early_stopping_stops_after_patience_epochs_without_improvement(
        monkeypatch, tmp_path, scores, patience, max_epochs, epochs, best_epoch, best_score):
    tested = []
    result, valid_calls = drive(monkeypatch, tmp_path, scores, patience, max_epochs, tested)
    assert result["epochs"] == epochs
    assert len(valid_calls) == epochs  # no validation pass of an epoch that does not train
    assert [h["epoch"] for h in result["history"]] == list(range(1, epochs + 1))
    assert [h["valid_roc_auc"] for h in result["history"]] == scores[:epochs]
    assert result["best_valid"] == {"roc_auc": best_score, "epoch": best_epoch}
    # the test split is scored with the best epoch's weights, which best.pt holds
    assert tested == [best_epoch]
    assert train.load_torch(tmp_path / train.BEST)["epoch"] == best_epoch


def test_result_json_records_the_epochs_trained_and_the_best_epoch(monkeypatch, tmp_path):
    """The grid's result.json (summary.csv's `epochs` and `best_epoch`) for the first case above: 4 epochs
    trained, the best at epoch 2, and the test scored with its weights."""
    import json

    from bench.run.runner import execute_run
    from bench.spec import parse_spec

    queue = [0.5, 0.6, 0.55, 0.58, 0.59, 0.9]
    real_evaluate = train.Trainer.evaluate
    monkeypatch.setattr(train.Trainer, "evaluate", lambda self, split: (
        {"roc_auc": (roc := queue.pop(0)), "pr_auc": roc / 2} if split == "valid" else real_evaluate(self, split)))
    monkeypatch.setattr(train.Trainer, "train_epoch", lambda self, epoch: (0.5, len(self.data["train"]), 0))
    spec = parse_spec({
        "name": "tiny", "seeds": [0], "dataset": {"name": "synthetic", "clip_seconds": 1.0, "n_tags": 3},
        "arch": {"vgg": {"width": 0.0625}}, "protocol": {"batch_size": 8, "max_epochs": 10, "patience": 2},
        "grid": [{"arch": ["vgg"], "sample_rate": [16000], "n_mels": [16], "hop_multiplier": [2], "log": ["log"]}],
    }, "tiny.toml")
    (run,) = spec.runs()
    cache = ToyCache()
    execute_run(spec, run, tmp_path, lambda rate: cache, CPU, log=lambda *_: None)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "ok"
    assert (result["cost"]["epochs"], result["cost"]["best_epoch"]) == (4, 2)


def test_the_history_records_the_rate_each_epoch_trained_with(monkeypatch, tmp_path):
    """Best at epoch 2, then 3 epochs without improvement: with lr_patience 3 the rate is halved after
    epoch 5's validation, so epoch 6 is the first to train at 5e-4 (and the history says so for epoch 6,
    not already for epoch 5)."""
    import json

    drive(monkeypatch, tmp_path, [0.5, 0.6, 0.55, 0.55, 0.55, 0.55], patience=10, max_epochs=6)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert rates == [1e-3] * 5 + [5e-4]


def test_a_rate_of_1e_8_or_less_is_halved_too(monkeypatch, tmp_path):
    """A spec may set lr down to 1e-12: PyTorch's plateau schedule, by default, skips a cut smaller than
    1e-8, so 1e-8 was never halved (nor 1e-3 after 16 halvings). Every epoch without improvement here
    (lr_patience 1) halves it: 1e-8, then 5e-9, 2.5e-9, 1.25e-9."""
    import json

    drive(monkeypatch, tmp_path, [0.6, 0.5, 0.5, 0.5], patience=10, max_epochs=4, lr=1e-8, lr_patience=1)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert rates == pytest.approx([1e-8, 1e-8, 5e-9, 2.5e-9], rel=1e-12)


def test_a_run_resumed_from_a_checkpoint_of_an_earlier_version_cuts_a_small_rate_too():
    """The schedule's state in a checkpoint written before its minimum cut was 0 holds torch's 1e-8, and
    loading it put that back: a run resumed across the upgrade kept a rate of 1e-8 as it was."""
    from tests.device_fakes import ToyCache

    (run,) = tiny_runs(epochs=4, patience=10)
    run = dataclasses.replace(run, protocol=dataclasses.replace(run.protocol, lr=1e-8, lr_patience=1))
    earlier = train.Trainer(run, ToyCache(), CPU, log=lambda *_: None)
    earlier.scheduler.eps = 1e-8  # as torch's default left it
    state = earlier.state(1, {}, [])
    resumed = train.Trainer(run, ToyCache(), CPU, log=lambda *_: None)
    resumed.load(state)
    for score in (0.6, 0.5):
        resumed.scheduler.step(score)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(5e-9, rel=1e-12)
