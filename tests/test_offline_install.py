"""Installing on a box with no internet whose Python has PyTorch: which wheels `make wheels` collects
(from pip's real installation report for Python 3.12), and `make VENV_ARGS=--system-site-packages
EXTRAS=` making a venv that reuses the PyTorch of the Python it is made from, offline.

tests/data/pip-report-py312.json is `pip install --dry-run --report` (pip 23.2) of the suite's
requirements for Python 3.12 on Linux x86-64, cut to 29 packages; each keeps its published
`requires_dist`. The expected sets below were read off those lists by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bench.tools import wheelhouse
from bench.tools.wheelhouse import tomllib

ROOT = Path(__file__).resolve().parents[1]
REPORT = json.loads((Path(__file__).parent / "data" / "pip-report-py312.json").read_text())
LINUX_312 = {
    "implementation_name": "cpython", "implementation_version": "3.12.3", "os_name": "posix",
    "platform_machine": "x86_64", "platform_release": "6.8.0", "platform_system": "Linux",
    "platform_version": "#1 SMP", "python_full_version": "3.12.3", "platform_python_implementation": "CPython",
    "python_version": "3.12", "sys_platform": "linux",
}
# the suite's requirements the report was resolved from, but soxr, scipy and matplotlib (cut from it)
REQUIREMENTS = [
    "torch>=2.10,<2.15", "torchaudio>=2.10,<2.12", "numpy>=1.24", "soundfile>=0.13", "fvcore>=0.1.5",
    "scikit-learn>=1.8; python_version >= '3.11'", "scikit-learn>=1.3; python_version < '3.11'", "pandas>=2.0",
    "submitit>=1.5", "tqdm>=4.66", "tomli>=2.0; python_version < '3.11'", "setuptools>=77",
]
PYTORCH = {"torch": None, "torchaudio": None}
# what the suite needs beside torch and torchaudio, among the report's packages: soundfile -> cffi ->
# pycparser; fvcore -> yacs, pyyaml, tqdm, termcolor, tabulate, iopath -> portalocker, typing_extensions;
# scikit-learn -> narwhals, threadpoolctl; pandas -> python-dateutil -> tzdata; submitit -> cloudpickle
WITHOUT_TORCH = {
    "numpy", "soundfile", "cffi", "pycparser", "typing-extensions", "fvcore", "yacs", "pyyaml", "tqdm",
    "termcolor", "tabulate", "iopath", "portalocker", "scikit-learn", "narwhals", "threadpoolctl", "pandas",
    "python-dateutil", "tzdata", "submitit", "cloudpickle", "setuptools",
}


def names(items: list[dict]) -> set[str]:
    return {canonicalize_name(item["metadata"]["name"]) for item in items}


def needed(report: dict, have: dict, environment: dict, requirements: list[str] = REQUIREMENTS) -> set[str]:
    """The packages of `report` the box lacks (what was cut from the report comes back as missing)."""
    return names(wheelhouse.walk(report, requirements, have, environment)[0])


def test_a_box_with_pytorch_gets_no_package_that_only_pytorch_needs():
    kept = needed(REPORT, PYTORCH, LINUX_312)
    assert kept == WITHOUT_TORCH
    # and what was cut from the report: fvcore's Pillow, scikit-learn's joblib and scipy
    assert wheelhouse.walk(REPORT, REQUIREMENTS, PYTORCH, LINUX_312)[1] == ["Pillow", "joblib>=1.4.0", "scipy>=1.10.0"]
    # typing_extensions is torch's too, but iopath, soundfile and submitit need it; filelock is
    # setuptools's only under its `test` extra, and pandas needs tzdata directly only on Windows
    assert {"sympy", "mpmath", "filelock", "cuda-toolkit", "nvidia-cublas"}.isdisjoint(kept)


def test_a_box_without_pytorch_gets_it_with_the_extras_it_asks_of_its_dependencies():
    kept = needed(REPORT, {}, LINUX_312)
    # torch asks cuda-toolkit for its `cublas` extra, which is where nvidia-cublas comes from
    assert kept == WITHOUT_TORCH | {"torch", "torchaudio", "filelock", "sympy", "mpmath", "cuda-toolkit",
                                    "nvidia-cublas"}
    # on macOS none of torch's CUDA packages is needed
    mac = {**LINUX_312, "platform_system": "Darwin", "sys_platform": "darwin", "platform_machine": "arm64"}
    assert {"cuda-toolkit", "nvidia-cublas"}.isdisjoint(needed(REPORT, {}, mac))


def two_packages(requirement: str, dependency: str | None) -> dict:
    """A report of package `a`, which requires `requirement`, and of `dependency` (None: pip left it out)."""
    def item(name, requires_dist):
        return {"metadata": {"name": name, "version": "1", "requires_dist": requires_dist},
                "download_info": {"url": f"https://example.org/{name}-1-py3-none-any.whl"}}
    return {"install": [item("a", [requirement])] + ([item(dependency, [])] if dependency else [])}


def test_markers_are_evaluated_for_the_box_python_not_this_one():
    report = two_packages('tomli>=2.0; python_version < "3.11"', "tomli")
    assert needed(report, {}, wheelhouse.target_environment("3.10"), ["a"]) == {"a", "tomli"}
    assert needed(report, {}, wheelhouse.target_environment("3.12"), ["a"]) == {"a"}
    # the project's own requirements too, and pip is given them without markers it would judge itself
    assert wheelhouse.for_box(REQUIREMENTS[4:7], wheelhouse.target_environment("3.10")) == [
        "fvcore>=0.1.5", "scikit-learn>=1.3"]


def test_what_pip_left_out_for_another_python_is_asked_for_again(monkeypatch):
    """pip 23-25 judge a dependency's marker for the Python that runs them, whatever --python-version
    says: resolved on 3.11, pytest's `exceptiongroup>=1; python_version < "3.11"` is not in the report
    a 3.10 box needs. The walk names it and the next resolution asks for it."""
    requirement = 'exceptiongroup>=1; python_version < "3.11"'
    items, missing = wheelhouse.walk(two_packages(requirement, None), ["a"], {}, wheelhouse.target_environment("3.10"))
    assert (names(items), missing) == ({"a"}, ["exceptiongroup>=1"])
    asked = []

    def resolve(requirements, out, target):
        asked.append(list(requirements))
        return two_packages(requirement, "exceptiongroup" if "exceptiongroup>=1" in requirements else None)

    monkeypatch.setattr(wheelhouse, "_resolve", resolve)
    items = wheelhouse.resolved(["a"], Path("wheels"), [], {}, wheelhouse.target_environment("3.10"))
    assert names(items) == {"a", "exceptiongroup"} and asked == [["a"], ["a", "exceptiongroup>=1"]]


def test_a_package_the_box_has_in_a_version_out_of_range_is_collected():
    # numpy 1.21 is below the suite's 1.24; numpy 2.0.0 fits it but not pandas 3.1's numpy>=2.0.2
    assert "numpy" in needed(REPORT, {**PYTORCH, "numpy": "1.21.6"}, LINUX_312)
    assert "numpy" in needed(REPORT, {**PYTORCH, "numpy": "2.0.0"}, LINUX_312)
    assert "numpy" not in needed(REPORT, {**PYTORCH, "numpy": "2.5.2"}, LINUX_312)
    assert needed(REPORT, {"torch": "2.9.1", "torchaudio": "2.9.1"}, LINUX_312) >= {"torch", "torchaudio"}
    assert needed(REPORT, {"torch": "2.11.0+cu130", "torchaudio": "2.11.0"}, LINUX_312) == WITHOUT_TORCH


def test_a_requirement_packaging_cannot_parse_is_followed_by_its_name():
    report = two_packages("b>=1; os_name = 'posix'", "b")
    assert needed(report, {}, LINUX_312, ["a"]) == {"a", "b"}
    assert needed(two_packages("(b)", "b"), {}, LINUX_312, ["a"]) == {"a"}  # nor a name: not followed


def test_only_the_wheels_of_the_resolved_versions_are_counted(tmp_path):
    for name in ("numpy-2.4.6-cp312-cp312-manylinux_2_28_x86_64.whl", "numpy-2.3.0-cp312-cp312-linux_x86_64.whl",
                 "scikit_learn-1.9.1-cp312-cp312-manylinux_2_28_x86_64.whl"):
        (tmp_path / name).touch()
    items = [{"metadata": {"name": "numpy", "version": "2.4.6"}},
             {"metadata": {"name": "scikit-learn", "version": "1.9.1"}}]
    kept = sorted(path.name for path in tmp_path.iterdir() if any(wheelhouse._is(path, item) for item in items))
    assert kept == ["numpy-2.4.6-cp312-cp312-manylinux_2_28_x86_64.whl",
                    "scikit_learn-1.9.1-cp312-cp312-manylinux_2_28_x86_64.whl"]


def test_pips_own_reason_is_the_line_said(monkeypatch):
    stderr = ("ERROR: Cannot install pluggy<1 and pytest>=8 because these package versions have conflicting "
              "dependencies.\n\nThe conflict is caused by:\n    pytest 8.4.2 depends on pluggy<2 and >=1.5\n\n"
              "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/\n")
    monkeypatch.setattr(wheelhouse.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 1, "", stderr))
    with pytest.raises(RuntimeError, match=r"^pip install failed: ERROR: Cannot install pluggy<1 and pytest>=8 "):
        wheelhouse._pip(["install", "x"])


def test_a_python_the_suite_does_not_support_is_one_line(capsys):
    assert wheelhouse.main(["--python-version", "3.9", "--project", str(ROOT / "pyproject.toml")]) == 2  # the user's
    assert capsys.readouterr().err == "bench wheels: --python-version 3.9: mel-resolution-bench needs Python >=3.10\n"


def test_a_wheel_built_here_is_found_in_the_folder_whatever_its_path(tmp_path):
    folder = tmp_path / "a folder"
    folder.mkdir()
    item = {"download_info": {"url": (folder / "fvcore-0.1.5.post20221221-py3-none-any.whl").as_uri()}}
    assert "%20" in item["download_info"]["url"] and wheelhouse._in(item, folder)
    assert not wheelhouse._in({"download_info": {"url": "https://files.pythonhosted.org/x/fvcore.whl"}}, folder)


def test_a_pip_without_installation_reports_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(wheelhouse, "pip_version", lambda: "21.2.4")  # what an early Python 3.10 bundles
    assert wheelhouse.main(["--python-version", "3.12"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip 21.2.4 writes no installation report; it needs pip 22.2 or newer" in err


def test_what_a_box_has_is_read_from_names_or_its_pip_freeze(tmp_path):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("# the box\ntorch==2.11.0+cu130\nPyYAML==6.0.2\n-e git+https://example.org/x.git#egg=x\n"
                      "zope.interface @ file:///wheels/zope.interface-7.0-cp312-cp312-linux_x86_64.whl\n\n")
    assert wheelhouse.parse_have([str(freeze), "torchaudio,Jinja2==3.1.6"]) == {
        "torch": "2.11.0+cu130", "pyyaml": "6.0.2", "zope-interface": None, "torchaudio": None, "jinja2": "3.1.6"}
    assert wheelhouse.parse_have([f"torch {freeze}"]) == wheelhouse.parse_have([str(freeze)])  # one make word
    assert wheelhouse.parse_have([""]) == {}  # make wheels WHEELS_HAVE=: the box has nothing
    with pytest.raises(ValueError, match="--have box/freeze.txt: no such file"):
        wheelhouse.parse_have(["box/freeze.txt"])


def test_the_build_backend_is_collected_even_where_the_box_has_it():
    """pip's isolated build of the editable install sees none of the box's packages: setuptools (the
    backend pyproject.toml names) must be in wheels/ even on a box whose Python has it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    have = wheelhouse.left_out({"torch": None, "setuptools": "80.9.0", "numpy": None}, pyproject)
    assert have == {"torch": None, "numpy": None}
    assert "setuptools" in needed(REPORT, have, LINUX_312)


