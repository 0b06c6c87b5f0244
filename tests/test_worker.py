"""The worker boundary: replies are plain data, failures are contained, output is bounded."""
import io
import os
import sys
from pathlib import Path

import pytest
import torch

from autograder.untrusted import wire
from autograder.worker_client import Limits, Student, StudentError, WorkerFailure

FAST = Limits(call_seconds=5, start_seconds=60, submission_seconds=120)


@pytest.fixture
def student_of():
    started = []

    def start(source: str, limits: Limits = FAST) -> Student:
        student = Student([("submission.py", source)], limits)
        started.append(student)
        return student

    yield start
    for student in started:
        student.close()


def test_values_and_gradients_cross_the_boundary(student_of):
    student = student_of("def f(a, b):\n    return (a * b).sum(-1)\n")
    reply = student.call("f", torch.ones(2, 3), torch.full((2, 3), 2.0), grad_args=(0,))
    assert torch.equal(reply["out"], torch.full((2,), 6.0))
    assert torch.equal(reply["grads"][0], torch.full((2, 3), 2.0))


def test_student_exception_names_the_line(student_of):
    student = student_of("def f(x):\n    return x + undefined_name\n")
    with pytest.raises(StudentError, match=r"NameError.*line 2: return x \+ undefined_name"):
        student.call("f", torch.ones(1))


def test_missing_function(student_of):
    with pytest.raises(StudentError, match="`g` is not defined in your submission"):
        student_of("x = 1\n").call("g")


def test_exit_inside_a_function_fails_only_that_test_and_a_new_worker_follows(student_of):
    student = student_of("import os\ndef bad():\n    os._exit(3)\ndef good():\n    return 1\n")
    student.begin_test()
    with pytest.raises(WorkerFailure, match="exited"):
        student.call("bad")
    with pytest.raises(WorkerFailure):  # the rest of that test fails at once
        student.call("good")
    student.begin_test()
    assert student.call("good")["out"] == 1


def test_a_hanging_call_is_killed_at_its_time_limit(student_of):
    student = student_of("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                         "def hang():\n    while True:\n        time.sleep(0.01)\n",
                         Limits(call_seconds=1, submission_seconds=60))
    with pytest.raises(WorkerFailure, match="did not finish within 1 s"):
        student.call("hang")
    assert student.worker.process.poll() is not None
    assert forked_workers() == []  # nothing forked from a template is still running


def test_a_function_that_hung_once_gets_a_short_limit_and_one_unchanging_failure_per_test(student_of):
    student = student_of("def hang():\n    while True:\n        pass\n",
                         Limits(call_seconds=1, hung_call_seconds=0.5, submission_seconds=60))
    with pytest.raises(WorkerFailure, match="did not finish within 1 s"):
        student.call("hang")
    student.begin_test()
    with pytest.raises(WorkerFailure, match=r"within 0.5 s .*; `hang` already ran past 1 s") as first:
        student.call("hang")
    for _ in range(50):  # hypothesis calls again while it shrinks: the same failure, not a longer chain
        with pytest.raises(WorkerFailure) as again:
            student.call("hang")
        assert again.value is first.value and str(again.value) == str(first.value)


def forked_workers() -> list[int]:
    """Processes under this one whose parent is a template (autograder/untrusted/template.py)."""
    def parent_and_command(pid: str) -> tuple[int, bytes]:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return parent, Path(f"/proc/{pid}/cmdline").read_bytes()

    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                table[int(entry)] = parent_and_command(entry)
            except (OSError, IndexError, ValueError):
                pass
    def ours(pid: int) -> bool:
        while pid in table and pid != os.getpid():
            pid = table[pid][0]
        return pid == os.getpid()

    def python_template(pid: int) -> bool:  # not bubblewrap, whose command line names it too
        argv = table[pid][1].split(b"\0") if pid in table else []
        return len(argv) > 3 and argv[0] == sys.executable.encode() and argv[3].endswith(b"template.py")

    return [pid for pid, (parent, _) in table.items() if ours(pid) and python_template(pid) and python_template(parent)]


def test_printed_output_is_captured_and_bounded(student_of):
    student = student_of("def loud():\n    print('x' * 1_000_000)\n    print('the end')\n    return 1\n",
                         Limits(output_bytes=100))
    assert student.call("loud")["out"] == 1
    printed = student.take_output()
    assert printed.startswith("x" * 100) and printed.rstrip().endswith("the end")
    assert "bytes not shown" in printed and len(printed) < 400


def test_wire_rejects_anything_but_tensors_and_plain_data():
    read, write = os.pipe()
    try:
        class Evil:
            def __reduce__(self):
                return (os.system, ("echo pwned",))

        buffer = io.BytesIO()
        torch.save({"ok": True, "out": Evil()}, buffer)
        data = buffer.getvalue()
        os.write(write, wire.HEADER.pack(len(data)) + data)
        with pytest.raises(wire.WireError, match="undecodable"):
            wire.receive(read, timeout=5)
    finally:
        os.close(read)
        os.close(write)


def test_tensor_subclass_comes_back_as_a_plain_tensor(student_of):
    student = student_of("import torch\nclass Liar(torch.Tensor):\n    def __eq__(self, other):\n        return True\n"
                         "def f(x):\n    return x.as_subclass(Liar)\n")
    out = student.call("f", torch.ones(2))["out"]
    assert type(out) is torch.Tensor
