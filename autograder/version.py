"""This grader's identity: which files can change a grading record, and a hash of them.

Every stored result is keyed by it (store.py), and so are the numbers about the reference
kept on disk (reference_cache.py): a changed hidden test, reference or worker grades again,
while a change elsewhere (the report, the command line) does not.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

PROJECT_PACKAGES = ("autograder", "solutions", "assignment")
# Every file of these counts: they are run as scripts (the worker) or read as data.
WHOLE_PACKAGES = ("autograder.hidden_tests", "autograder.untrusted", "assignment.public")
SHIPPED_SUFFIXES = (".py", ".json", ".npz", ".md")


@functools.cache
def _package_root(package: str) -> Path:
    return Path(importlib.util.find_spec(package).submodule_search_locations[0])


def _module_file(name: str) -> Path | None:
    """The source of the project module `name`, found without importing it; None for a name
    that is not a module (e.g. a function imported with `from module import name`)."""
    top, *rest = name.split(".")
    base = _package_root(top).joinpath(*rest)
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def _project_imports(path: Path) -> set[str]:
    """Every project module name `path` imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from package import module`
    return {name for name in names if name.split(".")[0] in PROJECT_PACKAGES}


def grading_sources() -> list[Path]:
    """The files whose content can change a record: every file of the hidden tests, the
    worker and the public data, and the project modules that grading.py and those files
    import, followed through their own imports (the reference among them)."""
    files = {path for package in WHOLE_PACKAGES for path in _package_root(package).rglob("*")
             if path.suffix in SHIPPED_SUFFIXES and "__pycache__" not in path.parts}
    todo = [_module_file("autograder.grading"), *(path for path in files if path.suffix == ".py")]
    while todo:
        path = todo.pop()
        files.add(path)
        todo += [m for m in map(_module_file, _project_imports(path)) if m is not None and m not in files]
    return sorted(files)


@functools.cache
def grader_version() -> str:
    """This grader's identity in every stored result's key: the package version and a hash of
    grading_sources(), so that a changed test, reference or worker regrades what was graded
    before, while a change elsewhere (the report, the command line) does not."""
    try:
        version = importlib.metadata.version("vae-assignment")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was not installed
        version = "0"
    digest = hashlib.sha256()
    for path in grading_sources():
        top = next(p for p in PROJECT_PACKAGES if _package_root(p) in path.parents)
        digest.update(f"{top}/{path.relative_to(_package_root(top)).as_posix()}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{version}+{digest.hexdigest()[:16]}"
