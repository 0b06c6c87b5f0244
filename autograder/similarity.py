"""Pairs of submissions whose own code is unusually alike, for an instructor to look at.

Only what students wrote is compared: the code of a notebook's solution cells and of the
cells a student added (a `.py` submission: the whole file). The release's starter code
(signatures, docstrings, `raise NotImplementedError()`) and its given cells (imports, demos,
checks) are boilerplate: their fingerprints are subtracted from every submission's.

The matching is copydetect's (MOSS's winnowing, Schleimer, Wilkerson and Aiken 2003): the code
is tokenised by Pygments, names become V, F or O and strings S, comments and whitespace are
dropped, and every run of `NOISE_CHARS` characters of what remains is a fingerprint. Renamed
variables, changed comments or blank lines leave the fingerprints as they were; reordered
functions move them, which fingerprints do not see; an extra print adds a few of its own. A
pair's score is the larger of the two shares of one's own code found in the other's: a
student who copied all of a classmate's code and added some is still found.

`FLAG_SCORE`, the score from which a pair is flagged, lies midway between what independently
written correct solutions score against each other (the reference and the correct variants
of autograder/catalogue.py) and what disguised copies of them score (benchmarks/README.md, "Similar
code", has the numbers; tests/test_similarity.py keeps both a margin away from it). The page
also gives the class's own distribution of scores, to judge a flagged pair against.
"""
from __future__ import annotations

import io
import json
import statistics
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from nbformat import NotebookNode

from autograder.collect import Submission, SubmissionError, cells_of, find_submissions
from autograder.files import write_atomically

NOISE_CHARS = 25           # copydetect's k (its default): shorter matches of normalised code are noise
FLAG_SCORE = 0.75          # a pair scoring this or more is flagged (calibration in the module docstring)
PAIRS_DETAILED = 50        # flagged pairs, highest first, given with their regions and shown side by side
CONTEXT_LINES = 3          # unmatched lines shown each side of a match on the page
PAIRS_LISTED = 500         # flagged pairs in the page's table; the JSON holds all
MAX_OWN_CHARS = 200_000    # own code beyond this is not compared (a flood would slow every comparison)
FORMAT = "vae-assignment-similarity"
FORMAT_VERSION = 1


Regions = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class OwnCode:
    """What one student wrote, or why it could not be read."""
    student: str
    code: str
    error: str | None = None


@dataclass(frozen=True)
class Pair:
    """Two students' own code and what they share: `shares[i]` is the part of student i's own
    code found in the other's; `regions[i]` its (start, end) character spans in `codes[i]`
    (None past the first `PAIRS_DETAILED` pairs)."""
    students: tuple[str, str]
    score: float
    shares: tuple[float, float]
    regions: Regions | None


@dataclass(frozen=True)
class Similarity:
    """The comparison of a class: every readable student's own code, the scores of all pairs
    (for the distribution) and the flagged pairs, highest score first."""
    codes: dict[str, OwnCode]
    scores: list[float]
    flagged: list[Pair]
    threshold: float = FLAG_SCORE


# ------------------------------------------------------------------ what students wrote
def release_notebook() -> NotebookNode:
    """The notebook students get, as nbgrader's generate_assignment writes it from the source
    notebook: every solution region cleared to `raise NotImplementedError()`, hidden tests removed."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    from assignment.notebook import build_notebook

    notebook, _ = ClearSolutions().preprocess(build_notebook(), {})
    notebook, _ = ClearHiddenTests().preprocess(notebook, {})
    return notebook


@lru_cache(maxsize=1)
def _release_code() -> tuple[dict[str, str], frozenset[str]]:
    """The release's code cells (grade id -> source) and the ids of its given (not solution) cells."""
    cells = {cell.metadata["nbgrader"]["grade_id"]: cell for cell in release_notebook().cells
             if cell.cell_type == "code"}
    given = frozenset(grade_id for grade_id, cell in cells.items() if not cell.metadata["nbgrader"]["solution"])
    return {grade_id: cell.source for grade_id, cell in cells.items()}, given


