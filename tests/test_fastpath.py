"""The fast path: device-selected execution settings, tested through their CPU versions."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from architectures.planning import vgg_plan
from architectures.vgg import VGG
from bench.data.views import ClipDataset, ReadBatches, ResidentWaveforms, epoch_order
from bench.train import fastpath
from bench.train.fastpath import COMPILE_MIN_STEPS, autocast_dtype, baseline, compile_choice, fast_path, planned_steps

CPU = torch.device("cpu")


def _cache(n_clips=11, samples=300, n_tags=4, seed=0):
    """The three things ClipDataset reads from a prepared cache, with every row in the train split."""
    rng = np.random.default_rng(seed)
    waveforms = rng.standard_normal((n_clips, samples)).astype(np.float16)
    targets = (rng.random((n_clips, n_tags)) < 0.3).astype(np.float32)
    return SimpleNamespace(waveforms=waveforms, rows=lambda split: np.arange(n_clips),
                           targets=lambda rows: targets[rows], folder="scratch")


@pytest.mark.parametrize("shuffle", [True, False])
def test_resident_and_read_batches_are_the_epoch_order(shuffle):
    cache = _cache()
    dataset = ClipDataset(cache, "train")
    generator = torch.Generator().manual_seed(5)
    order = epoch_order(len(dataset), shuffle, generator)
    assert sorted(order.tolist()) == list(range(11))
    assert (order.tolist() == list(range(11))) != shuffle
    loader = ReadBatches(dataset, 4).batches(order)
    resident = ResidentWaveforms(cache, CPU).split(dataset).batches(4, order)
    expected = [order[i:i + 4] for i in range(0, 11, 4)]
    for (wave, target), (wave_r, target_r), index in zip(loader, resident, expected, strict=True):
        rows = [dataset[i] for i in index.tolist()]
        # float16 as cached, read per batch and on the device: the front end casts on the device
        assert torch.equal(wave, torch.stack([w for w, _ in rows])) and wave.dtype == wave_r.dtype == torch.float16
        assert torch.equal(wave, wave_r) and torch.equal(target, target_r)
    # the epoch generator gave one permutation and nothing else: training segments draw next
    reference = torch.Generator().manual_seed(5)
    if shuffle:
        torch.randperm(11, generator=reference)
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=reference))
    assert dataset.nbytes == 11 * 300 * 2


def _cpu_bf16(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(fastpath, "native_bf16", lambda device: native if device.type == "cpu" else True)


@pytest.mark.parametrize("cpu", ["avx512 without bf16", "oneDNN capped at AVX512_CORE", "oneDNN turned off",
                                 "avx512-bf16", "amx"])
def test_bf16_counts_as_native_on_cpus_with_its_instructions_only(monkeypatch, cpu):
    """docs/running.md: bf16 autocast on CPUs with AVX512-BF16 or AMX. oneDNN's own "bf16 supported" is true
    from plain AVX-512 (Skylake to Ice Lake Xeons, which have neither): bf16 was chosen there, and emulated,
    the paper VGG's step 2x fp32's and the demo MusiCNN's 2.5x; with oneDNN capped below bf16
    (DNNL_MAX_CPU_ISA) or turned off, too."""
    monkeypatch.setattr(fastpath.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu not in ("avx512 without bf16", "amx"))
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: cpu == "amx")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    if cpu == "oneDNN capped at AVX512_CORE":
        monkeypatch.setenv("DNNL_MAX_CPU_ISA", "avx512_core")
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", cpu != "oneDNN turned off")
    native = cpu in ("avx512-bf16", "amx")
    assert fastpath.native_bf16(CPU) is native
    assert fastpath.autocast_dtype(CPU, "auto") == (torch.bfloat16 if native else None)


def test_cpu_without_bf16_fast_path_is_fp32_nchw_and_compiles_only_long_musicnn_runs(monkeypatch):
    """On an AVX2-only EPYC, VGG's fast-path step at 96 x 1366 took 14.0 s compiled against 8.8 s eager
    (0.78 against 0.68 s at 48 x 137), MusiCNN's 0.86 s against 1.08 s; at 96 x 1820, batch 32, vgg-605k's
    5.12 s against 3.56 s, musicnn-787k's 6.52 s against 13.89 s: the VGGs train eager even in long runs,
    the MusiCNNs compile them (where a compiler is there), short runs of any stay eager."""
    monkeypatch.delenv("BENCH_COMPILE", raising=False)
    monkeypatch.setattr(fastpath, "compile_blocker", lambda device: None)
    _cpu_bf16(monkeypatch, False)
    for arch in ("vgg", "vgg-605k", "musicnn", "musicnn-787k"):
        path = fast_path(CPU, "auto", planned_steps=100, arch=arch)
        assert (path.amp_dtype, path.channels_last, path.cudnn_benchmark, path.compile) == (None, False, False, False)
    for arch, compiled in (("vgg", False), ("vgg-605k", False), ("musicnn", True), ("musicnn-787k", True)):
        assert fast_path(CPU, "auto", planned_steps=10 * COMPILE_MIN_STEPS, arch=arch).compile is compiled
    monkeypatch.setenv("BENCH_COMPILE", "1")  # asked for, VGG compiles too
    assert fast_path(CPU, "auto", planned_steps=100, arch="vgg").compile is True
    assert not path.pin_memory
    assert fast_path(CPU, "bf16").torch_amp_dtype == torch.bfloat16
    assert baseline(CPU).eval_batch_factor == 1


def test_cpu_with_bf16_fast_path_is_bf16_channels_last_eager_even_for_long_runs(monkeypatch):
    monkeypatch.delenv("BENCH_COMPILE", raising=False)
    _cpu_bf16(monkeypatch, True)
    path = fast_path(CPU, "auto", planned_steps=10 * COMPILE_MIN_STEPS)
    assert (path.amp_dtype, path.channels_last, path.cudnn_benchmark, path.compile) == ("bfloat16", True, False, False)
    assert fast_path(CPU, "fp32").amp_dtype is None


def test_autocast_dtype_by_device_and_precision(monkeypatch):
    _cpu_bf16(monkeypatch, False)
    assert autocast_dtype(CPU, "auto") is None  # emulated bf16: measured slower
    assert autocast_dtype(CPU, "fp32") is None
    assert autocast_dtype(CPU, "bf16") == torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), "fp32") is None
    _cpu_bf16(monkeypatch, True)
    assert autocast_dtype(CPU, "auto") == torch.bfloat16


def test_compile_choice(monkeypatch):
    def should_compile(device, steps):
        return compile_choice(device, steps)[0]

    monkeypatch.delenv("BENCH_COMPILE", raising=False)
    # compiled from 5,000 planned steps, where the minutes of compiling pay for themselves
    assert COMPILE_MIN_STEPS == 5_000
    assert not should_compile(CPU, 4_999)
    assert not should_compile(CPU, None)
    assert should_compile(torch.device("cuda"), 5_000)
    for off in ("0", "off", " False ", "NO"):
        monkeypatch.setenv("BENCH_COMPILE", off)
        assert not should_compile(torch.device("cuda"), 10**9) and fastpath.compile_switched_off()
    monkeypatch.setenv("BENCH_COMPILE", "1")
    assert should_compile(CPU, 1) and not fastpath.compile_switched_off()


def test_a_run_plans_a_step_per_whole_batch_of_its_train_split():
    """MTAT's 18,706 training clips in batches of 32 are 584 whole batches (the last 18 clips are
    dropped), 58,400 steps in 100 epochs; a split smaller than a batch is one batch."""
    assert planned_steps(18_706, 100, 32) == 58_400
    assert planned_steps(5, 3, 32) == 3


def test_pool_before_elu_computes_the_textbook_function():
    """max(ELU(x)) = ELU(max(x)) for the strictly increasing ELU: same outputs, same gradients."""
    plan = vgg_plan(12000, 16, 10, 137, width=1 / 32)
    torch.manual_seed(0)
    fast, textbook = VGG(plan, 5), VGG(plan, 5, pool_before_elu=False)
    textbook.load_state_dict(fast.state_dict())
    x = torch.randn(3, 1, 16, 137)
    y_fast, y_textbook = fast(x), textbook(x)
    assert torch.equal(y_fast, y_textbook)
    y_fast.square().sum().backward()
    y_textbook.square().sum().backward()
    for (name, p), q in zip(fast.named_parameters(), textbook.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("sample_rate, n_mels, hop, frames, ceil", [
    (16000, 96, 1, 1366, True),  # frames by the rule (1366 + 2 -> 342 ...), Table III's bands (96 -> 48 -> 12 ...)
    (16000, 64, 7, 260, True),  # both axes by the rule
    (12000, 40, 1, 1366, False),  # bands by the rule beside Table III's frames, whose rest is dropped (341)
])
def test_padded_pools_in_ceil_mode_compute_the_padded_function(sample_rate, n_mels, hop, frames, ceil):
    """A max-pool in ceil mode takes the max of what an overhanging last window holds: what a pool of
    the input padded with -inf gives, outputs and gradients, without the padded copy."""
    from architectures.vgg import PaddedMaxPool2d

    plan = vgg_plan(sample_rate, n_mels, hop, frames, width=1 / 32)
    torch.manual_seed(0)
    fast, padded = VGG(plan, 5).double(), VGG(plan, 5).double()
    padded.load_state_dict(fast.state_dict())
    pools = [m for m in padded.blocks if isinstance(m, PaddedMaxPool2d)]
    assert pools and any(m.ceil_mode for m in pools) is ceil
    for m in pools:
        m.ceil_mode = False  # pad explicitly
    x = torch.randn(3, 1, n_mels, frames, dtype=torch.float64)
    shapes, h = [], fast.input_bn(x)
    for layer in fast.blocks:
        h = layer(h)
        if isinstance(layer, torch.nn.MaxPool2d):
            shapes.append(tuple(h.shape[2:]))
    assert shapes == list(plan.shapes[1:])
    y_fast, y_padded = fast(x), padded(x)
    torch.testing.assert_close(y_fast, y_padded, rtol=0, atol=0)
    y_fast.square().sum().backward()
    y_padded.square().sum().backward()
    for (name, p), q in zip(fast.named_parameters(), padded.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=0, msg=name)


@pytest.mark.slow
def test_compiled_training_step_matches_eager(monkeypatch):
    """`torch.compile` (inductor's C++ backend on the CPU) changes speed, not the step's result."""
    monkeypatch.setenv("BENCH_COMPILE", "1")
    path = fast_path(CPU, "fp32")
    if not path.compile:  # no C++ compiler here: the comparison would be eager against eager
        pytest.skip(path.compile_note)
    assert path.compile_backend == "inductor"
    plan = vgg_plan(12000, 16, 10, 137, width=1 / 32)
    torch.manual_seed(0)
    eager, compiled = VGG(plan, 5), VGG(plan, 5)
    compiled.load_state_dict(eager.state_dict())
    compiled = path.prepare_model(compiled)
    x, y = torch.randn(4, 16, 137), torch.rand(4, 5).round()
    outputs = []
    for model in (eager, compiled):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(path.prepare_input(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        outputs.append(model(path.prepare_input(x)).detach())  # grad mode kept: no recompilation
    # Parameters are not compared one by one: a conv bias followed by BatchNorm has a zero gradient
    # up to rounding, which Adam turns into arbitrary steps that BatchNorm then cancels.
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rearrange", [True, False], ids=["cpu-arrangement", "as-written"])
def test_compiled_musicnn_branches_have_finite_gradients_under_bf16(rearrange):
    """Inductor's backward of amax compares the input, recomputed in float32, with the saved bf16
    maximum: no value matched, the gradient was divided by a count of zero, and every compiled MusiCNN
    run stopped on a NaN loss at its first steps. As written (the CUDA arrangement) and as arranged
    for the CPU, the compiled branch's maxima and gradients are now finite, as eager ones are."""
    from architectures import InputConfig, build
    from architectures.musicnn import max_over_bands

    torch.manual_seed(0)
    model = build("musicnn", InputConfig(16000, 48, 1, 188), 3, width=0.25).train()
    branch, x = model.timbral[0], torch.randn(8, 1, 48, 188)

    def loss(x):
        return max_over_bands(branch, x, rearrange=rearrange).float().square().mean()

    losses = []
    for step in (loss, torch.compile(loss, backend="inductor")):
        branch.zero_grad()
        with torch.autocast("cpu", torch.bfloat16):
            value = step(x)
        value.backward()
        assert all(torch.isfinite(p.grad).all() for p in branch.parameters())
        losses.append(value.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)


def test_a_compiled_path_without_a_named_backend_compiles_with_the_configured_one(monkeypatch):
    # bench perf's "+ torch.compile" rows were made from eager paths, whose backend is None: compiled
    # with backend=None, which some torch versions refuse, and BENCH_COMPILE_BACKEND was ignored
    import dataclasses

    monkeypatch.setenv("BENCH_COMPILE", "0")
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "eager")
    eager = fast_path(CPU, "fp32", 10**6, "vgg")
    assert eager.compile is False and eager.compile_backend is None
    used = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: used.append(kwargs["backend"]))
    dataclasses.replace(eager, compile=True).prepare_model(torch.nn.Linear(2, 2))
    assert used == ["eager"]


