"""``check()``: grade the notebook you are working in, from inside Jupyter.

    from grader import check
    check()                      # in a Jupyter kernel: the code this kernel ran
    check(assignment="mha")      # the same, where the assignment cannot be told otherwise
    check("mha.ipynb")           # a given file, as saved

In a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab) ``check()`` grades what the
kernel executed: IPython's input history, each input one unit ("In [7]"), sliced exactly
as a file is (the last definition wins), so it works where the notebook is not on disk
(Colab) and never grades a stale file. The inputs that only use the grader are left out.
The assignment comes from the saved notebook's metadata when the notebook is found, else
from the classes defined, else ``assignment=``. The report says which source was graded,
and warns when the saved notebook's graded classes differ from what ran (save before
submitting: the saved file is what is graded after you submit). A usage mistake (no
notebook, unknown assignment) prints one line and returns None.

Outside a kernel (a terminal, a script) ``check()`` grades the saved file. It runs the same
checks as ``grade`` and shows the report inline and returns it: in a kernel as the HTML
feedback page, attention maps included, through Jupyter's rich display; elsewhere as text.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from grader.config import GradeConfig
from grader.errors import SubmissionUnreadable, UsageError
from grader.model.outcomes import GradedSource
from grader.report.audience import for_audience
from grader.model.result import Report


def find_notebook(folder: Path | None = None) -> Path:
    """The notebook this kernel belongs to, or the only graded notebook in ``folder``."""
    for var in ("JPY_SESSION_NAME", "__vsc_ipynb_file__"):  # Jupyter Server 2+, VS Code
        value = os.environ.get(var)
        if value and value.endswith(".ipynb") and Path(value).is_file():
            return Path(value)
    try:
        import __main__
        value = getattr(__main__, "__vsc_ipynb_file__", None)
        if value and Path(value).is_file():
            return Path(value)
    except ImportError:
        pass
    folder = folder or Path.cwd()
    graded = [p for p in sorted(folder.glob("*.ipynb")) if _has_grader_metadata(p)]
    if len(graded) == 1:
        return graded[0]
    names = ", ".join(p.name for p in graded) or "none"
    raise UsageError(f"cannot tell which notebook to check (graded notebooks here: {names}); "
                     "call check(\"your_notebook.ipynb\")")


def _has_grader_metadata(path: Path) -> bool:
    try:
        return "assignment" in json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("grader", {})
    except (OSError, ValueError, AttributeError):
        return False


def check(path: str | Path | None = None, config: GradeConfig | None = None, show: bool = True,
          assignment: str | None = None) -> Report | None:
    """Grade ``path``, or by default what this Jupyter kernel ran (elsewhere: the open notebook's
    saved file); show the report (for a student: ``grader.report.audience``) and return it. In a
    kernel a usage mistake prints one line and returns None."""
    from grader.pipeline import grade_submission

    config = config or GradeConfig()
    if assignment:
        config = dataclasses.replace(config, assignment=assignment)
    kernel = in_jupyter_kernel()
    try:
        if path is None and kernel:
            report = check_kernel(config)
        else:
            report = grade_submission(Path(path) if path else find_notebook(), config)
    except (UsageError, SubmissionUnreadable) as e:
        if not kernel:
            raise
        print(f"check(): {_in_a_notebook(str(e))}", file=sys.stderr)
        return None
    report = for_audience(report, "student")  # a student runs check(): hidden cases by name and points only
    if show:
        show_report(report)
    return report


def _in_a_notebook(message: str) -> str:
    """A usage message as it reads in a notebook: ``check(assignment=...)``, not the command's option."""
    return " ".join(message.replace("pass --assignment NAME", 'call check(assignment="NAME")').split())


def check_kernel(config: GradeConfig, shell=None) -> Report:
    """Grade what the kernel ran (``shell``: IPython's; default the running one), as ``check()`` does."""
    from grader.course.assignments import get_assignment, infer_assignment
    from grader.course.resolve import resolve_course
    from grader.pipeline import grade_source, grade_submission
    from grader.plan.slicing import parse_units
    from grader.plan.submission import Submission, history_units, read_submission

    if shell is None:
        from IPython import get_ipython
        shell = get_ipython()
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    if history is None:
        history = shell.user_ns.get("In", [])
    units = history_units(list(history), current=getattr(shell, "execution_count", None))
    try:
        notebook: Path | None = find_notebook()
    except UsageError:
        notebook = None  # Colab, or a notebook not saved yet: the history is all there is
    saved = None
    if notebook is not None:
        try:
            saved = read_submission(notebook)
        except SubmissionUnreadable:
            saved = None
    if not units:
        if notebook is None:
            raise UsageError("this kernel has not run any code yet and no saved notebook was found: "
                             "run your notebook's cells, then call check()")
        if saved is None:
            return grade_submission(notebook, config)
        return grade_source(saved, config, [GradedSource("file", notebook.name)])
    anchor = notebook if notebook is not None else Path.cwd() / "kernel-history"
    ran = parse_units(units)
    course = resolve_course(config.root, anchor)
    name = config.assignment or (saved.assignment if saved is not None else None)
    chosen = get_assignment(course, name) if name else infer_assignment(course, ran.class_names())
    note = GradedSource("history", notebook.name if notebook is not None else None, units[0].label, units[-1].label,
                        tuple(saved_differs(saved, ran, chosen.classes)) if saved is not None else ())
    where = f"{notebook.name}, as run in this kernel" if notebook is not None else "the code run in this kernel"
    return grade_source(Submission(anchor, units, chosen.name, "history"), config, [note],
                        name=where)


def saved_differs(saved, ran, classes) -> list[str]:
    """The graded classes whose code (the class and what it needs) differs between the saved
    notebook ``saved`` (a ``Submission``) and ``ran`` (the history's ``ParsedSource``)."""
    from grader.plan.slicing import parse_units, slice_for

    on_disk = parse_units(saved.units)

    def code(parsed, name: str) -> tuple[list[str], str]:
        sliced = slice_for(parsed, [name])
        error = parsed.defining_error(name) if name in sliced.missing else None  # a cell that cannot be read
        return sorted(s.source.strip() for s in sliced.statements), error.unit.source if error else ""
    return [name for name in classes if code(on_disk, name) != code(ran, name)]


def show_report(report: Report) -> None:
    """The report as a page in a Jupyter kernel, as text elsewhere."""
    if in_jupyter_kernel():
        from IPython.display import HTML, display

        from grader.report.html import to_html
        display(HTML(to_html(report, fragment=True)))
        return
    from rich.console import Console

    from grader.report.render import rich_renderable
    Console().print(rich_renderable(report))


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter kernel (it can show HTML); False in a terminal IPython or plain Python."""
    import sys

    if "IPython" not in sys.modules:  # never import IPython just to ask
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
