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
from pathlib import Path

import pytest

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
# what the suite needs beside torch and torchaudio, among the report's packages: soundfile -> cffi ->
# pycparser; fvcore -> yacs, pyyaml, tqdm, termcolor, tabulate, iopath -> portalocker, typing_extensions;
# scikit-learn -> narwhals, threadpoolctl; pandas -> python-dateutil -> tzdata; submitit -> cloudpickle
WITHOUT_TORCH = {
    "numpy", "soundfile", "cffi", "pycparser", "typing-extensions", "fvcore", "yacs", "pyyaml", "tqdm",
    "termcolor", "tabulate", "iopath", "portalocker", "scikit-learn", "narwhals", "threadpoolctl", "pandas",
    "python-dateutil", "tzdata", "submitit", "cloudpickle", "setuptools",
}


def names(items: list[dict]) -> set[str]:
    return {wheelhouse.canonical(item["metadata"]["name"]) for item in items}


def test_a_box_with_pytorch_gets_no_package_that_only_pytorch_needs():
    kept = names(wheelhouse.needed(REPORT, {"torch", "torchaudio"}, LINUX_312))
    assert kept == WITHOUT_TORCH
    # typing_extensions is torch's too, but iopath, soundfile and submitit need it; filelock is
    # setuptools's only under its `test` extra, and pandas needs tzdata directly only on Windows
    assert {"sympy", "mpmath", "filelock", "cuda-toolkit", "nvidia-cublas"}.isdisjoint(kept)


def test_a_box_without_pytorch_gets_it_with_the_extras_it_asks_of_its_dependencies():
    kept = names(wheelhouse.needed(REPORT, set(), LINUX_312))
    # torch asks cuda-toolkit for its `cublas` extra, which is where nvidia-cublas comes from
    assert kept == WITHOUT_TORCH | {"torch", "torchaudio", "filelock", "sympy", "mpmath", "cuda-toolkit",
                                    "nvidia-cublas"}
    # on macOS none of torch's CUDA packages is needed
    mac = {**LINUX_312, "platform_system": "Darwin", "sys_platform": "darwin", "platform_machine": "arm64"}
    assert {"cuda-toolkit", "nvidia-cublas"}.isdisjoint(names(wheelhouse.needed(REPORT, set(), mac)))


def two_packages(requirement: str, dependency: str) -> dict:
    """A report of package `a`, requested, which requires `requirement`, and of `dependency`."""
    def item(name, requires_dist, requested):
        return {"metadata": {"name": name, "version": "1", "requires_dist": requires_dist},
                "download_info": {"url": f"https://example.org/{name}-1-py3-none-any.whl"}, "requested": requested}
    return {"install": [item("a", [requirement], True), item(dependency, [], False)]}


def test_markers_are_evaluated_for_the_box_python_not_this_one():
    report = two_packages('tomli>=2.0; python_version < "3.11"', "tomli")
    assert names(wheelhouse.needed(report, set(), wheelhouse.target_environment("3.10"))) == {"a", "tomli"}
    assert names(wheelhouse.needed(report, set(), wheelhouse.target_environment("3.12"))) == {"a"}


def test_a_requirement_packaging_cannot_parse_is_followed_by_its_name():
    report = two_packages("b>=1; os_name = 'posix'", "b")
    assert names(wheelhouse.needed(report, set(), LINUX_312)) == {"a", "b"}


def test_a_wheel_built_here_is_found_in_the_folder_whatever_its_path(tmp_path):
    folder = tmp_path / "a folder"
    folder.mkdir()
    item = {"download_info": {"url": (folder / "fvcore-0.1.5.post20221221-py3-none-any.whl").as_uri()}}
    assert "%20" in item["download_info"]["url"] and wheelhouse._in(item, folder)
    assert not wheelhouse._in({"download_info": {"url": "https://files.pythonhosted.org/x/fvcore.whl"}}, folder)


def test_a_pip_without_installation_reports_is_one_line(monkeypatch, capsys):
    import pip

    monkeypatch.setattr(pip, "__version__", "21.2.4")  # what an early Python 3.10 bundles
    assert wheelhouse.main(["--python-version", "3.12"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip 21.2.4 writes no installation report; it needs pip 22.2 or newer" in err


def test_what_a_box_has_is_read_from_names_or_its_pip_freeze(tmp_path):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("# the box\ntorch==2.11.0+cu130\nPyYAML==6.0.2\n-e git+https://example.org/x.git#egg=x\n"
                      "zope.interface @ file:///wheels/zope.interface-7.0-cp312-cp312-linux_x86_64.whl\n\n")
    assert wheelhouse.parse_have([str(freeze), "torchaudio,Jinja2"]) == {
        "torch", "pyyaml", "zope-interface", "torchaudio", "jinja2"}
    with pytest.raises(ValueError, match="--have box/freeze.txt: no such file"):
        wheelhouse.parse_have(["box/freeze.txt"])


def test_the_build_backend_is_collected_even_where_the_box_has_it():
    """pip's isolated build of the editable install sees none of the box's packages: setuptools (the
    backend pyproject.toml names) must be in wheels/ even on a box whose Python has it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    have = wheelhouse.left_out({"torch", "setuptools", "numpy"}, pyproject)
    assert have == {"torch", "numpy"}
    assert "setuptools" in names(wheelhouse.needed(REPORT, have, LINUX_312))


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
def test_a_venv_made_from_a_venv_reuses_its_pytorch_offline(tmp_path):
    """The venv is made again from this suite's own venv, as on a box whose python3 is a venv holding
    PyTorch; no index is reachable. --without-pip: pip, and setuptools for the editable install, come
    from the parent as well (a box's wheels/ would supply setuptools to pip's isolated build)."""
    venv = tmp_path / "venv"
    # a venv there already, with pip but without the system's packages, as `make` made it before
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
    # pip reads its *_NO_* variables inverted (pypa/pip#5735): "0" turns build isolation off, so the
    # editable install builds with the parent's setuptools instead of fetching one
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}
    done = subprocess.run(
        ["make", "-C", str(ROOT), f"VENV={venv}", f"PYTHON={sys.executable}", "EXTRAS=",
         "VENV_ARGS=--system-site-packages --without-pip", f"{venv}/.installed-none-system"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    probe = subprocess.run(
        [venv / "bin" / "python", "-c", "import sys, torch, bench; print(sys.prefix); print(torch.__file__); "
                                        "print(bench.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True).stdout.splitlines()
    import torch

    assert probe == [str(venv), torch.__file__, str(ROOT / "bench" / "__init__.py")]
    assert (venv / "bin" / "bench").exists()
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert not list(venv.glob("lib/python*/site-packages/torch"))
