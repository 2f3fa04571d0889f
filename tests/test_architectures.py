"""The VGG-CNN and MusiCNN modules: shapes for every planned input, training, bf16 + channels_last.

Tiny widths keep these fast; what is checked (shapes, gradients, dtypes) does not depend on width.
"""

import dataclasses
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import architectures
from architectures import InputConfig
from architectures.vgg import VGG
from bench.core import framing
from bench.spec import load_spec

TINY = 1 / 64
SPEC_FILES = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.toml"))
TABLE_II = [(sr, n, m) for sr in (12000, 16000) for n in (128, 96, 48) for m in (1, 2, 3, 4, 5, 10)]
TABLE_II += [(sr, n, 1) for sr in (12000, 16000) for n in (32, 24, 16, 8)]


def tiny(arch, width=TINY) -> dict:
    """`width` for an architecture that has one (an added architecture may have its one size only)."""
    return {"width": width} if "width" in {f.name for f in dataclasses.fields(architectures.get(arch).options)} else {}


def build(arch, sample_rate, n_mels, hop, n_frames, n_tags=5, width=TINY, **options):
    config = InputConfig(sample_rate=sample_rate, n_mels=n_mels, hop_multiplier=hop, n_frames=n_frames)
    return architectures.build(arch, config, n_tags, **tiny(arch, width), **options)


def check_forward(model, n_mels, batch=2):
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(batch, n_mels, model.input_frames))
    assert y.shape == (batch, model.n_tags)
    assert torch.isfinite(y).all()


def check_shape_on_meta(arch, config, n_tags, **options):
    """Build and run on the meta device: every op checks its shapes, none computes (fast)."""
    with torch.device("meta"):
        model = architectures.build(arch, config, n_tags, **options).eval()
        y = model(torch.empty(2, config.n_mels, model.input_frames))
    assert y.shape == (2, n_tags)


@pytest.mark.parametrize("spec_path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_every_spec_configuration_builds_and_runs(spec_path):
    spec = load_spec(spec_path)
    checked = set()
    for configuration in spec.configurations():
        mel, options = configuration.mel, configuration.options
        config = InputConfig(mel.sample_rate, mel.n_mels, mel.hop_multiplier,
                             mel.n_frames(spec.dataset.clip_seconds))
        if (configuration.arch, config, options) in checked:  # `log` does not change the network
            continue
        checked.add((configuration.arch, config, options))
        if hasattr(options, "width"):
            options = dataclasses.replace(options, width=TINY)
        check_shape_on_meta(configuration.arch, config, spec.dataset.n_tags,
                            **dataclasses.asdict(options))


ARCHS = architectures.names()
"""Every registered architecture, an added one included."""


SHIPPED_ARCHS = ("vgg", "musicnn", "musicnn-787k", "vgg-605k")
"""The architectures this repository ships, which take every input shape of at least 1 x 1."""


def test_the_shipped_architectures_are_registered():
    assert set(SHIPPED_ARCHS) <= set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_table_ii_grid_builds_and_runs(arch):
    for sample_rate, n_mels, hop in TABLE_II:
        config = InputConfig(sample_rate, n_mels, hop, framing.n_frames(29.1, sample_rate, hop))
        check_shape_on_meta(arch, config, 50, **tiny(arch))
    # and really computed at the grid's extremes
    for sample_rate, n_mels, hop in [(16000, 128, 1), (12000, 8, 1), (12000, 48, 10)]:
        model = build(arch, sample_rate, n_mels, hop, framing.n_frames(29.1, sample_rate, hop))
        check_forward(model, n_mels)


@settings(max_examples=12, deadline=None)
@given(
    arch=st.sampled_from(ARCHS),
    sample_rate=st.sampled_from([8000, 12000, 16000, 22050]),
    n_mels=st.integers(1, 257),
    hop=st.integers(1, 20),
    n_frames=st.integers(1, 2000),
    n_tags=st.integers(1, 60),
)
def test_any_input_shape(arch, sample_rate, n_mels, hop, n_frames, n_tags):
    """The shipped architectures take any input; one a user adds may refuse an input its planner cannot
    take with a ValueError (docs/architectures.md), which `bench plan` says in one line: such inputs are
    not asked of it here."""
    if arch not in SHIPPED_ARCHS:
        try:
            architectures.plan(arch, InputConfig(sample_rate, n_mels, hop, n_frames), **tiny(arch))
        except ValueError:
            assume(False)
    check_forward(build(arch, sample_rate, n_mels, hop, n_frames, n_tags=n_tags), n_mels)


@pytest.mark.parametrize("frames", [1, 2, 31, 32, 33, 64, 127, 128, 164, 165, 166, 400])
def test_musicnn_accepts_any_segment_length(frames):
    # Around and below the temporal filter lengths (165, 128, 64, 32).
    model = build("musicnn", 16000, 24, 1, 1820).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 1, 24, frames))
    assert y.shape == (2, 5) and torch.isfinite(y).all()


