"""`bench embed`, `bench transfer` and the synthetic downstream tasks.

Facts from outside the code: scikit-learn's own cross-validation of the same classifier on the same
folds; a task whose classes are linearly separable scores 1; the hiss band's energy measured in the
generated audio by an FFT; the released models' features computed by musicnn's own TensorFlow code
(tests/data/musicnn).
"""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import architectures
from architectures import InputConfig
from bench.cli import main
from bench.core.errors import UserError
from bench.core.layout import run_dir
from bench.core.store import atomic_write_json
from bench.data import synthetic
from bench.data.synthetic.tasks import hiss_label, mode_label, write_task
from bench.data.task import read_task
from bench.spec import load_spec
from bench.tools import embed as embed_module
from bench.tools.transfer import cross_validate, sklearn_version

from .conftest import MINIMAL_SPEC
from .test_released import DATA, close_to_largest, needs_musicnn

SPEC = (MINIMAL_SPEC.replace('name = "t"', 'name = "tr"\nseeds = [0, 1]').replace("seeds = [0]\n", "")
        .replace('name = "synthetic"', 'name = "synthetic"\nclip_seconds = 2.0\n[arch.vgg]\nwidth = 0.0625')
        .replace("[12000]", "[16000]").replace("[96]", "[24]"))
"""VGG at width 1/16, 16 kHz, 24 bands, 2 s clips, seeds 0 and 1: two runs."""


# ------------------------------------------------------------------------------------------------
# the classifier and the folds


def test_logistic_regression_matches_scikit_learns_own_cross_validation():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.model_selection import cross_validate as sk_cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 60 + ["b"] * 40)
    features = rng.standard_normal((100, 8)) + np.where(labels == "b", 0.8, 0.0)[:, None]  # overlapping blobs
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    ours = cross_validate(features, labels, list(folds.split(features, labels)), "logreg")
    theirs = sk_cross_validate(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)), features, labels,
                               cv=folds, scoring=["balanced_accuracy", "roc_auc"])
    assert ours["balanced_accuracy_mean"] == pytest.approx(theirs["test_balanced_accuracy"].mean(), abs=1e-12)
    assert ours["roc_auc_mean"] == pytest.approx(theirs["test_roc_auc"].mean(), abs=1e-12)
    assert ours["balanced_accuracy_std"] == pytest.approx(theirs["test_balanced_accuracy"].std(ddof=1), abs=1e-12)
    assert 0.6 < ours["balanced_accuracy_mean"] < 0.95  # a real task: neither chance nor separable


