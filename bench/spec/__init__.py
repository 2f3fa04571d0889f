"""Grid specs: TOML files -> frozen, validated dataclasses -> a de-duplicated list of runs.

A spec is validated completely before anything runs. Every problem raises `SpecError`, whose
message names the file, the field (e.g. `grid[1].n_mels`) and the offending value.

Format (see README.md and specs/*.toml)::

    name = "paper-mtat-vgg"
    seeds = [0, 1, 2]

    [dataset]            # which data, and how clips are cut
    name = "mtat"

    [arch.vgg]           # per-architecture options (architectures/options.py)
    width = 1.0

    [protocol]           # training protocol (Protocol below)
    max_epochs = 100

    [[grid]]             # axes expand as a cartesian product; blocks are unioned
    arch = ["vgg"]
    sample_rate = [12000, 16000]
    n_mels = [128, 96, 48]
    hop_multiplier = [1, 2, 3, 4, 5, 10]
    log = ["log", "dB"]
    width = [1.0, 0.5]   # optional: overrides [arch.<name>].width for this block's configurations
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import hashlib
import itertools
import json
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import architectures
from bench.core import framing, paths
from bench.core.errors import SpecError
from bench.core.layout import format_run_id
from bench.data.config import JAMENDO_TAGS, DatasetSpec
from bench.data.known import lowest_source_rate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOG_TYPES = ("log", "dB")
"""`log` = log10(1 + 10000 x) (the paper writes log(1 + 10000 x); its authors' code takes log10, and the
input BatchNorm cancels the base); `dB` = 10 log10(max(x, 1e-10))."""

DATASETS = ("mtat", "msd", "manifest", "synthetic", "jamendo")
MTAT_SPLITS = ("folders", "won")
JAMENDO_SUBSETS = ("top50tags", "genre", "instrument", "moodtheme", "all")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
MAX_N_MELS = framing.N_FFT // 2 + 1
MAX_SEED = 2**32 - 1
"""numpy's seed range; torch and the synthetic generator accept it too."""
LIMITS: dict[str, tuple[float, float]] = {
    # field: (smallest, largest) allowed; the upper bounds keep a typo (an extra zero or three) from
    # starting a grid no machine can hold, and are far above anything the paper's study needs
    "dataset.clip_seconds": (1.0, 3600.0),  # decoding skips files shorter than 1 s
    "dataset.n_tags": (1, 10_000),
    "dataset.clips": (1, 10_000_000),
    "dataset.seed": (0, MAX_SEED),
    "protocol.batch_size": (1, 65_536),
    "protocol.max_epochs": (1, 100_000),
    "protocol.patience": (1, 100_000),
    "protocol.lr_patience": (1, 100_000),
    "protocol.lr": (1e-12, 10.0),
    "protocol.weight_decay": (0.0, 10.0),
    "sample_rate": (1000, 192_000),
    "n_mels": (1, MAX_N_MELS),
    "hop_multiplier": (1, 100),
    "seed": (0, MAX_SEED),
}
USUAL: dict[str, tuple[float, float]] = {
    # field: the range of published tagging work; outside it a spec is valid but probably a typo
    # (sample_rate = [1200] for 12000) and `bench plan` / `bench grid` say so
    "sample_rate": (8000, 48_000),
    "dataset.clip_seconds": (3.0, 60.0),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME = 100
"""Characters of a spec's name: it names the results folder, and a file name has at most 255 bytes."""


@dataclass(frozen=True)
class MelConfig:
    """One mel-spectrogram configuration of the grid (one row of the paper's Table II)."""

    sample_rate: int
    n_mels: int
    hop_multiplier: int
    log: str

    @property
    def hop_length(self) -> int:
        return framing.hop_length(self.hop_multiplier)

    def n_frames(self, clip_seconds: float) -> int:
        return framing.n_frames(clip_seconds, self.sample_rate, self.hop_multiplier)

    def input_config(self, clip_seconds: float) -> architectures.InputConfig:
        """What a network is built for: this mel configuration of a `clip_seconds` clip."""
        return architectures.InputConfig(self.sample_rate, self.n_mels, self.hop_multiplier,
                                         self.n_frames(clip_seconds))


@dataclass(frozen=True)
class Protocol:
    """Training protocol (docs/running.md). The paper fixes Adam, lr 1e-3 and binary cross-entropy; batch,
    epoch budget, early stopping and the plateau schedule are the suite's defaults (docs/specs.md)."""

    batch_size: int = 32
    lr: float = 1e-3
    max_epochs: int = 100
    patience: int = 10
    """Stop after this many epochs without a better validation ROC-AUC."""
    lr_patience: int = 3
    """Multiply the learning rate by `lr_factor` after this many epochs without improvement."""
    lr_factor: float = 0.5
    weight_decay: float = 0.0
    precision: str = "auto"
    """Autocast dtype: "auto" (bf16 where the device supports it), "bf16", "fp16" (with loss scaling) or "fp32"."""


@dataclass(frozen=True)
class GridBlock:
    arch: tuple[str, ...]
    sample_rate: tuple[int, ...]
    n_mels: tuple[int, ...]
    hop_multiplier: tuple[int, ...]
    log: tuple[str, ...]
    width: tuple[float, ...] | None = None
    """Width multipliers for every architecture of the block; None: each `[arch.<name>].width`."""

    def options(self, arch: str, base: Any) -> list[Any]:
        """`arch`'s options for each width of this block (`base`, the spec's `[arch.<name>]`, if none)."""
        if self.width is None:
            return [base]
        return [dataclasses.replace(base, width=w) for w in self.width]


OPTIONAL_AXES = ("width",)
"""Grid axes a block may leave out (the other axes are required in every block)."""


@dataclass(frozen=True)
class Configuration:
    """An architecture applied to one mel configuration (seeds not yet expanded)."""

    arch: str
    mel: MelConfig
    options: Any
    """The architecture's options dataclass, as given in the spec's `[arch.<name>]` table, with the
    grid block's width where the block has a width axis."""

    @property
    def cost_key(self) -> tuple:
        """What the network's cost (time per step, memory) depends on: architecture, options (width),
        sample rate, mel bands and hop. Seeds and log compression change none of it."""
        m = self.mel
        return self.arch, self.options, m.sample_rate, m.n_mels, m.hop_multiplier


@dataclass(frozen=True)
class RunSpec:
    """One training run: its content is its identity (`run_id`)."""

    configuration: Configuration
    seed: int
    dataset: DatasetSpec
    protocol: Protocol

    @property
    def arch(self) -> str:
        return self.configuration.arch

    @property
    def mel(self) -> MelConfig:
        return self.configuration.mel

    def canonical(self) -> dict[str, Any]:
        """Everything that determines the run's outcome, as plain JSON-able data."""
        canonical = {
            "arch": self.arch,
            "options": dataclasses.asdict(self.configuration.options),
            **dataclasses.asdict(self.mel),
            "seed": self.seed,
            "dataset": self.dataset.identity(),
            "protocol": dataclasses.asdict(self.protocol),
        }
        if padding := self.pool_padding():
            canonical["pool_padding"] = padding
        return canonical

    def pool_padding(self) -> dict[str, list[int]] | None:
        """The padding a VGG-CNN's rule-planned pools put at the end of their inputs, where they have any
        (`architectures.planning`): such networks see all of their input, where those planned before the
        rule padded dropped the remainders, so their runs are other runs. None elsewhere: an id that
        does not depend on it stays as it was."""
        return architectures.pool_padding(self.arch, self.mel.input_config(self.dataset.clip_seconds),
                                          **dataclasses.asdict(self.configuration.options))

    @property
    def run_id(self) -> str:
        """Readable prefix plus a hash of the canonical config: stable across machines."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        m = self.mel
        return format_run_id(self.arch, m.sample_rate, m.n_mels, m.hop_multiplier, m.log, self.seed,
                             hashlib.sha256(text.encode()).hexdigest())


@dataclass(frozen=True)
class Spec:
    name: str
    path: str
    dataset: DatasetSpec
    seeds: tuple[int, ...]
    protocol: Protocol
    arch_options: dict[str, Any] = field(hash=False)
    grid: tuple[GridBlock, ...]
    description: str = ""

    def configurations(self) -> list[Configuration]:
        """Cartesian product per grid block, unioned across blocks in first-seen order."""
        seen: dict[tuple, Configuration] = {}
        for block in self.grid:
            for arch in block.arch:
                for sr, n_mels, hop, log, options in itertools.product(  # width varies fastest
                    block.sample_rate, block.n_mels, block.hop_multiplier, block.log,
                    block.options(arch, self.arch_options[arch]),
                ):
                    key = (arch, options, sr, n_mels, hop, log)  # options hold the width
                    if key not in seen:
                        mel = MelConfig(sample_rate=sr, n_mels=n_mels, hop_multiplier=hop, log=log)
                        seen[key] = Configuration(arch=arch, mel=mel, options=options)
        return list(seen.values())

    def runs(self) -> list[RunSpec]:
        """Every (configuration, seed) pair, configurations first."""
        return [
            RunSpec(configuration=c, seed=s, dataset=self.dataset, protocol=self.protocol)
            for c in self.configurations()
            for s in self.seeds
        ]

    def runs_fingerprint(self) -> str:
        """12 hex digits naming the set of this spec's runs (their ids: configurations, seeds, dataset
        and protocol): what a measurement of the whole grid, such as `bench perf`'s projection, was of."""
        return hashlib.sha256("\n".join(sorted(r.run_id for r in self.runs())).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Loading and validation


def shipped_spec(name: str) -> Path:
    """specs/<name> of the checkout this code runs from (`paths.CODE_ROOT`), else of the working
    directory: an installed copy ships no specs/ (they are the clone's files, which users edit and copy),
    so a command that defaults to one (`bench perf`, gpu-check's timings) is run from a clone or given a
    SPEC. A SpecError where neither has it."""
    beside = paths.CODE_ROOT / "specs" / name
    if beside.is_file():
        return beside
    here = Path("specs") / name
    if not here.is_file():
        raise SpecError(here, "", "spec file not found (the specs are a clone's files: run from a clone of the "
                                  "suite, or name a spec file)")
    return here


def key_text(key: str) -> str:
    """A TOML key as a field's name shows it: a bare key as written, any other quoted (`''`, an escape
    sequence shown, not acted on by the terminal)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else repr(key)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file; raises SpecError naming file, field and value."""
    path = Path(path)
    try:
        is_file = path.is_file()
    except OSError as exc:  # a name longer than the file system takes
        if exc.errno != errno.ENAMETOOLONG:
            raise
        raise SpecError(path, "", exc.strerror) from None
    if not is_file:
        raise SpecError(path, "", "spec file not found" if not path.exists() else
                        "a folder, not a spec file (.toml)" if path.is_dir() else "not a file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # -sig: an editor's byte-order mark
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(path, "", f"not valid TOML ({exc})") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise SpecError(path, "", "not valid TOML (arrays or tables nested too deeply to read)") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1  # the bytes decoded: after a byte-order mark
        raise SpecError(path, "", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at line {line}); save "
                        "it as UTF-8") from None
    except PermissionError as exc:  # an input: nothing is written here
        raise SpecError(path, "", f"cannot read it ({exc.strerror}); make it readable") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4,300), which no field takes
        raise SpecError(path, "", f"not valid TOML here ({str(exc).split(';')[0]})") from None
    return parse_spec(raw, path)