def test_vgg_modules_follow_the_plan():
    model = build("vgg", 12000, 96, 1, 1366)
    assert model.plan.pool_time == (4, 5, 8, 8)
    shapes = []
    x = model.input_bn(torch.zeros(1, 1, 96, 1366))
    for layer in model.blocks:
        x = layer(x)
        if isinstance(layer, torch.nn.MaxPool2d):
            shapes.append(tuple(x.shape[2:]))
    assert shapes == [(48, 341), (12, 68), (4, 8), (1, 1)]
    assert [c.out_channels for c in model.blocks if isinstance(c, torch.nn.Conv2d)] == [2, 6, 12, 32]


@pytest.mark.parametrize("sample_rate,n_mels,hop,frames,where", [
    (16000, 96, 1, 314, "frame"),  # a 5 s clip: flooring pools 4,5,8,1 would never look past frame 159
    (12000, 40, 1, 1366, "band"),  # flooring pools 2,4,3,1 would never look past band 23
    (16000, 64, 7, 260, "frame"),  # 29.1 s at hop x7: flooring would lose the last 8.4 s
])
def test_every_frame_and_band_reaches_the_output_where_the_rule_pools(sample_rate, n_mels, hop, frames, where):
    torch.manual_seed(0)
    model = build("vgg", sample_rate, n_mels, hop, frames, width=0.125).eval()
    assert model.plan.padded
    x = torch.randn(1, n_mels, frames)
    changed = x.clone()
    if where == "frame":
        changed[..., -1] += 10  # the last frame of the clip
    else:
        changed[:, -1] += 10  # the highest band
    with torch.no_grad():
        assert not torch.equal(model(x), model(changed))
        # the textbook order (ELU, then pool) gives the same outputs: the padding never wins a max
        textbook = VGG(model.plan, 5, pool_before_elu=False).eval()
        textbook.load_state_dict(model.state_dict())
        torch.testing.assert_close(textbook(x), model(x))


def test_musicnn_front_end_sizes():
    model = build("musicnn", 16000, 96, 1, 1820, width=1.0, n_tags=50)
    kernels = [tuple(b[0].kernel_size) for b in model.timbral]
    assert kernels == [(86, 7), (86, 3), (86, 1), (38, 7), (38, 3), (38, 1)]
    # TF 'same' for even kernels puts the extra zero at the end.
    assert [b[0].padding for b in model.temporal] == [(82, 82), (63, 64), (31, 32), (15, 16)]
    assert [b[1].out_channels for b in model.temporal] == [16, 32, 64, 128]
    assert model.mid[0][0].in_channels == 464
    assert model.back[0].num_features == 2 * (464 + 3 * 512)
    assert (model.input_frames, model.segments) == (187, 9)


