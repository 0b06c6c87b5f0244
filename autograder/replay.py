"""Hypothesis's examples, generated once per grader version and machine, not once per submission.

The hidden tests run derandomized hypothesis, so every submission that passes a test is fed
the same sequence of examples: the one the reference is fed. `recorded_examples()` runs the
hypothesis tests once against the reference (in this process: it is our own code) and keeps
each test's examples, on disk too (reference_cache.py, exact_json.py). Grading then calls
a test's body on those examples directly; only when one of them fails does the test run
again under hypothesis, from the start, so that a wrong submission gets hypothesis's shrunk
counterexample exactly as without replay.

A test is replayed only if recording it saw nothing but passing examples; anything else
(a failure, a rejected draw) leaves it to hypothesis every time.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy
import pytest
import torch
from hypothesis.errors import StopTest, UnsatisfiedAssumption

from assignment.public import vae_course
from autograder import exact_json, reference_cache
from autograder.collect import read_cells
from autograder.hidden_pytest import run_pytest
from autograder.isolation import sandbox
from autograder.isolation.limits import Limits
from autograder.untrusted import wire
from autograder.untrusted.worker import Server
from autograder.worker_client import Student, StudentError

REFERENCE = Path(__file__).resolve().parent.parent / "solutions" / "vae.py"


@dataclass
class Example:
    kwargs: dict  # the arguments hypothesis gave (fixtures and st.data() excluded)
    uses_data: bool = False  # the test takes `data` (st.data())
    draws: list = field(default_factory=list)  # what it drew from it, in order


def fresh(value: object) -> object:
    """A copy of a recorded value that a test body may change freely: tensors cloned, lists,
    tuples and dicts rebuilt (15 times cheaper than copy.deepcopy on these values)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if type(value) in (list, tuple):
        return type(value)(fresh(item) for item in value)
    if type(value) is dict:
        return {key: fresh(item) for key, item in value.items()}
    return copy.deepcopy(value)


class ReplayError(Exception):
    """The test drew more than was recorded: its body is not what was recorded."""


class RecordedData:
    """Stands in for st.data(): returns the recorded draws in order."""

    def __init__(self, draws: list):
        self.draws = iter(draws)

    def draw(self, strategy, label=None):
        try:
            return fresh(next(self.draws))
        except StopIteration:
            raise ReplayError("the test drew more than was recorded") from None


class InProcessWorker:
    """The reference answering requests in this process, through the worker's own `Server`
    and an in-memory round trip of the wire format (so replies are fresh, plain tensors)."""

    cell_errors: list = []
    start_seconds = 0.0

    def __init__(self, cells: list[tuple[str, str]]):
        self.server = Server(torch, numpy, vae_course)
        self.server.op_load(cells)

    def alive(self) -> bool:
        return True

    def request(self, op: str, timeout: float, seed: int | None, args: dict, other_seed: int | None = None) -> dict:
        reply = wire.decode(wire.encode(self.server.handle({"op": op, "seed": seed, "other_seed": other_seed,
                                                             "args": args})))
        if not reply["ok"]:
            raise StudentError(str(reply["error"]))
        return reply

    def take_output(self) -> str:
        return ""

    def close(self) -> None:
        pass


class ReferenceStudent(Student):
    """A Student whose worker is the reference, in process (only for recording examples)."""

    def __init__(self):
        # No worker is ever started (the reference answers in this process): no limit or sandbox applies.
        super().__init__([], Limits(), sandbox.Isolation("process", "the reference answers in this process"), "classic")
        self.worker = InProcessWorker(read_cells(REFERENCE))

    def _worker(self) -> InProcessWorker:
        return self.worker


def test_key(item: pytest.Item) -> str:
    """`test_<problem>.py::<name>`: the same whichever folder pytest takes as its root."""
    return f"{Path(str(item.path)).name}::{item.name}"


def is_hypothesis_test(item: pytest.Item) -> bool:
    return hasattr(getattr(item, "obj", None), "hypothesis")