def parse_spec(raw: dict[str, Any], path: str | Path = "<spec>") -> Spec:
    """Validate an already-parsed TOML document."""
    v = _Validator(str(path))
    v.check_keys(raw, {"name", "description", "seeds", "dataset", "arch", "protocol", "grid"}, "")

    name = v.require(raw, "name", str, "")
    if not _NAME_RE.fullmatch(name):
        v.fail("name", name, "must be ASCII letters, digits, '.', '_' or '-', starting with a letter or digit (it "
               "names the results folder)")
    if len(name) > MAX_NAME:
        v.fail("name", f"{name[:20]}...", f"is {len(name)} characters long; at most {MAX_NAME} (it names the "
               "results folder)")
    description = v.typed(raw.get("description", ""), str, "description")

    seeds = tuple(v.list_of(raw.get("seeds", [0, 1, 2]), int, "seeds"))
    if not seeds:
        v.fail("seeds", [], "needs at least one seed")
    if len(set(seeds)) != len(seeds):
        v.fail("seeds", list(seeds), "has duplicates")
    for seed, named in zip(seeds, _item_names(raw.get("seeds", [0, 1, 2]), "seeds"), strict=True):
        v.within(seed, "seed", named)

    dataset = v.dataclass_from(DatasetSpec, v.require(raw, "dataset", dict, ""), "dataset")
    if dataset.name not in DATASETS:
        v.fail("dataset.name", dataset.name, f"must be one of {', '.join(DATASETS)}")
    for name_ in ("clip_seconds", "n_tags", "clips", "seed"):
        if getattr(dataset, name_) is not None:
            v.within(getattr(dataset, name_), f"dataset.{name_}")
    for name_, what in (("clips", "the number of clips it generates"), ("seed", "its generator's seed")):
        written = name_ in raw["dataset"] and getattr(dataset, name_) != DatasetSpec.__dataclass_fields__[name_].default
        if written and dataset.name != "synthetic":  # it would change every run_id, nothing else
            v.fail(f"dataset.{name_}", getattr(dataset, name_), f"is for the synthetic dataset only ({what})")
    for name_ in ("path", "split_file"):  # TOML's \u0000 can write one; the OS refuses it in any file name
        if isinstance(getattr(dataset, name_), str) and "\0" in getattr(dataset, name_):
            v.fail(f"dataset.{name_}", getattr(dataset, name_), "holds a NUL character, which no file name can")
    if dataset.split_file is not None and not str(dataset.split_file).strip():
        v.fail("dataset.split_file", dataset.split_file, "is empty; leave it out for the dataset's own split")
    if dataset.split == "won" and dataset.split_file:
        v.fail("dataset.split", dataset.split, "and dataset.split_file are alternatives: give one (to leave "
               "untagged clips out of a split file's lists, set dataset.drop_untagged = true)")
    if dataset.split not in MTAT_SPLITS:
        v.fail("dataset.split", dataset.split, f"must be one of {', '.join(MTAT_SPLITS)} (or set dataset.split_file)")
    if dataset.split != "folders" and dataset.name not in ("mtat", "synthetic"):
        v.fail("dataset.split", dataset.split, f"is for MTAT-format datasets only ({dataset.name} has its own split)")
    if dataset.split_file and dataset.name not in ("mtat", "synthetic", "jamendo"):
        v.fail("dataset.split_file", dataset.split_file,
               f"is for MTAT-format datasets and jamendo only ({dataset.name} has its own split files)")
    if dataset.subset is not None and (dataset.name != "jamendo" or dataset.subset not in JAMENDO_SUBSETS):
        v.fail("dataset.subset", dataset.subset, f"is for jamendo only, one of {', '.join(JAMENDO_SUBSETS)}")
    if dataset.drops_untagged and dataset.n_tags == 1:
        v.fail("dataset.n_tags", 1, f"with {_dropping(dataset)} keeps only the clips that carry the one tag: no "
               "split would hold a negative clip to score")
    if dataset.name == "synthetic" and not dataset.split_file:
        v.scorable_synthetic(dataset)
    if dataset.name == "jamendo" and "n_tags" not in raw["dataset"]:  # the task: all the subset's tags
        dataset = dataclasses.replace(dataset, n_tags=JAMENDO_TAGS[dataset.subset or "top50tags"])

    protocol = v.dataclass_from(Protocol, v.typed(raw.get("protocol", {}), dict, "protocol"), "protocol")
    for name_ in ("batch_size", "max_epochs", "patience", "lr_patience", "lr", "weight_decay"):
        v.within(getattr(protocol, name_), f"protocol.{name_}")
    if not 0 < protocol.lr_factor < 1:  # torch's ReduceLROnPlateau refuses 1
        v.fail("protocol.lr_factor", protocol.lr_factor, "must be in (0, 1) (for a learning rate that never "
               "changes, set lr_patience above max_epochs)")
    if protocol.precision not in PRECISIONS:
        v.fail("protocol.precision", protocol.precision, f"must be one of {', '.join(PRECISIONS)}")

    arch_tables = v.typed(raw.get("arch", {}), dict, "arch")
    for arch_name in arch_tables:
        v.known_arch(arch_name, f"arch.{key_text(arch_name)}")

    blocks_raw = v.require(raw, "grid", list, "")
    if not blocks_raw:
        v.fail("grid", [], "needs at least one [[grid]] block")
    blocks = tuple(v.grid_block(b, f"grid[{i}]") for i, b in enumerate(blocks_raw))

    arch_options = {}
    for arch_name in sorted({a for b in blocks for a in b.arch} | set(arch_tables)):
        where = f"arch.{arch_name}"
        table = v.typed(arch_tables.get(arch_name, {}), dict, where)
        options = v.dataclass_from(architectures.get(arch_name).options, table, where)
        for field_name, value, problem in options.validate():
            v.fail(f"{where}.{field_name}", value, problem)
        arch_options[arch_name] = options

    spec = Spec(
        name=name, path=str(path), dataset=dataset, seeds=seeds, protocol=protocol,
        arch_options=arch_options, grid=blocks, description=description,
    )
    v.plannable(spec)
    return spec


