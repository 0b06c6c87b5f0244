"""Find the submissions under the paths a grader names and read their code.

A path is a submission (`.ipynb` or `.py`) or a folder of them: a file per student
(`alice.ipynb`) or a subfolder per student (`submitted/alice/vae/vae.ipynb`, as nbgrader
lays them out). The student id is the file stem or the subfolder name, escaped to printable
text (a name may hold bytes that are not UTF-8, control characters or bidirectional marks).

Everything here runs in the trusted process on files a student wrote, so it is bounded: no
symbolic link is followed (a submission that is one, or a student's folder that holds one, is
refused: that student's record says why, the rest of the class is graded), a file over
`MAX_SUBMISSION_BYTES` is not read, a notebook's JSON nesting and cell count are checked
before nbformat sees it, and nothing here runs IPython's magic transformer or `compile`: the
sandboxed worker does, under its limits. Any exception while reading becomes that
submission's error (grading.py), never the batch's.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat

from assignment.notebook import SOURCE_NOTEBOOK_NAME, grading_code_cells

SUFFIXES = (".ipynb", ".py")
MAX_SUBMISSION_BYTES = 20 * 2**20  # a handed-in notebook with every plot is under 2 MiB
MAX_NESTING = 64  # JSON levels: nbformat's own notebooks need under 10
MAX_CELLS = 5000


class UsageError(Exception):
    """The grader was pointed at something that is not a submission or a folder of them."""


class SubmissionError(Exception):
    """A submission that cannot be read, or is refused; the message says why, for the student."""


def printable(name: str) -> str:
    """A file or folder name as printable text, one-to-one: a backslash doubled, a byte that is
    not UTF-8 as \\xNN, a control, format or other unprintable character as \\xNN or \\uNNNN."""
    out = []
    for char in name:
        if char == "\\":
            out.append("\\\\")
        elif "\udc80" <= char <= "\udcff":  # a byte Python could not decode (surrogateescape)
            out.append(f"\\x{ord(char) - 0xdc00:02x}")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
    return "".join(out)


@dataclass(frozen=True)
class Submission:
    """A student's submission. `content` holds the file's bytes once the grader has read them
    (`loaded()`): grading then needs no file system, so it can happen on another machine.
    `refused` says why the grader will not read it (a symbolic link)."""
    id: str
    path: Path
    content: bytes | None = field(default=None, repr=False)
    refused: str | None = None

    def loaded(self) -> Submission:
        """This submission with its bytes read, or SubmissionError saying why they cannot be."""
        if self.content is not None:
            return self
        if self.refused is not None:
            raise SubmissionError(self.refused)
        return replace(self, content=read_bytes(self.path))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.loaded().content).hexdigest()

    @property
    def where(self) -> str:
        """The path, as printable text (what the record holds)."""
        return printable(str(self.path))


def read_bytes(path: Path) -> bytes:
    """A submission's bytes: a regular file, not a symbolic link, at most MAX_SUBMISSION_BYTES;
    else SubmissionError."""
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise SubmissionError(_link_refused(path))
        if not stat.S_ISREG(info.st_mode):
            raise SubmissionError("it is not a regular file")
        if info.st_size > MAX_SUBMISSION_BYTES:
            raise SubmissionError(_too_large(info.st_size))
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb") as stream:
            data = stream.read(MAX_SUBMISSION_BYTES + 1)
    except OSError as error:
        raise SubmissionError(f"the file cannot be read: {error.strerror}") from None
    if len(data) > MAX_SUBMISSION_BYTES:
        raise SubmissionError(_too_large(len(data)))
    return data


def _too_large(size: int) -> str:
    return (f"the file is {size:,} bytes, more than the {MAX_SUBMISSION_BYTES // 2**20} MiB "
            f"({MAX_SUBMISSION_BYTES:,} bytes) a submission may be")


def _link_refused(link: Path) -> str:
    try:
        target = f" (it points to {printable(os.readlink(link))})"
    except OSError:
        target = ""
    return (f"{printable(link.name)} is a symbolic link{target}: symbolic links are refused, "
            "hand in the file itself")


def _is_candidate(path: Path) -> bool:
    return path.suffix in SUFFIXES and not path.name.startswith(".")


def _is_submission(path: Path) -> bool:
    """A .ipynb or .py file, or a symbolic link with such a name (refused when collected)."""
    return _is_candidate(path) and (path.is_symlink() or path.is_file())


def _student_folder(folder: Path) -> tuple[Path | None, str | None]:
    """The submission inside one student's folder, the assignment notebook if present (symbolic
    links are not followed), and why the folder is refused: it holds a symbolic link."""
    candidates, links = [], []
    for root, folders, files in os.walk(folder):  # lists linked folders, never enters them
        for name in sorted(folders + files):
            path = Path(root) / name
            if path.is_symlink():
                links.append(path)
            elif name in files and _is_candidate(path) and path.is_file():
                candidates.append(path)
        folders[:] = sorted(name for name in folders if name != ".ipynb_checkpoints")
    candidates.sort()
    preferred = [p for p in candidates if p.name == SOURCE_NOTEBOOK_NAME]
    chosen = (preferred or candidates or [None])[0]
    if links:
        shown = ", ".join(printable(str(p.relative_to(folder))) for p in links[:3])
        return chosen or links[0], (f"the folder holds {len(links)} symbolic link(s) ({shown}): symbolic links "
                                    "are refused, hand in the files themselves")
    return chosen, None


def find_submissions(paths: list[Path]) -> list[Submission]:
    """Every submission under `paths`, sorted by student id; ids must be unique. A symbolic link
    below a path named here is not followed: its submission is refused (Submission.refused)."""
    found: list[Submission] = []
    for path in paths:
        if _is_submission(path):
            found.append(_file_submission(path))
        elif path.is_dir():
            for entry in sorted(path.iterdir()):
                if _is_submission(entry):
                    found.append(_file_submission(entry))
                elif entry.is_dir() and not entry.name.startswith("."):
                    if entry.is_symlink():
                        found.append(Submission(printable(entry.name), entry, refused=_link_refused(entry)))
                        continue
                    inner, refused = _student_folder(entry)
                    if inner is not None:
                        found.append(Submission(printable(entry.name), inner, refused=refused))
        elif path.exists():
            raise UsageError(f"{printable(str(path))} is neither a .ipynb or .py submission nor a folder of them")
        else:
            raise UsageError(f"{printable(str(path))} does not exist")
    ids = [s.id for s in found]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise UsageError(f"two submissions share the student id {duplicates[0]!r}: grade those folders separately")
    return sorted(found, key=lambda s: s.id)


def _file_submission(path: Path) -> Submission:
    return Submission(printable(path.stem), path, refused=_link_refused(path) if path.is_symlink() else None)


# ------------------------------------------------------------------------------- reading
def _depth(value: object) -> int:
    """How deeply lists and objects nest in parsed JSON (iteratively: no recursion limit)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_NESTING:
                break
            todo += [(child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)]
    return deepest