class RecordingPlugin:
    """Runs only the hypothesis tests, against the reference, keeping every example."""

    def __init__(self):
        self.reference = ReferenceStudent()
        self.examples: dict[str, list[Example]] = {}
        self.unreplayable: set[str] = set()

    @pytest.fixture
    def student(self) -> Student:
        self.reference.begin_test()
        return self.reference

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        items[:] = [item for item in items if is_hypothesis_test(item)]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        hypothesis_handle = item.obj.hypothesis
        original, examples, fixtures = hypothesis_handle.inner_test, [], set(item.fixturenames)

        def recorder(*args, **kwargs):
            example = Example({k: copy.deepcopy(v) for k, v in kwargs.items() if k not in fixtures and k != "data"},
                              uses_data="data" in kwargs)
            examples.append(example)
            if example.uses_data:
                kwargs["data"] = _Recording(kwargs["data"], example.draws)
            requests = self.reference.seed
            try:
                return original(*args, **kwargs)
            except (StopTest, UnsatisfiedAssumption):
                if self.reference.seed == requests:  # given up while drawing: the student saw nothing
                    examples.remove(example)
                else:
                    self.unreplayable.add(test_key(item))
                raise
            except BaseException:
                self.unreplayable.add(test_key(item))
                raise

        hypothesis_handle.inner_test = recorder
        try:
            outcome = yield
        finally:
            hypothesis_handle.inner_test = original
        if outcome.excinfo is None and test_key(item) not in self.unreplayable:
            self.examples[test_key(item)] = examples


class _Recording:
    """Wraps hypothesis's data object: draws as usual and keeps a copy of each."""

    def __init__(self, data, draws: list):
        self.data, self.draws = data, draws

    def draw(self, strategy, label=None):
        value = self.data.draw(strategy, label)
        self.draws.append(copy.deepcopy(value))
        return value


@functools.lru_cache(maxsize=1)
def recorded_examples() -> dict[str, list[Example]]:
    """Each replayable hypothesis test's examples, by `test_key`: recorded once per grader
    version and machine, then read from disk (reference_cache.py)."""
    return reference_cache.cached("recorded_examples", record_examples, examples_to_json, examples_from_json)


def record_examples() -> dict[str, list[Example]]:
    plugin = RecordingPlugin()
    run_pytest([], plugin)
    return plugin.examples


def examples_to_json(examples: dict[str, list[Example]]) -> dict:
    return {key: [{"kwargs": exact_json.to_json(example.kwargs), "uses_data": example.uses_data,
                   "draws": exact_json.to_json(example.draws)} for example in test_examples]
            for key, test_examples in examples.items()}


def examples_from_json(document: object) -> dict[str, list[Example]]:
    """What examples_to_json gave `document` for; ValueError for anything else."""
    if type(document) is not dict or not all(type(examples) is list for examples in document.values()):
        raise ValueError("not recorded examples")
    recorded = {}
    for key, examples in document.items():
        recorded[key] = []
        for example in examples:
            if not (type(example) is dict and set(example) == {"kwargs", "uses_data", "draws"}
                    and type(example["uses_data"]) is bool):
                raise ValueError(f"not a recorded example of {key}")
            kwargs, draws = exact_json.from_json(example["kwargs"]), exact_json.from_json(example["draws"])
            if type(kwargs) is not dict or type(draws) is not list:
                raise ValueError(f"not a recorded example of {key}")
            recorded[key].append(Example(kwargs, example["uses_data"], draws))
    return recorded


def replay(item: pytest.Item, examples: list[Example]) -> Exception | None:
    """Run the test body on every recorded example: None when it passes them all, else how it
    failed on the first one that fails."""
    body = item.obj.hypothesis.inner_test
    fixtures = {name: item.funcargs[name] for name in item.fixturenames if name in item.funcargs}
    for example in examples:
        kwargs = {**fixtures, **fresh(example.kwargs)}
        if example.uses_data:
            kwargs["data"] = RecordedData(example.draws)
        try:
            body(**kwargs)
        except Exception as failure:  # noqa: BLE001 - the caller decides what a failure means
            return failure
    return None
