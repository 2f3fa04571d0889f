"""Architecture registry: name -> (options dataclass, builder).

Builders are imported lazily (`module:function`), so planning a grid or validating a spec does not
import torch. Registering a name twice is an error, and so is asking for an unknown one; so is
registering an architecture whose options, planner or builder module cannot work (checked at once, not
at the first `bench plan`). The builder's function is looked up when a network is first built (the
module is not imported before): a name it does not define is a `BuilderError`, one line.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import re
from dataclasses import dataclass, fields
from typing import Any

from architectures.options import MusiCNNOptions, ReleasedOptions, VGGOptions


class UnknownArchitectureError(KeyError):
    """Raised for a name that is not registered; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class BuilderError(LookupError):
    """A registered builder that cannot work: its module cannot import a module it needs, it has no such
    function, or the network it builds lacks what every network exposes (`NETWORK_ATTRIBUTES`)."""


NETWORK_ATTRIBUTES = {"input_frames": False, "segments": False, "analytic_macs": True, "embedding_names": False,
                      "embeddings": True}
"""What a built network exposes (docs/architectures.md), name -> whether it is a method: the cost counts,
`bench plan`, `bench embed` and `bench transfer` use them, after a run has trained."""


@dataclass(frozen=True)
class InputConfig:
    """What an architecture is built for: one mel configuration of one clip length."""

    sample_rate: int
    n_mels: int
    hop_multiplier: int
    n_frames: int
    """Frames of a whole clip (VGG sees all of them; MusiCNN cuts segments from them)."""


@dataclass(frozen=True)
class Architecture:
    name: str
    options: type
    """Frozen dataclass of the architecture's spec options, all with defaults."""
    builder: str
    """`module:function` taking (input_config, n_tags, options) and returning an nn.Module."""
    description: str
    planner: str
    """`architectures.planning` function taking (sample_rate, n_mels, hop_multiplier, n_frames) and, by
    name, the options it uses (every option where it takes **options), returning the network's shape
    plan (pure integers, no torch); ValueError if it cannot be built."""


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    if arch.name in _REGISTRY:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    problem = _registration_problem(arch)
    if problem:
        raise ValueError(f"architecture {arch.name!r}: {problem}")
    _REGISTRY[arch.name] = arch
    return arch


def _registration_problem(arch: Architecture) -> str | None:
    """Why `arch` cannot work, or None: what would otherwise fail later, inside `bench plan` or a run."""
    from architectures import planning

    if not (isinstance(arch.name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", arch.name)):
        return ("a name is letters, digits, '_' and '-', starting with a letter or digit: it begins each run's "
                "folder name, and is a spec's [arch.<name>] table")
    options = arch.options
    if not (dataclasses.is_dataclass(options) and isinstance(options, type)
            and options.__dataclass_params__.frozen):
        return f"options must be a frozen dataclass, not {options!r}"
    try:
        defaults = options()
    except TypeError:
        return f"every field of {options.__name__} needs a default (a spec may leave its [arch] table out)"
    if not callable(getattr(defaults, "validate", None)):
        return f"{options.__name__} needs a validate() returning a list of (field, value, problem) tuples"
    problems = defaults.validate()
    if not isinstance(problems, list) or problems:
        return (f"{options.__name__}().validate() must return a list of (field, value, problem) tuples, empty for "
                f"the defaults; got {problems!r}")
    try:
        hash(defaults)
    except TypeError:  # a list default: a spec that leaves the field out would fail in every command
        return (f"every default of {options.__name__} must be hashable (a tuple, not a list): options are part "
                "of a run's identity")
    if not callable(getattr(planning, arch.planner, None)):
        return f"planner {arch.planner!r} is not a function in architectures/planning.py"
    if not re.fullmatch(r"[\w.]+:\w+", arch.builder):
        return f"builder must be 'module:function' (e.g. 'architectures.vgg:build'), not {arch.builder!r}"
    module = arch.builder.split(":")[0]
    if not _module_found(module):
        return f"builder {arch.builder!r}: no module {module}"
    return None


def _module_found(name: str) -> bool:
    """Whether module `name` is there, found without running it or the packages above it (which may import
    torch): `importlib.util.find_spec` of a submodule imports its parents."""
    import importlib.machinery
    import sys

    spec, parts = None, name.split(".")
    for depth, part in enumerate(parts):
        full = ".".join(parts[:depth + 1])
        if full in sys.modules:
            spec = sys.modules[full].__spec__
        elif depth == 0:
            spec = importlib.util.find_spec(part)  # a top-level name is found, not imported
        elif spec is None or spec.submodule_search_locations is None:  # no such package above it
            return False
        else:
            spec = importlib.machinery.PathFinder.find_spec(full, spec.submodule_search_locations)
        if spec is None:
            return False
    return True


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Architecture:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; registered: {', '.join(names())}"
        ) from None


def make_options(name: str, **options: Any):
    """The options dataclass of `name` filled from keyword options (unknown keys are an error)."""
    arch = get(name)
    known = {f.name for f in fields(arch.options)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"{name}: unknown option(s) {unknown}; known: {sorted(known)}")
    return arch.options(**options)


def min_train_batch(name: str, input_config: InputConfig, **options: Any) -> int:
    """The fewest clips a training batch of `name` can hold at `input_config`: its plan's
    `min_train_batch` (2 where a BatchNorm would normalise one value per clip, which torch refuses to
    train on), 1 for a plan without one."""
    return getattr(plan(name, input_config, **options), "min_train_batch", 1)


def plan(name: str, input_config: InputConfig, **options: Any):
    """The shape plan of architecture `name` for `input_config` (no torch): pools, filter heights,
    segments. Raises ValueError when the input is too small for the network."""
    from dataclasses import asdict

    from architectures import planning

    arch = get(name)
    opts = asdict(make_options(name, **options))
    planner = getattr(planning, arch.planner)
    return planner(input_config.sample_rate, input_config.n_mels, input_config.hop_multiplier, input_config.n_frames,
                   **_taken(planner, opts))


def _taken(function, options: dict[str, Any]) -> dict[str, Any]:
    """The options `function` takes by name: all of them where it takes **options."""
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return options
    named = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in options.items() if k in named}