def own_code(submission: Submission) -> OwnCode:
    """The code a student wrote: the solution cells they changed and their own cells, in
    notebook order (a solution cell left as released is not theirs)."""
    release, given = _release_code()
    try:
        cells = cells_of(submission)
    except SubmissionError as error:
        return OwnCode(submission.id, "", str(error))
    own = "\n\n".join(source.strip("\n") for label, source in cells
                       if label not in given and source.strip() != release.get(label, "").strip()) + "\n"
    if len(own) > MAX_OWN_CHARS:  # the reference is under 5,000: a flood, not a solution
        return OwnCode(submission.id, "", f"{len(own):,} characters of own code, more than {MAX_OWN_CHARS:,}")
    return OwnCode(submission.id, own)


# ------------------------------------------------------------------------- the matching
def _fingerprint(code: str, boilerplate=None):
    from copydetect import CodeFingerprint

    # A window of 1 keeps every k-gram: the fingerprints, so the scores, do not depend on the
    # values of Python's (per-process salted) string hashes.
    return CodeFingerprint("own.py", NOISE_CHARS, 1, boilerplate=boilerplate, language="python",
                           fp=io.StringIO(code))


def _boilerplate_hashes():
    import numpy as np

    release, _ = _release_code()
    return np.array(sorted({h for source in release.values() for h in _fingerprint(source).hashes}))


def _regions(first, second) -> Regions:
    from copydetect import compare_files

    _, _, slices = compare_files(first, second)
    return tuple(tuple((int(a), int(b)) for a, b in zip(*spans)) for spans in slices)


def compare(codes: list[OwnCode], threshold: float = FLAG_SCORE) -> Similarity:
    """Every pair of readable submissions compared; those scoring `threshold` or more flagged,
    the first `PAIRS_DETAILED` of them with their matching regions."""
    from copydetect import compare_files

    boilerplate = _boilerplate_hashes()
    codes, readable, prints = list(codes), [], []
    for index, code in sorted(enumerate(codes), key=lambda item: item[1].student):
        if code.error is None:
            try:
                prints.append(_fingerprint(code.code, boilerplate))
                readable.append(code)
            except Exception as error:  # noqa: BLE001 - one student's code, never the class's comparison
                codes[index] = OwnCode(code.student, "", f"its code cannot be compared: {type(error).__name__}")
    # The fingerprints are a function of the normalised code: students whose normalised code is
    # the same (a class handing in one solution) share one comparison per pair of distinct codes.
    first_with = {}
    same_as = [first_with.setdefault(p.filtered_code, i) for i, p in enumerate(prints)]
    shares_of: dict[tuple[int, int], tuple[float, float]] = {}
    scores, flagged = [], []
    for i, first in enumerate(readable):
        for j in range(i + 1, len(readable)):
            key = (same_as[i], same_as[j])
            if key not in shares_of:
                overlap, shares, _ = compare_files(prints[key[0]], prints[key[1]])
                shares_of[key] = (round(float(shares[0]), 4), round(float(shares[1]), 4)) if overlap else (0.0, 0.0)
            score = max(shares_of[key])
            scores.append(score)
            if score >= threshold:
                flagged.append(((-score, first.student, readable[j].student), i, j))
    flagged.sort()
    pairs = [Pair((a, b), -minus_score, shares_of[(same_as[i], same_as[j])],
                  _regions(prints[i], prints[j]) if rank < PAIRS_DETAILED else None)
             for rank, ((minus_score, a, b), i, j) in enumerate(flagged)]
    return Similarity({c.student: c for c in codes}, scores, pairs, threshold)


def compare_submissions(submissions: list[Submission], threshold: float = FLAG_SCORE) -> Similarity:
    return compare([own_code(s) for s in submissions], threshold)