@pytest.mark.parametrize("arch", ["musicnn", "musicnn-787k"])
def test_musicnn_back_end_runs_the_released_layers_in_order(arch):
    """musicnn's `backend` (jordipons/musicnn, models.py): the max and the mean over time of the dense
    connection, flattened; BatchNorm, dropout 0.5, dense with ReLU, BatchNorm, dropout 0.5, the output
    layer. Parity with the released weights runs in eval mode, which cannot see a dropout rate, so the
    layers are checked as training runs them."""
    from torch import nn

    model = architectures.build(arch, InputConfig(16000, 96, 1, 187), 50, **tiny(arch, 0.25)).train()
    ran = []
    hooks = [m.register_forward_hook(lambda module, inputs, _out: ran.append((module, inputs[0])))
             for m in model.back]
    try:
        model(torch.randn(3, 96, model.input_frames))
    finally:
        for hook in hooks:
            hook.remove()
    expected = (nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout, nn.Linear)
    assert len(ran) == len(expected) and all(isinstance(m, kind) for (m, _), kind in zip(ran, expected, strict=True))
    assert [m.p for m, _ in ran if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    # the released dense layers, 500 units (MusiCNN) and 200 (musicnn-787k), at width 0.25
    assert ran[2][0].out_features == {"musicnn": 125, "musicnn-787k": 50}[arch] and ran[-1][0].out_features == 50
    # the flattened pooling: (max, mean) of each channel in turn; over time a max is never below the mean
    pooled = ran[0][1]
    features = model.eval().embeddings(torch.randn(3, 96, model.input_frames))
    for maxima, means in ((pooled[:, 0::2], pooled[:, 1::2]), (features["max_pool"], features["mean_pool"])):
        # equal where a channel is constant over time (its mean may round a hair above)
        assert (maxima >= means - 1e-5).all() and (maxima > means).float().mean() > 0.9


@pytest.mark.parametrize("arch,n_mels,frames", [("vgg", 16, 64), ("musicnn", 12, 40)])
def test_forward_backward(arch, n_mels, frames):
    torch.manual_seed(0)
    model = build(arch, 16000, n_mels, 1, frames, n_tags=4, width=1 / 16).train()
    x = torch.randn(3, n_mels, model.input_frames)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), torch.ones(3, 4))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("arch,n_mels,frames", [("vgg", 48, 137), ("musicnn", 48, 140)])
def test_autocast_bf16_channels_last(arch, n_mels, frames):
    model = build(arch, 12000, n_mels, 10, frames, width=1 / 16).to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, n_mels, model.input_frames).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
        y.float().sum().backward()
    assert y.shape == (2, 5) and torch.isfinite(y.float()).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y_eval = model(x)
    with torch.no_grad():  # the same network in float32 on a contiguous input
        reference = model.to(memory_format=torch.contiguous_format)(x.contiguous())
    # bf16 keeps 8 significant bits (a relative step of 2^-8): the outputs agree to about 1 %
    torch.testing.assert_close(y_eval.float(), reference, rtol=0, atol=1e-2 * max(1.0, reference.abs().max().item()))


def test_unknown_architecture_lists_registered_names():
    with pytest.raises(architectures.UnknownArchitectureError) as info:
        architectures.build("resnet", InputConfig(16000, 96, 1, 1820), 50)
    registered = str(info.value).split("registered: ")[-1]
    assert "'resnet'" in str(info.value)
    assert {"musicnn", "musicnn-787k", "vgg", "vgg-605k"} <= set(registered.replace(",", " ").split())
    assert isinstance(info.value, KeyError)


@pytest.fixture
def registering(monkeypatch):
    """Register architectures for one test: the registry and `planning` are as before afterwards."""
    from architectures import planning

    monkeypatch.setattr(architectures, "_REGISTRY", dict(architectures._REGISTRY))

    def register(name, plan=None, **fields):
        if plan is not None:
            monkeypatch.setattr(planning, f"{name}_plan", plan, raising=False)
        defaults = {"options": architectures.VGGOptions, "builder": "architectures.vgg:build",
                    "description": name, "planner": f"{name}_plan"}
        return architectures.register(architectures.Architecture(name=name, **{**defaults, **fields}))

    return register


@pytest.mark.parametrize("planner", ["keyword", "keyword-only", "var-keyword"])
def test_a_planner_gets_the_options_it_takes_however_it_names_them(registering, planner):
    # the documented `**options` planner was given none: its plan (and the run id's pool_padding) were
    # planned for width 1 whatever the spec said
    seen = {}

    def keyword(sample_rate, n_mels, hop_multiplier, n_frames, width=1.0):
        seen.update(width=width)

    def keyword_only(sample_rate, n_mels, hop_multiplier, n_frames, *, width=1.0):
        seen.update(width=width)

    def var_keyword(sample_rate, n_mels, hop_multiplier, n_frames, **options):
        seen.update(options)

    plan = {"keyword": keyword, "keyword-only": keyword_only, "var-keyword": var_keyword}[planner]
    registering("probe", plan=plan)
    architectures.plan("probe", InputConfig(16000, 96, 1, 1820), width=0.25)
    assert seen == {"width": 0.25}


