"""How training and evaluation steps are executed on each device: the suite's fast path.

Nothing here changes what a network computes; it changes how: autocast dtype, memory layout,
cuDNN autotuning, `torch.compile`, evaluation batch size, where the waveforms live and how they reach
the device. Each choice is measured by `bench perf` (docs/performance.md; the measurements behind
these choices: docs/performance.md#measurements-behind-the-codes-choices):

- CPU with native bf16 (AVX512-BF16 or AMX, as oneDNN reports it): bf16 autocast, eager, and
  channels_last for the architectures measured faster with it (`CPU_CHANNELS_LAST`: the VGGs; the
  MusiCNNs train faster in NCHW, their single-channel timbral convolutions and BatchNorm backward
  lose more to layout copies than channels_last gains). This made the full VGG step and every demo
  model faster than fp32; `torch.compile` on top of it made the step slower.
- CPU, whatever its dtype: freed memory kept by the process for its next allocations
  (`bench.core.machine.reuse_freed_memory`): glibc otherwise unmaps each of a step's large maps when
  it is freed, and the kernel faults in and zeroes them again the next step.
- CPU without native bf16 (AVX2 only, e.g. AMD EPYC Zen 1 and Zen 3): fp32, NCHW. bf16 autocast
  makes the convolutions much slower there (oneDNN emulates bf16), and channels_last slows them too.
  `torch.compile` pays back its compile time only in runs of thousands of steps, so "auto" compiles
  runs that long and leaves demo-sized runs eager, for the architectures whose compiled step was
  measured faster there (`CPU_FP32_COMPILE`: the MusiCNNs'; the VGGs' fast-path steps were slower compiled).
- CUDA: bf16 autocast (fp16 with loss scaling where bf16 is missing), channels_last, cuDNN
  benchmark (input shapes are fixed within a run), `torch.compile` for long runs, the waveforms
  resident on the GPU when they fit, otherwise read per batch by a thread of the run (into pinned
  buffers, copied without a host sync: `bench.data.views.ReadBatches`).

`BENCH_COMPILE` = auto | 1 | 0 overrides the compile choice; `BENCH_COMPILE_BACKEND` names the
`torch.compile` backend (default inductor) and `BENCH_COMPILE_MODE` inductor's mode (default; e.g.
max-autotune-no-cudagraphs, or reduce-overhead for CUDA graphs: `bench perf --compile-modes` times them
side by side; a run records the mode it compiled with). Inductor needs a C compiler and Python's headers
at run time on every device (what it builds are Python extensions: its C++ kernels on the CPU, Triton's
launcher on CUDA): without either, compile is turned off with a note that the run logs and records,
instead of failing the run.

Static shapes: every training batch of a run has the same size (the last partial batch is dropped)
and compiled evaluation pads its last batch, so a configuration compiles one graph per mode; each run
resets dynamo's cache, so a worker's later configurations never reach the recompile limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import platform
import re
import shutil
import sys
import sysconfig
from dataclasses import asdict, dataclass, replace

import torch

from bench.core.errors import UserError
from bench.core.machine import can_reuse_freed_memory, reuse_freed_memory, usable_cpus

COMPILE_MIN_STEPS = 5_000
"""Runs with at least this many planned training steps are compiled ("auto"): over that many steps, a
step made faster by compiling pays back VGG's compile time unless the step is very short (the compile
time and the break-even step time: docs/performance.md#measurements-behind-the-codes-choices)."""



