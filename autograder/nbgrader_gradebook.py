"""nbgrader's gradebook under SQLAlchemy 2 without a warning per new submission.

`Gradebook.add_submission` (nbgrader 0.9.6, and its main branch) builds the submission's
objects first and adds them to the session at the end, relying on SQLAlchemy 1.x's "cascade
backrefs": an object attached to a persisted assignment joined the session at once. SQLAlchemy
2 removed that, so each lazy load inside the method autoflushes while the new submission is not
in the session yet, and SQLAlchemy warns, three times per student: "SAWarning: Object of type
<SubmittedAssignment> not in session, add operation along 'Assignment.submissions' will not
proceed". Harmless (the method adds and commits everything just after), but noise in every
`nbgrader autograde` log. Pinning SQLAlchemy 1.4 is not an option: the alembic that nbgrader's
gradebook needs requires SQLAlchemy 2.

The fix is the one SQLAlchemy's warning names: run the method under the session's
`no_autoflush`, so nothing is flushed before the submission is added. The course's
`nbgrader_config.py` calls `add_submissions_without_autoflush()` once; the gradebook that
results is the same.
"""
from __future__ import annotations

import functools

from nbgrader.api import Gradebook

_PATCHED = "_vae_without_autoflush"


def add_submissions_without_autoflush() -> None:
    """Make `Gradebook.add_submission` run with autoflush off (idempotent)."""
    original = Gradebook.add_submission
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def add_submission(self: Gradebook, assignment: str, student: str, **kwargs):
        with self.db.no_autoflush:
            return original(self, assignment, student, **kwargs)

    setattr(add_submission, _PATCHED, True)
    Gradebook.add_submission = add_submission
