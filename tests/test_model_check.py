"""The model check: training driven and counted by the grader, estimates from snapshots of the
weights in workers that never trained, the early pass, and the models that cheat it."""
import functools
from pathlib import Path

import pytest

from assignment.contract import ELBO_MARGIN
from autograder import memorisers, model_check
from autograder.isolation import sandbox
from autograder.isolation.limits import Limits
from autograder.settings import Settings
from autograder.worker_client import Student, StudentError

REFERENCE = (Path(__file__).resolve().parent.parent / "solutions" / "vae.py").read_text()
SHORT = model_check.TrainingBudget(steps=60, batch_size=64, lr=1e-2, seed=3, check_every=20)
SETTINGS = Settings.from_environment()
ISOLATION = sandbox.detect(SETTINGS)  # VAE_ISOLATION=process runs these without the sandbox
SANDBOXED = ISOLATION.sandboxed


def train(source: str, stop_at: float | None, budget: model_check.TrainingBudget = SHORT) -> dict:
    """A model of `source` trained and estimated as the grader does, with `budget`."""
    student = Student([("vae.py", source)], Limits(submission_seconds=120), ISOLATION,
                      SETTINGS.worker_start)
    try:
        handle = student.request("model_new", rng_seed=5, kwargs=model_check.MODEL_KWARGS)["handle"]
        return {**model_check.train_and_estimate(student, handle, stop_at, budget), "student": student}
    finally:
        student.close()


@functools.lru_cache(maxsize=None)
def graded(source: str) -> float:
    """The held-out ELBO of `source`'s model as the grader scores it after the short budget."""
    return model_check.score(train(source, None))


def test_a_run_that_stops_at_a_checkpoint_is_the_unchecked_run_cut_there():
    whole = train(REFERENCE, stop_at=None)
    assert whole["steps"] == 60 and not whole["stopped_early"]
    assert [step for step, _ in whole["checkpoints"]] == [0, 20, 40, 60]  # 0: as built, before any step
    (_, at_0), (_, at_20), (_, at_40), _ = whole["checkpoints"]
    assert at_0 < -40 < at_20 < at_40  # still learning: the mark below is reached at step 40, not 20
    stopped = train(REFERENCE, stop_at=(at_20 + at_40) / 2)
    assert stopped["steps"] == 40 and stopped["stopped_early"] and stopped["checkpoints"] == whole["checkpoints"][:3]
    # What is scored is the model at step 40, and the checkpoint's estimate is that score.
    assert model_check.score(stopped) == pytest.approx(at_40, abs=1e-4)
    assert model_check.score(whole) != pytest.approx(at_40)


def test_the_grader_trains_the_budget_and_may_stop_only_at_the_pass_mark():
    assert (model_check.BUDGET.steps, model_check.BUDGET.check_every) == (1000, 250)
    assert model_check.pass_mark() == model_check.reference_heldout_elbo() - ELBO_MARGIN


FLAT_ONLY_DECODER = REFERENCE + '''

class VAE(VAE):
    def decode(self, z):
        if z.dim() != 2:
            raise ValueError("decode takes a batch of z only")
        return super().decode(z)
'''


def test_a_training_that_failed_fails_later_tests_the_same_way_without_training_again():
    student = Student([("vae.py", FLAT_ONLY_DECODER)], Limits(submission_seconds=120), ISOLATION,
                      SETTINGS.worker_start)
    try:
        asked = []

        def training(handle):
            asked.append(handle)
            return model_check.train_and_estimate(student, handle, None, SHORT)

        with pytest.raises(StudentError, match="decode takes a batch of z only") as first:
            student.trained_model(model_check.MODEL_KWARGS, training)  # at the estimate after the last step
        student.begin_test()
        with pytest.raises(StudentError) as again:
            student.trained_model(model_check.MODEL_KWARGS, training)
        assert again.value is first.value and len(asked) == 1
    finally:
        student.close()


SEES_THE_HELDOUT_WHEN_TRAINING = REFERENCE + '''

class VAE(VAE):
    def encode(self, x):
        if len(x) == 297:  # the size of the held-out split
            raise RuntimeError("a held-out image reached the training worker")
        return super().encode(x)

    def forward(self, x):
        import vae_course
        if len(vae_course.load_digits("train")[0]) == 297:
            raise RuntimeError("the training split is the held-out one")
        return super().forward(x)
'''


def test_the_training_worker_never_encodes_a_heldout_image():
    """The same model in the encoding worker does see them: there it only answers mu and logvar."""
    student = Student([("vae.py", SEES_THE_HELDOUT_WHEN_TRAINING)], Limits(submission_seconds=120), ISOLATION,
                      SETTINGS.worker_start)
    try:
        handle = student.new_model(**model_check.MODEL_KWARGS)
        student.begin_training(handle, SHORT.batch_size, SHORT.lr, SHORT.seed)
        student.train_steps(20, 60)
        with pytest.raises(StudentError, match="a held-out image reached"):
            student.encoded_apart(model_check.MODEL_KWARGS, student.weights(handle), model_check.heldout_data())
    finally:
        student.close()


