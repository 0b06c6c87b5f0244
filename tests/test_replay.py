"""Replaying the reference's hypothesis examples gives exactly the records hypothesis gives.

Derandomized hypothesis feeds every passing submission the examples it feeds the reference;
`autograder/replay.py` records those once (kept on disk) and runs test bodies on them, handing a
test back to hypothesis when an example fails. These tests hold it to that.
"""
import base64
import json
import math

import numpy
import pytest
import torch

from assignment.contract import CONTRACT, MODEL, PROBLEMS
from autograder import exact_json, reference_cache, replay
from autograder.check_values import hidden_test_module
from autograder.collect import read_cells
from autograder.isolation.limits import Limits
from autograder.replay import examples_from_json, examples_to_json, recorded_examples
from autograder.untrusted.wire import raw_bytes
from autograder.scoring import hidden_tests, run_hidden_tests
from autograder.worker_client import Student
from autograder.catalogue import ALL, REFERENCE_PATH, build_source

VARIANTS = {variant.name: variant for variant in ALL}
# A mistake caught in the first example, one caught later, one carried forward into elbo,
# one in the iwae bound, and a correct submission written differently.
SUBMISSIONS = ("kl_missing_half", "kl_per_dimension", "bll_naive_log_sigmoid", "iwae_missing_log_k",
               "correct_torch_distributions")
MODEL_FILES = [f"test_{p.name}" for p in CONTRACT if p.kind == MODEL]
NOT_THE_MODEL = " and ".join(f"not {name}" for name in MODEL_FILES)  # no hypothesis there; each costs a training


def hypothesis_tests() -> set[str]:
    """`test_<problem>.py::<name>` of every @given hidden test, read from the modules themselves."""
    keys = set()
    for problem in PROBLEMS:
        module = hidden_test_module(problem)
        keys |= {f"test_{problem}.py::{name}" for name, test in vars(module).items()
                 if name.startswith("test_") and hasattr(test, "hypothesis")}
    return keys


def test_every_hypothesis_test_is_replayed_with_all_its_examples():
    recorded = recorded_examples()
    collected = {f"test_{t['problem']}.py::{t['name']}" for t in hidden_tests()}
    assert set(recorded) <= collected
    assert set(recorded) == hypothesis_tests()  # every @given test of the hidden tests
    assert all(len(examples) >= 10 for examples in recorded.values())


def records(cells: list, use_replay: bool, isolation, worker_start: str) -> list[dict]:
    student = Student(cells, Limits(), isolation, worker_start)
    try:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in run_hidden_tests(student, NOT_THE_MODEL, use_replay=use_replay).results]
    finally:
        student.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reference", *SUBMISSIONS])
def test_replay_gives_the_records_of_hypothesis(tmp_path, name, isolation, worker_start):
    path = tmp_path / f"{name}.py"
    path.write_text(REFERENCE_PATH.read_text() if name == "reference" else build_source(VARIANTS[name]))
    cells = read_cells(path)
    replayed, generated = records(cells, True, isolation, worker_start), records(cells, False, isolation, worker_start)
    assert replayed == generated
    assert len(generated) == sum(f"test_{t['problem']}" not in MODEL_FILES for t in hidden_tests())  # all but the model's
    assert not any("unknown problem" in r["message"] for r in generated)  # the grader's own error
    if name == "kl_missing_half":  # a wrong gradient is reported as one
        (gradients,) = [r for r in generated if r["problem"] == "gaussian_kl" and r["name"] == "test_gradients"]
        assert gradients["status"] == "failed" and "the gradient of gaussian_kl" in gradients["message"]
    if name != "reference":
        assert any(r["status"] != "passed" for r in generated) == (VARIANTS[name].problem is not None)


def same_exactly(a: object, b: object) -> bool:
    """Equal values of the same types all the way down, tensors bit for bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return (a.dtype, a.shape, a.stride()) == (b.dtype, b.shape, b.stride()) and raw_bytes(a) == raw_bytes(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_exactly(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_exactly(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


def test_recorded_examples_read_back_from_json_exactly():
    recorded = recorded_examples()
    back = examples_from_json(json.loads(json.dumps(examples_to_json(recorded))))
    assert list(back) == list(recorded)
    for key in recorded:
        assert [example.uses_data for example in back[key]] == [example.uses_data for example in recorded[key]]
        assert same_exactly([(e.kwargs, e.draws) for e in back[key]], [(e.kwargs, e.draws) for e in recorded[key]]), key


def test_exact_json_keeps_every_type_and_bit():
    value = (1, 2.5, -0.0, float("nan"), float("inf"), True, None, "s", [(), {"a": torch.tensor([-0.0, 1e-45])}],
             torch.arange(6, dtype=torch.float64).reshape(2, 3), torch.empty(0, 4), torch.tensor(3, dtype=torch.int64))
    assert same_exactly(exact_json.from_json(json.loads(json.dumps(exact_json.to_json(value)))), value)


@pytest.mark.parametrize("value", [numpy.zeros(2), torch.zeros(2, 3).t(), torch.zeros(2, requires_grad=True),
                                   {1: "key not a str"}, torch.float32],
                         ids=["numpy array", "not contiguous", "requires grad", "int key", "a dtype"])
def test_exact_json_refuses_what_it_cannot_keep_exactly(value):
    with pytest.raises(ValueError):
        exact_json.to_json([value])


@pytest.mark.parametrize("document", [
    {"tensor": ["float32", [2], base64.b64encode(b"\0" * 4).decode()]},  # bytes for one float, shape says two
    {"tensor": ["object", [1], ""]}, {"tensor": ["float32", [-1], ""]}, {"tensor": ["float32", [1], "!!!!"]},
    {"set": [1]}, {"list": [1], "tuple": [2]}, {"dict": [1]}, [1, 2],
], ids=["short bytes", "dtype", "negative shape", "base64", "unknown tag", "two tags", "dict of a list", "bare list"])
def test_exact_json_rejects_what_it_did_not_write(document):
    with pytest.raises(ValueError):
        exact_json.from_json(document)


@pytest.mark.slow
def test_examples_read_from_the_cache_replay_to_the_records_of_hypothesis(tmp_path, monkeypatch, isolation,
                                                                         worker_start):
    monkeypatch.setattr(reference_cache, "cache_folder", lambda: tmp_path / "cache")
    recorded_examples.cache_clear()
    try:
        recorded_examples()  # recorded, and stored
        recorded_examples.cache_clear()
        monkeypatch.setattr(replay, "record_examples", lambda: pytest.fail("recorded again instead of read"))
        path = tmp_path / "kl_per_dimension.py"
        path.write_text(build_source(VARIANTS["kl_per_dimension"]))
        cells = read_cells(path)
        assert records(cells, True, isolation, worker_start) == records(cells, False, isolation, worker_start)
    finally:
        recorded_examples.cache_clear()