def pool_padding(name: str, input_config: InputConfig, **options: Any) -> dict[str, list[int]] | None:
    """The padding a VGG-CNN's rule-planned pools put at the end of their inputs, {"freq": [...],
    "time": [...]} per pool, where they put any; None for every other network (no torch)."""
    layout = plan(name, input_config, **options)
    if not getattr(layout, "padded", False):
        return None
    return {"freq": list(layout.pad_freq), "time": list(layout.pad_time)}


def build(name: str, input_config: InputConfig, n_tags: int, **options: Any):
    """Build architecture `name` for `input_config` with `n_tags` outputs."""
    arch = get(name)
    opts = make_options(name, **options)
    module_name, function_name = arch.builder.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # a package the builder's module needs is not installed
        raise BuilderError(f"architecture {name!r}: its builder's module {module_name} does not import: {exc}") \
            from exc
    builder = getattr(module, function_name, None)
    if not callable(builder):
        raise BuilderError(f"architecture {name!r}: its builder {arch.builder!r} names no function {function_name} "
                           f"in {module_name}")
    network = builder(input_config, n_tags, opts)
    # checked here, before a run trains it: a network without them failed its run after training
    for attribute, method in NETWORK_ATTRIBUTES.items():
        if not hasattr(network, attribute) or (method and not callable(getattr(network, attribute))):
            raise BuilderError(f"architecture {name!r}: the network {arch.builder} builds has no "
                               f"{attribute}{'()' if method else ''} (docs/architectures.md, adding an architecture)")
    return network


def meta_output_elements(name: str, input_config: InputConfig, n_tags: int, batch: int,
                         every_module: bool = False, **options: Any) -> tuple[Any, list[int]]:
    """Architecture `name` built on the meta device, and the elements of its input for `batch`
    network inputs followed by those of each tensor an evaluation forward pass makes, in the order it
    makes them: each leaf module's output (with `every_module`, each module's), and each tensor that
    code outside the leaf modules makes with torch's functions (a concatenation; MusiCNN's evaluation
    convolutions, its largest tensors, which it computes with `F.conv2d` beside its modules). What a
    leaf makes inside its own forward is not counted, nor views and in-place results (no new
    elements). Nothing is allocated, nothing is run."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    with torch.device("meta"):
        model = build(name, input_config, n_tags, **options)
    network_input = torch.zeros(batch, 1, input_config.n_mels, model.input_frames, device="meta")
    outputs = [network_input.numel()]
    seen: list = []  # the tensors counted, kept alive so that no later tensor takes the id of one
    inside_leaf = [0]

    def count(output) -> None:
        for tensor in tree_leaves(output):
            if isinstance(tensor, torch.Tensor) and not any(tensor is t for t in seen):
                seen.append(tensor)
                outputs.append(tensor.numel())

    class MadeOutsideLeaves(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            made = func(*args, **(kwargs or {}))
            if not inside_leaf[0] and not func.is_view and not func._schema.is_mutable:
                count(made)
            return made

    def enter(_module, _inputs):
        inside_leaf[0] += 1

    def leave(_module, _inputs, output):
        inside_leaf[0] -= 1
        count(output)

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [h for m in leaves for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    if every_module:
        handles += [m.register_forward_hook(lambda _module, _inputs, output: count(output))
                    for m in model.modules() if any(True for _ in m.children())]
    try:
        with MadeOutsideLeaves():
            model.eval()(network_input)
    finally:
        for handle in handles:
            handle.remove()
    return model, outputs


register(Architecture(
    name="vgg",
    options=VGGOptions,
    builder="architectures.vgg:build",
    planner="vgg_plan",
    description="VGG-CNN / FCN-4 (Choi et al. 2016) with pooling adapted to the input (paper Table III)",
))
register(Architecture(
    name="musicnn",
    options=MusiCNNOptions,
    builder="architectures.musicnn:build",
    planner="musicnn_plan",
    description="MusiCNN (Pons et al. 2018) with timbral filter heights proportional to n_mels",
))
# The models released with musicnn 0.1.0 (Essentia paper, Table 1), whose weights `bench import musicnn`
# converts; `width` and `segment_seconds` as for MusiCNN.
for _name, _builder, _planner, _description in (
    ("musicnn-787k", "architectures.musicnn:build_787k", "musicnn_787k_plan",
     "the released musicnn (musicnn 0.1.0; Essentia paper Table 1): 787,159 parameters at 96 bands"),
    ("vgg-605k", "architectures.vgg:build_605k", "vgg605k_plan",
     "the VGG baseline released with musicnn 0.1.0, on 3 s segments: 605,748 parameters at 187x96"),
):
    register(Architecture(name=_name, options=ReleasedOptions, builder=_builder, planner=_planner,
                          description=_description))