def test_three_classes_are_scored_with_scikit_learns_macro_one_vs_rest_roc_auc():
    """Overlapping, unbalanced classes (50/30/20), where the ways of averaging a multi-class ROC-AUC
    differ (here macro one-vs-rest 0.733, weighted 0.716, one-vs-one 0.738): ours is scikit-learn's
    "roc_auc_ovr", the macro average over the classes, each against the rest."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.model_selection import cross_validate as sk_cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    labels = np.repeat(["x", "y", "z"], [50, 30, 20])
    centres = {"x": (0, 0), "y": (1, 0), "z": (0, 1)}
    features = np.array([centres[label] for label in labels]) + rng.standard_normal((100, 2))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    ours = cross_validate(features, labels, list(folds.split(features, labels)), "logreg")
    theirs = sk_cross_validate(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)), features, labels,
                               cv=folds, scoring=["balanced_accuracy", "roc_auc_ovr", "roc_auc_ovr_weighted",
                                                  "roc_auc_ovo"])
    assert ours["roc_auc_mean"] == pytest.approx(theirs["test_roc_auc_ovr"].mean(), abs=1e-12)
    assert ours["balanced_accuracy_mean"] == pytest.approx(theirs["test_balanced_accuracy"].mean(), abs=1e-12)
    # the other averages differ by more than the tolerance: the test tells them apart
    for other in ("test_roc_auc_ovr_weighted", "test_roc_auc_ovo"):
        assert abs(theirs[other].mean() - ours["roc_auc_mean"]) > 1e-3


def test_a_separable_task_scores_one():
    rng = np.random.default_rng(1)
    labels = np.repeat(["x", "y", "z"], 20)
    centres = {"x": (0, 0), "y": (10, 0), "z": (0, 10)}
    features = np.array([centres[label] for label in labels]) + 0.5 * rng.standard_normal((60, 2))
    from sklearn.model_selection import StratifiedKFold

    scores = cross_validate(features, labels, list(StratifiedKFold(5, shuffle=True, random_state=0)
                                                   .split(features, labels)), "logreg")
    assert scores["balanced_accuracy_mean"] == 1.0 and scores["roc_auc_mean"] == 1.0
    assert len(scores["folds"]) == 5


# ------------------------------------------------------------------------------------------------
# the task manifest: one-line errors


def write_rows(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def finished_runs(tmp_path, write_spec):
    """The two runs of SPEC, finished as the runner writes them (untrained networks: the pipeline is checked)."""
    spec_path = write_spec(SPEC)
    spec = load_spec(spec_path)
    results = tmp_path / "results"
    for run in spec.runs():
        folder = run_dir(results, spec.name, run.run_id)
        folder.mkdir(parents=True)
        atomic_write_json(folder / "config.json", {"run_id": run.run_id, "spec": spec.name, **run.canonical()})
        torch.manual_seed(run.seed)
        model = architectures.build("vgg", InputConfig(16000, 24, 1, 126), 3, width=0.0625)
        torch.save({"epoch": 1, "model": model.state_dict()}, folder / "best.pt")
        config = {"arch": "vgg", "width": 0.0625, "sample_rate": 16000, "n_mels": 24, "hop_multiplier": 1,
                  "log": "log", "seed": run.seed, "dataset": "synthetic", "n_frames": 126}
        atomic_write_json(folder / "result.json", {
            "schema_version": 1, "run_id": run.run_id, "status": "ok", "config": config,
            "metrics": {"roc_auc": 0.7 + 0.1 * run.seed, "pr_auc": 0.5},
            "cost": {"gmac": 0.01, "params": 1000, "best_epoch": 1}, "tag_names": ["a", "b", "c"]})
    return spec_path, results


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    synthetic.generate(out, clips=32, seed=3, clip_seconds=2.0, workers=1, progress=False)
    write_task(out, "hiss")
    write_task(out, "mode")
    return out


def test_task_manifest_problems_are_one_line(tmp_path, small_dataset, finished_runs, capsys):
    spec_path, results = finished_runs
    good = small_dataset / "hiss.csv"
    files = sorted(small_dataset.glob("[0-9]/*.mp3"))
    copy = tmp_path / "copy of one.mp3"  # one recording under two names
    copy.write_bytes(files[0].read_bytes())
    broken = tmp_path / "broken.mp3"
    broken.write_text("not mp3")
    cases = {
        "missing": (["path", "label"], [["0/nope.mp3", "a"]], "line 2: audio file not found"),
        # found by its header before any model embeds the files above it (it had been found by decoding, after
        # the first model had embedded every other file, and named without its line)
        "broken": (["path", "label"], [[str(p), "ab"[i % 2]] for i, p in enumerate(files[:4])] + [[str(broken), "a"]],
                   f"line 6: {broken}: undecodable"),
        "column": (["path", "genre"], [["x", "a"]], "no column 'label' (columns: path, genre)"),
        "spaced": (["path", " label"], [["x", "a"]], "no column 'label' (columns: path,  label); ' label' has spaces"),
        "one_label": (["path", "label"], [[str(p), "a"] for p in list(small_dataset.glob("0/*.mp3"))[:2]],
                      "needs at least two labels"),
        "fold": (["path", "label", "fold"], [[str(next(small_dataset.glob("0/*.mp3"))), "a", "x"]],
                 "fold 'x' is not an integer"),
        "fold_class": (["path", "label", "fold"],
                       [[str(p), label, fold] for p, label, fold in
                        zip(sorted(small_dataset.glob("[01]/*.mp3")), "aabb", "1122", strict=True)],
                       "holding out fold 1 leaves no training file for label(s) a"),
        # fold 3 trains on every label but tests on a and b only: its balanced accuracy would be over two
        # classes, its ROC-AUC missing
        "test_class": (["path", "label", "fold"],
                       [[str(p), label, fold] for p, label, fold in
                        zip(files[:8], "aaabbbcc", "12312312", strict=True)],
                       "holding out fold 3 leaves no test file for label(s) c"),
        "group_across": (["path", "label", "fold", "group"],
                         [[str(p), label, fold, group] for p, label, fold, group in
                          zip(files[:4], "abab", "1122", ["g1", "g2", "g1", "g3"], strict=True)],
                         "line 4: group 'g1' is in folds 1 and 2; each group in one fold"),
        "copies": (["path", "label"], [[str(p), "ab"[i % 2]] for i, p in enumerate(files[:9])] + [[str(copy), "b"]],
                   f"{copy} and {files[0]} are the same file's bytes"),
    }
    for name, (header, rows, message) in cases.items():
        manifest = write_rows(tmp_path / f"{name}.csv", header, rows)
        status = main(["transfer", str(spec_path), "--task", str(manifest), "--results", str(results), "-q"])
        err = capsys.readouterr().err.strip()
        assert status == 2 and "\n" not in err and message in err, (name, err)
    status = main(["transfer", str(spec_path), "--task", str(good), "--label-column", "genre",
                   "--results", str(results), "-q"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "no column 'genre' (columns: path, label)" in err
    folded = write_rows(tmp_path / "folded.csv", ["path", "label", "fold"],
                        [[str(p), label, fold] for p, label, fold in zip(files[:4], "abab", "1122", strict=True)])
    status = main(["transfer", str(spec_path), "--task", str(folded), "--folds", "3", "--results", str(results), "-q"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and f"--folds 3: {folded} has a fold column, which sets the folds" in err  # not ignored
    assert not (results / "tr" / "transfer").exists()


def test_folds_without_a_fold_column_are_scikit_learns_shuffled_stratified_five(tmp_path):
    """The documented protocol: 5 stratified folds, shuffled with the seed (scikit-learn's
    StratifiedKFold), the same for every model scored on the task."""
    from sklearn.model_selection import StratifiedKFold

    from bench.data.task import Task
    from bench.tools.transfer import TransferSettings, fold_splits

    labels = tuple("aab"[i % 3] for i in range(30))
    task = Task("t", tmp_path / "t.csv", tuple(f"{i}.mp3" for i in range(30)), labels, None, None)
    expected = StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(range(30), labels)
    got = fold_splits(task, TransferSettings())
    assert len(got) == 5
    for (train, test), (train_sk, test_sk) in zip(got, expected, strict=True):
        assert train.tolist() == train_sk.tolist() and test.tolist() == test_sk.tolist()


def test_folds_drawn_by_group_keep_each_group_whole(tmp_path):
    """An artist (or album) column: every fold tests on groups it did not train on, and still on every
    label; the copies of one recording under a group can no longer score the classifier."""
    from bench.data.task import Task
    from bench.tools.transfer import TransferSettings, fold_splits

    groups = tuple(f"artist {i // 3}" for i in range(30))  # 10 artists of 3 files
    labels = tuple("ab"[(i // 3) % 2] for i in range(30))  # each artist sings one label
    task = Task("t", tmp_path / "t.csv", tuple(f"{i}.mp3" for i in range(30)), labels, None, groups)
    if sklearn_version() < (1, 8):  # its shuffle puts both of one label's groups in a fold here
        with pytest.raises(UserError, match=r"leaves no test file .*scikit-learn before 1\.8"):
            fold_splits(task, TransferSettings(folds=5))
        return
    splits = fold_splits(task, TransferSettings(folds=5))
    assert len(splits) == 5
    for train, test in splits:
        assert not {groups[i] for i in train} & {groups[i] for i in test}
        assert {labels[i] for i in test} == {labels[i] for i in train} == {"a", "b"}
    assert sorted(i for _, test in splits for i in test) == list(range(30))
    few = Task("t", tmp_path / "t.csv", task.paths[:12], labels[:12], None, groups[:12])  # 4 artists
    with pytest.raises(UserError, match="5-fold cross-validation by group needs at least 5 groups, found 4"):
        fold_splits(few, TransferSettings(folds=5))


@pytest.mark.parametrize("version", [(1, 7), (1, 8)])
def test_a_label_held_by_one_group_is_refused_with_the_hint_for_this_scikit_learn(tmp_path, monkeypatch, version):
    """Label b is one artist's: no split keeps it in both a training and a test fold, whatever the
    version. Only before 1.8, whose shuffle can also fail balanced groups, does the hint name it."""
    from bench.data.task import Task
    from bench.tools import transfer

    monkeypatch.setattr(transfer, "sklearn_version", lambda: version)
    groups = tuple(f"artist {i // 5}" for i in range(30))  # 6 artists of 5 files; the last sings b
    labels = tuple("b" if i >= 25 else "a" for i in range(30))
    task = Task("t", tmp_path / "t.csv", tuple(f"{i}.mp3" for i in range(30)), labels, None, groups)
    with pytest.raises(UserError) as error:
        transfer.fold_splits(task, transfer.TransferSettings(folds=5))
    assert "leaves no" in str(error.value) and "for label(s) b" in str(error.value)
    assert ("scikit-learn before 1.8" in str(error.value)) is (version < (1, 8))
    assert ("too few groups of that label" in str(error.value)) is (version >= (1, 8))


def test_the_mlp_is_trained_not_stopped_near_its_initial_weights():
    """scikit-learn's early stopping (by the accuracy of a tenth of the training fold, patience 10 epochs
    of about one step each at a few hundred files) stopped the MLP after 16-22 epochs: on the demo's hiss
    task ROC-AUC 0.64 beside logistic regression's 0.92, and controls below chance. Here 60 embeddings, 8
    of 128 dimensions shifted by +-0.8 with the label: logistic regression separates them (0.99); the MLP
    stopped early scored 0.65, trained 0.89. It needs no held-out share of a fold, so a small task is
    not refused for it."""
    from sklearn.model_selection import StratifiedKFold

    from bench.data.task import Task
    from bench.tools.transfer import TransferSettings, cross_validate, fold_splits

    rng = np.random.default_rng(0)
    labels = np.array(["a", "b"] * 30)
    features = rng.standard_normal((60, 128))
    features[:, :8] += np.where(labels == "b", 0.8, -0.8)[:, None]
    splits = list(StratifiedKFold(5, shuffle=True, random_state=0).split(features, labels))
    logreg, mlp = (cross_validate(features, labels, splits, name)["roc_auc_mean"] for name in ("logreg", "mlp"))
    assert logreg > 0.95 and mlp > 0.85
    task = Task("t", Path("t.csv"), tuple(f"{i}.mp3" for i in range(10)), ("a", "b") * 5, None, None)
    assert len(fold_splits(task, TransferSettings(folds=5, classifiers=("logreg", "mlp")))) == 5  # folds of 8


def test_a_fit_stopped_at_its_iteration_limit_is_counted(monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline

    from bench.tools import transfer

    rng = np.random.default_rng(0)
    labels = np.repeat(["x", "y"], 20)
    features = rng.standard_normal((40, 5)) + (labels == "y")[:, None]
    splits = list(StratifiedKFold(4, shuffle=True, random_state=0).split(features, labels))
    assert cross_validate(features, labels, splits, "logreg")["not_converged"] == 0
    monkeypatch.setattr(transfer, "make_classifier", lambda name, seed: make_pipeline(LogisticRegression(max_iter=1)))
    assert cross_validate(features, labels, splits, "logreg")["not_converged"] == 4


# ------------------------------------------------------------------------------------------------
# the synthetic tasks


def test_hiss_label_is_the_band_heard_in_the_audio():
    """Power in 4.7-5.15 kHz (inside the hiss band, above the dyad's notes) over power in 5.35-6.2 kHz
    (between the hiss and the air bands), by FFT of the generated audio, ranks `hiss` clips above the
    others. Not perfectly: the tick clicks (2-5 kHz) and the snare spread into both bands."""
    from sklearn.metrics import roc_auc_score

    plans = synthetic.plan_clips(48, 5)
    ratio, label = [], []
    for plan in plans:
        audio = synthetic.synthesize(plan, 5, 2.0, 16000)
        power = np.abs(np.fft.rfft(audio)) ** 2
        freqs = np.fft.rfftfreq(audio.size, 1 / 16000)
        ratio.append(power[(freqs >= 4700) & (freqs <= 5150)].sum() / power[(freqs >= 5350) & (freqs <= 6200)].sum())
        label.append(hiss_label(plan) == "hiss")
    assert 15 <= sum(label) <= 30
    assert roc_auc_score(label, ratio) > 0.75
    assert np.median(np.array(ratio)[label]) > 20 * np.median(np.array(ratio)[~np.array(label)])


KEY_PROFILES = {"major": np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
                "minor": np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])}
"""Krumhansl and Kessler's (1982) probe-tone ratings of the 12 pitch classes from the tonic, C to B."""


def test_mode_label_is_the_key_heard_in_the_audio():
    """The key-finding of Krumhansl and Schmuckler: the clip's pitch-class profile (FFT magnitude from
    60 Hz to 1.3 kHz, the chords and roots, folded to the nearest equal-tempered semitone), correlated
    with the major and minor profiles in all 12 keys, names the mode of `mode.csv` for most clips
    (chance: half). Not every clip: a short progression can weigh a relative key's notes as much."""
    plans = synthetic.plan_clips(64, 0)
    agree = []
    for plan in plans:
        audio = synthetic.synthesize(plan, 0, 8.0, 8000)
        magnitude = np.abs(np.fft.rfft(audio))
        freqs = np.fft.rfftfreq(audio.size, 1 / 8000)
        keep = (freqs > 60) & (freqs < 1300)
        from_c = (np.round(12 * np.log2(freqs[keep] / 440.0)).astype(int) + 9) % 12  # A is 9 semitones above C
        profile = np.bincount(from_c, weights=magnitude[keep], minlength=12)
        _, heard = max((np.corrcoef(np.roll(ratings, key), profile)[0, 1], mode)
                       for mode, ratings in KEY_PROFILES.items() for key in range(12))
        agree.append(heard == mode_label(plan, 0))
    assert np.mean(agree) > 0.75, np.mean(agree)


def test_task_labels_no_tag_gives_away(small_dataset):
    """Each label is spread over the tags: no tag is (nearly) equal to it or to its negation."""
    plans = synthetic.plan_clips(400, 0)
    for name, label in (("hiss", [hiss_label(p) == "hiss" for p in plans]),
                        ("mode", [mode_label(p, 0) == "major" for p in plans])):
        label = np.array(label)
        share = {"hiss": 0.45, "mode": 0.6}[name]  # the module's docstring: 45 % hiss, 60 % major
        assert abs(label.mean() - share) < 0.06, name  # drawn per clip: 2.5 standard deviations over 400
        for tag in synthetic.TAG_NAMES:
            has = np.array([tag in p.tags for p in plans])
            agreement = (has == label).mean()
            assert 0.25 < agreement < 0.75, (name, tag, agreement)
    task = read_task(small_dataset / "mode.csv")
    assert task.classes == ["major", "minor"] and len(task.paths) == 32 and task.folds is None


# ------------------------------------------------------------------------------------------------
# bench embed and bench transfer end to end


def test_embed_writes_arrays_and_reuses_its_cache(finished_runs, small_dataset, tmp_path, capsys, monkeypatch):
    from bench.core.store import lock_held

    spec_path, results = finished_runs
    run = next((results / "tr" / "runs").iterdir())
    out = tmp_path / "emb"
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio" * 50)
    files = sorted(str(p) for p in small_dataset.glob("[0-3]/*.mp3"))
    assert main(["embed", str(run), *files, str(bad), "--out", str(out), "--per-patch", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("bench embed: error:") == 1 and "bad.mp3" in err
    summary = json.loads((out / "embeddings.json").read_text())
    pool = np.load(out / "pool4.npy")
    patches = np.load(out / "pool4.patches.npy")
    # the last block's channels: the paper's 2048 at width 1/16
    assert pool.shape == (len(files), 128) and summary["layers"] == {"pool4": 128}
    assert patches.shape == pool.shape  # a 2 s clip is one VGG patch
    assert list(summary["failed"]) == [str(bad)]
    with open(out / "index.csv") as handle:
        index = list(csv.DictReader(handle))
    assert [row["path"] for row in index] == files
    assert {float(row["seconds"]) for row in index} == {2.0} and {row["patches"] for row in index} == {"1"}

    calls = []
    original = embed_module.embed_waveforms
    monkeypatch.setattr(embed_module, "embed_waveforms", lambda *a, **k: calls.append(1) or original(*a, **k))
    assert main(["embed", str(run), *files, "--out", str(out), "-q"]) == 0
    assert calls == []  # every file came from the cache
    np.testing.assert_array_equal(np.load(out / "pool4.npy"), pool)
    next((out / "cache").rglob("*.npz")).write_bytes(b"damaged")
    assert main(["embed", str(run), *files, "--out", str(out), "-q"]) == 0
    assert len(calls) == 1  # the damaged entry alone was computed again
    np.testing.assert_allclose(np.load(out / "pool4.npy"), pool, rtol=0, atol=1e-6)
    torn = next((out / "cache").rglob("*.npz"))  # a copy cut short: a zip without its central directory
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    assert main(["embed", str(run), *files, "--out", str(out), "-q"]) == 0
    assert len(calls) == 2
    np.testing.assert_allclose(np.load(out / "pool4.npy"), pool, rtol=0, atol=1e-6)
    # the rerun without --per-patch left no per-patch array behind to be read against the new index
    assert not (out / "pool4.patches.npy").exists()
    # embeddings cached by a version that decoded MP3s otherwise (their folder without this version's
    # decoder mark) are never read: every file is embedded again
    for cached in sorted((out / "cache").iterdir()):
        cached.rename(cached.with_name(cached.name.rsplit("-d", 1)[0]))
    assert main(["embed", str(run), *files, "--out", str(out), "-q"]) == 0
    assert len(calls) == 3
    np.testing.assert_allclose(np.load(out / "pool4.npy"), pool, rtol=0, atol=1e-6)
    # a mistyped file name fails alone: the folder keeps its outputs
    index_before = (out / "index.csv").read_bytes()
    assert main(["embed", str(run), str(tmp_path / "typo.mp"), "--out", str(out), "-q"]) == 2
    assert "no file could be embedded; nothing written" in capsys.readouterr().err
    assert (out / "index.csv").read_bytes() == index_before
    np.testing.assert_allclose(np.load(out / "pool4.npy"), pool, rtol=0, atol=1e-6)
    assert main(["embed", str(run), str(tmp_path / "typo.mp"), "--out", str(tmp_path / "new"), "-q"]) == 2
    assert not (tmp_path / "new").exists()  # "nothing written": not even an empty folder
    # another run in the same folder replaces these arrays, and says so; two embeds into one folder at once
    # take turns (interleaved, an index of one stood beside the other's arrays under a "complete" summary)
    other = next(r for r in (results / "tr" / "runs").iterdir() if r != run)
    real, held = embed_module.write_outputs, []
    monkeypatch.setattr(embed_module, "write_outputs", lambda folder, *args: (
        held.append(lock_held(folder / embed_module.OUT_LOCK)), real(folder, *args))[1])
    assert main(["embed", str(other), *files, "--out", str(out), "-q"]) == 0
    assert held == [True] and not (out / embed_module.OUT_LOCK).exists()
    assert f"replaced the embeddings of {summary['model']} (model id {summary['model_id']})" in \
        capsys.readouterr().out
    assert main(["embed", str(other), *files, "--out", str(out), "-q"]) == 0
    assert "replaced" not in capsys.readouterr().out
    # an embeddings.json from elsewhere names the arrays to remove: none outside the folder is
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.npy").write_text("x")
    (victim / "data.patches.npy").write_text("y")
    summary = json.loads((out / "embeddings.json").read_text())
    summary["layers"] = {str(victim / "precious"): 3, "../victim/data": 4}
    (out / "embeddings.json").write_text(json.dumps(summary))
    assert main(["embed", str(other), *files, "--out", str(out), "-q"]) == 0
    assert sorted(p.name for p in victim.iterdir()) == ["data.patches.npy", "precious.npy"]


def test_transfer_scores_every_run_and_resumes(finished_runs, small_dataset, capsys, monkeypatch):
    spec_path, results = finished_runs
    task = small_dataset / "hiss.csv"
    args = ["transfer", str(spec_path), "--task", str(task), "--results", str(results), "--folds", "4", "-q"]
    assert main(args) == 0
    out = results / "tr" / "transfer" / "hiss"
    with open(out / "transfer.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {r["seed"] for r in rows} == {"0", "1"}
    for row in rows:
        assert row["classifier"] == "logreg" and row["layer"] == "pool4" and row["folds"] == "4"
        assert 0 <= float(row["balanced_accuracy_mean"]) <= 1 and float(row["gmac"]) == 0.01
    assert sorted(float(r["tagging_roc_auc"]) for r in rows) == pytest.approx([0.7, 0.8])
    documented = (Path(__file__).resolve().parents[1] / "docs" / "transfer.md").read_text()
    assert [c for c in rows[0] if f"`{c}`" not in documented] == []  # every column named in the docs
    assert (out / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the figure as PNG and PDF
    assert (out / "transfer.pdf").read_bytes()[:5] == b"%PDF-"
    assert "| vgg w0.0625 16k 24/x1 log | pool4 | 2 |" in (out / "transfer.md").read_text()
    assert len(list((results / "tr" / "embeddings").rglob("*.npz"))) == 2 * 32
    capsys.readouterr()

    def refuse(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr("bench.tools.transfer.embed_files", refuse)
    assert main(args) == 0  # both results reused
    with monkeypatch.context() as older:  # another scikit-learn draws other folds: scored again
        older.setattr("bench.tools.transfer.sklearn_version", lambda: (1, 7))
        with pytest.raises(AssertionError, match="recomputed"):
            main(args)
    run = next((results / "tr" / "runs").iterdir())
    weights = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(weights + b"\0")  # other weights under the same name: scored again
    with pytest.raises(AssertionError, match="recomputed"):
        main(args)
    (run / "best.pt").write_bytes(weights)
    with pytest.raises(AssertionError, match="recomputed"):  # new settings: computed again (here: refused)
        main([*args[:-1], "--mlp", "-q"])
    first_audio = Path(next(csv.DictReader(task.read_text().splitlines()))["path"])
    first_audio = first_audio if first_audio.is_absolute() else task.parent / first_audio
    os.utime(first_audio, ns=(first_audio.stat().st_atime_ns, first_audio.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="recomputed"):  # a file edited in place: its scores are stale
        main(args)

    # another task whose manifest has the same name: its own folder; the first keeps its results
    other = small_dataset / "other"
    other.mkdir()
    rows = list(csv.DictReader(task.read_text().splitlines()))[:16]
    with open(other / "hiss.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "path": str(Path(r["path"]) if Path(r["path"]).is_absolute()
                                           else (task.parent / r["path"]).resolve())} for r in rows)
    monkeypatch.undo()
    before = (out / "transfer.csv").read_bytes()
    assert main(["transfer", str(spec_path), "--task", str(other / "hiss.csv"), "--results", str(results),
                 "--folds", "4", "-q"]) == 0
    assert (out / "transfer.csv").read_bytes() == before
    (second,) = [f for f in (results / "tr" / "transfer").iterdir() if f.name.startswith("hiss-")]
    assert json.loads((second / "task.manifest.json").read_text())["manifest"] == str((other / "hiss.csv").resolve())


def test_another_label_column_of_one_manifest_is_another_task(finished_runs, small_dataset, tmp_path, capsys):
    """`--label-column key` on the manifest whose `label` was scored: its results had replaced those of
    `label` in the same folder, unsaid, under the title of the `label` task."""
    spec_path, results = finished_runs
    rows = list(csv.DictReader((small_dataset / "hiss.csv").read_text().splitlines()))
    keys = {r["path"]: r["label"] for r in csv.DictReader((small_dataset / "mode.csv").read_text().splitlines())}
    both = write_rows(small_dataset / "both.csv", ["path", "label", "key"],
                      [[r["path"], r["label"], keys[r["path"]]] for r in rows])
    args = ["transfer", str(spec_path), "--task", str(both), "--results", str(results), "--folds", "4", "-q"]
    assert main(args) == 0
    hiss = results / "tr" / "transfer" / "both"
    before = {f.name: f.read_bytes() for f in hiss.glob("*.json")}
    assert main([*args, "--label-column", "key"]) == 0
    assert "replaced" not in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in hiss.glob("*.json")} == before
    mode = results / "tr" / "transfer" / "both-key"
    assert json.loads((mode / "task.manifest.json").read_text())["label_column"] == "key"
    assert "Transfer to `both-key`" in (mode / "transfer.md").read_text()
    assert main([*args, "--label-column", "key", "--out", str(hiss)]) == 2  # a folder is one task's
    assert capsys.readouterr().err == (f"bench transfer: error: --out {hiss}: holds the transfer of {both}; "
                                       "give each task its own --out\n")


def test_a_folder_whose_marker_names_no_label_column_is_the_task_its_results_were_scored_on(
        finished_runs, small_dataset, tmp_path, capsys):
    """Markers written before they named the label column: a --out folder holding `--label-column key`
    results is that task's (it had been refused as "the transfer of both.csv", the very manifest given),
    and a task folder holding them is not the `label` column's, whose results go beside it instead of
    replacing them."""
    spec_path, results = finished_runs
    rows = list(csv.DictReader((small_dataset / "hiss.csv").read_text().splitlines()))
    keys = {r["path"]: r["label"] for r in csv.DictReader((small_dataset / "mode.csv").read_text().splitlines())}
    both = write_rows(small_dataset / "both.csv", ["path", "label", "key"],
                      [[r["path"], r["label"], keys[r["path"]]] for r in rows])
    run = next((results / "tr" / "runs").iterdir())
    out = tmp_path / "out"
    args = ["transfer", str(run), "--task", str(both), "--folds", "4", "-q", "--label-column", "key"]
    assert main([*args, "--out", str(out)]) == 0
    (out / "task.manifest.json").write_text(json.dumps({"manifest": str(both.resolve()), "name": "both"}))
    stored = (out / f"{run.name}.json").read_bytes()
    assert main([*args, "--out", str(out)]) == 0
    assert (out / f"{run.name}.json").read_bytes() == stored  # reused, not scored again
    assert json.loads((out / "task.manifest.json").read_text())["label_column"] == "key"  # named from now
    assert main([*args[:-2], "--out", str(out)]) == 2  # the labels of column `label`: another task
    capsys.readouterr()
    old = results / "tr" / "transfer" / "both"  # where the key column's results went before
    old.mkdir(parents=True)
    (old / f"{run.name}.json").write_bytes(stored)
    (old / "task.manifest.json").write_text(json.dumps({"manifest": str(both.resolve()), "name": "both"}))
    assert main([*args[:-2], "--results", str(results)]) == 0
    assert (old / f"{run.name}.json").read_bytes() == stored
    (beside,) = [f for f in old.parent.iterdir() if f.name.startswith("both-")]
    assert json.loads((beside / "task.manifest.json").read_text())["label_column"] == "label"


def test_the_default_layer_named_is_the_setting_it_was_scored_with(finished_runs, small_dataset, tmp_path, capsys):
    """`--layer pool4` after no --layer (a VGG's default: pool4): the same setting, so the result is reused
    and the table keeps the model scored before on the same layer. The second call had replaced the
    first run's result, "scored with layer None (now pool4)", and left the second run out of the table."""
    spec_path, results = finished_runs
    first, second = sorted((results / "tr" / "runs").iterdir())
    out = tmp_path / "out"
    args = ["--task", str(small_dataset / "hiss.csv"), "--out", str(out), "--folds", "4", "-q"]
    assert main(["transfer", str(first), str(second), *args]) == 0
    stored = (out / f"{first.name}.json").read_bytes()
    capsys.readouterr()
    assert main(["transfer", str(first), "--layer", "pool4", *args]) == 0
    assert "replaced" not in capsys.readouterr().err
    assert (out / f"{first.name}.json").read_bytes() == stored
    table = pd.read_csv(out / "transfer.csv")
    assert sorted(table["run_id"]) == sorted([first.name, second.name])
    # a result stored before results named their model's default layer, scored with --layer pool4: reused
    # without --layer, and named then, so that the next table without --layer holds it
    result = json.loads((out / f"{first.name}.json").read_text())
    del result["default_layer"]
    result["key"]["layer"] = "pool4"
    (out / f"{first.name}.json").write_text(json.dumps(result))
    assert main(["transfer", str(first), *args]) == 0
    assert json.loads((out / f"{first.name}.json").read_text())["default_layer"] == "pool4"
    assert main(["transfer", str(second), *args]) == 0
    assert sorted(pd.read_csv(out / "transfer.csv")["run_id"]) == sorted([first.name, second.name])
    capsys.readouterr()
    assert main(["transfer", str(first), "--mlp", *args]) == 0  # another setting replaces it, as it says
    assert "scored with classifiers ['logreg'] (now ['logreg', 'mlp']), is replaced" in capsys.readouterr().err


def test_untrained_controls_are_fresh_networks_one_per_configuration_and_seed(finished_runs, small_dataset):
    """Two seeds of a configuration, two controls initialised under those seeds: the table's spread of the
    controls is over initialisations, as the runs' is over seeds (not one network's over folds)."""
    from bench.tools.embed import load_embedder, untrained

    spec_path, results = finished_runs
    assert main(["transfer", str(spec_path), "--task", str(small_dataset / "mode.csv"), "--results", str(results),
                 "--folds", "4", "--untrained", "-q"]) == 0
    with open(results / "tr" / "transfer" / "mode" / "transfer.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["trained"] for r in rows) == ["False", "False", "True", "True"]  # two seeds, two controls
    controls = [r for r in rows if r["trained"] == "False"]
    assert controls[0]["balanced_accuracy_mean"] != controls[1]["balanced_accuracy_mean"]
    control = controls[0]
    assert control["model"].endswith("~untrained") and control["tagging_roc_auc"] == "" and control["seed"] == ""
    # trained on no data: none recorded, while the runs name theirs
    assert control["dataset"] == control["clip_seconds"] == control["n_tags"] == control["split"] == \
        control["data"] == ""
    assert {r["dataset"] for r in rows if r["trained"] == "True"} == {"synthetic"}
    # which initialisation each control is, and the runs' whole numbers written whole beside the controls'
    # empty cells (pandas made the columns float: seed 0.0, n_tags 3.0)
    assert sorted(r["init_seed"] for r in controls) == ["0", "1"] and {r["init_seed"] for r in rows} >= {""}
    trained = [r for r in rows if r["trained"] == "True"]
    assert sorted(r["seed"] for r in trained) == ["0", "1"] and {r["n_mels"] for r in rows} == {"24"}
    assert "(untrained) | pool4 | 2 |" in (results / "tr" / "transfer" / "mode" / "transfer.md").read_text()
    # the control is the network PyTorch's default initialisation gives under the seed, not the run's weights
    run = next((results / "tr" / "runs").glob("*-s1-*"))  # its weights: the fixture's network under seed 1
    fresh = untrained(load_embedder(str(run)), seed=0).tagger.model.state_dict()
    torch.manual_seed(0)
    built = architectures.build("vgg", InputConfig(16000, 24, 1, 126), 3, width=0.0625).state_dict()
    assert all(torch.equal(fresh[k], built[k]) for k in built)
    trained = load_embedder(str(run)).tagger.model.state_dict()
    assert not all(torch.equal(fresh[k], trained[k]) for k in built)


# ------------------------------------------------------------------------------------------------
# the released models' embeddings against musicnn's own features


@needs_musicnn
@pytest.mark.parametrize("name", ["MTT_musicnn", "MTT_vgg"])
def test_embeddings_of_the_released_models_are_musicnns_features(models, reference, name):
    from bench.tools.tag import load_tagger

    x, ref = reference
    model = load_tagger(name, str(models)).model
    with torch.inference_mode():
        ours = model.embeddings(x)
    if name == "MTT_musicnn":
        assert list(ours) == ["penultimate", "max_pool", "mean_pool"]
        for layer in ours:
            close_to_largest(ours[layer], ref[f"{name}/{layer}"])
    else:
        close_to_largest(ours["pool5"], ref[f"{name}/pool5"].reshape(8, -1))


def test_a_musicnn_models_default_embedding_is_musicnns_penultimate_layer():
    """With no `--layer`, `bench embed` and `bench transfer` use a model's first embedding layer. For the
    released musicnn (built here untrained) that is musicnn's `penultimate`: the widths below are those of
    musicnn's own extractor outputs (tests/data/musicnn/outputs.npz, made without this code), 200 for the
    penultimate layer and 753 for each pool."""
    from types import SimpleNamespace

    widths = {k.split("/")[1]: v.shape[-1] for k, v in np.load(DATA / "outputs.npz").items()
              if k.startswith("MTT_musicnn/") and k.split("/")[1] in ("penultimate", "max_pool", "mean_pool")}
    assert widths == {"penultimate": 200, "max_pool": 753, "mean_pool": 753}
    model = architectures.build("musicnn-787k", InputConfig(16000, 96, 1, 187), 50).eval()
    embedder = embed_module.Embedder(SimpleNamespace(model=model), "id", "run", Path("."))
    with torch.inference_mode():
        ours = model.embeddings(torch.from_numpy(np.load(DATA / "inputs.npz")["x"][:2]).float())
    assert embedder.layers[0] == "penultimate"
    assert {layer: value.shape[-1] for layer, value in ours.items()} == widths


@needs_musicnn
def test_bench_embed_on_the_reference_signal(models, reference, tmp_path):
    """decode -> mel -> patch -> embeddings end to end: the first patch of the reference signal."""
    _, ref = reference
    sf.write(tmp_path / "signal.wav", np.load(DATA / "inputs.npz")["signal"], 16000, subtype="FLOAT")
    assert main(["embed", "MTT_musicnn", str(tmp_path / "signal.wav"), "--models", str(models),
                 "--out", str(tmp_path / "e"), "-q"]) == 0
    penultimate = np.load(tmp_path / "e" / "penultimate.npy")[0]
    expected = ref["MTT_musicnn/penultimate"][0]
    # float16 rounding of the reference's log-mel moves the features by ~1e-3 of their range (as the taggram)
    assert np.abs(penultimate - expected).max() < 5e-3 * np.abs(expected).max()


def test_a_task_manifests_errors_name_the_line_an_editor_shows(tmp_path):
    """Past blank lines and a quoted label holding a line break, as csv.DictReader's row count did not."""
    sf.write(tmp_path / "a.mp3", np.zeros(16000, dtype=np.float32), 8000, format="MP3")
    (tmp_path / "t.csv").write_text('path,label\n\na.mp3,"two\nlines"\n\nnope.mp3,b\n')
    with pytest.raises(UserError, match="t.csv: line 6: audio file not found"):
        read_task(tmp_path / "t.csv")


def test_a_manifest_saved_by_a_spreadsheet_as_csv_utf8_is_read(tmp_path):
    """Excel's and LibreOffice's "CSV UTF-8" starts with a byte-order mark, which named the first column."""
    from bench.data.task import read_rows

    manifest = tmp_path / "task.csv"
    manifest.write_bytes("path,label\r\nécoute.wav,a\r\n".encode("utf-8-sig"))
    _, columns, rows = read_rows(manifest, ("path", "label"))
    assert columns == ["path", "label"] and rows == [(2, {"path": "écoute.wav", "label": "a"})]


def test_embedding_groups_hold_a_bounded_amount_of_decoded_audio(finished_runs, small_dataset, tmp_path, monkeypatch):
    """Long tracks: files are embedded together only up to GROUP_BYTES of waveform; the results are the
    same as with whole groups."""
    from bench.tools.embed import embed_files, load_embedder

    spec_path, results = finished_runs
    embedder = load_embedder(str(next((results / "tr" / "runs").iterdir())))
    files = sorted(str(p) for p in small_dataset.glob("[0-3]/*.mp3"))[:6]
    whole, _ = embed_files(embedder, files, tmp_path / "a")
    sizes = []
    original = embed_module.embed_waveforms
    monkeypatch.setattr(embed_module, "embed_waveforms", lambda tagger, waves: sizes.append(len(waves))
                        or original(tagger, waves))
    monkeypatch.setattr(embed_module, "GROUP_BYTES", 2 * 32000 * 4)  # two 2 s clips at 16 kHz, float32
    bounded, _ = embed_files(embedder, files, tmp_path / "b")
    assert sizes == [2, 2, 2]
    for path in files:
        np.testing.assert_allclose(bounded[path].means["pool4"], whole[path].means["pool4"], rtol=0, atol=1e-5)


def test_a_stored_score_that_does_not_exist_is_null_on_disk_and_nan_when_read(tmp_path):
    """A fold without one of the classes has no ROC-AUC: NaN in memory, null in the JSON file (strict
    readers refuse NaN), NaN again when a later `bench transfer` reuses the file."""
    import math

    from bench.core.store import atomic_write_json
    from bench.tools.transfer import _load

    atomic_write_json(tmp_path / "m.json", {"model": "m", "roc_auc_mean": float("nan"), "roc_auc_std": 0.1,
                                            "folds": [{"balanced_accuracy": 0.5, "roc_auc": float("nan")}]})
    assert "NaN" not in (tmp_path / "m.json").read_text()
    loaded = _load(tmp_path / "m.json")
    assert math.isnan(loaded["roc_auc_mean"]) and math.isnan(loaded["folds"][0]["roc_auc"])
    assert loaded["roc_auc_std"] == 0.1 and loaded["model"] == "m"


@pytest.mark.parametrize("text", ["[]", '"scores"', "3", "{", "[" * 100_000,
                                  '{"model": "m", "dims": 1' + "0" * 400 + "}", '{"": 1' + "0" * 20 + "}"],
                         ids=["list", "string", "number", "cut", "deep", "integer-past-64-bits", "under-an-empty-key"])
def test_a_stored_result_that_is_not_a_json_object_is_no_result(tmp_path, text):
    """A model's stored result that is valid JSON but not an object (or no JSON at all, or an integer no
    float holds): the model is scored again, as for a missing file, and another model's is left out of the
    table; `bench transfer` ended in an AttributeError on `[]`, an OverflowError on dims of 10**400."""
    from bench.tools.transfer import _load

    (tmp_path / "m.json").write_text(text)
    assert _load(tmp_path / "m.json") is None


def test_embedding_a_fifo_does_not_wait_forever(tmp_path):
    """Opening a FIFO waits for a writer: `bench embed dir/*` with a pipe among the files hung, where
    `bench tag` skips it as "not a regular file"."""
    import os
    import threading

    from bench.tools.embed import file_identity

    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    raised = []
    reader = threading.Thread(target=lambda: raised.append(pytest.raises(OSError, file_identity, fifo)), daemon=True)
    reader.start()
    reader.join(5)
    waiting = reader.is_alive()
    if waiting:  # release the old code's blocked open()
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5)
    assert not waiting and "not a regular file" in str(raised[0].value)


def test_transfer_writes_nothing_for_a_model_it_cannot_use(finished_runs, small_dataset, tmp_path, capsys):
    spec_path, results = finished_runs
    run = next((results / "tr" / "runs").iterdir())
    fresh = tmp_path / "fresh"
    assert main(["transfer", str(run), "--task", str(small_dataset / "hiss.csv"), "--results", str(fresh),
                 "--layer", "bogus", "-q"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert not fresh.exists() and not (results / "tr" / "transfer").exists()


def test_a_run_whose_result_holds_an_integer_beyond_64_bits_is_one_line(finished_runs, small_dataset, tmp_path,
                                                                         capsys):
    """A run's result.json (a done-marker the grid accepts) edited by hand with params of 10**400: the
    transfer table's integer columns ended the command in an OverflowError, after storing a result every
    later transfer then scored again."""
    spec_path, results = finished_runs
    run = next((results / "tr" / "runs").iterdir())
    result = json.loads((run / "result.json").read_text())
    result["cost"]["params"] = 10**400
    (run / "result.json").write_text(json.dumps(result))
    fresh = tmp_path / "fresh"
    assert main(["transfer", str(run), "--task", str(small_dataset / "hiss.csv"), "--results", str(fresh),
                 "--folds", "4", "-q"]) == 2
    assert capsys.readouterr().err == (f"bench transfer: error: {run / 'result.json'}: cost.params is an integer "
                                       "beyond 64 bits\n")


def test_a_spec_run_whose_result_holds_an_integer_beyond_64_bits_is_skipped(finished_runs, small_dataset, capsys):
    """Given a spec, such a run is listed and skipped, as bench report lists it: the transfer had stopped
    at it, so the runs after it were never scored and no table was written."""
    spec_path, results = finished_runs
    first, second = sorted((results / "tr" / "runs").iterdir())
    result = json.loads((first / "result.json").read_text())
    result["config"]["n_mels"] = 10**30
    (first / "result.json").write_text(json.dumps(result))
    assert main(["transfer", str(spec_path), "--task", str(small_dataset / "hiss.csv"), "--results", str(results),
                 "--folds", "4", "-q"]) == 0
    assert (f"bench transfer: {first.name}: result.json's config.n_mels is an integer beyond 64 bits, skipped\n"
            in capsys.readouterr().err)
    table = pd.read_csv(results / "tr" / "transfer" / "hiss" / "transfer.csv")
    assert set(table["run_id"].dropna()) == {second.name}


def test_a_spec_whose_every_finished_run_is_skipped_says_why(finished_runs, small_dataset, capsys):
    """Not "run the grid first": the grid has nothing to do for them."""
    spec_path, results = finished_runs
    for run in (results / "tr" / "runs").iterdir():
        result = json.loads((run / "result.json").read_text())
        result["metrics"]["extra"] = 2**70
        (run / "result.json").write_text(json.dumps(result))
    assert main(["transfer", str(spec_path), "--task", str(small_dataset / "hiss.csv"), "--results", str(results),
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench transfer: error: no finished model to evaluate (") and "grid" not in err
    assert err.count("result.json's metrics.extra is an integer beyond 64 bits, skipped") == 2


def test_a_results_folder_that_is_not_one_is_said_not_that_the_runs_are_unfinished(finished_runs, small_dataset,
                                                                                    tmp_path, capsys):
    """`--results tiny.toml` (a file), a folder not there, and a spec's own folder given for the one above
    it had each said "no finished model to evaluate (2 run(s) not finished: run the grid first)"."""
    spec_path, results = finished_runs
    task = str(small_dataset / "hiss.csv")
    for given, says in ((spec_path, f"--results {spec_path}: is a file, not a folder"),
                        (tmp_path / "nowhere", f"--results {tmp_path / 'nowhere'}: no such folder; `bench grid "
                                               f"{spec_path} --results {tmp_path / 'nowhere'}` trains its runs there"),
                        (results / "tr", f"--results {results / 'tr'}: holds runs itself; --results is the folder "
                                         f"above it (did you mean --results {results}?)")):
        assert main(["transfer", str(spec_path), "--task", task, "--results", str(given), "-q"]) == 2
        assert capsys.readouterr().err == f"bench transfer: error: {says}\n"
    assert not (results / "tr" / "transfer").exists() and not (tmp_path / "nowhere").exists()


def test_a_misspelt_model_is_said_before_any_model_is_scored(finished_runs, small_dataset, tmp_path, capsys):
    """The run named first had been embedded, scored and stored (and an earlier result of it replaced)
    before the misspelt name after it was found."""
    spec_path, results = finished_runs
    run = next((results / "tr" / "runs").iterdir())
    fresh = tmp_path / "fresh"
    assert main(["transfer", str(run), "no_such_model", "--task", str(small_dataset / "hiss.csv"), "--results",
                 str(fresh), "--folds", "4", "-q"]) == 2
    assert capsys.readouterr().err.startswith("bench transfer: error: MODEL no_such_model: neither an imported model")
    assert not fresh.exists() and not (results / "tr" / "transfer").exists()


def test_a_copied_run_folder_writes_under_results(finished_runs, small_dataset, tmp_path):
    """`cp -r results/tr/runs/<run_id> my_tagger`: the copy is in no results folder, so its outputs go
    under --results (they went two folders above the copy, wherever that was)."""
    import shutil

    spec_path, results = finished_runs
    copy = tmp_path / "models" / "my_tagger"
    shutil.copytree(next((results / "tr" / "runs").iterdir()), copy)
    mine = tmp_path / "mine"
    assert main(["transfer", str(copy), "--task", str(small_dataset / "hiss.csv"), "--results", str(mine),
                 "--folds", "4", "-q"]) == 0
    assert (mine / "transfer" / "hiss" / "transfer.csv").exists() and list((mine / "embeddings").rglob("*.npz"))
    elsewhere = [p / name for p in (tmp_path, tmp_path / "models") for name in ("transfer", "embeddings")]
    assert not [p for p in elsewhere if p.exists()]


def test_the_table_holds_the_models_of_earlier_invocations_with_the_same_settings(finished_runs, small_dataset,
                                                                                   capsys):
    """Two `bench transfer` calls, one run each, into one task folder: the second table has both runs (and
    only with the same settings: a call with other folds has its own)."""
    spec_path, results = finished_runs
    first, second = sorted((results / "tr" / "runs").iterdir())
    task = ["--task", str(small_dataset / "hiss.csv"), "--results", str(results), "-q"]
    assert main(["transfer", str(first), *task, "--folds", "4"]) == 0
    assert main(["transfer", str(second), *task, "--folds", "4"]) == 0
    out = results / "tr" / "transfer" / "hiss"
    with open(out / "transfer.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["seed"] for r in rows] == ["1", "0"]  # this call's model first, then the earlier one
    assert "with 1 model(s) scored here before" in capsys.readouterr().out
    assert "| vgg w0.0625 16k 24/x1 log | pool4 | 2 |" in (out / "transfer.md").read_text()
    assert main(["transfer", str(second), *task, "--folds", "3"]) == 0
    with open(out / "transfer.csv") as handle:
        assert [(r["seed"], r["folds"]) for r in csv.DictReader(handle)] == [("1", "3")]
    # one untrained control per seed of the configuration: two in the table after a call per run, as
    # after one call for both (a call's controls do not hide an earlier call's of another seed)
    for run in (first, second):
        assert main(["transfer", str(run), *task, "--folds", "4", "--untrained"]) == 0
    with open(out / "transfer.csv") as handle:
        assert sorted(r["trained"] for r in csv.DictReader(handle)) == ["False", "False", "True", "True"]
    assert main(["transfer", str(spec_path), *task, "--folds", "4", "--untrained"]) == 0
    with open(out / "transfer.csv") as handle:
        assert sorted(r["trained"] for r in csv.DictReader(handle)) == ["False", "False", "True", "True"]
    assert main(["transfer", str(first), *task, "--folds", "4"]) == 0  # a call without controls shows none
    with open(out / "transfer.csv") as handle:
        assert sorted(r["trained"] for r in csv.DictReader(handle)) == ["True", "True"]


def test_per_patch_outputs_are_the_cached_patches_and_only_their_means_stay_in_memory(finished_runs, tmp_path):
    """Tracks of 9, 1 and 5 s (4, 1 and 2 two-second VGG patches): `<layer>.patches.npy` holds every file's
    cached patches in index order, each file's rows average to its row of `<layer>.npy`, and what
    `embed_files` keeps per file is one vector per layer, whatever the track's length."""
    from bench.tools.embed import EmbeddingCache, embed_files, load_embedder

    _, results = finished_runs
    run = next((results / "tr" / "runs").iterdir())
    rng = np.random.default_rng(0)
    files = []
    for seconds in (9, 1, 5):
        files.append(str(tmp_path / f"{seconds}s.wav"))
        sf.write(files[-1], 0.1 * rng.standard_normal(16000 * seconds).astype(np.float32), 16000)
    out = tmp_path / "emb"
    out.mkdir()
    killed = out / ".pool4.patches.npy.x1y2z3ab.tmp"  # an earlier embed killed while it wrote
    killed.write_bytes(b"\x93NUMPY")
    os.utime(killed, (0, 0))
    assert main(["embed", str(run), *files, "--out", str(out), "--per-patch", "-q"]) == 0
    assert not killed.exists()
    with open(out / "index.csv") as handle:
        index = list(csv.DictReader(handle))
    counts = [int(row["patches"]) for row in index]
    # whole 126-frame patches (2 s at hop 256: 564 and 314 frames hold 4 and 2); a file shorter than one is padded
    assert counts == [4, 1, 2]
    patches, means = np.load(out / "pool4.patches.npy"), np.load(out / "pool4.npy")
    embedder = load_embedder(str(run))
    cache = EmbeddingCache(out / "cache", embedder.identity)
    starts = np.cumsum([0, *counts])
    for row, start, end in zip(index, starts[:-1], starts[1:], strict=True):
        np.testing.assert_array_equal(patches[start:end], cache.get(row["audio_id"], ("pool4",))["pool4"])
        np.testing.assert_allclose(patches[start:end].mean(axis=0), means[int(row["row"])], rtol=1e-6)
    kept, _ = embed_files(embedder, files, out / "cache")
    assert {kept[f].means["pool4"].shape for f in files} == {(means.shape[1],)}
    assert not list(out.glob(".*.tmp"))


def test_a_per_patch_write_that_fails_replaces_none_of_the_outputs(finished_runs, tmp_path, monkeypatch, capsys):
    """The per-patch arrays are the large write, so they go first: when they cannot be written (here the
    cache they are read from is gone), the folder keeps the earlier run's index and means, and no temp file."""
    import shutil

    _, results = finished_runs
    run = next((results / "tr" / "runs").iterdir())
    audio, second = tmp_path / "a.wav", tmp_path / "b.wav"
    for path, seed in ((audio, 1), (second, 2)):
        sf.write(path, 0.1 * np.random.default_rng(seed).standard_normal(16000 * 5).astype(np.float32), 16000)
    out = tmp_path / "emb"
    assert main(["embed", str(run), str(audio), "--out", str(out), "-q"]) == 0
    before = {name: (out / name).read_bytes() for name in ("index.csv", "pool4.npy", "embeddings.json")}
    real = embed_module.embed_files

    def then_lose_the_cache(*args, **kwargs):
        found = real(*args, **kwargs)
        shutil.rmtree(out / "cache")
        return found

    monkeypatch.setattr(embed_module, "embed_files", then_lose_the_cache)
    assert main(["embed", str(run), str(audio), str(second), "--out", str(out), "--per-patch", "-q"]) == 2
    assert "its cached embedding" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not (out / "pool4.patches.npy").exists() and not list(out.glob(".*.tmp"))


def test_per_patch_arrays_of_several_layers_are_the_patches_written_to_the_cache(tmp_path):
    """MusiCNN has three embedding layers (penultimate, max_pool, mean_pool) of different widths: each
    layer's `<layer>.patches.npy` is every file's patches in index order, and `<layer>.npy` their means,
    for arrays made here and put in the cache."""
    from types import SimpleNamespace

    from bench.tools.embed import SECONDS, EmbeddingCache, FileEmbedding, write_outputs

    widths = {"penultimate": 3, "max_pool": 5, "mean_pool": 7}
    cache = EmbeddingCache(tmp_path / "cache", "model")
    rng = np.random.default_rng(0)
    files, made = {}, {layer: [] for layer in widths}
    for i, patches in enumerate((4, 1, 3)):
        arrays = {layer: rng.standard_normal((patches, dims)).astype(np.float32) for layer, dims in widths.items()}
        cache.put(f"audio{i}", {**arrays, SECONDS: np.array(3.0 * patches)})
        files[f"track{i}.mp3"] = FileEmbedding.of(f"audio{i}", {**arrays, SECONDS: np.array(3.0 * patches)},
                                                  tuple(widths))
        for layer in widths:
            made[layer].append(arrays[layer])
    embedder = SimpleNamespace(layers=tuple(widths), identity="model", folder=tmp_path, sample_rate=16000,
                               tagger=SimpleNamespace(name="musicnn", patch_seconds=3.0))
    out = tmp_path / "out"
    summary = write_outputs(out, embedder, list(files), files, {}, True, cache)
    assert summary["layers"] == widths
    for layer in widths:
        np.testing.assert_array_equal(np.load(out / f"{layer}.patches.npy"), np.concatenate(made[layer]))
        np.testing.assert_allclose(np.load(out / f"{layer}.npy"), [a.mean(axis=0) for a in made[layer]], rtol=1e-6)
    with open(out / "index.csv") as handle:
        assert [(r["patches"], r["first_patch"]) for r in csv.DictReader(handle)] == [("4", "0"), ("1", "4"),
                                                                                     ("3", "5")]


def _tidy_row(model, run_id, dataset, seed, accuracy, **extra):
    """One row of transfer.csv as rows_of writes it."""
    return {"model": model, "run_id": run_id, "arch": "vgg", "width": 1.0, "sample_rate": 12000, "n_mels": 96,
            "hop_multiplier": 1, "log": "dB", "seed": seed, "dataset": dataset, "clip_seconds": 29.1,
            "n_tags": 50, "split": "default", "data": "default", "gmac": 1.0, "params": 10, "tagging_roc_auc": 0.9,
            "tagging_pr_auc": 0.4, "trained": True, "layer": "pool5", "dims": 512, "classifier": "logreg",
            "folds": 5, "balanced_accuracy_mean": accuracy, "balanced_accuracy_std": 0.05, "roc_auc_mean": accuracy,
            "roc_auc_std": 0.05, **extra}


def test_runs_of_one_configuration_on_other_datasets_are_not_seeds_of_one_another():
    """`bench transfer specs/paper-mtat-vgg.toml specs/paper-msd.toml`: the MTAT and MSD runs of one
    configuration are two rows, not one of four "seeds" whose spread is the datasets' difference."""
    from bench.report.transfer import aggregate, transfer_markdown

    frame = pd.DataFrame([_tidy_row("mtat-0", "a0", "mtat", 0, 0.60), _tidy_row("mtat-1", "a1", "mtat", 1, 0.62),
                          _tidy_row("msd-0", "b0", "msd", 0, 0.80), _tidy_row("msd-1", "b1", "msd", 1, 0.82)])
    rows = aggregate(frame)
    assert sorted(zip(rows["dataset"], rows["n_seeds"], rows["balanced_accuracy"].round(2), strict=True)) == \
        [("msd", 2, 0.81), ("mtat", 2, 0.61)]
    md = transfer_markdown(frame, "t")
    assert "| vgg w1 12k 96/x1 dB [mtat, 29.1 s, 50 tags] | pool5 | 2 |" in md
    assert "| vgg w1 12k 96/x1 dB [msd, 29.1 s, 50 tags] | pool5 | 2 |" in md
    assert "mean ± std over 2 seeds" in md
    # another clip length is other data too, and so is another subset of MTG-Jamendo's
    assert len(aggregate(frame.assign(clip_seconds=[29.1, 29.1, 10.0, 10.0], dataset="mtat"))) == 2
    subsets = frame.assign(dataset="jamendo", data=["subset top50tags"] * 2 + ["subset genre"] * 2)
    assert len(aggregate(subsets)) == 2
    assert "| vgg w1 12k 96/x1 dB [jamendo, 29.1 s, 50 tags, subset genre] | pool5 | 2 |" in \
        transfer_markdown(subsets, "t")


def test_the_caption_says_what_the_spread_of_each_row_is_over():
    from bench.report.transfer import transfer_markdown

    two_seeds = [_tidy_row("mtat-0", "a0", "mtat", 0, 0.60), _tidy_row("mtat-1", "a1", "mtat", 1, 0.62)]
    imported = _tidy_row("MTT_musicnn", None, "MagnaTagATune", None, 0.6, arch="musicnn")
    md = transfer_markdown(pd.DataFrame([*two_seeds, imported]), "t")
    assert "over the seeds of a row with several runs, over the folds of a row with one" in md
    assert "| MTT_musicnn | pool5 | 1 |" in md and "60.00 ± 5.00" in md  # its folds' spread, said so
    # an untrained control (trained on no data) does not make a table of one dataset name its rows' data
    control = _tidy_row("mtat-0~untrained", "a0", None, None, 0.5, trained=False, clip_seconds=None, n_tags=None,
                        split=None, data=None, tagging_roc_auc=None)
    md = transfer_markdown(pd.DataFrame([*two_seeds, control]), "t")
    assert "| vgg w1 12k 96/x1 dB | pool5 | 2 |" in md and "| vgg w1 12k 96/x1 dB (untrained) | pool5 | 1 |" in md


def test_a_released_models_control_is_not_a_runs_control():
    """The untrained control of MTT_musicnn and of a grid's musicnn-787k at 16 kHz / 96 mels / x1 / log share
    shapes and mel settings but not the framing: reflect padding, no padding to the hop, a float16 mel."""
    import types

    from torch import nn

    from bench.tools.transfer import architecture_key
    from bench.train.frontend import MelFrontend

    def embedder(frontend):
        return types.SimpleNamespace(tagger=types.SimpleNamespace(model=nn.Linear(3, 2), frontend=frontend,
                                                                  patch_frames=187))

    run = MelFrontend(16000, 96, 1, "log")
    released = MelFrontend(16000, 96, 1, "log", pad_mode="reflect", pad_to_hop=False, float16_mel=True)
    assert architecture_key(embedder(run)) != architecture_key(embedder(released))
    assert architecture_key(embedder(run)) == architecture_key(embedder(MelFrontend(16000, 96, 1, "log")))


def test_an_embed_killed_while_writing_leaves_a_summary_that_says_incomplete(finished_runs, small_dataset,
                                                                                tmp_path, monkeypatch):
    """embeddings.json says what the folder holds: a rerun killed after its new index.csv but before its
    arrays must not leave the old summary vouching for old arrays under a new index: it says incomplete."""
    spec_path, results = finished_runs
    run = next((results / "tr" / "runs").iterdir())
    out = tmp_path / "emb"
    files = sorted(str(p) for p in small_dataset.glob("[0-3]/*.mp3"))
    assert main(["embed", str(run), *files[:3], "--out", str(out), "-q"]) == 0
    assert json.loads((out / "embeddings.json").read_text())["files"] == 3

    def killed(path, array):
        raise KeyboardInterrupt  # SIGKILL between index.csv and the arrays

    monkeypatch.setattr(embed_module, "_save_npy", killed)
    assert main(["embed", str(run), *files[3:8], "--out", str(out), "-q"]) != 0  # the CLI reports the stop
    assert json.loads((out / "embeddings.json").read_text())["complete"] is False
    monkeypatch.undo()
    assert main(["embed", str(run), *files[3:8], "--out", str(out), "-q"]) == 0
    final = json.loads((out / "embeddings.json").read_text())
    assert final["files"] == 5 and final["complete"] is True
    assert np.load(out / "pool4.npy").shape[0] == 5


def test_a_rerun_after_a_killed_embed_still_removes_the_earlier_models_arrays(tmp_path, monkeypatch):
    """Model A wrote a1 and a2; model B, embedding into the same folder, was killed part-way; B's rerun
    must still remove A's arrays, so that none is read against B's index."""
    from types import SimpleNamespace

    from bench.tools import embed as embed_module
    from bench.tools.embed import SECONDS, EmbeddingCache, FileEmbedding, write_outputs

    def outputs(widths, identity, kill=False):
        cache = EmbeddingCache(tmp_path / "cache", identity)
        arrays = {layer: np.ones((2, dims), np.float32) for layer, dims in widths.items()}
        cache.put("audio0", {**arrays, SECONDS: np.array(6.0)})
        files = {"track.mp3": FileEmbedding.of("audio0", {**arrays, SECONDS: np.array(6.0)}, tuple(widths))}
        embedder = SimpleNamespace(layers=tuple(widths), identity=identity, folder=tmp_path, sample_rate=16000,
                                   tagger=SimpleNamespace(name=identity, patch_seconds=3.0))
        return write_outputs(tmp_path / "out", embedder, list(files), files, {}, True, cache)

    outputs({"a1": 3, "a2": 4}, "model-a")
    real = embed_module._save_npy

    def killed(path, array):
        raise KeyboardInterrupt  # SIGKILL while B's means are written

    monkeypatch.setattr(embed_module, "_save_npy", killed)
    with pytest.raises(KeyboardInterrupt):
        outputs({"b1": 5}, "model-b")
    monkeypatch.setattr(embed_module, "_save_npy", real)
    outputs({"b1": 5}, "model-b")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".npy", ".csv", ".json")) == \
        ["b1.npy", "b1.patches.npy", "embeddings.json", "index.csv"]


@pytest.mark.parametrize(("version", "expected"), [("1.8.0", (1, 8)), ("1.9.dev0", (1, 9)), ("1.8rc1", (1, 8)),
                                                   ("1.10.2", (1, 10))])
def test_the_scikit_learn_version_is_read_from_any_release_name(monkeypatch, version, expected):
    """Release, development and candidate names (PEP 440) all give (major, minor); 1.10 is newer than 1.8."""
    import sklearn

    monkeypatch.setattr(sklearn, "__version__", version)
    assert sklearn_version() == expected and (sklearn_version() >= (1, 8)) is True


def test_a_run_named_twice_is_scored_once_and_two_models_of_one_name_are_refused(finished_runs, small_dataset,
                                                                                  tmp_path, capsys):
    """A run named by its spec and by its folder was scored twice, as two seeds with a spread of ±0.00;
    a copy of a run folder beside it (same name) wrote its result over the other's file."""
    import shutil

    spec_path, results = finished_runs
    first = sorted((results / "tr" / "runs").iterdir())[0]
    task = ["--task", str(small_dataset / "hiss.csv"), "--results", str(results), "--folds", "4", "-q"]
    assert main(["transfer", str(spec_path), str(first), *task]) == 0
    assert f"bench transfer: {first}: named more than once, scored once" in capsys.readouterr().err
    with open(results / "tr" / "transfer" / "hiss" / "transfer.csv") as handle:
        assert sorted(r["seed"] for r in csv.DictReader(handle)) == ["0", "1"]
    copy = tmp_path / "copies" / first.name
    shutil.copytree(first, copy)
    assert main(["transfer", str(first), str(copy), *task]) == 2
    assert f"are both named {first.name}: their results would be one file" in capsys.readouterr().err
    renamed = tmp_path / "my_tagger"  # still that run (`bench tag` says so): its result file is the run's
    shutil.copytree(first, renamed)
    assert main(["transfer", str(first), str(renamed), *task]) == 2
    assert f"{first} and {renamed} are both named {first.name}: their results would be one file" in (
        capsys.readouterr().err)


def test_a_task_that_took_the_out_folder_meanwhile_is_not_written_over(finished_runs, small_dataset, tmp_path, capsys,
                                                                         monkeypatch):
    """Two transfers of two tasks started together into one --out: both passed the check before any work,
    and the second wrote its table and model files into the folder the first had claimed (its marker
    naming the first task): one task's result lost, and a rerun of the other refused."""
    import shutil

    from bench.tools import transfer

    spec_path, results = finished_runs
    run = sorted((results / "tr" / "runs").iterdir())[0]
    common = [str(run), "--results", str(results), "--folds", "4", "-q"]
    assert main(["transfer", *common, "--task", str(small_dataset / "hiss.csv"), "--out", str(tmp_path / "H")]) == 0
    out, real = tmp_path / "T", transfer.evaluate_model

    def claimed_meanwhile(*args, **kwargs):  # the hiss transfer beside it claims --out while this one embeds
        out.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "H" / transfer.TASK_MARKER, out / transfer.TASK_MARKER)
        return real(*args, **kwargs)

    monkeypatch.setattr(transfer, "evaluate_model", claimed_meanwhile)
    capsys.readouterr()
    assert main(["transfer", *common, "--task", str(small_dataset / "mode.csv"), "--out", str(out)]) == 2
    assert f"--out {out}: holds the transfer of {(small_dataset / 'hiss.csv').resolve()}; give each task its own " \
           "--out" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["embeddings", transfer.TASK_MARKER]  # its cache, no result


def test_an_out_folder_of_another_task_is_refused_and_other_settings_are_said_to_replace(finished_runs,
                                                                                         small_dataset, tmp_path,
                                                                                         capsys):
    """`--out T` for a second task replaced the first task's results without a word; a rerun with another
    layer replaced the model's result in its folder silently too."""
    spec_path, results = finished_runs
    run = sorted((results / "tr" / "runs").iterdir())[0]
    out = tmp_path / "T"
    common = [str(run), "--results", str(results), "--folds", "4", "-q", "--out", str(out)]
    assert main(["transfer", *common, "--task", str(small_dataset / "hiss.csv")]) == 0
    before = (out / "transfer.csv").read_bytes()
    assert main(["transfer", *common, "--task", str(small_dataset / "mode.csv")]) == 2
    assert f"--out {out}: holds the transfer of {(small_dataset / 'hiss.csv').resolve()}; give each task its own " \
           "--out" in capsys.readouterr().err
    assert (out / "transfer.csv").read_bytes() == before
    assert main(["transfer", *[a if a != "4" else "3" for a in common], "--task", str(small_dataset / "hiss.csv")]) == 0
    assert (f"bench transfer: {run.name}: its result in {out}, scored with folds 4 (now 3), is replaced (a separate "
            "--out keeps both)") in capsys.readouterr().err


def test_two_manifests_of_one_name_claimed_at_once_take_separate_folders(finished_runs, small_dataset, tmp_path,
                                                                         capsys, monkeypatch):
    """Two transfers started together on a/task.csv and b/task.csv both chose the folder `task` (each saw
    it free) and wrote each other's results there. The folder is claimed again under a lock when the
    first result is written: the second finds it taken and uses its own."""
    import shutil

    from bench.tools import transfer

    spec_path, results = finished_runs
    run = sorted((results / "tr" / "runs").iterdir())[0]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(small_dataset / "hiss.csv", tmp_path / name / "task.csv")
    text = (small_dataset / "hiss.csv").read_text()  # its audio paths, absolute: the copies name the same files
    rows = list(csv.DictReader(text.splitlines()))
    for name in ("a", "b"):
        write_rows(tmp_path / name / "task.csv", list(rows[0]),
                   [[str((small_dataset / r["path"]).resolve()) if k == "path" else r[k] for k in rows[0]]
                    for r in rows])
    real = transfer.evaluate_model

    def meanwhile(*args, **kwargs):  # b's transfer claims the folder while a's scores its model
        monkeypatch.setattr(transfer, "evaluate_model", real)
        assert main(["transfer", str(run), "--task", str(tmp_path / "b" / "task.csv"), "--results", str(results),
                     "--folds", "4", "-q"]) == 0
        return real(*args, **kwargs)

    monkeypatch.setattr(transfer, "evaluate_model", meanwhile)
    assert main(["transfer", str(run), "--task", str(tmp_path / "a" / "task.csv"), "--results", str(results),
                 "--folds", "4", "-q"]) == 0
    folders = {json.loads((f / "task.manifest.json").read_text())["manifest"]: f
               for f in (results / "tr" / "transfer").iterdir()}
    assert set(folders) == {str((tmp_path / n / "task.csv").resolve()) for n in ("a", "b")}
    assert folders[str((tmp_path / "b" / "task.csv").resolve())].name == "task"
    assert folders[str((tmp_path / "a" / "task.csv").resolve())].name.startswith("task-")
    assert "was taken meanwhile by another manifest named task" in capsys.readouterr().out


def test_an_imported_model_named_by_its_name_and_by_its_folder_is_scored_once(tmp_path, monkeypatch):
    """`MTT_musicnn` and `models/MTT_musicnn` are one model: it was refused as two models of one name."""
    from bench.tools.transfer import resolve_targets

    folder = tmp_path / "models" / "MTT_musicnn"  # where `bench import musicnn --models models` writes it
    folder.mkdir(parents=True)
    (folder / "model.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    refs, notes = resolve_targets(["MTT_musicnn", "models/MTT_musicnn"], "results", str(tmp_path / "models"))
    assert [r.model for r in refs] == ["MTT_musicnn"] and notes == ["models/MTT_musicnn: named more than once, "
                                                                    "scored once"]


def test_embedding_a_file_that_is_not_audio_prints_none_of_the_decoders_notes(tmp_path, capfd):
    """`bench embed` and `bench transfer` let libmpg123's "Note: Illegal Audio-MPEG-Header" lines through
    to stderr before their one line about a text file named .mp3; `bench tag` did not."""
    from bench.data.audio import BadAudio
    from bench.tools import embed

    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all " * 10)
    with pytest.raises(BadAudio, match="undecodable"):
        embed.decode(str(bad), 16000)
    assert capfd.readouterr().err == ""


def test_a_model_retrained_in_its_folder_is_embedded_again_not_served_from_the_cache(tmp_path):
    """An exported model's folder whose weights.pt is replaced (retrained, model.json unchanged): its
    embeddings are computed again with the new weights, not read from the cache of the old ones."""
    from bench.tools.embed import embed_files, load_embedder

    from .test_export import untrained_model

    _, folder = untrained_model(tmp_path / "model", "vgg", 251)
    t = np.arange(5 * 16000) / 16000
    sf.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)

    def means():
        done, failed = embed_files(load_embedder(str(folder)), [str(tmp_path / "a.wav")], tmp_path / "cache")
        assert not failed
        return done[str(tmp_path / "a.wav")].means

    before = means()
    weights = torch.load(folder / "weights.pt")
    torch.save({k: 2 * v if v.is_floating_point() else v for k, v in weights.items()}, folder / "weights.pt")
    after = means()
    assert before.keys() == after.keys()
    assert not any(np.array_equal(before[layer], after[layer]) for layer in before)


def test_weights_that_give_nan_stop_embed_and_tag_in_one_line(tmp_path, capsys):
    """Weights whose BatchNorm variance is negative (a damaged or hand-edited file that loads) gave NaN:
    `bench embed` wrote NaN embeddings and `bench tag` printed "(nan)" scores, both exit 0, and
    `bench transfer` ended in scikit-learn's traceback. The network is at fault, so the command stops."""
    from .test_export import untrained_model

    _, folder = untrained_model(tmp_path / "model", "vgg", 251)
    weights = torch.load(folder / "weights.pt")
    torch.save({k: -v if k.endswith("running_var") else v for k, v in weights.items()}, folder / "weights.pt")
    t = np.arange(5 * 16000) / 16000
    sf.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    for command, what in ((["embed", str(folder), str(tmp_path / "a.wav"), "--out", str(tmp_path / "e"), "-q"],
                           "pool4 embeddings"), (["tag", str(tmp_path / "a.wav"), "--model", str(folder)], "scores")):
        assert main(command) == 2
        assert capsys.readouterr().err == (f"bench {command[0]}: error: {folder}: its network gives {what} that are "
                                           f"not finite (NaN or infinite) for {tmp_path / 'a.wav'}: its weights are "
                                           "damaged\n")
    assert not (tmp_path / "e" / "pool4.npy").exists()


def test_embedding_cache_entries_not_as_written_are_computed_again_or_named(tmp_path):
    """An entry that loads but holds NaN, or patches of another count per layer, is computed again; one of
    another size (not this model's: written by hand) is named, where stacking the files failed."""
    from bench.tools.embed import EmbeddingCache, embed_files, file_identity, load_embedder

    from .test_export import untrained_model

    _, folder = untrained_model(tmp_path / "model", "musicnn-787k", 187)  # several layers: their counts compared
    t = np.arange(10 * 16000) / 16000  # 3 patches of 187 frames
    paths = []
    for n in range(2):
        paths.append(str(tmp_path / f"{n}.wav"))
        sf.write(paths[-1], (0.3 * np.sin(2 * np.pi * 220 * (n + 1) * t)).astype(np.float32), 16000)
    embedder = load_embedder(str(folder))
    done, _ = embed_files(embedder, paths, tmp_path / "cache")
    cache, identity = EmbeddingCache(tmp_path / "cache", embedder.identity), file_identity(paths[1])
    entry = cache.get(identity, embedder.layers)
    layer = embedder.layers[0]
    assert len(embedder.layers) > 1 and len(entry[layer]) > 1
    for damaged in ({**entry, layer: np.full_like(entry[layer], np.nan)}, {**entry, layer: entry[layer][:1]},
                    *({**entry, "__seconds__": np.array(seconds)} for seconds in (-5.0, 0.0, 1e305))):
        cache.put(identity, damaged)
        again, _ = embed_files(embedder, paths, tmp_path / "cache")
        assert again[paths[1]].patches == done[paths[1]].patches
        np.testing.assert_allclose(again[paths[1]].means[layer], done[paths[1]].means[layer], rtol=1e-5,
                                   atol=1e-6)  # computed alone now, in a batch of two before
    cache.put(identity, {**entry, layer: entry[layer][:, :3]})
    with pytest.raises(UserError, match=rf"^.*\.npz: {layer} of 3 values, where this model's other entries hold "):
        embed_files(embedder, paths, tmp_path / "cache")


def test_a_one_layer_models_cache_entry_of_another_patch_count_is_computed_again(tmp_path):
    """VGG names one embedding layer, so no other layer's count can disagree: an entry holding its
    patches twice was served (wrong `patches` in index.csv and per-patch arrays). An entry's count is
    also held to the one its file's length gives, as `Tagger.patches` cuts them."""
    import torch as _torch

    from bench.tools.embed import EmbeddingCache, embed_files, file_identity, load_embedder

    from .test_export import untrained_model

    _, folder = untrained_model(tmp_path / "model", "vgg", 251)
    embedder = load_embedder(str(folder))
    for samples in (8000, 64000, 64255, 64256, 160000, 4 * 64256 + 1):  # shorter than a patch, at and past it
        with _torch.inference_mode():
            assert len(embedder.tagger.patches(np.zeros(samples, np.float32))) == embedder.tagger.patch_count(samples)
    t = np.arange(10 * 16000) / 16000
    sf.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    path = str(tmp_path / "a.wav")
    done, _ = embed_files(embedder, [path], tmp_path / "cache")
    cache, identity = EmbeddingCache(tmp_path / "cache", embedder.identity), file_identity(path)
    entry = cache.get(identity, embedder.layers)
    assert embedder.layers == ("pool4",) and len(entry["pool4"]) == done[path].patches > 1
    cache.put(identity, {**entry, "pool4": np.concatenate([entry["pool4"], entry["pool4"]])})
    again, _ = embed_files(embedder, [path], tmp_path / "cache")
    assert again[path].patches == done[path].patches
    assert len(cache.get(identity, embedder.layers)["pool4"]) == done[path].patches