def test_cpu_channels_last_is_chosen_per_architecture(monkeypatch):
    """Measured on a CPU with native bf16: channels_last speeds VGG up and slows MusiCNN down."""
    _cpu_bf16(monkeypatch, True)
    chosen = {arch: fast_path(CPU, "auto", 100, arch).channels_last
              for arch in ("vgg", "vgg-605k", "musicnn", "musicnn-787k")}
    assert chosen == {"vgg": True, "vgg-605k": True, "musicnn": False, "musicnn-787k": False}
    assert all(fast_path(CPU, "auto", 100, arch).amp_dtype == "bfloat16" for arch in chosen)
    _cpu_bf16(monkeypatch, False)
    assert not any(fast_path(CPU, "auto", 100, arch).channels_last for arch in chosen)


@pytest.mark.parametrize("arch", ["musicnn-787k", "musicnn"])
def test_musicnn_cpu_timbral_arrangement_computes_the_network_as_written(arch):
    """Training-mode timbral convolutions as 1-D convolutions over frequency (the CPU arrangement):
    the same outputs and gradients as the 2-D convolutions as written."""
    from architectures import InputConfig, build

    options = {"width": 0.25} if arch == "musicnn" else {}
    torch.manual_seed(0)
    fast = build(arch, InputConfig(16000, 96, 1, 188), 10, **options)
    written = build(arch, InputConfig(16000, 96, 1, 188), 10, **options)
    written.load_state_dict(fast.state_dict())
    written.rearrange = False
    x = torch.randn(3, 96, fast.input_frames)
    outputs = []
    for model in (fast, written):
        torch.manual_seed(1)  # the same dropout masks
        outputs.append(model(x))
        outputs[-1].square().sum().backward()
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    for (name, p), q in zip(fast.named_parameters(), written.parameters(), strict=True):
        if name.endswith("weight"):  # biases feeding a BatchNorm have gradients of rounding size
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-3 * float(q.grad.abs().max()), msg=name)


