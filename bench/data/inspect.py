"""`bench dataset SPEC`: what a grid will train on, read exactly as `bench grid` reads it, in seconds.

The spec's dataset goes through the same reader, split and tag options as in `bench grid`; nothing
is decoded (each audio file is only checked to exist and to be non-empty) and nothing is written,
and a synthetic dataset that is not there is reported, not generated. A folder holding only the
metadata works too: its split counts are those the metadata defines, and the missing audio is
counted as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.core.output import ESCAPE
from bench.core.text import listed, visible
from bench.data.index import SPLITS, DatasetIndex, audio_file_problem, has_roc_auc, no_roc_auc

FIRST_IDS = 5
"""Clip ids shown per exclusion reason and per kind of audio problem."""
SCORED = ("valid", "test")
"""The splits a run computes ROC-AUC on: at every epoch (valid) and at the end (test)."""


@dataclass
class DatasetReport:
    name: str
    root: str
    splits: dict[str, int]
    tags: list[str]
    positives: dict[str, dict[str, int]]
    excluded: dict[str, int]
    excluded_examples: dict[str, list[str]]
    audio: dict
    usable_positives: dict[str, dict[str, int]]
    """Per split and tag, the clips with the tag among those whose audio file was found: what a run
    scores on, where `positives` counts every clip the metadata defines."""
    warnings: list[str] = field(default_factory=list)
    regenerated: bool = False
    """A synthetic folder that is not the dataset the spec asks for: the grid generates it anew first."""
    not_generated: str | None = None
    """Why the grid cannot generate that folder (one it cannot write in, or one holding files `bench
    synth` did not write: the grid stops there), or None."""

    def scorable(self, split: str) -> list[str]:
        """The tags of `split` that have an ROC-AUC on the clips whose audio was found: some clips with the
        tag and some without."""
        clips = self.audio["usable"][split]
        return [tag for tag, n in self.usable_positives[split].items() if has_roc_auc(n, clips)]

    @property
    def blockers(self) -> list[str]:
        """Why the grid cannot run (empty: it can): a split without usable audio; a validation or test split
        without a scorable tag, where every run would fail at its first validation or at its test. For a
        folder the grid generates anew, only what stops its generating: what is there now says nothing of
        the dataset."""
        if self.regenerated:
            return [self.not_generated] if self.not_generated else []
        usable = self.audio["usable"]
        empty = [s for s in SPLITS if usable[s] == 0]
        reasons = [f"no usable audio in the {', '.join(empty)} split(s)"] if empty else []
        reasons += [no_roc_auc(s, f"{usable[s]:,} clip{'s' if usable[s] != 1 else ''} with audio")
                    for s in SCORED if usable[s] and not self.scorable(s)]
        return reasons

    @property
    def can_run(self) -> bool:
        return not self.blockers

    def as_json(self) -> dict:
        return {"name": self.name, "root": self.root, "splits": self.splits, "tags": self.tags,
                "positives": self.positives, "excluded": self.excluded, "excluded_examples": self.excluded_examples,
                "usable_positives": self.usable_positives, "audio": self.audio, "warnings": self.warnings,
                "can_run": self.can_run, "blockers": self.blockers}


def describe(index: DatasetIndex) -> DatasetReport:
    """The report of an index read with `check_audio=False` (every clip the metadata defines)."""
    targets = index.targets()
    split_of = [c.split for c in index.clips]
    positives = {s: {tag: 0 for tag in index.tag_names} for s in SPLITS}
    for row, split in zip(targets, split_of, strict=True):
        for i in row.nonzero()[0]:
            positives[split][index.tag_names[i]] += 1
    excluded: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    for clip_id, reason in index.excluded:
        excluded[reason] = excluded.get(reason, 0) + 1
        if len(examples.setdefault(reason, [])) < FIRST_IDS:
            examples[reason].append(clip_id)
    problems: dict[str, dict[str, int]] = {}
    problem_examples: dict[str, list[str]] = {}
    usable = {s: 0 for s in SPLITS}
    usable_positives = {s: {tag: 0 for tag in index.tag_names} for s in SPLITS}
    for clip in index.clips:
        problem = audio_file_problem(clip.path)
        if problem is None:
            usable[clip.split] += 1
            for i in clip.labels:
                usable_positives[clip.split][index.tag_names[i]] += 1
            continue
        problems.setdefault(problem, {s: 0 for s in SPLITS})[clip.split] += 1
        if len(problem_examples.setdefault(problem, [])) < FIRST_IDS:
            problem_examples[problem].append(clip.clip_id)
    splits = index.counts()
    warnings = list(index.notes) + [f"the {s} split is empty" for s in SPLITS if splits[s] == 0]
    warnings += [f"the {s} split has no audio yet ({splits[s]} clips defined)" for s in SPLITS
                 if splits[s] and not usable[s]]
    for s in SPLITS:
        if splits[s]:
            warnings += _one_sided(positives[s], splits[s], s)
        if 0 < usable[s] < splits[s]:  # what the missing audio takes away: the clips a run scores on
            warnings += [f"{w} (of its clips with audio)"
                         for w in _one_sided(usable_positives[s], usable[s], s, positives[s], splits[s])]
    audio = {"checked": len(index.clips), "usable": usable, "problems": problems, "examples": problem_examples}
    return DatasetReport(name=index.name, root=index.root, splits=splits, tags=list(index.tag_names),
                         positives=positives, excluded=excluded, excluded_examples=examples, audio=audio,
                         usable_positives=usable_positives, warnings=warnings)


def _one_sided(positives: dict[str, int], clips: int, split: str, besides: dict[str, int] | None = None,
               besides_clips: int = 0) -> list[str]:
    """Warnings for the tags of `split` with no positive, and with no negative, among its `clips` clips
    (`positives`: clips per tag); with `besides`, only tags that have one among `besides_clips` clips."""
    warnings = []
    for kind, lacking in (("positive", lambda n, total: n == 0), ("negative", lambda n, total: n == total)):
        tags = [tag for tag, n in positives.items()
                if lacking(n, clips) and (besides is None or not lacking(besides[tag], besides_clips))]
        if tags:
            warnings.append(f"{len(tags)} tag(s) with no {kind} in {split}: {listed(map(visible, tags[:FIRST_IDS]))}"
                            + (", ..." if len(tags) > FIRST_IDS else ""))
    return warnings


def _shown(tag: str, encoding: str | None) -> str:
    text = visible(tag)
    return text if encoding is None else text.encode(encoding, ESCAPE).decode(encoding)


def format_report(report: DatasetReport, encoding: str | None = None) -> str:
    """The report as `bench dataset` prints it, in `encoding` (stdout's): a tag it cannot hold shown as
    stdout would escape it (`caf\\xe9` in ASCII), so that the per-tag table's columns line up."""
    s = report.splits
    lines = [f"dataset {report.name} at {report.root}",
             f"clips (as the metadata defines them): train {s['train']:,}, valid {s['valid']:,}, test {s['test']:,} "
             f"(total {sum(s.values()):,})",
             f"audio: {report.audio['checked']:,} files checked (existence and size, nothing decoded); usable: "
             + ", ".join(f"{k} {v:,}" for k, v in report.audio["usable"].items())]
    for problem, per_split in report.audio["problems"].items():
        total = sum(per_split.values())
        lines.append(f"  {total:,} {problem} ({', '.join(f'{k} {v:,}' for k, v in per_split.items())}), e.g. "
                     + listed(report.audio["examples"][problem]))
    shown = {tag: _shown(tag, encoding) for tag in report.tags}  # a manifest's tag text, escape sequences shown
    lines.append(f"tags ({len(report.tags)}, in the model's output order): " + listed(list(shown.values())))
    width = max([len(t) for t in shown.values()] + [3])
    lines.append(f"positives per tag: {'tag':{width}s} {'train':>7s} {'valid':>7s} {'test':>7s}")
    for tag in report.tags:
        counts = [report.positives[split][tag] for split in SPLITS]
        lines.append(f"                   {shown[tag]:{width}s} {counts[0]:7,d} {counts[1]:7,d} {counts[2]:7,d}")
    if report.excluded:
        lines.append("excluded by the reader:")
        for reason, n in sorted(report.excluded.items(), key=lambda r: -r[1]):
            lines.append(f"  {n:,} {reason}, e.g. {listed(report.excluded_examples[reason])}")
    else:
        lines.append("excluded by the reader: none")
    lines.append("warnings: " + ("none" if not report.warnings else ""))
    lines += [f"  {w}" for w in report.warnings]
    return "\n".join(lines)


def inspect_spec(spec, data: str | None) -> DatasetReport:
    """Read `spec`'s dataset as `bench grid` would (same reader and options), without decoding."""
    from bench.data.datasets import dataset_option, dataset_root, load_index, synthetic_is_current
    from bench.data.mtat import ANNOTATIONS

    root = dataset_root(spec.dataset, data, spec.path)
    if spec.dataset.name == "synthetic" and not spec.dataset.split_file and not (Path(root) / ANNOTATIONS).is_file() \
            and not Path(root).is_file():  # not there, or a folder without it (empty, or a generation stopped early)
        report = planned_synthetic(spec.dataset, Path(root))
    else:
        index = load_index(spec.dataset, Path(root), generate=False, progress=False, check_audio=False)
        report = describe(index)
        if spec.dataset.name == "synthetic" and not synthetic_is_current(Path(root), spec.dataset):
            report.regenerated = True
            report.warnings.insert(0, "not the complete synthetic dataset the spec asks for (other clips, seed or "
                                      "clip_seconds, an older generator, or files missing): `bench grid` generates "
                                      "it first; this report describes what is there now")
    if report.regenerated:  # as the grid checks the folder before generating (`bench grid --dry-run` says it too)
        report.not_generated = generation_blocked(Path(root), dataset_option(data, spec.path))
    return report


def generation_blocked(root: Path, option: str) -> str | None:
    """Why the synthetic dataset cannot be generated at `root` (`option` names where it was given), or None."""
    from bench.core.errors import UserError, one_line
    from bench.core.paths import writable_folder
    from bench.data.synthetic import generation_problem

    try:
        writable_folder(root, option)
    except UserError as exc:
        return one_line(exc)
    return generation_problem(root)


def planned_synthetic(dataset, root: Path) -> DatasetReport:
    """The report of a synthetic dataset not generated yet, read from its generator's plan: the clips,
    splits and tags that `bench grid` will generate at `root` (their annotations, read by the same
    reader in a temporary folder; no audio exists yet)."""
    import tempfile

    from bench.data.datasets import SYNTHETIC_DEFAULT_CLIPS, load_index
    from bench.data.synthetic import ANNOTATIONS, annotations_text, plan_clips

    clips = dataset.clips or SYNTHETIC_DEFAULT_CLIPS
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as planned:
        (Path(planned) / ANNOTATIONS).write_text(annotations_text(plan_clips(clips, dataset.seed)), encoding="utf-8")
        report = describe(load_index(dataset, Path(planned), generate=False, progress=False, check_audio=False))
    report.root, report.regenerated = str(root), True
    report.warnings.insert(0, f"not generated yet: described from its generator's plan ({clips} clips, seed "
                              f"{dataset.seed}); `bench grid` and `bench prepare` generate it first"
                              + (" (the folder holds no annotations yet: empty, or a generation stopped early)"
                                 if root.is_dir() else ""))
    return report
