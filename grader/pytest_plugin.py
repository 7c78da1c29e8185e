"""Every case a pytest test: ``python -m pytest --grade SUBMISSION`` (registered as a ``pytest11`` plugin).

The submission is graded once, exactly as ``grade SUBMISSION`` grades it (in the sandbox, with
the same course resolution: in a released bundle a local check of the public cases against the
fixtures; in a course every case); this plugin only presents the report. Each case becomes one
test item named as the report names it (``Class: case name``), under a collector per class, so
``-k``, ``-x``, ``-v``, ``--junitxml`` and pytest's exit codes work as pytest users expect. A
failing item's text is the case's cause (what, where, the fix) and its own facts, never a
traceback of the grader. A case graded only after submission (a hidden case of a local check)
is skipped with that reason.

Without ``--grade`` it does nothing: it adds its options, and no other hook acts (the grader is
not even imported), so a project's own test suite is unaffected. With ``--grade``, the session
holds the cases only: test files on the command line or under the root are not collected.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from grader.model.result import CaseResult, Report

_KEY = pytest.StashKey["Report"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grade", "grading a submission (the grader's pytest plugin)")
    group.addoption("--grade", metavar="SUBMISSION", help="Grade this .ipynb or .py once, and make each of its "
                                                          "assignment's cases a test item.")
    group.addoption("--grade-assignment", metavar="NAME", help="The assignment (default: the notebook's metadata, "
                                                               "else inferred from the classes it defines).")
    group.addoption("--grade-root", metavar="DIR", help="The course folder (default: as `grade` finds it: "
                                                        "$GRADER_ROOT, the course or released bundle around it).")
    group.addoption("--grade-audience", choices=("student", "instructor"), default="student",
                    help="Whose view of hidden cases the failures show (default: student: hidden cases by name, "
                         "points and result only).")


def pytest_configure(config: pytest.Config) -> None:
    """With ``--grade``, the session collects the submission only (its cases), whatever else was named."""
    submission = config.getoption("grade")
    if submission:
        if not Path(submission).is_file():
            raise pytest.UsageError(f"--grade: no such file: {submission}")
        if Path(submission).suffix.lower() not in (".ipynb", ".py"):
            raise pytest.UsageError(f"--grade: {submission}: expected a .ipynb notebook or a .py file")
        config.args[:] = [str(Path(submission).absolute())]


def pytest_sessionstart(session: pytest.Session) -> None:
    """The grading, once, before anything is collected: a usage mistake (an unknown assignment) is then
    pytest's usage error, said in one line (exit 4)."""
    submission = session.config.getoption("grade")
    if submission:
        session.config.stash[_KEY] = _graded(Path(submission), session.config)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With ``--grade``, nothing but the submission (and the folders on the way to it) is collected."""
    submission = config.getoption("grade")
    if not submission:
        return None
    target = Path(submission).absolute()
    return True if collection_path != target and collection_path not in target.parents else None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A notebook submission (a ``.py`` one is pytest's python plugin's to collect: see below)."""
    submission = parent.config.getoption("grade")
    if submission and file_path.suffix != ".py" and file_path == Path(submission).absolute():
        return SubmissionFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A submission named like a test module (``test_mha.py``) is graded, not imported as tests."""
    submission = parent.config.getoption("grade")
    return SubmissionFile.from_parent(parent, path=module_path) if submission else None


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not config.getoption("grade"):
        return None
    return [f"grading {config.getoption('grade')} once, in the sandbox; each case is a test item"]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(_KEY, None)
    if report is None:
        return
    from grader.report.render import summary_lines

    terminalreporter.section("grade")
    for line in summary_lines(report):
        terminalreporter.write_line(line)


# --------------------------------------------------------------------------- grading and items


def _graded(submission: Path, config: pytest.Config) -> Report:
    """The report, for the audience asked; a usage mistake is pytest's usage error (exit 4), a fault of
    the grader an internal error (exit 3)."""
    from grader.config import GradeConfig
    from grader.errors import UsageError
    from grader.pipeline import grade_submission
    from grader.report.audience import for_audience

    root = config.getoption("grade_root")
    overrides: dict[str, Any] = {"assignment": config.getoption("grade_assignment")}
    if root:
        overrides["root"] = Path(root).resolve()
    try:
        report = grade_submission(submission, GradeConfig(**overrides))
    except UsageError as e:
        raise pytest.UsageError(f"--grade: {e}") from None
    return for_audience(report, config.getoption("grade_audience"))


class SubmissionFile(pytest.File):
    """The submission, graded at the session's start; its classes hold its cases."""

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        report = self.config.stash[_KEY]
        if report.problem is not None or not report.cases:  # not graded at all: one failing item says why
            return [CaseItem.from_parent(self, name="submission", report=report, case=None)]
        targets = dict.fromkeys(c.target for c in report.cases)
        return [GradedClass.from_parent(self, name=t, report=report) for t in targets]


class GradedClass(pytest.Collector):
    """The cases of one graded class, in the report's order."""

    def __init__(self, *, report: Report, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.report = report

    def collect(self) -> list[pytest.Item]:
        return [CaseItem.from_parent(self, name=c.name, report=self.report, case=c)
                for c in self.report.cases if c.target == self.name]


class CaseFailed(Exception):
    """A case that did not pass: its text is what the student reads."""


class CaseItem(pytest.Item):
    """One case of the report: passes, fails with its cause, or is skipped (graded after submission)."""

    def __init__(self, *, report: Report, case: CaseResult | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.report, self.case = report, case
        if case is not None:
            self.user_properties += [("score", case.score), ("max_score", case.max_score),
                                     ("visibility", case.visibility)]
            if case.status == "pending":  # skipped where the item stands, not where the plugin says so
                self.add_marker(pytest.mark.skip(reason=case.reason or "graded after submission"))

    def runtest(self) -> None:
        from grader.report.render import case_text

        if self.case is None:  # the submission could not be graded at all
            raise CaseFailed(f"Could not grade this submission: {self.report.problem or 'it defines no case'}")
        if self.case.status not in ("passed", "pending"):
            raise CaseFailed(case_text(self.report, self.case, where_and_fix=True))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CaseFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        """The heading of its failure: the case and its points (the node id, unchanged, says where it is)."""
        from grader.report.rows import case_points

        if self.case is None:
            return self.path, 0, f"{self.path.name}: could not be graded"
        return self.path, 0, f"{self.name} ({case_points(self.case)} points)"
