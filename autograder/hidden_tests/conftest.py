"""Settings shared by the hidden tests: a derandomized hypothesis profile and the points marker.

Derandomized with fixed example counts and no deadline: every submission sees the same inputs
in the same order, and no result depends on timing.
"""
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps caches in a folder: one shared temporary one, not the grader's working directory.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "hypothesis-home-of-vae-assignment"))

settings.register_profile(
    "grading",
    derandomize=True,
    max_examples=25,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
    # No "explain" phase: it re-runs a failing test many times to annotate lines, a third of
    # the grading time of a wrong submission, and our messages already show the input.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.load_profile("grading")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): the points a hidden test is worth")