def format_limit(x: float) -> str:
    """A limit as written: integers in full (a seed's 4294967295, not 4.29497e+09)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class _Validator:
    """Type and range checks that raise SpecError for one file."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, field_name: str, value: Any, problem: str):
        raise SpecError(self.path, field_name, f"{value!r} {problem}")

    def within(self, value: float, limit: str, field_name: str | None = None):
        """`value` within LIMITS[limit] (named `field_name` in the message, default `limit`)."""
        low, high = LIMITS[limit]
        if not low <= value <= high:
            self.fail(field_name or limit, value, f"must be between {format_limit(low)} and {format_limit(high)}")

    def plannable(self, spec: Spec):
        """Every configuration has frames and an architecture plan (pure arithmetic, no torch)."""
        for c in spec.configurations():
            m = c.mel
            try:
                plan = architectures.plan(c.arch, m.input_config(spec.dataset.clip_seconds),
                                          **dataclasses.asdict(c.options))
            except (ValueError, ArithmeticError, AssertionError) as exc:
                raise SpecError(self.path, "grid", f"{c.arch} cannot be planned for {m.sample_rate} Hz, "
                                f"{m.n_mels} mels, hop x{m.hop_multiplier}: {exc}") from None
            fewest = getattr(plan, "min_train_batch", 1)
            if spec.protocol.batch_size < fewest:
                self.fail("protocol.batch_size", spec.protocol.batch_size,
                          f"is fewer clips than {c.arch} trains on at {m.sample_rate} Hz, {m.n_mels} mels, hop "
                          f"x{m.hop_multiplier}: at least {fewest} (a BatchNorm in it normalises one value per clip "
                          "there, which a batch of one clip cannot)")

    def scorable_synthetic(self, dataset: DatasetSpec):
        """The synthetic data's valid and test folders each hold a tag with a positive and a negative
        clip, among the `n_tags` most frequent and the clips `drop_untagged` keeps, without which no
        run could be scored (pure arithmetic on the generator's clip plan, read as the MTAT reader
        reads the generated annotations)."""
        import numpy as np

        from bench.data.datasets import SYNTHETIC_DEFAULT_CLIPS
        from bench.data.index import top_tags
        from bench.data.mtat import SPLIT_OF_FOLDER
        from bench.data.synthetic.plan import TAG_NAMES, plan_clips

        def unscorable(clips: int) -> list[str]:
            plans = plan_clips(clips, dataset.seed)
            matrix = np.array([[name in p.tags for name in TAG_NAMES] for p in plans])
            matrix = matrix[:, top_tags(matrix, dataset.n_tags)]
            splits = []
            for split in ("valid", "test"):
                rows = [i for i, p in enumerate(plans) if SPLIT_OF_FOLDER[p.folder] == split
                        and (matrix[i].any() or not dataset.drops_untagged)]
                tagged = matrix[rows]
                if not (tagged.any(axis=0) & ~tagged.all(axis=0)).any():
                    splits.append(split)
            return splits

        clips = dataset.clips or SYNTHETIC_DEFAULT_CLIPS
        if clips > 1000:  # over 60 clips in every folder: every split holds scorable tags
            return
        if splits := unscorable(clips):
            enough = next((n for n in range(clips + 1, 1001) if not unscorable(n)), None)
            self.fail("dataset.clips", clips, f"leaves the {' and '.join(splits)} split without a tag that has both a "
                      "positive and a negative clip, so no run could be scored; "
                      + (f"at least {enough} clips (seed {dataset.seed})" if enough else
                         f"more clips would not help with n_tags = {dataset.n_tags}"
                         + (f" and {_dropping(dataset)}" if dataset.drops_untagged else "")))

    def check_keys(self, table: dict, allowed: set[str], where: str):
        for key in table:
            if key not in allowed:
                field_name = f"{where}.{key_text(key)}" if where else key_text(key)
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise SpecError(
                    self.path, field_name, f"unknown key ({hint}allowed here: {', '.join(sorted(allowed))})"
                )

    def require(self, table: dict, key: str, kind: type, where: str) -> Any:
        field_name = f"{where}.{key}" if where else key
        if key not in table:
            raise SpecError(self.path, field_name, "missing (required)")
        return self.typed(table[key], kind, field_name)

    def typed(self, value: Any, kind: Any, field_name: str) -> Any:
        """Check `value` against a type annotation; ints are accepted (and converted) for floats."""
        origin = typing.get_origin(kind)
        if origin in (typing.Union, types.UnionType):
            options = typing.get_args(kind)
            if value is None and type(None) in options:
                return None
            non_none = [o for o in options if o is not type(None)]
            return self.typed(value, non_none[0], field_name)
        if origin in (tuple, list) or kind in (tuple, list):
            return self.sequence(value, kind, field_name)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # 10**400: beyond any float, as inf is
                self.fail(field_name, value, "must be a finite number")
        if kind is int and isinstance(value, bool):
            self.fail(field_name, value, "must be an integer, not a boolean")
        if kind is int and isinstance(value, float):
            self.fail(field_name, value, "must be an integer" + (f", written without a decimal point ({int(value)}, "
                                                                 f"not {value!r})" if value.is_integer() else ""))
        if kind in (int, float, str, bool, dict, list) and not isinstance(value, kind):
            self.fail(field_name, value, f"must be {_type_word(kind)}, not {_type_word(type(value))}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(field_name, value, "must be a finite number")
        return value + 0.0 if isinstance(value, float) else value  # -0.0 is 0.0: one run id

    def sequence(self, value: Any, kind: Any, field_name: str) -> tuple:
        """A TOML list for a `tuple[...]` or `list[...]` field (an added architecture's option), each item
        checked against its type, as a tuple: options are a run's identity, so they must hash."""
        if not isinstance(value, list):
            self.fail(field_name, value, f"must be a list, not {_type_word(type(value))}")
        args = typing.get_args(kind)
        if typing.get_origin(kind) is tuple and args and args[-1] is not Ellipsis:  # tuple[int, int]: fixed length
            if len(value) != len(args):
                self.fail(field_name, value, f"must be a list of {len(args)} values, not {len(value)}")
            kinds = list(args)
        else:
            kinds = [args[0] if args else Any] * len(value)
        return tuple(item if item_kind is Any else self.typed(item, item_kind, name)
                     for item, item_kind, name in zip(value, kinds, _item_names(value, field_name), strict=True))

    def list_of(self, value: Any, kind: type, field_name: str) -> list:
        """A list of `kind`; a scalar is accepted as a one-element list."""
        values = value if isinstance(value, list) else [value]
        return [self.typed(item, kind, name) for item, name in zip(values, _item_names(value, field_name), strict=True)]

    def dataclass_from(self, cls: type, table: dict, where: str):
        known = {f.name: f for f in fields(cls)}
        self.check_keys(table, set(known), where)
        hints = typing.get_type_hints(cls)
        values = {}
        for key, value in table.items():
            values[key] = self.typed(value, hints[key], f"{where}.{key}")
        for f in known.values():
            no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if no_default and f.name not in values:
                raise SpecError(self.path, f"{where}.{f.name}", "missing (required)")
        return cls(**values)

    def known_arch(self, name: str, field_name: str):
        try:
            architectures.get(name)
        except architectures.UnknownArchitectureError as exc:
            raise SpecError(self.path, field_name, str(exc)) from None

    def grid_block(self, block: Any, where: str) -> GridBlock:
        block = self.typed(block, dict, where)
        axes = {f.name for f in fields(GridBlock)}
        self.check_keys(block, axes, where)
        for axis in sorted(axes - set(OPTIONAL_AXES)):
            if axis not in block:
                raise SpecError(self.path, f"{where}.{axis}", "missing (every grid block names all axes but width)")
        items: dict[str, list] = {}
        for axis, kind in (("arch", str), ("sample_rate", int), ("n_mels", int),
                           ("hop_multiplier", int), ("log", str), ("width", float)):
            if axis not in block:  # an optional axis left out
                continue
            items[axis] = self.list_of(block[axis], kind, f"{where}.{axis}")
            if not items[axis]:
                self.fail(f"{where}.{axis}", [], "is empty")
        # checked as written, so a message names the value's place in the file
        names = {axis: _item_names(block[axis], f"{where}.{axis}") for axis in items}
        for arch, name in zip(items["arch"], names["arch"], strict=True):
            self.known_arch(arch, name)
        for axis in ("sample_rate", "n_mels", "hop_multiplier"):
            for value, name in zip(items[axis], names[axis], strict=True):
                self.within(value, axis, name)
        for log, name in zip(items["log"], names["log"], strict=True):
            if log not in LOG_TYPES:
                self.fail(name, log, f"must be one of {', '.join(map(repr, LOG_TYPES))}")
        for width, name in zip(items.get("width", ()), names.get("width", ()), strict=True):
            self.block_width(width, items["arch"], name)
        return GridBlock(**{axis: tuple(dict.fromkeys(values)) for axis, values in items.items()})  # de-duplicated

    def block_width(self, width: float, archs: list[str], field_name: str):
        """A grid block's width is valid for each of the block's architectures (their options' `validate`)."""
        for arch in archs:
            options = architectures.get(arch).options
            if "width" not in {f.name for f in fields(options)}:
                self.fail(field_name, width, f"cannot apply: {arch} has no width option")
            for problem_field, value, problem in dataclasses.replace(options(), width=width).validate():
                if problem_field == "width":
                    self.fail(field_name, value, problem)


def _dropping(dataset: DatasetSpec) -> str:
    """What in the spec leaves untagged clips out, as the user wrote it."""
    return "drop_untagged = true" if dataset.drop_untagged else 'split = "won"'


def _item_names(value: Any, field_name: str) -> list[str]:
    """How a message names each value of a field that takes a list: `field[i]`, or the field itself for
    a value written without a list."""
    return [f"{field_name}[{i}]" for i in range(len(value))] if isinstance(value, list) else [field_name]


def _type_word(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            dict: "a table", list: "a list"}.get(kind, kind.__name__)


def _most_bands_without_empty(sample_rate: int, below: int) -> int:
    """The largest band count under `below` with no empty band (more bands only narrow them)."""
    low, high = 0, below - 1
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if not framing.empty_mel_bands(sample_rate, middle) else (low, middle - 1)
    return low


def spec_warnings(spec: Spec) -> list[str]:
    """What is valid but far outside the usual range (`USUAL`), one line each, naming the file and field."""
    warnings = []
    low, high = USUAL["sample_rate"]
    for rate in sorted({c.mel.sample_rate for c in spec.configurations()}):
        if not low <= rate <= high:
            warnings.append(f"{spec.path}: sample_rate {rate} Hz is far outside the usual {low / 1000:g}-"
                            f"{high / 1000:g} kHz of music tagging (a dropped or extra zero?)")
    for rate, n_mels in sorted({(c.mel.sample_rate, c.mel.n_mels) for c in spec.configurations()}):
        if empty := framing.empty_mel_bands(rate, n_mels):
            fine = _most_bands_without_empty(rate, n_mels)
            warnings.append(f"{spec.path}: {empty} of {n_mels} mel bands at {rate} Hz are empty (narrower than the "
                            f"{rate / framing.N_FFT:g} Hz between the FFT bins of a {framing.N_FFT}-sample frame): "
                            f"their rows are constant zero; at most {fine} bands at this rate have none")
    source = lowest_source_rate(spec.dataset.name)
    above = sorted({c.mel.sample_rate for c in spec.configurations() if source and c.mel.sample_rate > source})
    if above:
        some = "some of its files are" if spec.dataset.name == "msd" else "its files are"
        warnings.append(f"{spec.path}: sample_rate {', '.join(f'{r} Hz' for r in above)} is above the "
                        f"{source:,} Hz {some} recorded at: they are upsampled, and the mel bands above "
                        f"{source / 2:,.0f} Hz hold no audio of theirs")
    low, high = USUAL["dataset.clip_seconds"]
    seconds = spec.dataset.clip_seconds
    if not low <= seconds <= high:
        warnings.append(f"{spec.path}: dataset.clip_seconds {seconds:g} s is far outside the usual {low:g}-{high:g} s "
                        "(MagnaTagATune's clips are 29.1 s, the MSD previews 30 s)")
    return warnings
