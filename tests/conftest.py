import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from .processes import group_members, state

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"


# what a user may have exported for their own grids (their cache, models, execution switches, GPU slot
# folder): no test reads or writes through it, nor hands it to the processes it starts
USER_ENVIRONMENT = ("BENCH_CACHE", "BENCH_MODELS", "BENCH_COMPILE", "BENCH_COMPILE_BACKEND", "BENCH_COMPILE_MODE",
                    "BENCH_RESIDENT", "BENCH_GPU_LOCKS", "LOKY_MAX_CPU_COUNT")


@pytest.fixture(autouse=True)
def users_environment_set_aside(monkeypatch, tmp_path_factory):
    for name in USER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    # the CPUs a process may use (`bench.core.machine.usable_cpus`) as the tests fake them, with
    # os.cpu_count and os.sched_getaffinity: not within the CPU quota of a container the suite runs in
    from joblib.externals.loky.backend import context

    monkeypatch.setattr(context, "_cpu_count_cgroup", lambda os_cpu_count: os_cpu_count, raising=False)
    # torch.compile's cache (inductor's default: /tmp/torchinductor_<user>) in the session's folder,
    # shared by its tests and the processes they start
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "torchinductor"))
    # a Slurm cluster of the machine the suite runs on is never asked (the tests of `not_accounted` call
    # the function they imported)
    monkeypatch.setattr("bench.run.grid.not_accounted", lambda job_id: False)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """The four released musicnn models, imported once per test session (needs TensorFlow and the musicnn
    package: the tests that use it are marked `needs_musicnn`)."""
    from bench.core.store import exclusive_lock
    from bench.tools.pretrained import import_musicnn

    out = shared_folder(tmp_path_factory, "released-models")  # TensorFlow takes ~7 s to start: once per session
    out.mkdir(exist_ok=True)
    with exclusive_lock(out / ".import.lock"):
        if not (out / ".imported").exists():
            import_musicnn(out=out, log=lambda _: None)  # all four, with one TensorFlow process
            (out / ".imported").touch()
    return out


def shared_folder(tmp_path_factory, name: str) -> Path:
    """A folder of this test session that every pytest-xdist worker sees (the session's base folder's
    parent is per-session under xdist; without xdist the base folder is)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """The synthetic dataset of the tiny end-to-end grids (48 clips of 3 s, seed 0), generated once for
    all test processes: under pytest-xdist the first worker to ask generates it and the others wait on
    the generator's own lock, then find it complete. Copy it (`copy_tiny_synthetic`) before use."""
    from bench.data.synthetic import generate

    shared = shared_folder(tmp_path_factory, "tiny-synthetic")
    generate(shared, clips=48, seed=0, clip_seconds=3.0, workers=1, progress=False)
    return shared


@pytest.fixture(scope="session")
def copy_tiny_synthetic(tiny_synthetic):
    """copy(folder): a private copy of `tiny_synthetic` at folder (what a spec's dataset.path names)."""

    def copy(folder: Path) -> Path:
        shutil.copytree(tiny_synthetic, folder, ignore=shutil.ignore_patterns(".*.lock"))
        return folder

    return copy


@pytest.fixture(scope="session")
def reference():
    """tests/data/musicnn: the reference patches (8, 96 bands, 187 frames) and musicnn's outputs by key."""
    import numpy as np
    import torch

    data = ROOT / "tests" / "data" / "musicnn"
    inputs, outputs = np.load(data / "inputs.npz"), np.load(data / "outputs.npz")
    x = torch.from_numpy(inputs["x"].astype(np.float32)).transpose(1, 2)  # (8, mel, time), as our models take it
    return x, {key: outputs[key] for key in outputs.files}


@contextmanager
def unrendered_figures():
    """`bench report` with its figures built as usual but not drawn: each figure file is written empty.
    Drawing and embedding fonts in the PDFs take ~90 % of a report's time; the tests that read only
    its tables and notes use this (the tests of the figures themselves draw them)."""
    from bench.report import figures

    def rendered(fig, stem: str) -> dict[str, bytes]:
        return {f"{stem}.{fmt}": b"" for fmt in ("png", "pdf")}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "rendered", rendered)
        yield


@pytest.fixture
def figures_unrendered():
    """`unrendered_figures` for one test."""
    with unrendered_figures():
        yield


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec file from TOML text; returns its path."""

    def write(text: str, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


MINIMAL_SPEC = """
name = "t"
seeds = [0]
[dataset]
name = "synthetic"
[[grid]]
arch = ["vgg"]
sample_rate = [12000]
n_mels = [96]
hop_multiplier = [1]
log = ["log"]
"""


@pytest.fixture
def one_run(write_spec, tmp_path):
    """(spec, run, run folder) of MINIMAL_SPEC's single run, its results under tmp_path/results."""
    from bench.run.runner import run_dir
    from bench.spec import load_spec

    spec = load_spec(write_spec(MINIMAL_SPEC))
    (run,) = spec.runs()
    return spec, run, run_dir(tmp_path / "results", spec, run)


SLOWEST_FIRST = ("test_grid.py", "test_fastpath.py", "test_reliability.py", "test_cuda_paths.py", "test_export.py",
                 "test_report.py", "test_slurm_jobs.py", "test_readers.py", "test_figures_readability.py",
                 "test_transfer.py", "test_cache.py")
"""The modules that take longest (`pytest --durations=0`, 2 cores). `make test` hands whole modules to
its workers (`--dist loadfile --no-loadscope-reorder`) in collection order, so these go first and the
workers finish together instead of one waiting on a long module it started last."""


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the other modules, and the tests in each module, keep their order


def group_ends(pgid: int, seconds: float = 30.0) -> bool:
    """Whether every process of the group has ended within `seconds`: gone, or a zombie (ended, waiting
    for a parent that may never reap it, e.g. an orphan under a container's init that does not)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not [pid for pid in group_members(pgid) if state(pid) not in ("Z", None)]:
            return True
        time.sleep(0.1)
    return False
