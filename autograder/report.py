"""The class report: where the class stands and what to re-teach, from the grader's JSON alone.

`build_report` reads a grades file (record.py), checks that it is one, and
writes `report.html`, which opens offline (its plots are embedded as data URIs), with the
same plots beside it as PNG files: the score histograms, the tests the class failed most,
the recognised mistakes ranked by how many students made them (with the hint that feedback
gives), the submissions that could not be graded normally, and each trained model's
held-out ELBO against the reference's. Every number comes from the JSON, so a report can be
rebuilt later, or from a JSON graded elsewhere.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from assignment.contract import ELBO_FLOOR_MARGIN, ELBO_MARGIN, ELBO_PLAUSIBLE_MARGIN, PROBLEMS
from autograder.record import InvalidRecord, records_of

TOP_TESTS = 15           # bars in the chart of the most failed tests (the table lists them all)
STUDENTS_LISTED = 12     # ids shown per mistake before "and N more"
REASON_CHARS = 300       # a reason is the first line of the message, cut to this length
PLOTS = ("scores.png", "problems.png", "tests.png", "mistakes.png", "model.png")


class ReportError(Exception):
    """The input is not a grades file this version of the grader can read; says what is wrong."""


# ------------------------------------------------------------------------ reading the JSON
def load_grades(path: Path) -> list[dict]:
    """The records of a grades file, checked; ReportError says what is wrong and where."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ReportError(f"{path}: cannot be read ({error.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: not a JSON file ({error})") from None
    try:
        return records_of(document)
    except InvalidRecord as error:
        raise ReportError(f"{path}: {error}") from None


# ------------------------------------------------------------------------- the summaries
@dataclass
class TestRow:
    problem: str
    name: str
    description: str
    max_score: float
    failed: int = 0   # status "failed": a check failed or the student's code raised
    errors: int = 0   # status "error": not run to a verdict (timeout, crash, unreadable file)


@dataclass
class MistakeRow:
    code: str
    problem: str
    hint: str
    students: list[str] = field(default_factory=list)


@dataclass
class NotGradedRow:
    student: str
    kind: str
    tests: int        # tests that ended in an error
    reason: str


def _problem_names(records: list[dict]) -> list[str]:
    """The contract's problems first, in contract order, then any others as they come."""
    seen = dict.fromkeys(p for r in records for p in r["problems"])
    return [p for p in PROBLEMS if p in seen] + [p for p in seen if p not in PROBLEMS]


def tests_failed(records: list[dict]) -> list[TestRow]:
    """Every test with its failure and error counts, most failed first."""
    rows: dict[tuple[str, str], TestRow] = {}
    for record in records:
        for problem, entry in record["problems"].items():
            for test in entry["tests"]:
                row = rows.setdefault((problem, test["name"]),
                                      TestRow(problem, test["name"], test["description"], test["max_score"]))
                row.failed += test["status"] == "failed"
                row.errors += test["status"] == "error"
    return sorted(rows.values(), key=lambda r: (-r.failed, -r.errors))  # stable: contract order


def mistakes_made(records: list[dict]) -> list[MistakeRow]:
    """Recognised mistakes, each counted once per submission, most frequent first."""
    from autograder.mistakes import MISTAKES

    known = {m.code: m for m in MISTAKES}
    rows: dict[str, MistakeRow] = {}
    for record in records:
        for problem, entry in record["problems"].items():
            for test in entry["tests"]:
                code = test["mistake"]
                if code is None or test["status"] == "passed":
                    continue
                mistake = known.get(code)
                row = rows.setdefault(code, MistakeRow(code, mistake.problem if mistake else problem,
                                                       mistake.hint if mistake else code))
                if record["id"] not in row.students:
                    row.students.append(record["id"])
    return sorted(rows.values(), key=lambda r: -len(r.students))


def _first_line(message: str) -> str:
    line = next((l.strip() for l in message.splitlines() if l.strip()), "")
    return line if len(line) <= REASON_CHARS else line[:REASON_CHARS - 3] + "..."


def not_graded(records: list[dict]) -> list[NotGradedRow]:
    """Submissions that were unreadable, or where a test ended in an error, with the first reason."""
    rows = []
    for record in records:
        errored = [t for p in record["problems"].values() for t in p["tests"] if t["status"] == "error"]
        if record["error"] is not None:
            rows.append(NotGradedRow(record["id"], "unreadable", len(errored), _first_line(record["error"])))
        elif errored:
            rows.append(NotGradedRow(record["id"], "worker error", len(errored),
                                     f"{errored[0]['name']}: {_first_line(errored[0]['message'])}"))
    return rows


def trained_models(records: list[dict]) -> list[tuple[str, float, float]]:
    """(student, held-out ELBO, reference's) for every submission whose model was trained."""
    out = []
    for record in records:
        model = record.get("model") or {}
        if model.get("heldout_elbo") is not None and model.get("reference_heldout_elbo") is not None:
            out.append((record["id"], model["heldout_elbo"], model["reference_heldout_elbo"]))
    return out


def share(count: int, total: int) -> str:
    """A count as a share of the class, as the report prints it."""
    return f"{100 * count / total:.0f}%"


# ------------------------------------------------------------------------------ the plots
def _mpl_text(text: str, limit: int = 28) -> str:
    """Text from the JSON as matplotlib draws it literally (no mathtext), cut to `limit`."""
    text = text if len(text) <= limit else text[:limit - 1] + "\u2026"
    return text.replace("$", r"\$")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _png(figure) -> bytes:
    # The Agg canvas, attached explicitly: no pyplot, no global backend, no window.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _integer_ticks(*axes) -> None:
    """Counts and points are whole numbers: no tick at 2.5 submissions."""
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.set_major_locator(MaxNLocator(integer=True))


def plot_scores(records: list[dict]) -> bytes:
    """Bins of a twentieth of the maximum; the last bin holds full marks only."""
    maximum = max(r["max_score"] for r in records)
    width = max(1.0, maximum / 20)
    edges = [width * k for k in range(int(math.ceil(maximum / width)) + 2)]  # last bin: full marks
    figure = _figure(8, 2.8)
    axes = figure.add_subplot()
    axes.hist([r["score"] for r in records], bins=edges, color="#4c72b0", edgecolor="white")
    axes.set(xlabel=f"total score (points out of {maximum:g}; bins of {width:g}, the last one is full marks)",
             ylabel="submissions",
             title="Total scores", xlim=(0, edges[-1]))
    _integer_ticks(axes.yaxis)
    return _png(figure)


def plot_problems(records: list[dict], problems: list[str]) -> bytes:
    columns = 4
    rows = math.ceil(len(problems) / columns)
    figure = _figure(11, 2.6 * rows)
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes, problem in zip(grid.flat, problems):
        entries = [r["problems"][problem] for r in records if problem in r["problems"]]
        maximum = max(e["max_score"] for e in entries)
        axes.hist([e["score"] for e in entries], bins=[k - 0.5 for k in range(int(maximum) + 2)],
                  color="#55a868", edgecolor="white")
        axes.set(title=_mpl_text(f"{problem} ({maximum:g} points)", 40), xlabel="score (points)",
                 ylabel="submissions", xlim=(-0.5, maximum + 0.5))
        _integer_ticks(axes.xaxis, axes.yaxis)
    for axes in list(grid.flat)[len(problems):]:
        axes.set_visible(False)
    return _png(figure)


def _barh(labels: list[str], counts: list[int], total: int, xlabel: str, title: str, color: str) -> bytes:
    figure = _figure(9, 1.1 + 0.32 * len(labels))
    axes = figure.add_subplot()
    positions = range(len(labels))
    axes.barh(positions, counts, color=color)
    axes.set_yticks(positions, [_mpl_text(label, 60) for label in labels])
    axes.invert_yaxis()
    axes.set(xlabel=xlabel, title=title, xlim=(0, total))
    _integer_ticks(axes.xaxis)
    for y, count in zip(positions, counts):
        axes.annotate(f" {count} ({share(count, total)})", (count, y), va="center", fontsize=8)
    return _png(figure)


def plot_tests(rows: list[TestRow], total: int) -> bytes:
    failed = [r for r in rows if r.failed]
    top = failed[:TOP_TESTS]
    title = f"The {len(top)} most failed tests" if len(failed) > len(top) else "Failed tests, most failed first"
    return _barh([f"{r.problem}: {r.name}" for r in top], [r.failed for r in top], total,
                 f"submissions that failed the test (of {total})", title, "#c44e52")


def plot_mistakes(rows: list[MistakeRow], total: int) -> bytes:
    return _barh([r.code for r in rows], [len(r.students) for r in rows], total,
                 f"submissions that made the mistake (of {total})", "Recognised mistakes", "#dd8452")


def plot_model(models: list[tuple[str, float, float]]) -> bytes:
    from matplotlib.lines import Line2D

    models = sorted(models)
    reference = Counter(ref for _, _, ref in models).most_common(1)[0][0]
    values = [elbo for _, elbo, _ in models]
    # Keep the thresholds readable: a model far below is drawn at the lower edge, its value beside it.
    low = max(min(values) - 1.5, reference - ELBO_FLOOR_MARGIN - 8)
    high = max(*values, reference) + 1.5
    edge = low + 0.03 * (high - low)
    figure = _figure(10, 4.2)
    axes = figure.add_subplot()
    axes.axhline(reference, color="black", linewidth=1.2)
    axes.axhline(reference - ELBO_MARGIN, color="#55a868", linestyle="--")
    axes.axhline(reference - ELBO_FLOOR_MARGIN, color="#dd8452", linestyle=":")
    for x, (_, elbo, ref) in enumerate(models):
        color = "#4c72b0" if elbo >= ref - ELBO_MARGIN else "#c44e52"
        if elbo < edge:
            axes.plot(x, edge, marker="v", markersize=9, color=color)
            axes.annotate(f"{elbo:.1f}", (x, edge), textcoords="offset points", xytext=(7, 0), va="center", fontsize=8)
        else:
            axes.plot(x, elbo, marker="o", markersize=8, color=color)
    axes.set(ylim=(low, high), ylabel="held-out ELBO (nats per image)", xlim=(-0.7, len(models) - 0.3),
             title="Model problem: held-out ELBO of each trained model when its training stopped (higher is better)")
    if len(models) <= 40:
        axes.set_xticks(range(len(models)), [_mpl_text(s, 20) for s, _, _ in models], rotation=35, ha="right")
    else:
        axes.set_xticks([])
        axes.set_xlabel(f"{len(models)} students, by id")
    legend = [
        Line2D([], [], color="black", linewidth=1.2, label=f"reference model ({reference:.2f})"),
        Line2D([], [], color="#55a868", linestyle="--", label=f"reference \u2212 {ELBO_MARGIN:g} nats:\nfull points above"),
        Line2D([], [], color="#dd8452", linestyle=":", label=f"reference \u2212 {ELBO_FLOOR_MARGIN:g} nats:\npartial points above"),
        Line2D([], [], color="#4c72b0", marker="o", linestyle="none", label=f"within {ELBO_MARGIN:g} nats"),
        Line2D([], [], color="#c44e52", marker="o", linestyle="none", label=f"more than {ELBO_MARGIN:g} nats below"),
        Line2D([], [], color="gray", marker="v", linestyle="none", label="below the plot\n(value beside it)"),
    ]
    axes.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _png(figure)


# ------------------------------------------------------------------------------ the page
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.count, td.share, td.num { text-align: right; white-space: nowrap; }
td.student, td.code { font-family: ui-monospace, Menlo, monospace; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
.note { color: #555; } summary { cursor: pointer; margin: 0.5em 0; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _td(cls: str, value: object) -> str:
    return f'<td class="{cls}">{_e(value)}</td>'


def _table(table_id: str, headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "\n".join(f"<tr>{row}</tr>" for row in rows)
    return f'<table id="{table_id}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _fmt(x: float) -> str:
    return f"{x:g}" if float(x).is_integer() else f"{x:.1f}"


def _students(ids: list[str]) -> str:
    shown = ", ".join(ids[:STUDENTS_LISTED])
    return shown + (f" and {len(ids) - STUDENTS_LISTED} more" if len(ids) > STUDENTS_LISTED else "")


# Each section gives its HTML and the plots it shows; the page is them in this order.
Section = tuple[list[str], dict[str, bytes]]


def _scores_section(records: list[dict]) -> Section:
    n = len(records)
    totals = sorted(r["score"] for r in records)
    median = (totals[(n - 1) // 2] + totals[n // 2]) / 2
    png = plot_scores(records)
    return ["<h2>Scores</h2>",
            _table("summary", ["submissions", "mean", "median", "lowest", "highest", "full marks", "out of"], [
                _td("count submissions", n) + _td("num mean", _fmt(sum(totals) / n))
                + _td("num median", _fmt(median)) + _td("num lowest", _fmt(totals[0]))
                + _td("num highest", _fmt(totals[-1]))
                + _td("count full-marks", sum(r["score"] >= r["max_score"] for r in records))
                + _td("num out-of", _fmt(max(r["max_score"] for r in records)))]),
            _img(png, "histogram of total scores")], {"scores.png": png}


def _mistakes_section(records: list[dict]) -> Section:
    rows = mistakes_made(records)
    out = ["<h2>Recognised mistakes</h2>"]
    if not rows:
        return out + ['<p class="note" id="no-mistakes">No failed test was put down to a recognised mistake.</p>'], {}
    n, png = len(records), plot_mistakes(rows, len(records))
    return out + [
        _img(png, "recognised mistakes, by how many submissions made them"),
        _table("mistakes", ["mistake", "problem", "submissions", "share of the class",
                            "hint given in the feedback", "students"], [
            _td("code", r.code) + _td("problem", r.problem) + _td("count", len(r.students))
            + _td("share", share(len(r.students), n)) + _td("hint", r.hint)
            + _td("students", _students(r.students)) for r in rows]),
        '<p class="note">Each counted once per submission, however many tests caught it.</p>'], {"mistakes.png": png}


def _not_graded_section(records: list[dict]) -> Section:
    rows = not_graded(records)
    out = ["<h2>Submissions not graded normally</h2>"]
    if not rows:
        return out + ['<p class="note" id="all-graded">Every submission was read and every test ran to a '
                      "verdict.</p>"], {}
    return out + [
        _table("not-graded", ["student", "what happened", "tests with an error", "reason (the first)"], [
            _td("student", r.student) + _td("kind", r.kind) + _td("count", r.tests) + _td("reason", r.reason)
            for r in rows]),
        '<p class="note">"unreadable": the file could not be read, every test scores 0; "worker error": the '
        "student's code timed out, crashed, exited or broke a limit in these tests (0 points each).</p>"], {}


def _model_section(records: list[dict]) -> Section:
    models = trained_models(records)
    out = ["<h2>Model problem: held-out ELBO</h2>"]
    if not models:
        return out + ['<p class="note" id="no-models">No submission has a trained model\'s held-out ELBO.</p>'], {}
    flagged = [(record["id"], record["model"].get("pretrained")) for record in records
               if (record.get("model") or {}).get("flagged")]
    implausible = [student for student, pretrained in flagged if not pretrained]
    brought = [student for student, pretrained in flagged if pretrained]
    review = [f'<p class="flagged" id="flagged">Flagged for review, a held-out ELBO more than {ELBO_PLAUSIBLE_MARGIN:g} '
              f"nats above the reference's, which no legitimate model reaches (its held-out ELBO points wait for the review): "
              f"{html.escape(', '.join(implausible))}.</p>"] if implausible else []
    review += ['<p class="flagged" id="pretrained">Flagged for review, a model at the pass mark before the grader '
               "trained it, so trained while its submission loaded or with weights pasted in (its held-out ELBO "
               f"points wait for the review): {html.escape(', '.join(brought))}.</p>"] if brought else []
    slow = [record["id"] for record in records if (record.get("model") or {}).get("slow_training")]
    review += ['<p class="flagged" id="slow-training">Flagged for review, a training that used several times the '
               "reference's CPU time per step, as a model that trains more than the steps it is given would (its "
               f"points stand): {html.escape(', '.join(slow))}.</p>"] if slow else []
    within = sum(elbo >= ref - ELBO_MARGIN for _, elbo, ref in models)
    floor = sum(elbo >= ref - ELBO_FLOOR_MARGIN for _, elbo, ref in models)
    png = plot_model(models)
    return out + [
        _img(png, "held-out ELBO of each trained model against the reference's"),
        _table("model", ["trained models", f"within {ELBO_MARGIN:g} nats of the reference",
                         f"within {ELBO_FLOOR_MARGIN:g} nats", "not trained"], [
            _td("count trained", len(models)) + _td("count within", within)
            + _td("count floor", floor) + _td("count untrained", len(records) - len(models))]),
        '<p class="note">A model\'s training stops early, at a multiple of 250 steps, once it is within '
        f"{ELBO_MARGIN:g} nats of the reference; otherwise it trains the whole budget of 1000 steps. "
        "The reference model always trains the whole budget.</p>", *review], {"model.png": png}


def _tests_section(records: list[dict]) -> Section:
    n, rows = len(records), tests_failed(records)
    failing = [r for r in rows if r.failed or r.errors]
    out, plots = ["<h2>Tests the class failed</h2>"], {}
    if any(r.failed for r in rows):
        plots["tests.png"] = plot_tests(rows, n)
        out.append(_img(plots["tests.png"], "the most failed tests"))
    out += [
        f"<details><summary>Every test that a submission did not pass ({len(failing)} of {len(rows)}), "
        "with what it checks</summary>",
        _table("tests", ["problem", "test", "what it checks", "points", "failed", "share of the class", "errors"], [
            _td("problem", r.problem) + _td("test", r.name) + _td("description", r.description)
            + _td("num", _fmt(r.max_score)) + _td("count", r.failed) + _td("share", share(r.failed, n))
            + _td("errors", r.errors) for r in failing]),
        "</details>",
        '<p class="note">"failed": a check failed or the student\'s code raised; "errors": the test could not '
        f"run to a verdict (see above). {len(rows) - len(failing)} other test(s) were passed by every "
        "submission.</p>"]
    return out, plots


def _problems_section(records: list[dict]) -> Section:
    n, rows = len(records), []
    problems = _problem_names(records)
    for problem in problems:
        entries = [r["problems"][problem] for r in records if problem in r["problems"]]
        full = sum(e["score"] >= e["max_score"] for e in entries)
        rows.append(_td("problem", problem) + _td("num", _fmt(max(e["max_score"] for e in entries)))
                    + _td("num", _fmt(sum(e["score"] for e in entries) / len(entries)))
                    + _td("count", full) + _td("share", share(full, n)))
    png = plot_problems(records, problems)
    return ["<h2>Scores by problem</h2>",
            _table("problems", ["problem", "points", "mean score", "full marks", "share of the class"], rows),
            _img(png, "histogram of each problem's score")], {"problems.png": png}


SECTIONS = (_scores_section, _mistakes_section, _not_graded_section, _model_section, _tests_section,
            _problems_section)


def build_report(grades_json: Path, out: Path, appendix: Sequence[str] = ()) -> Path:
    """Write `out/report.html` and its plots as PNG files beside it; returns the page's path.
    `appendix`: HTML added after the sections drawn from the JSON (`grade --report` adds the
    similarity section, which needs the submissions' code)."""
    records = load_grades(grades_json)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in PLOTS:  # a plot of an earlier report must not pass for this one's
        (out / name).unlink(missing_ok=True)
    body = ['<p id="empty-class">No submissions in this grades file: nothing to report.</p>']
    if records:
        body = []
        for section in SECTIONS:
            html_parts, plots = section(records)
            body += html_parts
            for name, png in plots.items():
                (out / name).write_bytes(png)
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>VAE assignment: class report</title>", f"<style>{CSS}</style></head><body>",
        "<h1>VAE assignment: class report</h1>",
        f'<p class="note">From {_e(Path(grades_json).name)}: {len(records)} submission(s).</p>',
        *body, *appendix, "</body></html>", ""])
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def main_report(grades: Path, out: Path) -> int:
    """`vae-assignment report`: 0 with the report's path printed, 2 for input that is not a grades file."""
    try:
        path = build_report(grades, out)
    except ReportError as error:
        print(f"vae-assignment report: {error}", file=sys.stderr)
        return 2
    print(f"class report: {path}")
    return 0
