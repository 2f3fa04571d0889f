"""A folder of wheels that installs the suite on a box with no internet (`make wheels`).

GPU boxes and cluster nodes often reach no package index, and usually have a PyTorch built for their
CUDA driver already. On a machine that reaches the index, this collects the wheels of every package
the suite needs on such a box (its Python version, this machine's platform), except the packages
the box has (`--have`: torch and torchaudio by default) and those only they need. Packages the index
has only as source (fvcore and iopath on PyPI) are built into wheels here, which works because they
are pure Python. The build backend (`[build-system] requires`) is included: pip builds the suite's
own editable install in an isolated environment from the same folder.

On the box, with the folder copied to `wheels/` in the clone:

    PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/wheels make VENV_ARGS=--system-site-packages EXTRAS= gpu-check
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import subprocess
import sys
import sysconfig
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_HAVE = ("torch", "torchaudio")
_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def requirement_name(requirement: str) -> str | None:
    """The distribution a requirement (`numpy>=1.24; python_version >= '3.11'`, `torch==2.11.0+cu130`,
    `pkg @ file:///...`) names; None for a line that names none (a comment, a pip option)."""
    text = requirement.split("#", 1)[0]
    if not text.strip() or text.lstrip().startswith("-"):
        return None
    match = _NAME.match(text)
    return canonicalize_name(match.group(1)) if match else None


def parse_have(values: list[str]) -> dict[str, str | None]:
    """The packages a box has, with their versions where known: names (`torch torchaudio`, commas
    allowed; `torch==2.11.0` pins one) or files of its `pip freeze` output, one requirement per line."""
    have: dict[str, str | None] = {}
    for value in values:
        for token in re.split(r"[\s,]+", value.strip()) if value.strip() else []:
            path = Path(token)
            if not path.is_file() and ("/" in token or token.endswith(".txt")):
                raise ValueError(f"--have {token}: no such file")
            for line in path.read_text().splitlines() if path.is_file() else [token]:
                name = requirement_name(line)
                if name:
                    pin = re.match(r"\s*[^=<>!~;@\s]+\s*===?\s*([^\s;#]+)", line)
                    have[name] = pin.group(1) if pin else None
    return have


def project_requirements(pyproject: dict, extras: list[str]) -> list[str]:
    """What installing the project with `extras` requires, the build backend included; an extra that
    names the project itself (`mel-resolution-bench[onnx]`) is expanded into that extra's list."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    own = canonicalize_name(project["name"])
    wanted, seen, requirements = list(extras), set(), list(project.get("dependencies", []))
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise ValueError(f"{project['name']} has no extra {extra!r} (it has: {', '.join(sorted(optional))})")
        seen.add(extra)
        for requirement in optional[extra]:
            if requirement_name(requirement) == own:
                wanted.extend(re.findall(r"[A-Za-z0-9._-]+", requirement.split("[", 1)[1].split("]", 1)[0]))
            else:
                requirements.append(requirement)
    return requirements + list(pyproject.get("build-system", {}).get("requires", []))


def target_environment(python_version: str) -> dict[str, str]:
    """The marker environment of a box running `python_version` on this machine's platform."""
    return {**default_environment(), "python_version": python_version, "python_full_version": f"{python_version}.0"}


def for_box(requirements: list[str], environment: dict[str, str]) -> list[str]:
    """The requirements whose markers hold on the box, without their markers: pip evaluates a marker for
    the Python that runs it, whatever `--python-version` says."""
    kept = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": ""}):
            requirement.marker = None
            kept.append(str(requirement))
    return kept


def left_out(have: dict[str, str | None], pyproject: dict) -> dict[str, str | None]:
    """The packages the wheels leave out: what the box has, but not the build backend. pip builds the
    suite's editable install in an isolated environment, which sees none of the box's packages."""
    backend = pyproject.get("build-system", {}).get("requires", [])
    backend_names = {requirement_name(requirement) for requirement in backend}
    return {name: version for name, version in have.items() if name not in backend_names}


