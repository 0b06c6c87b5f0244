"""The red-team suite: the project's own hostile submissions (tests/redteam/) graded as a class.

Every submission is graded once, two at a time, with small limits. For each attack: no
unearned points (an attacked problem passes no test that `redteam/baseline_zeros.py`, which
honestly returns zeros, does not pass too), nothing written outside the worker's temporary folder, no process left
behind, the batch within its time budget, and the submission's honest problems still graded
(each file has a correct `bernoulli_log_likelihood` worth 10 points).

Some attacks are contained only by the OS sandbox (bubblewrap): reading the project or other
submissions, writing through /proc or into the project, processes that leave the worker's
session. Without bubblewrap those checks skip (with the reason), and the fixture cleans up
what the attacks left; `.ci/run` installs bubblewrap and sets VAE_REQUIRE_SANDBOX=1, which
turns those skips into failures.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import site
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from autograder import memorisers
from autograder.batch import grade_all
from autograder.cli import main
from autograder.collect import find_submissions
from autograder.isolation import sandbox, template_client
from autograder.isolation.limits import Limits
from autograder.pipeline import EXIT_USAGE
from autograder.settings import Settings
from autograder.scoring import MESSAGE_CHARS
from autograder.worker_client import Student

pytestmark = pytest.mark.slow

REDTEAM = Path(__file__).resolve().parent / "redteam"
PROJECT = Path(__file__).resolve().parent.parent
LIMITS = Limits(call_seconds=5, start_seconds=20, submission_seconds=60)
SUBMISSION_BUDGET = LIMITS.submission_seconds + LIMITS.start_seconds + 20  # a start may begin just before the end
BATCH_BUDGET = 420  # 17 hostile submissions on 2 jobs; about 2.5 minutes when unloaded
# Models that cheat the model check (autograder/memorisers.py), each graded beside its honest twin.
MEMORISERS = {"memoriser_buffer": memorisers.STASHES_IN_A_BUFFER, "memoriser_low_bits": memorisers.HIDES_IN_LOW_BITS,
              "memoriser_in_sandbox": memorisers.CHEATS_ONLY_IN_THE_SANDBOX,
              "memoriser_stack_frame": memorisers.TAKES_THE_HELDOUT_FROM_A_FRAME,
              "memoriser_train_vae": memorisers.REPLACES_TRAIN_VAE,
              "memoriser_ten_per_step": memorisers.TRAINS_TEN_TIMES_PER_STEP,
              "memoriser_pretrained": memorisers.PRETRAINS_AT_IMPORT}
# A folder outside the worker that the attacks aim at, and argv[0] of what redteam/escape.py
# and hang.py leave behind: the submissions name them as below, and this run writes them in
# with names of its own (two runs on one machine must not see each other's).
CANARY_IN_SOURCES, ORPHAN_IN_SOURCES = "/tmp/vae-redteam-canary", "vae-redteam-orphan"
RUN = uuid.uuid4().hex[:12]
CANARY = Path(f"{CANARY_IN_SOURCES}-{RUN}")
ORPHAN = f"{ORPHAN_IN_SOURCES}-{RUN}".encode()
SETTINGS = Settings.from_environment()
ISOLATION = sandbox.detect(SETTINGS)
STRAY_FILES = [PROJECT / "redteam-pwned", sandbox.UNTRUSTED_DIR / "redteam-pwned",
               *(Path(s) / "redteam-pwned.pth" for s in site.getsitepackages())]

if os.environ.get("VAE_REQUIRE_SANDBOX") == "1" and not ISOLATION.sandboxed:
    raise RuntimeError(f"VAE_REQUIRE_SANDBOX=1 but bubblewrap is not usable: {ISOLATION.reason}")
needs_sandbox = pytest.mark.skipif(
    not ISOLATION.sandboxed,
    reason=f"only an OS sandbox contains this attack, and bubblewrap is not usable here ({ISOLATION.reason})",
)


def orphans() -> list[int]:
    """Processes anywhere on the machine whose argv[0] carries the escape marker."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes().startswith(ORPHAN):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def children_of(pid: int) -> list[int]:
    """Child processes, but for multiprocessing's resource tracker (it lives as long as we do)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if (int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
                        and b"resource_tracker" not in Path(f"/proc/{entry}/cmdline").read_bytes()):
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def clean_up() -> None:
    """Undo what attacks can do where nothing contains them (no bubblewrap)."""
    for pid in orphans():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for path in STRAY_FILES:
        path.unlink(missing_ok=True)
    shutil.rmtree(CANARY, ignore_errors=True)


@dataclass
class Batch:
    records: dict[str, dict]
    seconds: dict[str, float]
    elapsed: float
    orphans: list[int]
    children: list[int]
    canary: list[str]
    grader_files: list[str]
    output_text: str
    stray: list[str]
    temporary: list[str]


@pytest.fixture(scope="module")
def batch(tmp_path_factory, wait_until) -> Batch:
    clean_up()
    base = tmp_path_factory.mktemp("redteam")
    class_folder, grader, temporary = base / "redteam-submissions", base / "grader", base / "tmp"
    for folder in (class_folder, grader, temporary):
        folder.mkdir()
    for path in sorted(REDTEAM.glob("*.py")):
        source = path.read_text().replace(CANARY_IN_SOURCES, str(CANARY)).replace(ORPHAN_IN_SOURCES, ORPHAN.decode())
        (class_folder / path.name).write_text(source)
    for name, source in MEMORISERS.items():
        (class_folder / f"{name}.py").write_text(source)
    (class_folder / "honest_twin.py").write_text(memorisers.REFERENCE)  # what each memoriser must score
    (class_folder / "link_to_reference.py").symlink_to(PROJECT / "solutions" / "vae.py")
    (class_folder / "link_to_peer.py").symlink_to(class_folder / "honest_twin.py")
    CANARY.mkdir(mode=0o777)
    CANARY.chmod(0o777)
    output_path = grader / "grades-redteam.json"
    output = output_path.open("w")  # open while grading, as a grader's output file would be
    output.write("{}\n")
    output.flush()
    cwd, tmpdir = os.getcwd(), os.environ.get("TMPDIR")
    os.chdir(grader)  # the grading processes' working folder: a target through /proc/<pid>/cwd
    os.environ["TMPDIR"] = str(temporary)  # where the workers' private folders are made
    # What this test process started before (e.g. the worker template of an earlier test that
    # graded in this process) is not the batch's.
    earlier_children = set(children_of(os.getpid()))
    try:
        started = time.monotonic()
        records, timings = grade_all(find_submissions([class_folder]), jobs=2, settings=Settings.from_environment(limits=LIMITS),
                                     progress=False)
        elapsed = time.monotonic() - started
    finally:
        os.chdir(cwd)
        if tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = tmpdir
    # Killed sandboxes take a moment to tear down: wait (a while at most) for what is checked below.
    wait_until(lambda: not orphans() and not set(children_of(os.getpid())) - earlier_children
               and not set(os.listdir(temporary)) - {"hypothesis-home-of-vae-assignment"}, 15)
    output.close()
    result = Batch(
        records={r["id"]: r for r in records},
        seconds={r["id"]: t.get("total", 0.0) for r, t in zip(records, timings)},  # {}: refused, not graded
        elapsed=elapsed,
        orphans=orphans(),
        children=sorted(set(children_of(os.getpid())) - earlier_children),
        canary=sorted(os.listdir(CANARY)),
        grader_files=sorted(os.listdir(grader)),
        output_text=output_path.read_text(),
        stray=[str(p) for p in STRAY_FILES if p.exists()],
        # every worker's private folder is gone; hypothesis's shared cache folder may stay
        temporary=sorted(set(os.listdir(temporary)) - {"hypothesis-home-of-vae-assignment"}),
    )
    (base / "records.json").write_text(json.dumps(records, indent=1))  # for a failing run's post-mortem
    for record in records:
        print(record["id"], record["score"], {p: v["score"] for p, v in record["problems"].items()})
    yield result
    clean_up()


def problem(batch: Batch, submission: str, name: str) -> dict:
    return batch.records[submission]["problems"][name]


def messages(batch: Batch, submission: str, name: str) -> str:
    return "\n".join(t["message"] for t in problem(batch, submission, name)["tests"])


def passed(batch: Batch, submission: str, name: str) -> set[str]:
    return {t["name"] for t in problem(batch, submission, name)["tests"] if t["status"] == "passed"}


# --- the whole batch -------------------------------------------------------------------------
def test_every_submission_is_graded_with_the_isolation_in_its_record(batch):
    assert sorted(batch.records) == sorted(["baseline_zeros", "crash", "escape", "flood", "forger", "hang", "liar",
                                            "sleepy_import", "snoop", "writer", "honest_twin", "link_to_reference",
                                            "link_to_peer", *MEMORISERS])
    assert {r["isolation"] for r in batch.records.values()} == {ISOLATION.level}


def test_the_batch_finishes_within_its_time_budget(batch):
    assert batch.elapsed < BATCH_BUDGET
    slow = {k: round(v, 1) for k, v in batch.seconds.items() if v > SUBMISSION_BUDGET}
    assert not slow, f"over {SUBMISSION_BUDGET} s: {slow}"


@pytest.mark.parametrize("submission", ["crash", "escape", "flood", "hang", "liar", "snoop", "writer"])
def test_problems_that_do_not_call_the_bad_code_are_still_graded(batch, submission):
    assert problem(batch, submission, "bernoulli_log_likelihood")["score"] == 10


def test_no_worker_process_and_no_private_folder_is_left(batch):
    assert batch.children == []  # workers, sandboxes and the pool are gone
    assert batch.temporary == []  # every worker's private folder was removed


def test_the_reduce_payload_never_ran(batch):
    """gaussian_log_density returns an object whose __reduce__ runs `touch CANARY/...`."""
    assert "redteam-pwned-reduce" not in batch.canary
    assert problem(batch, "liar", "gaussian_log_density")["score"] == 0


# --- attacks on a single problem ----------------------------------------------------------------
UNEARNED = [  # (submission, problem, attack, words in the feedback)
    ("crash", "gaussian_log_density", "os._exit inside the function", "exited (status 0)"),
    ("crash", "elbo", "segfault (ctypes.string_at(0))", "killed by SIGSEGV"),
    ("crash", "gaussian_kl", "NaN results", "nan"),
    ("crash", "iwae_bound", "NaN results", "nan"),
    # The first hang gets the 5 s call limit (in whichever test or replayed example reached it first).
    ("hang", "gaussian_log_density", "infinite loop ignoring SIGALRM/SIGTERM", "past the 5 s limit"),
    ("flood", "reparameterize", "memory bomb of several GiB", "memory"),
    ("flood", "gaussian_kl", "hundreds of MB printed", "flood flood"),
    ("liar", "gaussian_kl", "pytest, hypothesis and torch.allclose monkeypatched", ""),
    ("liar", "reparameterize", "Tensor subclass whose comparisons are True", ""),
    ("liar", "gaussian_log_density", "object whose __reduce__ runs a command", "object of type Payload"),
    ("liar", "iwae_bound", "caller's frames and gc.get_objects()", "REDTEAM-FRAMES"),
]


@pytest.mark.parametrize(("submission", "name", "attack", "words"), UNEARNED, ids=[f"{s}-{n}" for s, n, *_ in UNEARNED])
def test_no_unearned_points(batch, submission, name, attack, words):
    """The attacked problem passes only what returning zeros passes, with bounded feedback."""
    assert passed(batch, submission, name) <= passed(batch, "baseline_zeros", name), attack
    assert all(len(t["message"]) <= MESSAGE_CHARS for t in problem(batch, submission, name)["tests"])
    feedback = "\n".join(t["message"] for p in batch.records[submission]["problems"].values() for t in p["tests"])
    assert words in feedback  # in whichever test called the code first (elbo calls the student's gaussian_kl)


def test_exit_at_import_is_reported_and_the_module_still_counts(batch):
    record = batch.records["crash"]
    assert [c["error"].split(":")[0] for c in record["cell_errors"]] == ["SystemExit"]
    assert problem(batch, "crash", "bernoulli_log_likelihood")["score"] == 10


def test_an_import_that_sleeps_for_an_hour_is_stopped_by_the_start_timeout(batch):
    record = batch.records["sleepy_import"]
    assert record["score"] == 0
    assert batch.seconds["sleepy_import"] < SUBMISSION_BUDGET
    statuses = {t["status"] for p in record["problems"].values() for t in p["tests"]}
    assert statuses == {"error"}
    messages = [t["message"] for p in record["problems"].values() for t in p["tests"]]
    # One start timeout, then every test fails at once with the same reason (no retry per test).
    assert all("loading your submission" in m and "did not finish within 20 s" in m for m in messages)
    assert batch.seconds["sleepy_import"] < LIMITS.start_seconds + 15


# --- what reaches the grader's side: replies, the model check, symbolic links ------------------------
def test_a_forged_answer_to_load_is_that_submissions_error_not_the_classs(batch):
    record = batch.records["forger"]
    assert record["score"] == 0 and "malformed reply" in messages(batch, "forger", "gaussian_kl")


@pytest.mark.parametrize("submission", [name for name in MEMORISERS
                                        if name not in ("memoriser_ten_per_step", "memoriser_pretrained")])
def test_a_model_that_cheats_the_model_check_earns_what_its_honest_twin_does(batch, submission):
    """The held-out images never reach the worker that trains or the one that decodes; the
    grader counts the steps. Before, the first four got -19.19 (1 nat above the reference,
    unflagged) and the last trained 10,000 steps saying 1,000."""
    model, honest = batch.records[submission]["model"], batch.records["honest_twin"]["model"]
    assert model == honest and "flagged" not in model and "slow_training" not in model
    assert problem(batch, submission, "VAE")["score"] == problem(batch, "honest_twin", "VAE")["score"] == 30


def test_a_model_that_trains_ten_steps_per_step_is_flagged_for_its_cpu_time(batch):
    """Nothing to replace: it runs nine more Adam steps inside each forward. Its points stand
    (the timing is the machine's); the record flags it for review."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc: CPU time cannot be read")
    assert batch.records["memoriser_ten_per_step"]["model"].get("slow_training") is True


def test_a_model_trained_while_its_submission_loads_is_flagged_and_its_heldout_points_wait(batch):
    """Before, 30 points with -19.57 after 1500 steps at import and the grader's 250, unflagged."""
    model = batch.records["memoriser_pretrained"]["model"]
    assert model.get("pretrained") is True and model.get("flagged") is True
    assert model["checkpoints"][0][0] == 0 and model["checkpoints"][0][1] > model["reference_heldout_elbo"] - 2.5
    assert problem(batch, "memoriser_pretrained", "VAE")["score"] == 30 - 13


@pytest.mark.parametrize("submission", ["link_to_reference", "link_to_peer"])
def test_a_submission_that_is_a_symbolic_link_is_refused(batch, submission):
    """Before, a link to solutions/vae.py scored 100."""
    record = batch.records[submission]
    assert record["score"] == 0 and "symbolic link" in record["error"]


# --- what only the OS sandbox contains ----------------------------------------------------------
@needs_sandbox
def test_fork_setsid_sleep_leaves_no_process_behind(batch):
    assert batch.orphans == []
    assert problem(batch, "escape", "reparameterize")["score"] == 15  # the honest part still earns


@needs_sandbox
def test_the_reference_hidden_tests_and_other_submissions_are_not_found(batch):
    assert passed(batch, "snoop", "gaussian_kl") <= passed(batch, "baseline_zeros", "gaussian_kl")
    assert "REDTEAM-FOUND nothing" in messages(batch, "snoop", "gaussian_kl")


@needs_sandbox
def test_nothing_is_written_outside_the_workers_folder(batch):
    assert batch.canary == []
    assert batch.grader_files == ["grades-redteam.json"]
    assert batch.output_text == "{}\n"
    assert batch.stray == []
    assert problem(batch, "writer", "gaussian_kl")["score"] == 20  # writing its own folder is fine


# --- the sandbox itself ----------------------------------------------------------------------
PROBE = """
import os, socket
def probe():
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=1).close()
        network = 1
    except OSError:
        network = 0
    def visible(path):
        return int(os.path.exists(path))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__import__("sys").argv[0]))))
    scratch = open(os.path.join(os.getcwd(), "scratch"), "w")
    scratch.write("fine")
    scratch.close()
    return [os.getuid(), os.getgid(), os.getpid(), network, visible(root + "/solutions/vae.py"),
            visible(root + "/autograder/hidden_tests"), visible(root + "/pyproject.toml"),
            visible(root + "/autograder/untrusted/worker.py"), visible(root + "/assignment/public/digits.npz"),
            sum(1 for fd in range(256) if _is_open(fd))]
def _is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
"""


@needs_sandbox
def test_the_sandboxed_worker_sees_only_what_it_needs(isolation, worker_start):
    student = Student([("probe.py", PROBE)], Limits(call_seconds=10), isolation, worker_start)
    try:
        uid, gid, pid, network, *visible, fds = student.call("probe")["out"]
    finally:
        student.close()
    assert (uid, gid) == (sandbox.SANDBOX_UID, sandbox.SANDBOX_GID)
    assert pid < 10  # its own PID namespace
    assert network == 0
    assert visible == [0, 0, 0, 1, 1]  # no reference, hidden tests or project; its own code and data
    assert fds <= 5  # stdin/out/err and the two pipes


def test_require_sandbox_refuses_to_grade_without_bubblewrap(monkeypatch, capsys, tmp_path):
    submission = tmp_path / "alice.py"
    submission.write_text("x = 1\n")
    monkeypatch.setenv("VAE_ISOLATION", "process")  # read by the command line's settings
    assert main(["grade", str(submission), "--require-sandbox"]) == EXIT_USAGE
    error = capsys.readouterr().err
    assert "--require-sandbox" in error and "nothing was graded" in error


def test_the_worker_command_is_wrapped_only_with_bubblewrap(tmp_path):
    process = sandbox.Isolation("process", reason="test")
    assert sandbox.wrap(["python", "w.py"], workdir=str(tmp_path), isolation=process) == ["python", "w.py"]
    with pytest.raises(sandbox.SandboxUnavailable):
        sandbox.wrap(["python"], workdir=str(tmp_path), isolation=process, required=True)
    bwrap = sandbox.Isolation("bubblewrap", bwrap="/usr/bin/bwrap", training_digits=tmp_path / "digits-train.npz")
    command = sandbox.wrap(["python", "w.py"], workdir=str(tmp_path), isolation=bwrap)
    assert command[0] == "/usr/bin/bwrap" and command[-2:] == ["python", "w.py"]
    assert "--unshare-all" in command and "--die-with-parent" in command
    mounted = {command[i + 2] for i, a in enumerate(command) if a in ("--ro-bind", "--bind")}
    assert str(sandbox.UNTRUSTED_DIR) in mounted and str(sandbox.PUBLIC_DIR) in mounted
    assert not any(m == str(PROJECT) or PROJECT / "solutions" == Path(m) for m in mounted)


LEAVE_TRACES = """
import os
FOLDERS = ("/tmp", "/dev/shm", os.getcwd(), os.path.expanduser("~"))
def leave():
    written = 0
    for folder in FOLDERS:
        try:
            with open(os.path.join(folder, "redteam-trace"), "w") as stream:
                stream.write("left by the previous submission")
            written += 1
        except OSError:
            pass
    __builtins__["REDTEAM_TRACE"] = 1  # in the interpreter, for whoever runs next in it
    return written
def find():
    found = sum(os.path.exists(os.path.join(folder, "redteam-trace")) for folder in FOLDERS)
    return [found, int("REDTEAM_TRACE" in __builtins__), sum(name.isdigit() for name in os.listdir("/proc"))]
"""


@pytest.mark.skipif(bool(template_client.unavailable_reason(ISOLATION, SETTINGS.worker_start)),
                    reason="workers are not forked from a template here: "
                           f"{template_client.unavailable_reason(ISOLATION, SETTINGS.worker_start)}")
def test_a_submission_finds_no_trace_of_the_one_graded_before_it(isolation, worker_start):
    """Workers forked from one template one after the other: files written to /tmp, /dev/shm,
    the working folder and home, and changes to the interpreter, die with the worker."""
    first = Student([("leave.py", LEAVE_TRACES)], Limits(call_seconds=10), isolation, worker_start)
    try:
        assert first.call("leave")["out"] == 4  # it could write its own folders
    finally:
        first.close()
    second = Student([("find.py", LEAVE_TRACES)], Limits(call_seconds=10), isolation, worker_start)
    try:
        found_files, found_in_memory, processes_seen = second.call("find")["out"]
    finally:
        second.close()
    assert (found_files, found_in_memory) == (0, 0)
    assert processes_seen <= 3  # at most itself (PID 1) in its own /proc: never the template
