"""Find the submissions under the paths a grader names and read their code.

A path is a submission (`.ipynb` or `.py`) or a folder of them: a file per student
(`alice.ipynb`) or a subfolder per student (`submitted/alice/vae/vae.ipynb`, as nbgrader
lays them out). The student id is the file stem or the subfolder name.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat

from assignment.notebook import SOURCE_NOTEBOOK_NAME, grading_code_cells

SUFFIXES = (".ipynb", ".py")


class UsageError(Exception):
    """The grader was pointed at something that is not a submission or a folder of them."""


class SubmissionError(Exception):
    """A submission that cannot be read; the message says why, for the student."""


@dataclass(frozen=True)
class Submission:
    """A student's submission. `content` holds the file's bytes once the grader has read them
    (`loaded()`): grading then needs no file system, so it can happen on another machine."""
    id: str
    path: Path
    content: bytes | None = field(default=None, repr=False)

    def loaded(self) -> Submission:
        """This submission with its bytes read (OSError when the file cannot be read)."""
        return self if self.content is not None else replace(self, content=self.path.read_bytes())

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.loaded().content).hexdigest()


def _is_submission(path: Path) -> bool:
    return path.is_file() and path.suffix in SUFFIXES and not path.name.startswith(".")


def _in_student_folder(folder: Path) -> Path | None:
    """The submission inside one student's folder: the assignment notebook if present."""
    candidates = sorted(p for p in folder.rglob("*") if _is_submission(p) and ".ipynb_checkpoints" not in p.parts)
    preferred = [p for p in candidates if p.name == SOURCE_NOTEBOOK_NAME]
    return (preferred or candidates or [None])[0]


def find_submissions(paths: list[Path]) -> list[Submission]:
    """Every submission under `paths`, sorted by student id; ids must be unique."""
    found: list[Submission] = []
    for path in paths:
        if _is_submission(path):
            found.append(Submission(path.stem, path))
        elif path.is_dir():
            for entry in sorted(path.iterdir()):
                if _is_submission(entry):
                    found.append(Submission(entry.stem, entry))
                elif entry.is_dir() and not entry.name.startswith("."):
                    inner = _in_student_folder(entry)
                    if inner is not None:
                        found.append(Submission(entry.name, inner))
        elif path.exists():
            raise UsageError(f"{path} is neither a .ipynb or .py submission nor a folder of them")
        else:
            raise UsageError(f"{path} does not exist")
    ids = [s.id for s in found]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise UsageError(f"two submissions share the student id {duplicates[0]!r}: grade those folders separately")
    return sorted(found, key=lambda s: s.id)


PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")  # their body is plain Python


def without_magics(source: str) -> str:
    """Python source of a notebook cell: `%magic` and `!shell` lines become calls that do
    nothing; a `%%time`-like cell magic is dropped so its Python body still runs."""
    from IPython.core.inputtransformer2 import TransformerManager  # only notebooks need IPython

    first, _, rest = source.lstrip().partition("\n")
    if first.split(" ")[0] in PYTHON_CELL_MAGICS:
        source = rest
    return TransformerManager().transform_cell(source)


def _notebook_cells(text: str) -> list[tuple[str, str]]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise SubmissionError(f"the notebook is not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        raise SubmissionError("the file is JSON but not a Jupyter notebook (no cells)")
    try:
        notebook = nbformat.reads(text, as_version=4)  # upgrades nbformat 3 and older
    except Exception as error:  # noqa: BLE001 - nbformat raises many kinds
        raise SubmissionError(f"the notebook cannot be read by nbformat: {error}".splitlines()[0]) from None
    return [(label, without_magics(source)) for label, source in grading_code_cells(notebook)]


def read_cells(path: Path, content: bytes | None = None) -> list[tuple[str, str]]:
    """(label, python source) of the code to run for a submission, or SubmissionError. The
    code is `content` when given (the path then only names the file: .ipynb or .py), else the file's."""
    data = path.read_bytes() if content is None else content
    if not data.strip():
        raise SubmissionError("the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SubmissionError(f"the file is not UTF-8 text (byte {error.start})") from None
    if path.suffix == ".ipynb":
        return _notebook_cells(text)  # a cell with a syntax error fails alone, as in Jupyter
    try:
        compile(text, path.name, "exec")
    except SyntaxError as error:
        raise SubmissionError(f"SyntaxError on line {error.lineno}: {error.msg}") from None
    return [(path.name, text)]