@pytest.mark.parametrize("mode, graphs", [("default", False), ("max-autotune-no-cudagraphs", False),
                                          ("reduce-overhead", True), ("max-autotune", True)])
def test_a_runs_compile_mode_comes_from_the_environment_and_says_whether_cuda_graphs_replay(monkeypatch, mode, graphs):
    """BENCH_COMPILE_MODE reaches torch.compile ("default" as no mode at all) and the run's record; the
    modes that replay CUDA graphs are those PyTorch documents with `triton.cudagraphs` (reduce-overhead,
    max-autotune), and only on CUDA with inductor."""
    import dataclasses

    monkeypatch.setenv("BENCH_COMPILE", "1")
    monkeypatch.setenv("BENCH_COMPILE_MODE", mode)
    monkeypatch.setattr(fastpath, "compile_blocker", lambda device: None)  # on CUDA: no compiler needed here
    path = fast_path(torch.device("cuda"), "bf16", 10**6, "vgg")
    assert path.compile and path.compile_mode == mode and path.as_dict()["compile_mode"] == mode
    assert path.cuda_graphs is graphs
    assert dataclasses.replace(path, device="cpu").cuda_graphs is False  # inductor ignores CUDA graphs there
    assert dataclasses.replace(path, compile_backend="eager").cuda_graphs is False
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "eager")  # a backend that takes no mode: none recorded, none given
    assert path.compiling(True).compile_mode is None
    eager_asked = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: eager_asked.append(kwargs["mode"]))
    path.compiling(True).prepare_model(torch.nn.Linear(2, 2))
    assert eager_asked == [None]
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "inductor")
    assert path.compiling(False).compile_mode is None and path.compiling(False).cuda_graphs is False
    asked = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: asked.append(kwargs))
    dataclasses.replace(path, device="cpu", channels_last=False).prepare_model(torch.nn.Linear(2, 2))
    assert asked == [{"backend": "inductor", "dynamic": False, "mode": None if mode == "default" else mode}]


def test_an_eager_path_has_no_compile_mode(monkeypatch):
    monkeypatch.setenv("BENCH_COMPILE", "0")
    monkeypatch.setenv("BENCH_COMPILE_MODE", "reduce-overhead")
    path = fast_path(CPU, "fp32", 10**6, "vgg")
    assert path.compile is False and path.compile_mode is None and path.cuda_graphs is False
