"""`vae-assignment validate`'s verdicts: a catalogued mistake must cost points in its own
problem only and, when it has a hint, have that hint named; a miss makes the command fail."""
from __future__ import annotations

from assignment.contract import PROBLEM_POINTS
from autograder.validate import Expectation, verdict


def record(lost: dict[str, int], mistakes: dict[str, str] = {}) -> dict:
    """A record with full marks but for the points `lost` per problem and the mistake codes
    `mistakes` named in a problem's (one) test."""
    problems = {}
    for problem, points in PROBLEM_POINTS.items():
        score = points - lost.get(problem, 0)
        problems[problem] = {"score": score, "max_score": points,
                             "tests": [{"mistake": mistakes.get(problem)}]}
    return {"score": sum(p["score"] for p in problems.values()), "problems": problems}


def test_a_mistake_caught_in_its_problem_with_its_hint_named_passes():
    ok, text = verdict(record({"gaussian_kl": 19}, {"gaussian_kl": "kl_missing_half"}),
                       Expectation("mistake", "gaussian_kl", "kl_missing_half"))
    assert ok and text.endswith("; named")


def test_a_mistake_whose_hint_is_not_named_is_a_miss():
    ok, text = verdict(record({"gaussian_kl": 19}, {"gaussian_kl": "kl_sign"}),
                       Expectation("mistake", "gaussian_kl", "kl_missing_half"))
    assert not ok and "kl_missing_half NOT named" in text


def test_a_mistake_without_a_hint_needs_only_to_be_caught_where_it_is_made():
    assert verdict(record({"elbo": 3}), Expectation("mistake", "elbo"))[0]
    assert not verdict(record({"elbo": 3, "VAE": 1}), Expectation("mistake", "elbo"))[0]
    assert not verdict(record({}), Expectation("mistake", "elbo"))[0]


def test_full_marks_and_zero():
    assert verdict(record({}), Expectation("full"))[0]
    assert not verdict(record({"iwae_bound": 1}), Expectation("full"))[0]
    assert verdict(record(PROBLEM_POINTS), Expectation("zero"))[0]