def planned_steps(train_clips: int, max_epochs: int, batch_size: int) -> int:
    """Training steps a run takes at most: one per whole batch of its train split each epoch (a last
    partial batch is dropped; a split smaller than a batch is one batch of all its clips)."""
    return max_epochs * max(1, train_clips // batch_size)


CPU_FP32_COMPILE = {"vgg": False, "vgg-605k": False, "musicnn": True, "musicnn-787k": True}
"""Whether "auto" compiles an architecture's long runs on a CPU without bf16 (fp32): on an AVX2-only
EPYC, VGG's fast-path training step at 96 x 1366 took 14.0 s compiled against 8.8 s eager (0.78 against
0.68 s at 48 x 137), MusiCNN's 0.86 s against 1.08 s; at 96 x 1820, batch 32, vgg-605k's 5.12 s against
3.56 s and musicnn-787k's 6.52 s against 13.89 s (docs/performance.md#measurements-behind-the-codes-choices)."""

CPU_CHANNELS_LAST = {"vgg": True, "vgg-605k": True, "musicnn": False, "musicnn-787k": False}
"""channels_last with bf16 on a CPU, per architecture: on for the architectures it makes faster (VGG
at width 1 and vgg-605k), off for those that train faster without it (MusiCNN and musicnn-787k);
measured: docs/performance.md#measurements-behind-the-codes-choices. An architecture not listed
gets channels_last."""

RESIDENT_FRACTION = 0.5
"""Waveforms go to the GPU when they take at most this fraction of its free memory (and of this
worker's share of the GPU, `set_runs_per_gpu`)."""

_runs_per_gpu = 1
"""Runs training on this process's GPU at once (one per worker): each worker's waveform copy gets
its share of the GPU, since workers that start together all see the memory free."""


_gpus_here: int | None = None
"""The GPUs (or MIG instances) the grid's workers on this machine train on, where this process sees fewer
of them than there are (a worker on a MIG instance sees that one alone); None: those CUDA shows."""


_workers_here: int | None = None
"""The grid's worker processes on this machine, which share its CPUs, where the grid knows it (a grid of
fewer workers than GPUs x runs per GPU, or several submitit-local jobs); None: GPUs x runs per GPU."""


def set_runs_per_gpu(runs: int, gpus: int | None = None, workers: int | None = None) -> None:
    """Tell this worker process how many runs share its GPU (`bench grid --runs-per-gpu`), how many
    GPUs the machine's workers use where CUDA shows this process fewer (MIG instances), and how many
    worker processes the grid runs on this machine where it knows (`_workers_here`)."""
    global _runs_per_gpu, _gpus_here, _workers_here
    _runs_per_gpu = max(1, int(runs))
    _gpus_here = gpus
    _workers_here = workers


@dataclass(frozen=True)
class FastPath:
    """Execution settings of one run on one device (none of them changes the network's function)."""

    device: str
    amp_dtype: str | None
    """Autocast dtype name ("bfloat16", "float16") or None for plain fp32."""
    channels_last: bool
    cudnn_benchmark: bool
    compile: bool
    eval_batch_factor: int
    """Evaluation batches are this many training batches (no autograd: memory allows it)."""
    pin_memory: bool
    compile_backend: str | None = None
    """The torch.compile backend of a compiled path (None: `BENCH_COMPILE_BACKEND`, else inductor); None
    for an eager one."""
    compile_note: str | None = None
    """Why compilation was wanted but turned off (e.g. no C compiler), or None."""
    compile_mode: str | None = None
    """Inductor's mode of a compiled path ("default", "reduce-overhead", ...; `BENCH_COMPILE_MODE`); None
    for an eager one, and with another backend (which takes no mode)."""
    fused_adam: bool = False
    """Adam's fused multi-tensor kernel (CUDA): one launch per step instead of one per parameter."""
    tf32: bool = True
    """Whether cuDNN may run fp32 convolutions in TF32 on Ampere and later (PyTorch's default). Off
    for `precision = "fp32"`, which then means fp32 throughout."""
    reuse_host_memory: bool = False
    """Whether the process keeps the host memory it frees for its next allocations
    (`bench.core.machine.reuse_freed_memory`; the CPU: a step's maps are not faulted in again each step)."""

    @property
    def torch_amp_dtype(self) -> torch.dtype | None:
        return getattr(torch, self.amp_dtype) if self.amp_dtype else None

    def as_dict(self) -> dict:
        return asdict(self)

    def compiling(self, on: bool) -> FastPath:
        """This path with torch.compile on (with the configured backend and mode) or off (neither)."""
        return replace(self, compile=on, compile_backend=compile_backend() if on else None,
                       compile_mode=compile_mode() if on and compile_backend() == "inductor" else None)

    @property
    def cuda_graphs(self) -> bool:
        """Whether the compiled model replays CUDA graphs (inductor's "reduce-overhead" and "max-autotune"
        modes on CUDA). Their outputs live in memory that the next replay overwrites."""
        return (self.compile and self.device == "cuda" and (self.compile_backend or compile_backend()) == "inductor"
                and bool(mode_options(self.compile_mode or "default").get("triton.cudagraphs")))

    def begin_step(self) -> None:
        """Before each call of the model: with CUDA graphs, tell inductor a new step begins, so that it
        may reuse the memory of the last step's outputs (the loop has taken what it needs of them)
        instead of guessing where an iteration ends."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    # ------------------------------------------------------------------------------------------
    # applying the settings

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Layout and compilation, in place (parameter names and state_dict keys are unchanged)."""
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        # Set both ways: a process that measured another setting before (bench perf's levers) must
        # not keep it. Fixed input shapes within a run: autotuning pays off.
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.allow_tf32 = self.tf32
        reuse_freed_memory(self.reuse_host_memory)
        if self.compile:
            # A new model per run: the previous run's graphs (guarded on its modules) are dead weight
            # that would count towards the recompile limit of the shared `forward` code objects.
            torch._dynamo.reset()
            # static: training at batch B and evaluation at its multiple would otherwise make dynamo mark
            # the batch dimension dynamic on the second graph ("automatic dynamic shapes"), which the
            # padded last evaluation batch exists to avoid
            backend = self.compile_backend or compile_backend()
            mode = (self.compile_mode or compile_mode()) if backend == "inductor" else "default"
            model.compile(backend=backend, dynamic=False, mode=None if mode == "default" else mode)
        return model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) mel -> (B, 1, F, T) in the model's memory layout."""
        x = x.unsqueeze(1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def autocast(self):
        dtype = self.torch_amp_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=dtype)