def test_the_requirements_are_the_projects_with_its_extras_and_build_backend():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = wheelhouse.project_requirements(pyproject, [])
    assert runtime == pyproject["project"]["dependencies"] + pyproject["build-system"]["requires"]
    dev = wheelhouse.project_requirements(pyproject, ["dev"])
    # dev names the project's own onnx extra: its three packages, never the project itself
    assert {"onnx", "onnxscript", "onnxruntime", "pytest", "librosa"} <= {
        wheelhouse.requirement_name(requirement) for requirement in dev}
    assert "mel-resolution-bench" not in {wheelhouse.requirement_name(requirement) for requirement in dev}
    with pytest.raises(ValueError, match="has no extra 'gpu'"):
        wheelhouse.project_requirements(pyproject, ["gpu"])


def test_a_wrong_python_version_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        wheelhouse.main(["--python-version", "312"])
    assert stop.value.code == 2
    assert "--python-version '312': give the box's Python as 3.N" in capsys.readouterr().err


@pytest.mark.slow
def test_venvs_made_from_venvs_reuse_their_pytorch_offline(tmp_path):
    """A box whose python3 is a venv holding PyTorch: `parent` is made from this suite's own venv, and
    `venv` from `parent`, each by make, with no index reachable. `venv` sees the suite's torch through
    both, and a module `parent` finds only through a .pth file of its own (as an editable install's),
    which the .pth make writes runs. --without-pip: pip, and setuptools for the editable install, come
    from the parents as well (a box's wheels/ would supply setuptools to pip's isolated build)."""
    backend = Requirement(tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"][0])
    try:
        setuptools = version("setuptools")
    except PackageNotFoundError:  # a venv of Python 3.12 or newer starts without it
        setuptools = None
    if setuptools is None or not backend.specifier.contains(setuptools):  # the editable install builds with it
        pytest.skip(f"this Python's setuptools ({setuptools or 'none'}) cannot build the project ({backend})")
    parent, venv, extra = tmp_path / "parent", tmp_path / "venv", tmp_path / "extra"
    # pip reads its *_NO_* variables inverted (pypa/pip#5735): "0" turns build isolation off, so the
    # editable install builds with the parents' setuptools instead of fetching one
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}

    def make(folder, python):
        done = subprocess.run(
            ["make", "-C", str(ROOT), f"VENV={folder}", f"PYTHON={python}", "EXTRAS=",
             "VENV_ARGS=--system-site-packages --without-pip", f"{folder}/.installed-none-system"],
            env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr

    make(parent, sys.executable)
    extra.mkdir()
    (extra / "only_in_parent.py").write_text("WHERE = 'parent'\n")
    (next(parent.glob("lib/python*/site-packages")) / "only-in-parent.pth").write_text(f"{extra}\n")
    # a venv there already, with pip but without the system's packages, as `make` made it before
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
    make(venv, parent / "bin" / "python")
    probe = subprocess.run(
        [venv / "bin" / "python", "-c", "import sys, torch, bench, only_in_parent; print(sys.prefix); "
                                        "print(torch.__file__); print(bench.__file__); print(only_in_parent.WHERE)"],
        cwd=tmp_path, capture_output=True, text=True, check=True).stdout.splitlines()
    import torch

    assert probe == [str(venv), torch.__file__, str(ROOT / "bench" / "__init__.py"), "parent"]
    assert (venv / "bin" / "bench").exists()
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert not [*venv.glob("lib/python*/site-packages/torch"), *parent.glob("lib/python*/site-packages/torch")]


@pytest.mark.parametrize("name, stem", [("mid spec.toml", "mid spec"), ("demo.TOML", "demo")])
def test_make_perf_names_its_json_after_the_spec_as_bench_plan_reads_it(tmp_path, name, stem):
    """RESULTS/perf/<spec>.json, where `bench plan` looks for it (the spec's Path.stem): make's word
    functions split "sp ace/mid spec.toml" at its spaces, and the file was named "sp mid spec.json"."""
    spec = tmp_path / "sp ace" / name
    done = subprocess.run(["make", "-n", "-C", str(ROOT), "perf", f"PERF_SPEC={spec}", f"RESULTS={tmp_path / 'r'}"],
                          capture_output=True, text=True, timeout=60, check=True)
    (line,) = [line for line in done.stdout.splitlines() if " perf " in line and "--out" in line]
    # the recipe as the shell runs it, bench replaced by a printf of its arguments
    args = subprocess.run(["bash", "-c", "printf '%s\\n' " + line.split(" ", 1)[1]], capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout.splitlines()
    assert args[args.index("--out") + 1] == str(tmp_path / "r" / "perf" / f"{stem}.json")


@pytest.mark.parametrize("python, says", [
    ("python9", "python9: not found: run make PYTHON=python3.12"),
    # a pyenv shim for a version it does not have prints several lines: the first is said
    ("shim", "shim is pyenv: python2: command not found: run make PYTHON=python3.12"),
])
def test_a_python_that_cannot_make_the_venv_is_named_in_one_line(tmp_path, python, says):
    """`make grid PYTHON=...` (the README's way to pick another interpreter) with a name that is not on
    PATH, or a shim that answers with its own help text: one line naming it, not a shell error spliced
    into the sentence."""
    shim = tmp_path / "shim"
    shim.write_text('#!/bin/sh\necho "pyenv: python2: command not found"\necho "The python2 command exists in '
                    'these Python versions:"\necho "  2.7.18"\nexit 127\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    done = subprocess.run(["make", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", f"PYTHON={python}",
                           f"{tmp_path / 'venv'}/.installed"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and not (tmp_path / "venv").exists()
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("bench needs")]
    assert line == f"bench needs Python 3.10 or newer; {says} (or another 3.10+ interpreter)"
    assert len([line for line in done.stderr.splitlines() if not line.startswith("make")]) == 1


def test_a_venv_path_with_a_space_is_refused_before_anything_is_removed(tmp_path):
    """`make plan VENV="my env"` ran `python -m venv --clear my env`, which emptied the folder `my` named
    (a checkout, with its results), and `make clean` removed each word."""
    (tmp_path / "my").mkdir()
    (tmp_path / "my" / "notes.txt").write_text("mine")
    for target in ("plan", "clean"):
        # both words in tmp_path: a Makefile that took them apart would make its venv there, not in the checkout
        done = subprocess.run(["make", "-C", str(ROOT), f"VENV={tmp_path / 'my'} {tmp_path / 'env'}", target],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "give a path without spaces" in done.stderr
    assert (tmp_path / "my" / "notes.txt").read_text() == "mine"


def _venv_state(checkout: Path, venv: Path, *args: str) -> str:
    """What the Makefile of `checkout` finds of the venv `venv` (its stamp made newer than pyproject.toml
    first): "[]" for a venv it trusts, else why it installs the suite again."""
    (venv / ".installed").touch()
    return subprocess.run(["make", "-s", "-C", str(checkout), f"VENV={venv}", *args, "--eval",
                           "show: ; @echo '[$(VENV_STALE)]'", "show"],
                          capture_output=True, text=True, timeout=60, check=True).stdout.strip()


def test_a_venv_that_runs_another_checkouts_code_is_installed_again(tmp_path):
    """A checkout copied with its .venv (`cp -a`), moved, or sharing VENV with another ran the other
    checkout's code, or failed to start, as long as the stamp was newer than pyproject.toml. A venv that
    runs this test's Python (whose bench is the repository's) is trusted by the repository's Makefile
    and not by a copy of it in another folder; nor where its interpreter is gone, nor where a PYTHON of
    another version is given on the command line."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "Makefile").write_text((ROOT / "Makefile").read_text())
    (copy / "pyproject.toml").write_text("")
    assert _venv_state(ROOT, venv) == "[]"
    assert _venv_state(copy, venv) == "[stale]"  # its bench is the repository's, not the copy's
    other = tmp_path / "python-other"  # answers as the next minor version would
    other.write_text(f"#!/bin/sh\necho {sys.version_info.major}.{sys.version_info.minor + 1}\n")
    other.chmod(0o755)
    assert _venv_state(ROOT, venv, f"PYTHON={other}") == f"[{sys.version_info.major}.{sys.version_info.minor}]"
    python.write_text(f'#!/bin/sh\nexec "{tmp_path / "uninstalled-python"}" "$@"\n')
    assert _venv_state(ROOT, venv) == "[stale]"


def test_a_dry_run_makes_nothing(tmp_path):
    """`make -n` runs the recipe line that holds $(MAKE): it took the bootstrap's lock for real, failing
    where VENV's folder did not exist yet and leaving a lock file where it did."""
    done = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={tmp_path / 'new' / 'venv'}", "plan"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "bench plan" in done.stdout and not list(tmp_path.iterdir())


def test_two_bootstraps_take_turns_where_there_is_no_flock_command(tmp_path):
    """macOS has no flock(1): two makes installing the venv at once (`make grid` and `make test` in two
    terminals on a fresh clone) ran pip into one venv together. Where the command is missing, PYTHON's
    fcntl.flock holds the same lock file. Both makes here run on a PATH without flock(1), each holding
    the bootstrap's lock for a second: the second starts only after the first has ended."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for tool in Path(folder).glob("*") if Path(folder).is_dir() else ():
            if tool.name != "flock" and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    env = {**os.environ, "PATH": str(bin_dir)}
    log = tmp_path / "log"
    probe = ("probe: ; @$(VENV_LOCK) $(VENV).lock sh -c 'echo start $(WHO) >> $(LOG); sleep 1; "
             "echo end $(WHO) >> $(LOG)'")
    makes = [subprocess.Popen(["make", "-s", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", f"PYTHON={sys.executable}",
                               f"LOG={log}", f"WHO={who}", "--eval", probe, "probe"], env=env)
             for who in "ab"]
    assert [make.wait(timeout=60) for make in makes] == [0, 0]
    first, second = log.read_text().split()[1::2][::2]
    assert log.read_text().split() == ["start", first, "end", first, "start", second, "end", second]
    # a Python too old for the lock (macOS's `python` 2.7 has fcntl but no os.set_inheritable) takes
    # none, so that the bootstrap says which Python it needs instead of the lock's traceback
    old = tmp_path / "python2.7"
    # as 2.7 answers: `import fcntl` works, `sys.exit(sys.version_info < (3, 4))` exits 1
    old.write_text('#!/bin/sh\ncase "$*" in *version_info*) exit 1;; esac\nexit 0\n')
    old.chmod(0o755)
    for python, locks in ((old, False), (sys.executable, True)):
        shown = subprocess.run(["make", "-s", "-C", str(ROOT), f"PYTHON={python}", "--eval",
                                "show: ; @echo '[$(if $(VENV_LOCK),lock)]'", "show"], env=env, capture_output=True,
                               text=True, timeout=60, check=True).stdout.strip()
        assert shown == ("[lock]" if locks else "[]")
