"""Reports whose rendering is pinned in tests/golden/: one built by hand, the rest graded for real."""
from __future__ import annotations

import dataclasses

from grader.model.outcomes import ErrorInfo, Pending, Raised, Scale, WrongAnswer
from grader.model.result import CaseResult, CauseSummary, Report

_ERROR = ErrorInfo("RuntimeError", message="boom", label="cell 7", line=3, function="forward", code="y = x @ w",
                   traceback="cell 7, line 3, in forward\n    y = x @ w")

#: Every part of a report at once: a note, a passed case, a recognised mistake with partial credit, an
#: exception shared by two cases (one hidden), a pending case.
SAMPLE = Report("s.ipynb", "mha", (
    CaseResult("a", "SDPA: shapes", "SDPA", "passed", 1, 1),
    CaseResult("b", "MHA: values", "MHA", "failed", 1.5, 3, "Known mistake: scores not scaled. Divide by √d_head.",
               "partial credit for a recognised mistake: 1.5 of 3\n`scores` is 2× the expected values",
               cause=WrongAnswer(), problems=(Scale("scores", 2.0),),
               mistakes=("no-scaling",), cause_ref=1),
    CaseResult("c", "MHA: grads", "MHA", "error", 0, 2, "RuntimeError in cell 7, line 3 (forward): boom",
               "cell 7, line 3, in forward\n    y = x @ w", "hidden",
               cause=Raised(_ERROR, "forward"), cause_ref=2),
    CaseResult("d", "MHA: padding mask", "MHA", "error", 0, 2, "RuntimeError in cell 7, line 3 (forward): boom",
               "cell 7, line 3, in forward\n    y = x @ w", cause=Raised(_ERROR, "forward"),
               cause_ref=2, hint="Fill the scores where mask == 0 with -1e9 before the softmax."),
    CaseResult("e", "MHA: cross-attention", "MHA", "pending", 0, 2, "graded after submission (2 points)",
               "hidden", cause=Pending()),
), None, ("cell 9, line 1: SyntaxError",), "subprocess", 1.25, causes=(
    CauseSummary(1, "mistake", "Known mistake: scores not scaled (partial credit: 50% of each case it explains)",
                 ("b",), 1.5, fix="Divide by √d_head.", evidence="`scores` is 2× the expected values"),
    CauseSummary(2, "exception", "RuntimeError in forward: boom", ("c", "d"), 4,
                 where="cell 7, line 3 (forward): `y = x @ w`", evidence="cell 7, line 3, in forward\n    y = x @ w",
                 seen_in="MHA: grads"),
))

#: Real submissions, each showing one way of losing points (path relative to the repo root).
GRADED = {
    "one_wrong_line": "tests/submissions/mha/bug_missing_lin_O.py",
    "constructor_typo": "tests/submissions/lstm/bug_constructor_typo.py",
    "known_mistake": "tests/submissions/mha/bug_sqrt_dfeat.py",
    "softmax_dim": "tests/submissions/mha/bug_softmax_dim.py",
    "exception": "tests/submissions/lstm/bug_hardcoded_batch.py",
    "template": "assignments/lstm/lstm.ipynb",
    "forbidden": "tests/submissions/lstm/forbidden_lstmcell.py",
    "hidden_only": "tests/submissions/mha/bug_hardcoded_dk.py",
}
#: Of these, the student's view is pinned too (``--audience student``).
STUDENT_VIEWS = ("hidden_only", "exception")


def normalised(report: Report, submission: str) -> Report:
    """What does not depend on the machine: no timings, the submission's path from the repo root, a
    fixed isolation line and course folder."""
    cases = tuple(dataclasses.replace(c, duration=0.0) for c in report.cases)
    return dataclasses.replace(report, submission=submission, cases=cases, execution_time=0.0,
                               isolation="(isolation)", course="(course)")
