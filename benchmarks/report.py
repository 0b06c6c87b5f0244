"""The benchmark's results as markdown: the comparison table, time against N, a projection."""
from __future__ import annotations

PROJECTED_SUBMISSIONS = 10_000
PROJECTED_CORES = (16, 64, 256)


def linear_fit(points: list[tuple[float, float]]) -> dict[str, float] | None:
    """Least squares y = slope * x + intercept, with r²; None under two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for _, y in points)
    residual = sum((y - slope * x - intercept) ** 2 for x, y in points)
    return {"slope": slope, "intercept": intercept, "r2": 1 - residual / total if total else 1.0}


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def comparison(runs: list[dict], n: int, nbgrader: dict | None) -> list[str]:
    """One row per grader on the class of n students (nbgrader on its first notebooks)."""
    header = ["grader", "submissions", "wall s", "s / submission", "submissions / min", "peak RSS MiB",
              "in a pool process: s / submission", "worker start ms", "model training s", "tests s",
              "nbgrader ÷ this"]
    rows = []
    for run in [r for r in runs if r["n"] == n] + ([nbgrader] if nbgrader else []):
        split = run.get("split") or {}
        ratio = (nbgrader["seconds_per_submission"] / run["seconds_per_submission"]
                 if nbgrader and run is not nbgrader else None)
        rows.append([run["grader"], str(run["n"]), _number(run["wall_s"]), _number(run["seconds_per_submission"], 2),
                     _number(run["per_minute"]), _number(run["peak_rss_mib"], 0), _number(split.get("total"), 2),
                     _number(None if "worker_start" not in split else 1000 * split["worker_start"], 0),
                     _number(split.get("model_training"), 2),
                     _number(split.get("tests"), 2), "-" if ratio is None else f"{ratio:.1f}x"])
    return _table(header, rows)


def scaling(runs: list[dict], fits: dict[str, dict | None]) -> list[str]:
    """Time and memory against N, and the linear fit of the wall time, per grader."""
    header = ["grader", "N", "wall s", "s / submission", "peak RSS MiB"]
    rows = [[r["grader"], str(r["n"]), _number(r["wall_s"]), _number(r["seconds_per_submission"], 2),
             _number(r["peak_rss_mib"], 0)] for r in sorted(runs, key=lambda r: (r["grader"], r["n"]))]
    lines = _table(header, rows) + [""]
    for grader, fit in fits.items():
        if fit:
            lines.append(f"- {grader}: wall s = {fit['slope']:.2f} × N + {fit['intercept']:.1f} "
                         f"(r² = {fit['r2']:.4f})")
    return lines


def projection(runs: list[dict]) -> list[str]:
    """What PROJECTED_SUBMISSIONS cost on a cluster of one-core workers, from the core-seconds
    each submission took here (wall × cores used / N); assumes the time stays linear in N."""
    header = ["from", "core-s / submission", *(f"{c} cores: hours" for c in PROJECTED_CORES)]
    rows = []
    for run in runs:
        core_seconds = run["seconds_per_submission"] * run["cores"]
        rows.append([f"{run['grader']}, N={run['n']}", _number(core_seconds, 2),
                     *(_number(PROJECTED_SUBMISSIONS * core_seconds / c / 3600, 2) for c in PROJECTED_CORES)])
    return _table(header, rows)


def per_notebook(nbgrader: dict) -> list[str]:
    """nbgrader's seconds per notebook (each one since the notebook before, from its log)."""
    seconds = list(nbgrader.get("per_notebook_s", {}).values())
    if not seconds:
        return []
    ordered = sorted(seconds)
    return [f"nbgrader autograde, seconds per notebook (since the notebook before, from its progress lines): "
            f"first {seconds[0]:.1f} (the pool's start and the first grading), then median "
            f"{ordered[len(ordered) // 2]:.1f}, max {max(seconds[1:] or seconds):.1f}; all: "
            + ", ".join(f"{s:.1f}" for s in seconds) + "."]


def score_line(run: dict) -> str:
    """What a run's scores say: correct notebooks at 100, mistakes below, same JSON as the other grader."""
    scores = run["scores"]
    line = (f"- {run['grader']}, N={run['n']}: {scores['correct_full_marks']} of {scores['correct']} correct "
            f"notebooks got 100; {scores['mistakes_below_full']} of {scores['mistakes']} with a catalogued "
            "mistake lost points")
    if scores["not_as_expected"]:
        line += f"; NOT AS EXPECTED: {', '.join(scores['not_as_expected'])}"
    same = run.get("same_grades_as")
    if same:
        line += (f"; grades.json {'byte-identical to' if same['identical'] else 'DIFFERENT FROM'} "
                 f"{same['grader']}'s")
    return line + "."


def markdown(results: dict) -> str:
    runs, nbgrader = results["runs"], results.get("nbgrader")
    first = results["sizes"][0]
    machine = results["machine"]
    hostile = results["classes"][str(first)]["hostile"]
    lines = [f"# Grading benchmark ({results['date']})", "",
             f"Machine: {machine['cpus']} CPU(s), {machine['memory_gib']:.0f} GiB, {machine['platform']}, "
             f"Python {machine['python']}, torch {machine['torch']}; isolation: {results.get('isolation') or '?'}.",
             f"Class: {first} unexecuted notebooks (seed {results['options']['seed']}, "
             f"{hostile} hostile); composition in results.json.", "",
             f"## A class of {first} notebooks", "", *comparison(runs, first, nbgrader), ""]
    if nbgrader:
        which = "the whole class" if nbgrader["n"] == first else f"the first {nbgrader['n']} notebooks of the class"
        lines += [f"nbgrader autograde graded {which} in the same run, with the course's config (graded ahead on "
                  "the same jobs); its s / submission is over those. Ratio: nbgrader's s / submission over the "
                  "grader's.", "", *per_notebook(nbgrader), ""]
    if nbgrader and "same_scores_as" in nbgrader:
        same = nbgrader["same_scores_as"]
        lines += ["Per-problem scores in nbgrader's gradebook against the first grader's JSON: "
                  + (f"the same for all {same['notebooks']} notebooks." if not same["different"]
                     else f"DIFFERENT for {', '.join(same['different'])}."), ""]
    lines += ["s / submission = wall / submissions (the whole command: start, imports, pool, outputs). "
              "The split is the grader's own mean per submission inside one pool process "
              "(`per submission ...` line of `vae-assignment grade`).", "", "Scores:", "",
              *(score_line(run) for run in runs), ""]
    if len(results["sizes"]) > 1:
        lines += ["## Time and memory against N", "", *scaling(runs, results["fits"]), ""]
    lines += [f"## {PROJECTED_SUBMISSIONS:,} submissions on a cluster (projection)", "", *projection(runs), "",
              "Core-seconds per submission = s / submission × cores the run used; hours = "
              f"{PROJECTED_SUBMISSIONS:,} × core-s / cores / 3600, assuming time stays linear in N "
              "and the cluster's cores are as fast as these.", ""]
    return "\n".join(lines)
