"""The worker boundary: replies are plain data, failures are contained, output is bounded."""
import functools
import io
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.untrusted import wire
from autograder.isolation.limits import Limits
from autograder.worker_client import Student, StudentError, TimeLimitExceeded, WorkerFailure

FAST = Limits(call_seconds=5, start_seconds=60, submission_seconds=120)


@pytest.fixture
def student_of(isolation, worker_start):
    started = []

    def start(source: str, limits: Limits = FAST) -> Student:
        student = Student([("submission.py", source)], limits, isolation, worker_start)
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
    with pytest.raises(TimeLimitExceeded, match="did not finish within 1 s"):
        student.call("hang")
    assert student.worker.process.poll() is not None
    assert forked_workers() == []  # nothing forked from a template is still running


def test_after_a_hang_every_call_gets_a_short_limit_and_one_unchanging_failure_per_test(student_of):
    student = student_of("def hang():\n    while True:\n        pass\n\ndef calls_hang():\n    return hang()\n"
                         "\ndef fine():\n    return 1\n",
                         Limits(call_seconds=1, hung_call_seconds=0.5, submission_seconds=60))
    with pytest.raises(TimeLimitExceeded, match="did not finish within 1 s"):
        student.call("hang")
    student.begin_test()
    assert student.call("fine")["out"] == 1
    with pytest.raises(TimeLimitExceeded, match=r"within 0.5 s .*: `hang` already ran past the 1 s limit, so every "
                                            r"call gets 0.5 s") as first:
        student.call("calls_hang")
    for _ in range(50):  # hypothesis calls again while it shrinks: the same failure, not a longer chain
        with pytest.raises(WorkerFailure) as again:
            student.call("fine")
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


def test_a_pickle_is_never_unpickled(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    buffer = io.BytesIO()
    torch.save({"ok": True, "out": Evil()}, buffer)
    read, write = os.pipe()
    try:
        os.write(write, wire.HEADER.pack(len(buffer.getvalue())) + buffer.getvalue())
        with pytest.raises(wire.WireError, match="undecodable"):
            wire.receive(read, timeout=5)
    finally:
        os.close(read)
        os.close(write)
    assert not (tmp_path / "pwned").exists()


TENSORS = st.sampled_from(sorted(wire.DTYPES)).flatmap(lambda name: st.lists(
    st.integers(0, 3), max_size=3).map(lambda shape: (torch.arange(math.prod(shape)) % 3 - 1).to(
        wire.DTYPES[name]).reshape(shape)))
PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=5)
    | TENSORS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10)


def same(a, b) -> bool:
    if type(a) is torch.Tensor:
        return type(b) is torch.Tensor and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if type(a) in (list, tuple):
        return type(b) is list and len(a) == len(b) and all(map(same, a, b))
    if type(a) is dict:
        return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(message=st.dictionaries(st.text(max_size=3), PLAIN, max_size=4))
def test_plain_messages_round_trip_exactly(message):
    assert same(message, wire.decode(wire.encode(message)))


def test_special_values_and_non_contiguous_tensors_round_trip():
    message = {"x": torch.tensor([float("nan"), float("inf"), -0.0]), "t": (1, 2.5),
               "view": torch.arange(12.0).reshape(3, 4).t()[1:], "neg": torch.arange(3.0).neg().conj()}
    back = wire.decode(wire.encode(message))
    assert back["x"].isnan()[0] and back["x"][1] == float("inf") and back["x"][2].signbit()
    assert back["t"] == [1, 2.5] and torch.equal(back["view"], message["view"]) and back["view"].is_contiguous()
    assert torch.equal(back["neg"], -torch.arange(3.0))


@pytest.mark.parametrize("value, why", [
    (object(), "unexpected type"), ({1: 2}, "keys must be str"), (torch.ones(2).to_sparse(), "dense"),
    (functools.reduce(lambda inner, _: [inner], range(30), 1), "nested too deeply")])
def test_what_cannot_be_sent_is_refused_when_sending(value, why):
    with pytest.raises(wire.WireError, match=why):
        wire.encode({"out": value})


def layout_of(text: bytes) -> bytes:
    return wire.JSON_LENGTH.pack(len(text)) + text


@pytest.mark.parametrize("data, why", [
    (b"\x00", "undecodable"),
    (layout_of(b'{"m": {"d": {}}, "t": []}') + b"x", "left over"),
    (layout_of(b'{"m": {"d": {"a": {"t": 0}}}, "t": [["float32", [4]]]}') + bytes(8), "cut short"),
    (layout_of(b'{"m": {"d": {"a": {"t": 0}}}, "t": [["object", [1]]]}') + bytes(8), "layout"),
    (layout_of(b'{"m": {"d": {"a": {"t": 1}}}, "t": []}'), "malformed message"),
    (layout_of(b'{"m": {"d": {"a": {"l": [], "d": {}}}}, "t": []}'), "malformed message"),
    (layout_of(b'{"m": {"l": []}, "t": []}'), "must be a dict"),
    (layout_of(b'{"m": ' + b'{"l": [' * 30 + b']}' * 30 + b', "t": []}'), "nested too deeply"),
])
def test_malformed_bytes_are_refused_when_reading(data, why):
    with pytest.raises(wire.WireError, match=why):
        wire.decode(data)


def test_tensor_subclass_comes_back_as_a_plain_tensor(student_of):
    student = student_of("import torch\nclass Liar(torch.Tensor):\n    def __eq__(self, other):\n        return True\n"
                         "def f(x):\n    return x.as_subclass(Liar)\n")
    out = student.call("f", torch.ones(2))["out"]
    assert type(out) is torch.Tensor
