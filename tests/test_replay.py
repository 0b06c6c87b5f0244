"""Replaying the reference's hypothesis examples gives exactly the records hypothesis gives.

Derandomized hypothesis feeds every passing submission the examples it feeds the reference;
`autograder/replay.py` records those once per process and runs test bodies on them, handing a
test back to hypothesis when an example fails. These tests hold it to that.
"""
import pytest

from autograder.collect import read_cells
from autograder.replay import recorded_examples
from autograder.scoring import hidden_tests, run_hidden_tests
from autograder.worker_client import Student
from tests.catalogue import ALL, REFERENCE_PATH, build_source

VARIANTS = {variant.name: variant for variant in ALL}
# A mistake caught in the first example, one caught later, one carried forward into elbo,
# one in the iwae bound, and a correct submission written differently.
SUBMISSIONS = ("kl_missing_half", "kl_per_dimension", "bll_naive_log_sigmoid", "iwae_missing_log_k",
               "correct_torch_distributions")
NOT_THE_MODEL = "not test_VAE"  # the model's tests use no hypothesis; they cost a training each


def test_every_hypothesis_test_is_replayed_with_all_its_examples():
    recorded = recorded_examples()
    hypothesis_tests = {f"test_{t['problem']}.py::{t['name']}" for t in hidden_tests()}
    assert set(recorded) <= hypothesis_tests
    assert len(recorded) == 19  # every @given test of the hidden tests
    assert all(len(examples) >= 10 for examples in recorded.values())


def records(cells: list, use_replay: bool) -> list[dict]:
    student = Student(cells)
    try:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in run_hidden_tests(student, NOT_THE_MODEL, use_replay=use_replay)]
    finally:
        student.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reference", *SUBMISSIONS])
def test_replay_gives_the_records_of_hypothesis(tmp_path, name):
    path = tmp_path / f"{name}.py"
    path.write_text(REFERENCE_PATH.read_text() if name == "reference" else build_source(VARIANTS[name]))
    cells = read_cells(path)
    replayed, generated = records(cells, use_replay=True), records(cells, use_replay=False)
    assert replayed == generated
    assert len(generated) == 31  # every test but the model's 7
    assert not any("unknown problem" in r["message"] for r in generated)  # the grader's own error
    if name == "kl_missing_half":  # a wrong gradient is reported as one
        (gradients,) = [r for r in generated if r["problem"] == "gaussian_kl" and r["name"] == "test_gradients"]
        assert gradients["status"] == "failed" and "the gradient of gaussian_kl" in gradients["message"]
    if name != "reference":
        assert any(r["status"] != "passed" for r in generated) == (VARIANTS[name].problem is not None)
