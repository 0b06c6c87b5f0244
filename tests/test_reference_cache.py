"""The reference's held-out ELBO is trained once per grader version and machine, then read from disk."""
import json
import math

import pytest

from autograder import model_check, reference_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(reference_cache, "cache_folder", lambda: tmp_path / "cache")
    return tmp_path / "cache"


def counting(value: float):
    calls = []

    def compute() -> float:
        calls.append(1)
        return value
    return compute, calls


def test_a_value_is_computed_once_then_read_back_exactly(cache):
    compute, calls = counting(-20.202915680408478)
    assert reference_cache.cached_number("x", compute) == -20.202915680408478
    assert reference_cache.cached_number("x", compute) == -20.202915680408478
    assert calls == [1]
    (stored,) = cache.iterdir()
    assert json.loads(stored.read_text())["key"] == reference_cache.cache_key("x")


def test_another_key_is_computed_afresh(cache, monkeypatch):
    compute, calls = counting(-20.0)
    reference_cache.cached_number("x", compute)
    reference_cache.cached_number("y", compute)  # another name
    monkeypatch.setattr(reference_cache, "grader_version", lambda: "0.0.0+changed-hidden-tests")
    reference_cache.cached_number("x", compute)
    assert calls == [1, 1, 1]


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"key": {}, "value": -1.0}', "NaN"])
def test_a_damaged_file_is_computed_afresh_and_replaced(cache, content):
    compute, calls = counting(-20.0)
    reference_cache.cached_number("x", compute)
    (stored,) = cache.iterdir()
    stored.write_text(content)
    assert reference_cache.cached_number("x", compute) == -20.0 and calls == [1, 1]
    assert reference_cache.cached_number("x", compute) == -20.0 and calls == [1, 1]


def test_a_stored_value_that_is_not_a_finite_number_is_not_used(cache):
    compute, calls = counting(-20.0)
    reference_cache.cached_number("x", compute)
    (stored,) = cache.iterdir()
    for value in ("Infinity", "true", '"-20.0"', "-20"):
        stored.write_text(f'{{"key": {json.dumps(reference_cache.cache_key("x"))}, "value": {value}}}')
        assert reference_cache.cached_number("x", compute) == -20.0
    assert len(calls) == 5


def test_an_unwritable_folder_only_costs_the_computation(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setattr(reference_cache, "cache_folder", lambda: blocker / "cache")
    compute, calls = counting(-20.0)
    assert reference_cache.cached_number("x", compute) == reference_cache.cached_number("x", compute) == -20.0
    assert calls == [1, 1]


@pytest.mark.slow
def test_the_cached_reference_elbo_is_the_trained_one(cache):
    model_check.reference_heldout_elbo.cache_clear()
    try:
        cached = model_check.reference_heldout_elbo()
        (stored,) = cache.iterdir()
        assert json.loads(stored.read_text())["value"] == cached
        assert cached == model_check.train_reference_and_score()  # deterministic: the same bits again
        assert math.isfinite(cached) and -30 < cached < -15
    finally:
        model_check.reference_heldout_elbo.cache_clear()
