"""From a spec's `[dataset]` table to a `DatasetIndex`: where the data is, and which reader reads it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from bench.core.errors import UserError
from bench.core.layout import SYNTHETIC_DEFAULT_CLIPS
from bench.core.paths import expanded
from bench.data.config import DatasetSpec
from bench.data.index import DatasetIndex
from bench.data.manifest import read_manifest
from bench.data.msd import read_msd
from bench.data.mtat import ANNOTATIONS, read_mtat

DEFAULT_CACHE = "cache"
"""Cache root when neither --cache nor $BENCH_CACHE is given (relative to the working directory)."""

SYNTHETIC_SAMPLE_RATE = 16000
"""The rate a grid's synthetic MP3s are written at: the highest of the paper's grids."""


def cache_root(override: str | Path | None = None) -> Path:
    return expanded(override or os.environ.get("BENCH_CACHE") or DEFAULT_CACHE, cache_option(override))


def cache_option(override: str | Path | None = None) -> str:
    """Where `cache_root` took the folder from, as an error message names it."""
    return "--cache" if override else "$BENCH_CACHE" if os.environ.get("BENCH_CACHE") else "the cache folder"


def dataset_root(dataset: DatasetSpec, override: str | Path | None, spec_path: str = "spec") -> Path:
    """`--data` wins over the spec's `dataset.path`; one of them is needed."""
    path = override or dataset.path
    if not path:
        raise UserError(f"{spec_path}: dataset.path: not set; give the dataset's location with --data DIR "
                        f"(make grid DATA=DIR)")
    return Path(path).expanduser()


def dataset_option(override: str | Path | None, spec_path: str = "spec") -> str:
    """Where the dataset's location was given (`dataset_root`'s choice), as messages name it."""
    return "--data" if override else f"{spec_path}: dataset.path"


def _synthetic_parameters(dataset: DatasetSpec) -> dict:
    return {"clips": dataset.clips or SYNTHETIC_DEFAULT_CLIPS, "seed": dataset.seed,
            "clip_seconds": dataset.clip_seconds, "sample_rate": SYNTHETIC_SAMPLE_RATE}


def ensure_synthetic(root: Path, dataset: DatasetSpec, progress: bool = True,
                     log: Callable[[str], None] | None = None) -> None:
    """Generate the synthetic dataset at `root` unless a complete one is there; `log` gets one line
    when it generated one (bars are for terminals only: a log would otherwise not know)."""
    line = generate_synthetic(root, progress=progress, **_synthetic_parameters(dataset))
    if line is not None and log is not None:
        log(line)


def generate_synthetic(root: str | Path, progress: bool = True, **wanted) -> str | None:
    """Generate the synthetic dataset `wanted` (`bench.data.synthetic.generate`'s parameters) at `root`
    unless a complete one is there; the line saying what it generated, and what it replaced (a folder
    of other clips, seed, clip length or generator, or an unfinished one), or None where it was there."""
    from bench.data.synthetic import GENERATOR_VERSION, META, generate

    try:
        before = json.loads((Path(root).expanduser() / META).read_text())
    except (OSError, ValueError):  # none there (or unreadable): nothing to say it replaced
        before = None
    made = generate(root, **wanted, progress=progress)
    if made.reused:
        return None
    now = {**wanted, "version": GENERATOR_VERSION}
    changed = [f"{key} {before.get(key)}" for key in ("clips", "seed", "clip_seconds", "sample_rate", "version")
               if key in now and before.get(key) != now[key]] if isinstance(before, dict) else []
    replaced = (f", replacing the one made with {', '.join(changed)}" if changed
                else ", completing an unfinished one" if isinstance(before, dict) else "")
    return (f"generated the synthetic dataset in {root}: {made.clips} clips of {made.clip_seconds:g} s, seed "
            f"{made.seed}, in {made.wall_seconds:.0f} s{replaced}")


def synthetic_is_current(root: Path, dataset: DatasetSpec) -> bool:
    """Whether `root` holds the complete synthetic dataset that `dataset` asks for (else a grid makes it anew)."""
    from bench.data.synthetic import is_complete

    return is_complete(root, **_synthetic_parameters(dataset))


def load_index(dataset: DatasetSpec, root: Path, generate: bool = True, progress: bool = True,
               check_audio: bool = True, log: Callable[[str], None] | None = None) -> DatasetIndex:
    """Read the dataset at `root` (generating the synthetic one first when asked and absent; `log`
    gets a line when it did). `check_audio` False keeps tracks whose audio file is missing (MSD,
    MTG-Jamendo check it while reading; MTAT and manifests leave it to the cache)."""
    if dataset.name == "synthetic":
        if generate:
            ensure_synthetic(root, dataset, progress=progress, log=log)
        elif root.exists() and not root.is_dir():
            raise UserError(f"synthetic dataset: {root} is a file, not a folder; give a folder to generate it in")
        elif not (root / ANNOTATIONS).is_file():
            raise UserError(f"synthetic dataset not found at {root}: `bench grid` and `bench prepare` generate it "
                            f"(`bench synth --out {root}` alone)")
        index = read_mtat(root, n_tags=dataset.n_tags, drop_untagged=dataset.drop_untagged, broken_ids=frozenset(),
                          split=dataset.split, split_file=split_folder(dataset, root), published_order=False)
        return DatasetIndex(name="synthetic", root=index.root, tag_names=index.tag_names, clips=index.clips,
                            excluded=index.excluded)
    if dataset.name == "mtat":
        return read_mtat(root, n_tags=dataset.n_tags, drop_untagged=dataset.drop_untagged, split=dataset.split,
                         split_file=split_folder(dataset, root))
    if dataset.name == "jamendo":
        from bench.data.jamendo import read_jamendo

        return read_jamendo(root, n_tags=dataset.n_tags, drop_untagged=dataset.drop_untagged,
                            subset=dataset.subset or "top50tags", split_folder=split_folder(dataset, root),
                            check_audio=check_audio)
    if dataset.name == "msd":
        return read_msd(root, n_tags=dataset.n_tags, drop_untagged=dataset.drop_untagged, check_audio=check_audio)
    if dataset.name == "manifest":
        return read_manifest(root, n_tags=dataset.n_tags, drop_untagged=dataset.drop_untagged)
    raise UserError(f"dataset {dataset.name!r} has no reader: dispatch to one in load_index (bench/data/datasets.py)")


def check_root(dataset: DatasetSpec, root: Path) -> None:
    """Before any work starts: the reader's own one-line error for a dataset location that is not there
    (a folder, or a manifest's CSV file); each reader checks it, and what it holds, again as it reads."""
    if dataset.name == "synthetic":  # generated where it is absent
        return
    if not (root.is_file() if dataset.name == "manifest" else root.is_dir()):
        load_index(dataset, root, generate=False, check_audio=False)  # its first check raises


def split_folder(dataset: DatasetSpec, root: Path) -> str | None:
    """`dataset.split_file`, a relative one taken from the dataset root."""
    if not dataset.split_file:
        return None
    path = Path(dataset.split_file).expanduser()
    return str(path if path.is_absolute() else root / path)
