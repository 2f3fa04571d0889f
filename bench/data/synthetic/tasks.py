"""Downstream tasks of a synthetic dataset: labels that no tag gives away, as `bench transfer` manifests.

`hiss`: whether a clip carries the steady noise band at 4.3-5.2 kHz (45 % of clips, drawn independently
of every tag). It is the `air` tag's decoy, so a tagger had to tell it apart from the tag's band at
6.3-7.2 kHz; how far its embedding still separates the two depends on its mel bands and sample rate.

`mode`: whether a clip's key is major or minor (60 % major). Every clip plays the key's chords (the
whistle's chord tones and the pad's roots play in every clip, the pitched instruments where present),
so the label is audible in every clip, but the tagging tags (instruments, tempo, register, loudness,
the resolution tags) do not say it: a tagger's embedding carries it only as far as it kept pitch
structure. Major and minor triads differ by one semitone in their third, so the task needs frequency
resolution as the `semitone` tag does.

The label is the clip's own score, drawn again from the clip's generator (the score is the first
thing `synthesize` draws), so it is exact and costs no audio.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.core.store import atomic_write_bytes, exclusive_lock
from bench.data.synthetic.files import LOCK, META
from bench.data.synthetic.plan import TASKS, ClipPlan, plan_clips  # noqa: F401 - TASKS: re-exported
from bench.data.synthetic.score import draw_score


def mode_label(plan: ClipPlan, seed: int) -> str:
    """'major' or 'minor': the key of clip `plan` of a dataset generated with `seed`."""
    rng = np.random.default_rng([seed, 1, plan.index])  # what synthesize draws its score from, first
    return draw_score(rng, plan.tags, 1, 1).mode  # length and rate only set the bar count


def hiss_label(plan: ClipPlan) -> str:
    return "hiss" if plan.air_decoy else "none"


def task_text(plans: list[ClipPlan], seed: int, task: str) -> str:
    """The manifest: `path,label` with paths relative to the dataset root, one row per clip."""
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; known: {', '.join(TASKS)}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label"])
    for p in plans:
        writer.writerow([p.mp3_path, mode_label(p, seed) if task == "mode" else hiss_label(p)])
    return buffer.getvalue()


def write_task(out_dir: str | Path, task: str, clips: int | None = None, seed: int | None = None) -> Path:
    """Write `<out_dir>/<task>.csv` for the complete synthetic dataset in out_dir; returns its path.
    Under the generator's lock: a `bench synth` replacing the dataset meanwhile removes the task files
    first, and a file written after the replacement labels the dataset there. `clips` and `seed`: the
    dataset the caller generated, refused where another has replaced it since."""
    out = Path(out_dir).expanduser()
    if not (out / META).is_file():
        if (clips, seed) != (None, None):  # this caller generated it: another `bench synth` is replacing it now
            raise UserError(f"{out}: another `bench synth` is replacing the dataset meanwhile (this one generated "
                            f"{clips} clips, seed {seed}); no {task}.csv written for it")
        raise UserError(f"{out}: not a complete synthetic dataset (no valid {META}); run `bench synth` first")
    with exclusive_lock(out / LOCK):
        try:
            meta = json.loads((out / META).read_text())
            found = int(meta["clips"]), int(meta["seed"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{out}: not a complete synthetic dataset (no valid {META}); run `bench synth` "
                            "first") from None
        if (clips, seed) not in ((None, None), found):
            raise UserError(f"{out}: another `bench synth` replaced the dataset meanwhile ({found[0]} clips, seed "
                            f"{found[1]}, where this one generated {clips} clips, seed {seed}); no {task}.csv "
                            "written for it")
        path = out / f"{task}.csv"
        atomic_write_bytes(path, task_text(plan_clips(*found), found[1], task).encode("utf-8"))
    return path
