"""Device selection (the CPU versions of the CUDA-selected paths)."""

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