def test_bench_plan_shows_the_pools_and_heights_an_added_plan_has(registering):
    from types import SimpleNamespace

    from bench.cost.plan import arch_columns

    @dataclasses.dataclass(frozen=True)
    class ProbePlan:
        pool_freq: tuple
        pool_time: tuple
        heights: tuple
        segments: int

    registering("probe", plan=lambda *args, **options: ProbePlan((2, 4), (4, 5), (38, 67), 9))
    config = SimpleNamespace(arch="probe", mel=SimpleNamespace(sample_rate=16000, n_mels=96, hop_multiplier=1),
                             options=architectures.VGGOptions())
    assert arch_columns(config, 1820) == {"pool_freq": "2-4", "pool_time": "4-5", "filter_heights": "38-67",
                                          "segments": 9}


@dataclasses.dataclass
class Unfrozen:
    width: float = 1.0

    def validate(self):
        return []


@dataclasses.dataclass(frozen=True)
class NoDefault:
    width: float

    def validate(self):
        return []


@dataclasses.dataclass(frozen=True)
class NoValidate:
    width: float = 1.0


@dataclasses.dataclass(frozen=True)
class StringProblems:
    width: float = 0.0

    def validate(self):
        return ["width must be > 0"]


@dataclasses.dataclass(frozen=True)
class ListDefault:
    width: float = 1.0
    channels: list = dataclasses.field(default_factory=lambda: [16, 32])

    def validate(self):
        return []


@pytest.mark.parametrize("fields, message", [
    ({"options": Unfrozen}, "options must be a frozen dataclass"),
    # a spec leaving `channels` out ended every command in "TypeError: unhashable type: 'list'"
    ({"options": ListDefault}, "every default of ListDefault must be hashable \\(a tuple, not a list\\)"),
    ({"options": NoDefault}, "every field of NoDefault needs a default"),
    ({"options": NoValidate}, "NoValidate needs a validate\\(\\) returning a list of \\(field, value, problem\\)"),
    ({"options": StringProblems}, "StringProblems\\(\\).validate\\(\\) must return a list of \\(field, value, "
                                  "problem\\) tuples, empty for the defaults"),
    ({"planner": "probe_plann"}, "planner 'probe_plann' is not a function in architectures/planning.py"),
    ({"builder": "architectures.probe.build"}, "builder must be 'module:function'"),
    ({"builder": "architectures.vggg:build"}, "builder 'architectures.vggg:build': no module architectures.vggg"),
    ({"builder": "archtectures.vgg:build"}, "builder 'archtectures.vgg:build': no module archtectures.vgg"),
])
def test_an_architecture_that_cannot_work_is_refused_when_registered(registering, fields, message):
    # each of these registered fine, then failed with a traceback at the first `bench plan`
    with pytest.raises(ValueError, match=f"architecture 'probe': {message}"):
        registering("probe", plan=lambda *args, **options: None, **fields)
    assert "probe" not in architectures.names()


@dataclasses.dataclass(frozen=True)
class SequenceOptions:
    width: float = 1.0
    channels: tuple[int, ...] = (128, 384, 768, 2048)
    pools: tuple[int, int] = (2, 2)

    def validate(self):
        return []


def test_an_added_architectures_tuple_option_is_read_from_a_toml_list(registering, write_spec):
    """TOML has lists, not tuples: a `tuple[int, ...]` option set in the spec ended every command in
    "TypeError: unhashable type: 'list'"; it is a tuple, each item checked, and a wrong item is one line."""
    from bench.spec import SpecError, load_spec

    registering("probe", plan=architectures.planning.vgg_plan, options=SequenceOptions)

    def spec(table: str):
        return load_spec(write_spec(f'name = "t"\nseeds = 0\n[dataset]\nname = "synthetic"\n[arch.probe]\n{table}\n'
                                    '[[grid]]\narch = "probe"\nsample_rate = 16000\nn_mels = 48\nhop_multiplier = 1\n'
                                    'log = "log"\n'))

    (config,) = spec("channels = [16, 32, 64, 128]\npools = [4, 5]").configurations()
    assert config.options == SequenceOptions(channels=(16, 32, 64, 128), pools=(4, 5))
    for table, message in (('channels = [16, "x"]', r"arch.probe.channels\[1\]: .*must be an integer"),
                           ("channels = 16", r"arch.probe.channels: .*must be a list, not an integer"),
                           ("pools = [2, 2, 2]", r"arch.probe.pools: .*must be a list of 2 values, not 3")):
        with pytest.raises(SpecError, match=message):
            spec(table)