def _has(have: dict[str, str | None], requirement: Requirement) -> bool:
    """Whether the box's copy of the package satisfies `requirement` (an unknown version is taken to)."""
    name = canonicalize_name(requirement.name)
    if name not in have:
        return False
    version = have[name]
    try:
        return version is None or requirement.specifier.contains(version, prereleases=True)
    except InvalidVersion:
        return True


def walk(report: dict, requirements: list[str], have: dict[str, str | None],
         environment: dict[str, str]) -> tuple[list[dict], list[str]]:
    """The packages of pip's installation report (`pip install --dry-run --report`) that the box lacks:
    those reachable from `requirements` through requirements whose markers hold in `environment` with
    the extras asked of the package, without passing through a package the box has in a version that
    satisfies the requirement. Also the requirements the walk needs that the report lacks: pip left
    them out when their markers did not hold for the Python that ran it."""
    items = {canonicalize_name(item["metadata"]["name"]): item for item in report["install"]}
    wanted = [(None, frozenset())]  # None: the project, requiring `requirements`
    kept: dict[str | None, set[str]] = {}  # package: the extras asked of it
    missing: dict[str, str] = {}
    while wanted:
        name, extras = wanted.pop()
        if name in kept and extras <= kept[name]:
            continue
        active = kept.setdefault(name, set())
        active |= extras
        for text in requirements if name is None else items[name]["metadata"].get("requires_dist", []):
            try:
                requirement = Requirement(text)
            except InvalidRequirement:  # metadata packaging cannot parse: followed by name, whatever its marker
                name_only = requirement_name(text)
                if name_only is None:
                    continue
                requirement = Requirement(name_only)
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate({**environment, "extra": extra})
                                              for extra in {"", *active}):
                continue
            dependency = canonicalize_name(requirement.name)
            if _has(have, requirement):
                continue
            if dependency not in items:
                requirement.marker = None
                missing.setdefault(dependency, str(requirement))
                continue
            wanted.append((dependency, frozenset(requirement.extras)))
    return [items[name] for name in sorted(n for n in kept if n is not None)], sorted(missing.values())


def is_wheel(item: dict) -> bool:
    return item["download_info"]["url"].endswith(".whl")


def _in(item: dict, folder: Path) -> bool:
    url = urllib.parse.urlparse(item["download_info"]["url"])
    return url.scheme == "file" and Path(urllib.request.url2pathname(url.path)).parent == folder.resolve()


def pinned(item: dict) -> str:
    return f"{item['metadata']['name']}=={item['metadata']['version']}"


def _pip(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip() and "WARNING" not in line]
        errors = [line for line in lines if line.startswith("ERROR:") and "ResolutionImpossible" not in line]
        why = errors[0] if errors else lines[-1] if lines else f"exit status {done.returncode}"
        raise RuntimeError(f"pip {args[0]} failed: {why}")