def _cell_count(raw: dict) -> int:
    """The cells of a notebook (nbformat 4: `cells`, 3 and older: in `worksheets`), of any shape."""
    def count(cells: object) -> int:
        return len(cells) if isinstance(cells, list) else 0

    sheets = raw.get("worksheets")
    if isinstance(sheets, list):
        return sum(count(sheet.get("cells")) for sheet in sheets if isinstance(sheet, dict))
    return count(raw.get("cells"))


def _notebook_cells(text: str) -> list[tuple[str, str]]:
    try:
        raw = json.loads(text)
    except RecursionError:
        raise SubmissionError(f"the notebook's JSON is nested more than {MAX_NESTING} levels deep") from None
    except json.JSONDecodeError as error:
        raise SubmissionError(f"the notebook is not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        raise SubmissionError("the file is JSON but not a Jupyter notebook (no cells)")
    if _depth(raw) > MAX_NESTING:
        raise SubmissionError(f"the notebook's JSON is nested more than {MAX_NESTING} levels deep")
    if _cell_count(raw) > MAX_CELLS:
        raise SubmissionError(f"the notebook has {_cell_count(raw):,} cells, more than {MAX_CELLS:,}")
    try:
        notebook = nbformat.reads(text, as_version=4)  # upgrades nbformat 3 and older
    except Exception as error:  # noqa: BLE001 - nbformat raises many kinds
        raise SubmissionError(f"the notebook cannot be read by nbformat: {error}".splitlines()[0]) from None
    cells = [(printable(str(label)), source) for label, source in grading_code_cells(notebook)]
    for label, source in cells:
        cell = label if label.startswith("cell ") else f"the cell {label}"
        if not isinstance(source, str):
            raise SubmissionError(f"{cell} of the notebook has no text as its source")
        try:
            source.encode("utf-8")
        except UnicodeEncodeError:
            raise SubmissionError(f"{cell} of the notebook holds text that is not valid Unicode (an unpaired "
                                  "surrogate)") from None
    return cells


def read_cells(path: Path, content: bytes | None = None) -> list[tuple[str, str]]:
    """(label, source) of the code to run for a submission, or SubmissionError. The code is
    `content` when given (the path then only names the file: .ipynb or .py), else the file's.
    A notebook's cells come as written: the worker turns IPython's syntax (magics, `!` commands)
    into Python and compiles them, so a cell that does not compile fails alone, as in Jupyter."""
    data = read_bytes(path) if content is None else content
    if len(data) > MAX_SUBMISSION_BYTES:
        raise SubmissionError(_too_large(len(data)))
    if not data.strip():
        raise SubmissionError("the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SubmissionError(f"the file is not UTF-8 text (byte {error.start})") from None
    if path.suffix == ".ipynb":
        return _notebook_cells(text)
    return [(printable(path.name), text)]


def cells_of(submission: Submission) -> list[tuple[str, str]]:
    """The code of `submission` (read_cells); every failure, foreseen or not (a MemoryError, a
    RecursionError in a library), as SubmissionError: a hostile file is its own error only."""
    try:
        return read_cells(submission.path, submission.loaded().content)
    except SubmissionError:
        raise
    except Exception as error:  # noqa: BLE001 - see above
        raise SubmissionError(f"the grader could not read it: {type(error).__name__}: {error}"[:500]) from None
