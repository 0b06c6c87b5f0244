"""DESIGN.md maps the project: every path it names exists, and every module is named in it."""
from __future__ import annotations

import re
from pathlib import Path

from assignment.contract import PROBLEMS

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "DESIGN.md"
PACKAGES = ("assignment", "autograder", "benchmarks", "solutions")
TOP_FOLDERS = (*PACKAGES, "tests", "docs")


def _project_path(token: str) -> list[Path]:
    """The paths a backquoted token names: `test_<problem>.py` (or `<name>`) stands for every problem's."""
    names = [re.sub(r"<(problem|name)>", p, token) for p in PROBLEMS] if "<" in token else [token]
    return [ROOT / name for name in names]


def named_paths() -> set[Path]:
    """The project paths DESIGN.md names in backquotes. In a list such as `a/b.py`, `c.py`,
    a bare file name is in the folder of the path named before it on the line."""
    paths: set[Path] = set()
    for line in DESIGN.read_text().splitlines():
        folder = None
        for match in re.finditer(r"`([^`\s]+)`(?=(,\s*`)?)", line):
            token, listed = match.group(1), match.group(2) is not None  # a list goes on after it
            if token.split("/")[0] in TOP_FOLDERS:
                found = _project_path(token)
                paths |= set(found)
                folder = found[0] if token.endswith("/") else found[0].parent
            elif folder is not None and re.fullmatch(r"[\w.-]+\.(py|json|npz|md)", token) \
                    and (listed or line[:match.start()].rstrip().endswith("`,")):
                paths.add(folder / token)
    return paths


def _exists(path: Path) -> bool:
    return any(path.parent.glob(path.name)) if "*" in path.name else path.exists()


def test_every_path_design_names_exists():
    missing = sorted(str(p.relative_to(ROOT)) for p in named_paths() if not _exists(p))
    assert missing == [], f"DESIGN.md names paths that do not exist: {missing}"


def test_every_module_is_named_in_design():
    named = named_paths()
    modules = [path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
               if path.name != "__init__.py" or path.parent.name in ("autograder", "untrusted")]
    globs = [p for p in named if "*" in p.name]
    unnamed = sorted(str(p.relative_to(ROOT)) for p in modules
                     if p not in named and not any(p.match(str(g)) for g in globs)
                     and not any(folder in p.parents for folder in named if folder.is_dir()))
    assert unnamed == [], f"DESIGN.md does not say what these modules are: {unnamed}"
