"""Write grading records: the writers of `grade`'s output files (JSON, a CSV gradebook,
Gradescope's results.json), and the summary table it prints."""
from __future__ import annotations

import csv
import json
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from assignment.contract import PROBLEM_LABELS, PROBLEMS, TOTAL_POINTS
from autograder.files import write_atomically
from autograder.gradescope import write_gradescope
from autograder.record import json_document


def write_json(path: Path, records: list[dict]) -> None:
    write_atomically(path, json.dumps(json_document(records), indent=2, sort_keys=False) + "\n")


# A spreadsheet runs a cell that begins with one of these as a formula (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as it is: text beginning with = + - @ tab or carriage
    return gets a leading single quote (OWASP's advice), so it is not run as a formula; numbers,
    and text that is a plain number such as "-2.5", stay as they are."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS) or _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def csv_text(rows: list[list[object]]) -> str:
    """Rows as CSV text, every cell through `spreadsheet_safe`: the one way this package writes CSV."""
    from io import StringIO

    buffer = StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([spreadsheet_safe(cell) for cell in row])
    return buffer.getvalue()


def write_csv(path: Path, records: list[dict]) -> None:
    """A row per student: a column per problem, the total, the maximum and the error, if any."""
    rows: list[list[object]] = [["id", *PROBLEMS, "total", "max_score", "error"]]
    for record in records:
        rows.append([record["id"], *(record["problems"][p]["score"] for p in PROBLEMS),
                     record["score"], record["max_score"], record["error"] or ""])
    write_atomically(path, csv_text(rows))


def write_gradescope_results(path: Path, records: list[dict], timings: dict[str, dict]) -> None:
    """Gradescope's results.json of the one submission graded (gradescope.py)."""
    (record,) = records
    write_gradescope(path, record, timings.get(record["id"], {}).get("total", 0.0))


@dataclass(frozen=True)
class Writer:
    """One output file of `grade`: the option that names it (`--json FILE`) and how it is written
    from the records and each graded submission's timing (seconds, by id)."""
    option: str
    write: Callable[[Path, list[dict], dict[str, dict]], None]


WRITERS = (
    Writer("json", lambda path, records, _timings: write_json(path, records)),
    Writer("csv", lambda path, records, _timings: write_csv(path, records)),
    Writer("gradescope", write_gradescope_results),
)


def timing_summary(timings: list[dict]) -> str:
    """Mean seconds per submission and how they split (worker start, model training, the rest);
    the worker start as the median, in milliseconds (a crash costs a submission another start)."""
    if not timings:
        return "-"
    mean = {key: sum(t.get(key, 0.0) for t in timings) / len(timings) for key in ("total", "worker_start", "model_training")}
    tests = mean["total"] - mean["worker_start"] - mean["model_training"]
    start_ms = 1000 * statistics.median(t.get("worker_start", 0.0) for t in timings)
    forked, classic = (sum(t.get(f"{path}_starts", 0) for t in timings) for path in ("template", "classic"))
    how = {(True, False): ", forked from a template", (False, True): ", a fresh Python each"}.get(
        (forked > 0, classic > 0), f"; {forked} forked from a template, {classic} fresh" if forked else "")
    return (f"{mean['total']:.1f} s: worker start {start_ms:.0f} ms (median{how}), "
            f"model training {mean['model_training']:.1f} s, tests {tests:.1f} s")


def summary_table(records: list[dict]) -> str:
    """A plain-text table: a row per student, a column per problem (headed by its short label)."""
    width = max([len("student"), *(len(r["id"]) for r in records)])
    header = f"{'student':<{width}}  " + "  ".join(f"{PROBLEM_LABELS[p]:>8}" for p in PROBLEMS) + f"  {'total':>9}  note"
    lines = [header, "-" * len(header)]
    for record in records:
        cells = "  ".join(f"{record['problems'][p]['score']:>8g}" for p in PROBLEMS)
        note = record["error"] or (f"{len(record['cell_errors'])} cell(s) raised" if record.get("cell_errors") else "")
        lines.append(f"{record['id']:<{width}}  {cells}  {record['score']:>4g}/{record['max_score']:<4g}  {note}"[:240])
    if records:
        mean = sum(r["score"] for r in records) / len(records)
        lines.append(f"{len(records)} submission(s), mean score {mean:.1f} / {TOTAL_POINTS}")
    return "\n".join(lines)