def test_a_builder_in_a_package_of_its_own_is_found_without_running_the_package(registering, tmp_path,
                                                                               monkeypatch):
    """importlib's find_spec of `pkg.net` imports `pkg` (whose __init__ may import torch, or fail): the
    check walks the packages' search paths instead, running nothing."""
    package = tmp_path / "mynets"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('the package ran at registration')\n")
    (package / "net.py").write_text("def build(input_config, n_tags, options): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registering("probe", plan=architectures.planning.vgg_plan, builder="mynets.net:build")
    with pytest.raises(ValueError, match="builder 'mynets.nett:build': no module mynets.nett"):
        registering("probe2", plan=architectures.planning.vgg_plan, builder="mynets.nett:build")


@pytest.mark.parametrize("name", ["a/b", "a b", "", "-a", "a.b", "vgg\n", "ä"])
def test_a_name_that_cannot_begin_a_run_folders_name_is_refused_when_registered(registering, name):
    """"a/b" registered: its runs trained into runs/a/, their result.json named a run other than their
    folder's, and every grid set it aside and trained the run again."""
    with pytest.raises(ValueError, match="a name is letters, digits, '_' and '-'"):
        registering(name, plan=lambda *args, **options: None)
    assert name not in architectures.names()


@pytest.mark.parametrize("missing", ["input_frames", "segments", "analytic_macs", "embedding_names", "embeddings"])
def test_a_network_without_what_every_network_exposes_is_one_line_at_its_build(registering, write_spec, capsys,
                                                                                tmp_path, monkeypatch, missing):
    """docs/architectures.md: the module exposes input_frames, segments, analytic_macs(), embedding_names
    and embeddings(). Without one, `bench plan` ended in a traceback, and a grid trained the run and then
    failed it."""
    from bench.cli import main

    (tmp_path / f"lacking_{missing}.py").write_text(  # a module per case: one imported stays imported
        "from architectures import vgg\n\n"
        "class Lacking(vgg.VGG):\n"
        "    def __getattribute__(self, name):\n"
        f"        if name == {missing!r}:\n"
        "            raise AttributeError(name)\n"
        "        return super().__getattribute__(name)\n\n"
        "def build(input_config, n_tags, options):\n"
        "    network = vgg.build(input_config, n_tags, options)\n"
        "    network.__class__ = Lacking\n"
        "    return network\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registering("probe", plan=architectures.planning.vgg_plan, builder=f"lacking_{missing}:build")
    spec = write_spec('name = "b"\nseeds = 0\n[dataset]\nname = "synthetic"\nclip_seconds = 4.0\n[[grid]]\n'
                      'arch = "probe"\nsample_rate = 16000\nn_mels = 48\nhop_multiplier = 1\nlog = "log"\n')
    assert main(["plan", str(spec)]) == 2
    assert capsys.readouterr().err.startswith(f"bench plan: error: architecture 'probe': the network "
                                              f"lacking_{missing}:build builds has no {missing}")


def test_a_builder_module_that_cannot_import_what_it_needs_is_one_line(registering, write_spec, capsys, tmp_path,
                                                                       monkeypatch):
    from bench.cli import main

    (tmp_path / "needs.py").write_text("import not_a_real_package\n\ndef build(input_config, n_tags, options): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registering("probe", plan=architectures.planning.vgg_plan, builder="needs:build")
    spec = write_spec('name = "b"\nseeds = 0\n[dataset]\nname = "synthetic"\nclip_seconds = 4.0\n[[grid]]\n'
                      'arch = "probe"\nsample_rate = 16000\nn_mels = 48\nhop_multiplier = 1\nlog = "log"\n')
    assert main(["plan", str(spec)]) == 2
    assert capsys.readouterr().err == ("bench plan: error: architecture 'probe': its builder's module needs does not "
                                       "import: No module named 'not_a_real_package'\n")


def test_a_builder_function_its_module_lacks_is_one_line_at_the_first_build(registering, write_spec, capsys):
    """The module of `architectures.vgg:biuld` is there (registration finds it without importing torch);
    its function is looked up at the first build: `bench plan` ended in an AttributeError's traceback."""
    from bench.cli import main

    registering("probe", plan=architectures.planning.vgg_plan, builder="architectures.vgg:biuld")
    with pytest.raises(architectures.BuilderError, match="architecture 'probe': its builder 'architectures.vgg:biuld' "
                                                         "names no function biuld in architectures.vgg"):
        architectures.build("probe", InputConfig(16000, 48, 1, 250), 10)
    spec = write_spec('name = "b"\nseeds = 0\n[dataset]\nname = "synthetic"\nclip_seconds = 4.0\n[[grid]]\n'
                      'arch = "probe"\nsample_rate = 16000\nn_mels = 48\nhop_multiplier = 1\nlog = "log"\n')
    assert main(["plan", str(spec)]) == 2
    assert capsys.readouterr().err == ("bench plan: error: architecture 'probe': its builder 'architectures.vgg:biuld' "
                                       "names no function biuld in architectures.vgg\n")


@pytest.mark.parametrize("name, config, fewest", [
    ("vgg", (16000, 96, 1, 1820), 1), ("musicnn", (16000, 96, 1, 1820), 2), ("musicnn-787k", (16000, 96, 1, 1820), 2),
    ("vgg-605k", (16000, 96, 1, 1820), 1),
    # Table III: 8 mels pool 2,2,2,1 and 12 kHz x10's 137 frames 4,5,4,1: block 4 normalises a 1 x 1 map
    ("vgg", (12000, 8, 10, 137), 2),
    # 8 mels of 3 s segments at x10 (18 frames): 1 x 1 before vgg-605k's fifth block
    ("vgg-605k", (16000, 8, 10, 182), 2),
])
def test_each_architecture_trains_on_its_smallest_batch_and_not_below(name, config, fewest):
    """torch's BatchNorm refuses to train on one value per channel ("Expected more than 1 value per
    channel when training"): MusiCNN's back end normalises its pooled features, one value per clip, and
    VGG's last blocks a 1 x 1 map at the smallest inputs, so they cannot train on a batch of one clip,
    which a spec with batch_size = 1 would give every step."""
    import architectures
    from architectures import InputConfig

    options = {"width": 0.125} if name in ("vgg", "musicnn") else {}
    input_config = InputConfig(*config)
    model = architectures.build(name, input_config, 5, **options).train()
    x = torch.randn(fewest, config[1], model.input_frames)
    model(x).sum().backward()
    if fewest > 1:
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            model(x[: fewest - 1])
    assert architectures.min_train_batch(name, input_config, **options) == fewest


def test_logits_are_float32_under_bf16_autocast():
    """bf16 keeps 8 significant bits: bf16 logits would tie the scores of many test clips of a tag, which
    lowers average precision (sklearn credits a tied block at its mean precision). Every architecture's
    last layer computes in float32 under autocast: its logits are the float32 product of its inputs."""
    import architectures
    from architectures import InputConfig
    from architectures.layers import OutputLinear

    torch.manual_seed(0)
    for name in architectures.names():
        small = {"width": 0.125} if "width" in {f.name for f in dataclasses.fields(architectures.get(name).options)} \
            else {}  # an architecture without a width has its one size
        model = architectures.build(name, InputConfig(16000, 96, 1, 187), 50, **small).eval()
        (last,) = [m for m in model.modules() if isinstance(m, OutputLinear)]
        seen = {}
        last.register_forward_hook(lambda module, args, out, seen=seen: seen.update(x=args[0], out=out))
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(torch.randn(16, 96, 187))  # 16 clips: ties enough in bf16 (a third to half of them)
        assert logits.dtype == torch.float32, name
        exact = torch.nn.functional.linear(seen["x"].float(), last.weight, last.bias)
        assert torch.allclose(logits, exact, rtol=1e-5, atol=1e-6), name
        # 16 x 50 scores in float32 are (nearly) all distinct; rounded to bf16 many of them would tie
        assert logits.unique().numel() >= 0.99 * logits.numel() > logits.bfloat16().unique().numel(), name