def _resolve(requirements: list[str], out: Path, target: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # --target: pip takes another Python's version only for an install into a folder
        _pip(["install", "-q", "--dry-run", "--target", str(Path(tmp) / "target"), "--report", str(report),
              "--find-links", str(out), *target, *requirements])
        return json.loads(report.read_text())


def resolved(requirements: list[str], out: Path, target: list[str], have: dict[str, str | None],
             environment: dict[str, str], rounds: int = 5) -> list[dict]:
    """The packages the box lacks, as pip resolves them. What the box's Python needs but pip left out,
    evaluating a dependency's marker for its own Python, is asked for by name and resolved again."""
    asked = for_box(requirements, environment)
    for _ in range(rounds):
        items, missing = walk(_resolve(asked, out, target), requirements, have, environment)
        if not missing:
            return items
        asked += missing
    raise RuntimeError(f"pip's resolution still lacks {', '.join(missing)} after {rounds} rounds")


def _is(path: Path, item: dict) -> bool:
    """Whether the wheel file `path` is the report's package `item`, in its version."""
    try:
        name, version, _, _ = parse_wheel_filename(path.name)
        return name == canonicalize_name(item["metadata"]["name"]) and version == Version(item["metadata"]["version"])
    except (InvalidWheelFilename, InvalidVersion):
        return False


def collect(requirements: list[str], out: Path, python_version: str, have: dict[str, str | None]) -> list[Path]:
    """Fill `out` with the wheels of `requirements` for `python_version` on this platform, except `have`
    and what only they need; the wheels it holds afterwards for those packages."""
    out.mkdir(parents=True, exist_ok=True)
    environment = target_environment(python_version)
    # Source-only packages first, built here: the target's resolution below accepts wheels only.
    for item in resolved(requirements, out, [], have, environment):
        if not is_wheel(item):
            before = set(out.glob("*.whl"))
            _pip(["wheel", "-q", "--no-deps", "--wheel-dir", str(out), pinned(item)])
            for built in set(out.glob("*.whl")) - before:
                if not built.name.endswith("-none-any.whl"):
                    built.unlink()
                    raise RuntimeError(f"{pinned(item)} has no wheel on the index and is not pure Python "
                                       f"(it built {built.name} here): build it on the box")
    target = ["--python-version", python_version, "--only-binary=:all:"]
    items = resolved(requirements, out, target, have, environment)
    fetch = [pinned(item) for item in items if not _in(item, out)]
    if fetch:
        _pip(["download", "-q", "--no-deps", "--dest", str(out), *target, *fetch])
    return sorted(path for path in out.glob("*.whl") if any(_is(path, item) for item in items))


def pip_version() -> str:
    """The installed pip's version, read from its metadata: importing pip would import distutils."""
    try:
        return importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        return "(none)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.wheelhouse", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("wheels"), help="the folder (default: wheels)")
    parser.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                        help="the box's Python, e.g. 3.12 (default: this one's)")
    parser.add_argument("--extras", default="", help="the extras the box installs, comma-separated "
                        "(default: none, what make grid, perf and gpu-check need; `dev` for make test)")
    parser.add_argument("--have", action="append", default=None, metavar="NAMES_OR_FILE",
                        help="packages the box has: names, or a file of its `pip freeze` "
                             f"(repeatable; default: {' '.join(DEFAULT_HAVE)})")
    parser.add_argument("--project", type=Path, default=Path("pyproject.toml"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python_version):
        parser.error(f"--python-version {args.python_version!r}: give the box's Python as 3.N, e.g. 3.12")
    pip = pip_version()
    if tuple(int(part) for part in re.findall(r"\d+", pip)[:2]) < (22, 2):
        print(f"bench wheels: pip {pip} writes no installation report; it needs pip 22.2 or newer "
              f"({sys.executable} -m pip install -U pip)", file=sys.stderr)
        return 1
    try:  # what was asked for: a mistake in it is the user's (exit status 2)
        pyproject = tomllib.loads(args.project.read_text())
        supported = SpecifierSet(pyproject["project"].get("requires-python", ""))
        if not supported.contains(f"{args.python_version}.0"):
            raise ValueError(f"--python-version {args.python_version}: {pyproject['project']['name']} needs "
                             f"Python {supported}")
        have = left_out(parse_have(args.have if args.have is not None else list(DEFAULT_HAVE)), pyproject)
        requirements = project_requirements(pyproject, [e for e in re.split(r"[\s,]+", args.extras) if e])
    except (OSError, ValueError) as error:
        print(f"bench wheels: {error}", file=sys.stderr)
        return 2
    try:  # fetching them: pip's failure, a full disk
        wheels = collect(requirements, args.out, args.python_version, have)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"bench wheels: {error}", file=sys.stderr)
        return 1
    megabytes = sum(path.stat().st_size for path in wheels) / 1e6
    names = sorted(have)
    without = (", ".join(names) if len(names) <= 6
               else f"the {len(names)} packages the box has ({', '.join(names[:3])}, ...)")
    print(f"{len(wheels)} wheels ({megabytes:.1f} MB) in {args.out}/ for Python {args.python_version} on "
          f"{sysconfig.get_platform()}, without {without or 'nothing'} (where the box's version fits) and "
          "what only they need.")
    print("On the box, in the clone, with this folder copied to its wheels/:")
    extras = "" if args.extras == "dev" else f" EXTRAS={args.extras}"
    print(f"  PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/wheels make VENV_ARGS=--system-site-packages{extras} gpu-check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