# ------------------------------------------------------------------------------ outputs
def _quantile(scores: list[float], q: float) -> float:
    ordered = sorted(scores)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def distribution(result: Similarity) -> dict:
    """How alike the class's pairs are: the scale against which a flagged pair stands out."""
    scores = result.scores
    return {"pairs": len(scores), "median": round(statistics.median(scores), 4) if scores else 0.0,
            "p90": round(_quantile(scores, 0.9), 4), "p99": round(_quantile(scores, 0.99), 4),
            "threshold": result.threshold, "flagged": len(result.flagged)}


def json_document(result: Similarity) -> dict:
    return {
        "format": FORMAT, "version": FORMAT_VERSION, "distribution": distribution(result),
        "not_compared": {c.student: c.error for c in sorted(result.codes.values(), key=lambda c: c.student) if c.error},
        "pairs": [{"students": list(p.students), "score": p.score, "shares": list(p.shares),
                   "regions": None if p.regions is None else [[list(span) for span in spans] for spans in p.regions]}
                  for p in result.flagged],
    }


def _shortened(text: str, keep_head: int, keep_tail: int) -> str:
    """Unmatched code between matches: a long stretch keeps a few lines each side of a gap."""
    lines = text.split("\n")
    if len(lines) <= keep_head + keep_tail + 2:
        return text
    gap = len(lines) - keep_head - keep_tail
    return "\n".join(lines[:keep_head] + [f"    \u22ee {gap} unmatched line(s)"] + lines[len(lines) - keep_tail:])


def _marked(code: str, spans: tuple[tuple[int, int], ...]) -> str:
    """The code, HTML-escaped, with the matching spans in <mark> and long unmatched stretches
    shortened to `CONTEXT_LINES` lines each side."""
    from html import escape

    out, position = [], 0
    for start, end in sorted(spans):
        start = max(start, position)
        head = 0 if position == 0 else CONTEXT_LINES
        out += [escape(_shortened(code[position:start], head, CONTEXT_LINES)), "<mark>", escape(code[start:end]),
                "</mark>"]
        position = max(position, end)
    return "".join(out + [escape(_shortened(code[position:], CONTEXT_LINES, 0))])


SIMILARITY_CSS = """
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 0.6em; margin-bottom: 1.5em; }
.pair pre { margin: 0; padding: 0.5em; background: #fafafa; border: 1px solid #ddd; font-size: 0.78em;
            max-height: 32em; overflow: auto; white-space: pre-wrap; }
.pair h4 { margin: 0.2em 0; font-family: ui-monospace, Menlo, monospace; }
mark { background: #ffd27a; }
"""