def test_training_is_driven_in_chunks_with_the_loop_bound_before_the_submission():
    """A submission that replaces vae_course.train_vae in its worker (to train ten times the
    budget) changes nothing: the grader gives the steps, the worker's loop is its own."""
    cheat, honest = train(memorisers.REPLACES_TRAIN_VAE, None), train(REFERENCE, None)
    assert cheat["steps"] == 60 and cheat["checkpoints"] == honest["checkpoints"]


# Each cheats where it is given the chance to: in one worker that trains holding the held-out
# images, encodes them and decodes (the earlier protocol). The grader's protocol scores each
# as its honest twin.
CALIBRATED = {"buffer stash": memorisers.STASHES_IN_A_BUFFER, "low bits of a weight": memorisers.HIDES_IN_LOW_BITS,
              "stack frame": memorisers.TAKES_THE_HELDOUT_FROM_A_FRAME,
              "sandbox only": memorisers.CHEATS_ONLY_IN_THE_SANDBOX}
IN_ONE_WORKER = """

def evaluate_in_one_worker(x_heldout, eps):
    model = VAE(64, 2, 256)
    model.train()
    model(torch.zeros(8, 64))  # a training step, the held-out images in this frame
    model.eval()
    with torch.no_grad():
        mu, logvar = model.encode(x_heldout)
        return [mu, logvar, model.decode(mu + torch.exp(0.5 * logvar) * eps)]
"""


@pytest.mark.parametrize("attack", list(CALIBRATED))
def test_a_model_that_hides_the_heldout_images_is_scored_as_its_honest_twin(attack):
    """Given the chance, each lands about 1 nat above the public target, where the "implausibly
    good" flag does not see it: only the protocol holds it."""
    if attack == "sandbox only" and not SANDBOXED:
        pytest.skip("it cheats only in the sandbox, and bubblewrap is not usable here")
    target = model_check.reference_heldout_elbo()
    student = Student([("vae.py", CALIBRATED[attack] + IN_ONE_WORKER)], Limits(submission_seconds=120), ISOLATION,
                      SETTINGS.worker_start)
    try:
        x = model_check.heldout_data()
        mu, logvar, logits = student.call("evaluate_in_one_worker", x, model_check.evaluation_noise(len(x), 2))["out"]
    finally:
        student.close()
    cheated = model_check.heldout_elbo(mu, logvar, logits)
    assert cheated == pytest.approx(target + 1.0, abs=0.3) and not model_check.implausibly_good(cheated, target)
    assert graded(CALIBRATED[attack]) == graded(REFERENCE)


def test_the_earlier_memorisers_are_scored_as_their_honest_twin_or_flagged():
    assert graded(memorisers.REMEMBERS_WHAT_IT_ENCODES) == graded(REFERENCE)
    if SANDBOXED:  # the sandbox's data file has no held-out split
        assert graded(memorisers.READS_THE_HELDOUT_SPLIT) == graded(REFERENCE)
    else:  # without it the file can be read: the score is flagged for review instead
        assert model_check.implausibly_good(graded(memorisers.READS_THE_HELDOUT_SPLIT),
                                            model_check.reference_heldout_elbo())


def test_a_model_that_trains_ten_times_per_step_is_flagged_slow_and_the_reference_is_not():
    cheat, honest = train(memorisers.TRAINS_TEN_TIMES_PER_STEP, None), train(REFERENCE, None)
    if cheat["cpu_seconds_per_step"] is None:
        pytest.skip("no /proc here: CPU time cannot be read")
    assert model_check.how_trained(cheat["student"], cheat).get("slow_training") is True
    assert "slow_training" not in model_check.how_trained(honest["student"], honest)


BURNS_BESIDE_ITS_CALLER = """
import os, threading, time

def burn(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

def sleep_while_others_burn(seconds):
    threading.Thread(target=burn, args=(seconds,), daemon=True).start()
    if os.fork() == 0:
        burn(seconds)
        os._exit(0)
    time.sleep(seconds)
    return 1
"""


def test_a_workers_cpu_time_counts_its_threads_and_the_processes_it_starts():
    """What a training that works beside the grader's loop would use: wall time misses it."""
    student = Student([("burn.py", BURNS_BESIDE_ITS_CALLER)], Limits(call_seconds=10), ISOLATION,
                      SETTINGS.worker_start)
    try:
        student.call("sleep_while_others_burn", 0.01)
        before = student.worker_cpu_seconds()
        student.call("sleep_while_others_burn", 1.5)  # the calling thread only sleeps
        after = student.worker_cpu_seconds()
    finally:
        student.close()
    if before is None:
        pytest.skip("no /proc here: CPU time cannot be read")
    assert after - before > 0.3


def test_a_model_trained_while_its_submission_loads_is_flagged_before_the_graders_first_step():
    """1500 steps at import, then the grader's 250: before, 30 points and -19.57, unflagged."""
    reply = train(memorisers.PRETRAINS_AT_IMPORT, model_check.pass_mark(), model_check.BUDGET)
    (step, before_training), *_ = reply["checkpoints"]
    assert step == 0 and before_training >= model_check.pass_mark() and model_check.pretrained(reply)
    assert model_check.how_trained(reply["student"], reply)["pretrained"] is True
    assert not model_check.pretrained(train(REFERENCE, None))

