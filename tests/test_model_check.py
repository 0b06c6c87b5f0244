"""The model check's early pass: a checked run is the unchecked run, cut at a checkpoint."""
import functools
from pathlib import Path

import pytest
import torch

from assignment.contract import ELBO_MARGIN
from autograder import model_check
from autograder.isolation import sandbox
from autograder.isolation.limits import Limits
from autograder.memorisers import READS_THE_HELDOUT_SPLIT, REMEMBERS_WHAT_IT_ENCODES
from autograder.settings import Settings
from autograder.worker_client import Student, StudentError

REFERENCE = (Path(__file__).resolve().parent.parent / "solutions" / "vae.py").read_text()
SHORT = {"steps": 60, "batch_size": 64, "lr": 1e-2, "seed": 3, "check_every": 20}


@pytest.fixture
def student(isolation, worker_start):
    student = Student([("vae.py", REFERENCE)], Limits(submission_seconds=120), isolation, worker_start)
    yield student
    student.close()


def train(student: Student, stop_at: float | None) -> dict:
    """The trained model's mu and logvar, and its logits decoded in a fresh worker."""
    x = model_check.heldout_data()
    eps = model_check.evaluation_noise(len(x), 2)
    handle = student.request("model_new", rng_seed=5, kwargs=model_check.MODEL_KWARGS)["handle"]
    reply = student.request("model_train", 60, handle=handle, x_heldout=x, eval_eps=eps, stop_at=stop_at, **SHORT)
    return {**reply, "logits": student.decoded_in_fresh_worker(model_check.MODEL_KWARGS, reply, eps)}


def test_a_run_that_stops_at_a_checkpoint_is_the_unchecked_run_cut_there(student):
    whole = train(student, stop_at=None)
    assert whole["steps"] == 60 and [step for step, _ in whole["checkpoints"]] == [20, 40]
    (_, at_20), (_, at_40) = whole["checkpoints"]
    assert at_20 < at_40  # still learning: the mark below is reached at step 40, not 20
    stopped = train(student, stop_at=(at_20 + at_40) / 2)
    assert stopped["steps"] == 40 and stopped["checkpoints"] == whole["checkpoints"]
    # What comes back is the model at step 40, and the grader's value is the worker's estimate.
    graded = model_check.heldout_elbo(stopped["mu"], stopped["logvar"], stopped["logits"])
    assert graded == pytest.approx(at_40, abs=1e-6)
    assert model_check.heldout_elbo(whole["mu"], whole["logvar"], whole["logits"]) != pytest.approx(graded)


def test_the_student_trains_at_most_the_reference_budget_and_may_stop_only_within_the_margin():
    arguments = model_check.training_arguments()
    assert arguments["steps"] == 1000 and arguments["check_every"] == 250
    assert arguments["stop_at"] == pytest.approx(model_check.reference_heldout_elbo() - ELBO_MARGIN + model_check.STOP_SLACK)


FLAT_ONLY_DECODER = REFERENCE + '''

class VAE(VAE):
    def decode(self, z):
        if z.dim() != 2:
            raise ValueError("decode takes a batch of z only")
        return super().decode(z)
'''


def test_a_training_that_failed_fails_later_tests_the_same_way_without_training_again(isolation, worker_start):
    student = Student([("vae.py", FLAT_ONLY_DECODER)], Limits(submission_seconds=120), isolation, worker_start)
    try:
        x = model_check.heldout_data()
        eps = model_check.evaluation_noise(len(x), 2)
        asked = []
        training = lambda: asked.append(1) or {**SHORT, "stop_at": None}  # noqa: E731
        with pytest.raises(StudentError, match="decode takes a batch of z only") as first:
            student.trained_model(model_check.MODEL_KWARGS, training, x, eps)  # at the evaluation after training
        student.begin_test()
        with pytest.raises(StudentError) as again:
            student.trained_model(model_check.MODEL_KWARGS, training, x, eps)
        assert again.value is first.value and asked == [1]
    finally:
        student.close()


@functools.lru_cache(maxsize=None)
def trained_elbos(source: str, isolation: sandbox.Isolation, worker_start: str) -> tuple[float, float]:
    """The held-out ELBO as graded (decoded in a fresh worker), and as it would be were the
    logits decoded by the model that encoded the held-out images."""
    student = Student([("vae.py", source)], Limits(submission_seconds=120), isolation, worker_start)
    try:
        x = model_check.heldout_data()
        eps = model_check.evaluation_noise(len(x), 2)
        handle, reply = student.trained_model(model_check.MODEL_KWARGS, lambda: {**SHORT, "stop_at": None}, x, eps)
        same_worker = student.model_call(handle, "decode", reply["mu"] + torch.exp(0.5 * reply["logvar"]) * eps)["out"]
        return (model_check.heldout_elbo(reply["mu"], reply["logvar"], reply["logits"]),
                model_check.heldout_elbo(reply["mu"], reply["logvar"], same_worker))
    finally:
        student.close()


def test_a_model_that_remembers_the_heldout_images_is_scored_as_its_honest_twin(isolation, worker_start):
    graded, from_memory = trained_elbos(REMEMBERS_WHAT_IT_ENCODES, isolation, worker_start)
    assert graded == trained_elbos(REFERENCE, isolation, worker_start)[0]
    assert model_check.implausibly_good(from_memory, model_check.reference_heldout_elbo())  # what it would get


def test_a_model_that_reads_the_heldout_split_is_scored_as_its_honest_twin_or_flagged(isolation, worker_start):
    graded, _ = trained_elbos(READS_THE_HELDOUT_SPLIT, isolation, worker_start)
    if isolation.sandboxed:  # the sandbox's data file has no held-out split
        assert graded == trained_elbos(REFERENCE, isolation, worker_start)[0]
    else:  # without it the file can be read: the score is flagged for review instead
        assert model_check.implausibly_good(graded, model_check.reference_heldout_elbo())
