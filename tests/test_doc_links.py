"""Every relative link of the README and docs/ points at a file that exists, and every #anchor at a
heading of that file (GitHub's slugs: lower case, punctuation dropped, spaces to hyphens)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def test_relative_links_and_anchors_resolve():
    pages = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


PATH_NAMED = re.compile(r"\b(?:bench|architectures|tests|benchmarks|docs|specs)/[\w./-]+\.(?:py|md|toml|json|csv)\b")
EXAMPLES = {"specs/mine.toml", "specs/demo-typo.toml"}
"""Paths that the docs and tests name as a user's own file, made in the example."""


def test_files_the_code_and_docs_name_exist():
    """A docstring or page that still points at a module's old path after it moved sends a reader to
    nothing: every repository path named in the code, the tests and the docs exists."""
    texts = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("bench", "architectures", "tests", "benchmarks"):
        texts += sorted((ROOT / folder).rglob("*.py"))
    missing = [f"{path.relative_to(ROOT)}: {named}" for path in texts
               for named in sorted(set(PATH_NAMED.findall(path.read_text(encoding="utf-8"))))
               if named not in EXAMPLES and not (ROOT / named).exists()]
    assert not missing, "\n".join(missing)


def test_the_readme_names_every_make_target():
    """The README's list of make targets is the one a reader scans for what `make` can do: it names
    each target that `make help` lists (the Makefile's targets with a `##` description)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z-]+):.*## ", makefile, flags=re.MULTILINE)) - {"help"}
    line = re.search(r"^Make targets \(.*?\): (.*?)\.$", (ROOT / "README.md").read_text(encoding="utf-8"),
                     flags=re.MULTILINE | re.DOTALL)
    assert line, "the README's 'Make targets' sentence is gone"
    named = {name.strip() for name in line.group(1).replace("\n", " ").split(",")}
    assert named == targets
