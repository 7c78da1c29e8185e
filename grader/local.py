"""``check()``: grade the notebook you are working in, from inside Jupyter.

    from grader import check
    check()               # the open notebook's saved file
    check("mha.ipynb")    # or a given file

It grades the file as saved on disk (save first), runs the same checks as ``grade``, shows
the report inline and returns it: in a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab)
as the HTML feedback page, attention maps included, through Jupyter's rich display; anywhere
else (a terminal, a script) as plain text.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from grader.config import GradeConfig
from grader.errors import UsageError
from grader.report.result import Report


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


def check(path: str | Path | None = None, config: GradeConfig | None = None, show: bool = True) -> Report:
    """Grade ``path`` (default: the open notebook's saved file), show the report, return it."""
    from grader.pipeline import grade_submission

    report = grade_submission(Path(path) if path else find_notebook(), config)
    if show:
        show_report(report)
    return report


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