def html_section(result: Similarity) -> list[str]:
    """The report's section: the class's distribution, the flagged pairs ranked, then the first
    `PAIRS_DETAILED` of them side by side with the matching regions highlighted."""
    from html import escape

    d = distribution(result)
    out = ['<h2 id="similarity">Similar code</h2>',
           f"<style>{SIMILARITY_CSS}</style>",
           '<p class="note">Each pair\'s score is the larger share of one student\'s own code (solution cells and '
           "cells they added; the release's starter code and given cells left out) that is also in the other's, "
           "after renaming every name, dropping comments and blank lines (copydetect's fingerprints). "
           f"A pair is flagged from {result.threshold:g}, midway between what independently written correct "
           "solutions score against each other and what disguised copies of them score (renamed, reordered, "
           "recommented, with a print added). A flagged pair is a reason to look, not a verdict.</p>",
           '<table id="similarity-distribution"><thead><tr><th>pairs compared</th><th>median score</th>'
           "<th>90th percentile</th><th>99th percentile</th><th>flagged from</th><th>flagged</th></tr></thead>"
           f'<tbody><tr><td class="count pairs">{d["pairs"]}</td><td class="num median">{d["median"]:.2f}</td>'
           f'<td class="num p90">{d["p90"]:.2f}</td><td class="num p99">{d["p99"]:.2f}</td>'
           f'<td class="num threshold">{d["threshold"]:.2f}</td><td class="count flagged">{d["flagged"]}</td></tr>'
           "</tbody></table>"]
    unread = [c for c in result.codes.values() if c.error]
    if unread:
        reasons = "; ".join(f"{c.student} ({c.error})" for c in sorted(unread, key=lambda c: c.student))
        out.append(f'<p class="note" id="not-compared">Not compared: {escape(reasons)}.</p>')
    if not result.flagged:
        return out + ['<p class="note" id="no-similar-pairs">No pair of submissions is unusually alike.</p>']
    rows = "\n".join(f'<tr><td class="count rank">{rank}</td><td class="student a">{escape(p.students[0])}</td>'
                     f'<td class="student b">{escape(p.students[1])}</td><td class="num score">{p.score:.2f}</td>'
                     f'<td class="num shares">{p.shares[0]:.0%} / {p.shares[1]:.0%}</td></tr>'
                     for rank, p in enumerate(result.flagged[:PAIRS_LISTED], start=1))
    out.append('<table id="similar-pairs"><thead><tr><th>rank</th><th>student A</th><th>student B</th><th>score</th>'
               f"<th>share of A's code in B's / of B's in A's</th></tr></thead><tbody>\n{rows}\n</tbody></table>")
    if len(result.flagged) > PAIRS_LISTED:
        out.append(f'<p class="note">{len(result.flagged) - PAIRS_LISTED} more flagged pair(s) in similarity.json.</p>')
    for rank, pair in enumerate(result.flagged[:PAIRS_DETAILED], start=1):
        out.append(f'<h3>{rank}. {escape(pair.students[0])} and {escape(pair.students[1])}: {pair.score:.2f}</h3>'
                   '<div class="pair">')
        for student, spans in zip(pair.students, pair.regions):
            out.append(f"<div><h4>{escape(student)}</h4><pre>{_marked(result.codes[student].code, spans)}</pre></div>")
        out.append("</div>")
    if len(result.flagged) > PAIRS_DETAILED:
        out.append(f'<p class="note">Past the first {PAIRS_DETAILED} pairs, run <code>vae-assignment similarity</code> '
                   "on the two submissions to see what they share.</p>")
    return out


def write_json(result: Similarity, out: Path) -> Path:
    """`out/similarity.json`: the distribution and every flagged pair, the first `PAIRS_DETAILED`
    with their matching regions."""
    path = Path(out) / "similarity.json"
    write_atomically(path, json.dumps(json_document(result), indent=2) + "\n")
    return path


def write_outputs(result: Similarity, out: Path) -> Path:
    """`out/similarity.json` and `out/similarity.html` (a page of its own); returns the page's path."""
    from autograder.report import CSS

    out = Path(out)
    write_json(result, out)
    page = "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      "<title>VAE assignment: similar code</title>", f"<style>{CSS}</style></head><body>",
                      "<h1>VAE assignment: similar code</h1>",
                      f'<p class="note">{len(result.codes)} submission(s).</p>', *html_section(result),
                      "</body></html>", ""])
    write_atomically(out / "similarity.html", page)
    return out / "similarity.html"


def main_similarity(paths: list[Path], out: Path) -> int:
    """`vae-assignment similarity`: the page and the JSON for the submissions under `paths`."""
    submissions = find_submissions(paths)
    if len(submissions) < 2:
        print(f"vae-assignment similarity: {len(submissions)} submission(s) found under "
              f"{', '.join(map(str, paths))}: two or more are needed to compare", file=sys.stderr)
        return 2
    result = compare_submissions(submissions)
    page = write_outputs(result, out)
    print(f"{len(result.flagged)} pair(s) of {len(result.scores)} flagged from a score of {result.threshold:g}: "
          f"{page} and {Path(out) / 'similarity.json'}")
    return 0