ONEDNN_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
"""oneDNN's instruction sets below AVX512_CORE_BF16: a `DNNL_MAX_CPU_ISA` (or `ONEDNN_MAX_CPU_ISA`) of one of
these keeps oneDNN from the bf16 instructions the CPU has, and it emulates them."""


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: CUDA (Ampere and later), or a CPU with AVX512-BF16 or
    AMX whose oneDNN is used and may use them. Emulation does not count. On CUDA a V100 or T4 can hold
    bf16 tensors (`is_bf16_supported()`'s default says yes) but would train far slower in bf16 than in
    fp16. On the CPU oneDNN's own "bf16 supported" is true from plain AVX-512 (Skylake to Ice Lake
    Xeons), where it emulates bf16 and a step takes 2-3x fp32's."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if not (check and check() and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    if capped.strip().upper() in ONEDNN_WITHOUT_BF16:
        return False
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):  # oneDNN's answer, elsewhere
        return True
    flags = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(flag is not None and flag() for flag in flags)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None = plain fp32).

    "auto" is bf16 where the device computes it natively, fp16 on CUDA devices without bf16, and
    fp32 on CPUs without bf16 instructions, where bf16 autocast made training steps of reduced-width
    VGG and MusiCNN, and even more the convolutions of the full VGG, several times slower (oneDNN
    emulates it; measured: docs/performance.md#measurements-behind-the-codes-choices). "bf16"
    forces bf16 (fp16 on a CUDA device without it), "fp16" forces fp16 with loss scaling (the path
    of pre-Ampere GPUs, which `make gpu-check` exercises on any GPU), "fp32" turns autocast off.
    """
    if precision == "fp32" or (precision == "auto" and device.type == "cpu" and not native_bf16(device)):
        return None
    if precision == "fp16" or (device.type == "cuda" and not native_bf16(device)):
        return torch.float16
    return torch.bfloat16


def compiler_available(device: torch.device) -> bool:
    """The compiler found as the compiling library finds it. Inductor on the CPU: `$CXX` when set,
    else g++, on macOS clang++ (torch/_inductor/config.py `cpp.cxx`). On CUDA, Triton builds its kernel
    launcher with a C compiler the first time a kernel runs: `$CC` when set, and only that, else gcc,
    else clang, never cc (triton/runtime/build.py). A slim image without one, or a `$CC` exported by a
    module system that the node lacks, fails every compiled run."""
    if device.type == "cpu":
        if sys.platform == "darwin" and not os.environ.get("CXX"):
            # Apple's clang++ has no OpenMP, which inductor's kernels need: it looks in $OMP_PREFIX,
            # conda's llvm-openmp and Homebrew's libomp (torch/_inductor/cpp_builder.py)
            return bool(shutil.which("clang++")) and any(
                os.path.isfile(os.path.join(prefix, "include", "omp.h")) for prefix in openmp_prefixes())
        return bool(shutil.which(os.environ.get("CXX") or "g++"))
    chosen = os.environ.get("CC")
    return bool(shutil.which(chosen)) if chosen else any(shutil.which(cc) for cc in ("gcc", "clang"))


def python_headers() -> str | None:
    """The folder of Python.h as the compiling library gives it to the compiler. Both of inductor's
    builds are Python extensions: on CUDA, Triton's kernel launcher (sysconfig's include path of the
    default scheme, Debian's "posix_local" read as "posix_prefix": triton/runtime/build.py); on the CPU,
    each of inductor's C++ kernels (its Python bindings include Python.h; the same folder, or on macOS a
    framework's Headers where that path does not exist: torch/_inductor/cpp_builder.py). None where the
    headers are missing: a slim image or a system Python without its -dev package, where every
    compiled run would fail."""
    scheme = sysconfig.get_default_scheme()
    include = sysconfig.get_paths(scheme="posix_prefix" if scheme == "posix_local" else scheme)["include"]
    if sys.platform == "darwin" and not os.path.isdir(include):
        include = os.path.join(os.path.dirname(os.path.dirname(sysconfig.get_paths(scheme=scheme)["stdlib"])),
                               "Headers")
    return include if os.path.isfile(os.path.join(include, "Python.h")) else None


def openmp_prefixes() -> list[str]:
    """Where inductor finds OpenMP on macOS: $OMP_PREFIX, $CONDA_PREFIX (llvm-openmp), Homebrew's libomp."""
    found = [os.environ.get(name) for name in ("OMP_PREFIX", "CONDA_PREFIX")]
    return [p for p in found if p] + ["/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"]


ON_WORDS = ("1", "true", "yes", "on")
OFF_WORDS = ("0", "false", "no", "off")
SWITCH_WORDS = ("auto", *ON_WORDS, *OFF_WORDS)
"""What the BENCH_COMPILE and BENCH_RESIDENT switches take (any case, spaces around ignored)."""

SWITCHES = ("BENCH_RESIDENT", "BENCH_COMPILE")
ENVIRONMENT = (*SWITCHES, "BENCH_COMPILE_BACKEND", "BENCH_COMPILE_MODE")
"""Every environment variable that changes how a run executes (not what it computes)."""


def _switch(name: str) -> str:
    return os.environ.get(name, "auto").strip().lower()


def compile_cache_folder() -> str:
    """Where torch.compile writes what it generates: `TORCHINDUCTOR_CACHE_DIR`, else torch's default (a
    folder of the user's under the temporary folder, `/tmp/torchinductor_<user>`)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir()


def compile_switched_off() -> bool:
    """`BENCH_COMPILE` says off (0, false, no or off, as `wants_compile` reads it)."""
    return _switch("BENCH_COMPILE") in OFF_WORDS


def wants_compile(device: torch.device, planned_steps: int | None, eager_faster: bool = False) -> bool:
    """`BENCH_COMPILE` = 1 / 0 forces the wish; "auto" wants it for long runs, unless the eager path
    was measured faster (`eager_faster`: bf16 + channels_last on the CPU, and the architectures that
    `CPU_FP32_COMPILE` leaves eager on a CPU without bf16)."""
    choice = _switch("BENCH_COMPILE")
    if choice in ON_WORDS:
        return True
    if compile_switched_off():
        return False
    return not eager_faster and planned_steps is not None and planned_steps >= COMPILE_MIN_STEPS


def compile_backend() -> str:
    return os.environ.get("BENCH_COMPILE_BACKEND", "inductor").strip() or "inductor"


def compile_mode() -> str:
    """Inductor's mode for compiled runs: `BENCH_COMPILE_MODE`, else "default"."""
    return os.environ.get("BENCH_COMPILE_MODE", "default").strip().lower() or "default"


@functools.cache
def mode_options(mode: str) -> dict:
    """The inductor settings of a compile mode, as this torch defines them ({} for "default")."""
    if mode == "default":  # listing the modes imports torch._inductor (seconds)
        return {}
    from torch._inductor import list_mode_options

    return list_mode_options()[mode]


def check_environment() -> None:
    """The BENCH_* settings a grid's runs read, checked before any work: a typo would otherwise be taken
    as "auto" silently, or fail every run (an unknown compile backend) and mark the grid failed."""
    for name in SWITCHES:
        value = _switch(name)
        if value and value not in SWITCH_WORDS:
            raise UserError(f"{name}={os.environ[name]!r}: expected one of {', '.join(SWITCH_WORDS)}")
    mode = compile_mode()
    if mode != "default":
        from torch._inductor import list_mode_options

        modes = list_mode_options()
        if mode not in modes:
            raise UserError(f"BENCH_COMPILE_MODE={os.environ['BENCH_COMPILE_MODE']!r}: not a torch.compile mode "
                            f"(this torch has {', '.join(modes)})")
    backend = compile_backend()
    if mode != "default" and backend != "inductor":
        raise UserError(f"BENCH_COMPILE_MODE={os.environ['BENCH_COMPILE_MODE']!r}: a mode of inductor's, which "
                        f"BENCH_COMPILE_BACKEND={backend!r} would ignore")
    if backend == "inductor":  # torch's own default, always registered; listing the backends imports
        return                 # torch._dynamo (~3 s), which a grid that never compiles should not pay
    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise UserError(f"BENCH_COMPILE_BACKEND={backend!r}: not a torch.compile backend "
                        f"(this torch has {', '.join(known)})")


def compile_choice(device: torch.device, planned_steps: int | None, eager_faster: bool = False
                   ) -> tuple[bool, str | None]:
    """(compile, note): compilation where it is wanted and can work; the note says why it was wanted
    but is off (`compile_blocker`)."""
    if not wants_compile(device, planned_steps, eager_faster):
        return False, None
    blocker = compile_blocker(device)
    return blocker is None, blocker


def compile_blocker(device: torch.device) -> str | None:
    """Why torch.compile cannot work here, as a note ("torch.compile turned off: ..."), or None. Only
    inductor needs a compiler and Python's headers (other backends, e.g. "eager" in tests, need
    neither)."""
    import torch._dynamo  # only where compiling is wanted: ~3 s to import

    python = ".".join(map(str, sys.version_info[:2]))
    if not torch._dynamo.is_dynamo_supported():  # a Python newer than the torch (torch 2.9 on Python 3.14)
        return f"torch.compile turned off: torch {torch.__version__} cannot compile on Python {python}; training eager"
    if compile_backend() != "inductor":
        return None
    if not compiler_available(device):
        where = ("C ($CC, else gcc or clang)" if device.type == "cuda"
                 else "C++ ($CXX, else clang++ with libomp: `brew install libomp`)" if sys.platform == "darwin"
                 else "C++ ($CXX, else g++)")
        return f"torch.compile turned off: no {where} compiler found, which inductor needs; training eager"
    if python_headers() is None:
        what = ("Triton builds its kernel launcher with" if device.type == "cuda"
                else "inductor builds its C++ kernels with")
        return (f"torch.compile turned off: no Python.h for Python {python}, which {what} "
                f"(install python{python}-dev or the like); training eager")
    return None


EVAL_BATCH_FACTOR = {"cuda": 4, "cpu": 2}
"""Evaluation batches are this many training batches (no autograd: activations are freed layer by layer),
at most as many clips as INDEXED_ELEMENTS allows (eval_batch_size)."""

INDEXED_ELEMENTS = 2**31 - 1
"""The most elements one tensor of an evaluation batch may have. CUDA kernels that index with 32-bit
integers have failed on larger ones with illegal memory accesses (convolution, max- and average
pooling), an error after which the process cannot use its GPU: the run could never be recorded. VGG
at 16 kHz, 128 mels, hop x1 makes 128 x 128 x 1820 = 29,818,880 elements per clip in its first block,
3.8e9 at 128 clips; 72 clips stay under."""


def eval_batch_size(run, path: FastPath) -> int:
    """Clips per evaluation batch of `run` (a `RunSpec`) on `path`: `eval_batch_factor` training
    batches, fewer where its largest tensor would pass INDEXED_ELEMENTS, and at least one clip."""
    return eval_clips(run.arch, run.mel.input_config(run.dataset.clip_seconds), run.dataset.n_tags,
                      dataclasses.asdict(run.configuration.options), path.eval_batch_factor * run.protocol.batch_size)


def largest_tensor(arch: str, input_config, n_tags: int, options: dict) -> tuple[int, int]:
    """(elements of the largest tensor that one network input of `arch` makes, network inputs per
    clip): the input is the clip, or for MusiCNN one segment, and a clip is all of its segments."""
    import architectures

    model, outputs = architectures.meta_output_elements(arch, input_config, n_tags, 1, every_module=True,
                                                        **options)
    return max(outputs), model.segments or 1


def eval_clips(arch: str, input_config, n_tags: int, options: dict, wanted: int) -> int:
    """At most `wanted` clips of `arch` on `input_config`, as many as keep every tensor of the batch
    within INDEXED_ELEMENTS, and at least one."""
    largest, segments = largest_tensor(arch, input_config, n_tags, options)
    return max(1, min(wanted, INDEXED_ELEMENTS // (largest * segments)))


def cuda_batch_problem(run) -> str | None:
    """Why the training batches of `run` (a `RunSpec`) cannot be trained on CUDA, or None where they
    can: a tensor of more than INDEXED_ELEMENTS elements (evaluation batches are made smaller instead,
    but a training batch is part of what the spec asks for). MusiCNN trains on one segment per clip."""
    mel, batch = run.mel, run.protocol.batch_size
    largest, _ = largest_tensor(run.arch, mel.input_config(run.dataset.clip_seconds), run.dataset.n_tags,
                                dataclasses.asdict(run.configuration.options))
    if batch * largest <= INDEXED_ELEMENTS:
        return None
    fits = INDEXED_ELEMENTS // largest
    return (f"protocol.batch_size = {batch}: {run.arch} at {mel.sample_rate} Hz, {mel.n_mels} mels, hop "
            f"x{mel.hop_multiplier} makes a tensor of {largest:,} elements per clip, {batch * largest:,} per "
            f"batch, more than the 2^31 - 1 that CUDA's kernels can index; on CUDA "
            + (f"use a batch_size of at most {fits}" if fits else "not even one clip fits"))


def fast_path(device: torch.device, precision: str = "auto", planned_steps: int | None = None,
              arch: str | None = None) -> FastPath:
    """The suite's settings for `device` and architecture `arch` (see the module docstring)."""
    dtype = autocast_dtype(device, precision)
    cuda = device.type == "cuda"
    cpu_bf16 = device.type == "cpu" and dtype == torch.bfloat16 and native_bf16(device)
    eager_faster = cpu_bf16 or (device.type == "cpu" and not CPU_FP32_COMPILE.get(arch, True))
    compile, note = compile_choice(device, planned_steps, eager_faster=eager_faster)
    return FastPath(
        device=device.type,
        amp_dtype=str(dtype).replace("torch.", "") if dtype else None,
        channels_last=cuda or (cpu_bf16 and CPU_CHANNELS_LAST.get(arch, True)),
        cudnn_benchmark=cuda,
        compile=compile,
        eval_batch_factor=EVAL_BATCH_FACTOR.get(device.type, 2),
        pin_memory=cuda,
        compile_backend=compile_backend() if compile else None,
        compile_note=note,
        compile_mode=compile_mode() if compile and compile_backend() == "inductor" else None,
        fused_adam=cuda,
        tf32=precision != "fp32",
        # recorded as in effect: where the allocator cannot be set (another libc, or the user's settings)
        reuse_host_memory=device.type == "cpu" and can_reuse_freed_memory(),
    )


def cpu_share() -> int:
    """CPUs of one run on CUDA: those this process may use, shared among every run training on this
    machine (the grid's workers here, or its GPUs x the runs per GPU), so that 8 GPUs with 4 runs each
    do not each use 64 threads (torch's intra-op threads: the reads of `ReadBatches`, the host's share
    of a step) on a 64-core node. A Slurm task of `--launcher slurm` (one run at a time) has its own
    share already: its `cpus_per_task`."""
    cpus = usable_cpus()
    per_task = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and per_task.isdigit():
        share = min(cpus, int(per_task))  # bound to its CPUs or not, the task is given that many
    elif _workers_here:
        share = cpus // _workers_here
    else:
        share = cpus // (max(1, _gpus_here or torch.cuda.device_count()) * _runs_per_gpu)
    return max(1, share)


def limit_worker_threads() -> int:
    """Keep a CUDA worker to its `cpu_share`: torch's intra-op threads, and inductor's compile
    processes (by default min(32, cores) per process, each a Python with torch loaded: 8 GPUs x 4
    runs compiling at once would start 1,024). `TORCHINDUCTOR_COMPILE_THREADS` set by the user wins."""
    share = cpu_share()
    torch.set_num_threads(share)
    threads = int(os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(share)))
    config = sys.modules.get("torch._inductor.config")  # read the variable when it was imported
    if config is not None:
        config.compile_threads = threads
    return share


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to `n` within, as they were after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def baseline(device: torch.device) -> FastPath:
    """Plain fp32 eager execution: what `bench perf` compares the fast path with."""
    return FastPath(device=device.type, amp_dtype=None, channels_last=False, cudnn_benchmark=False,
                    compile=False, eval_batch_factor=1, pin_memory=False)


def resident_allowed() -> bool:
    """`BENCH_RESIDENT=0` keeps waveforms off the GPU (read per batch, e.g. to measure that path)."""
    return _switch("BENCH_RESIDENT") not in OFF_WORDS


def resident_fits(n_bytes: int, device: torch.device, reusable_bytes: int = 0) -> bool:
    """Whether `n_bytes` of waveforms may live on `device` (CUDA only: on the CPU they already do).

    Available memory is what the driver reports free, plus what PyTorch's caching allocator holds
    but no tensor uses (reserved - allocated: it serves our allocations first), plus `reusable_bytes`
    (a resident copy that would be released for this one), but at most this worker's share of the
    GPU (its total memory / the runs sharing it). Half of that may hold waveforms; the rest is for
    the model, its activations and other runs on the same GPU. Without the share, workers that
    start together would each see the GPU free and upload a copy each, leaving their runs too
    little memory.
    """
    if device.type != "cuda" or not resident_allowed():
        return False
    free, total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    available = min(free + cached + reusable_bytes, total / _runs_per_gpu)
    return n_bytes <= RESIDENT_FRACTION * available


RECOMPILE_LIMIT_MESSAGE = re.compile(r"hit config\.\w*(?:recompile|cache_size)_limit")
"""Dynamo's warning past a limit: `recompile_limit` per function, `accumulated_recompile_limit` over
all of them (`cache_size_limit` in older releases)."""


class RecompileWatch(logging.Handler):
    """Counts dynamo's "hit config.recompile_limit" (or accumulated_recompile_limit) warnings while
    active: past the limit a function runs uncompiled, which a run must record rather than claim
    `compile: true`."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if RECOMPILE_LIMIT_MESSAGE.search(message):
            self.hits.append(message.splitlines()[0])

    def __enter__(self) -> RecompileWatch:
        logging.getLogger("torch._dynamo").addHandler(self)
        return self

    def __exit__(self, *exc) -> bool:
        logging.getLogger("torch._dynamo").removeHandler(self)
        return False


def between_phases(device: torch.device) -> None:
    """Between a run's training and its evaluation, both ways: return the blocks PyTorch's caching
    allocator holds but no tensor uses to the GPU. The two phases allocate tensors of other sizes (a
    training batch with what autograd keeps; an evaluation batch several times larger without it),
    so blocks one leaves cached seldom serve the other, which reserves its own beside them. Measured
    on an H200 at the largest configuration of the paper (vgg, 16 kHz, 128 x 1820, batch 32 and 72):
    7.4 GiB allocated at the training peak, 8.5 GiB at the evaluation one, 19.4 GiB reserved without
    this; the runs sharing a GPU (`--runs-per-gpu`) are counted by what each reserves."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock read after it is honest (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
