"""Gradescope's side of ``grade package gradescope``: grade ``submission/``, write ``results/results.json``.

Run by the bundle's ``run_autograder`` as ``python3 -m grader.authoring.autograder``, inside
Gradescope's container, where the bundle lies in ``$AUTOGRADER_ROOT/source`` (default
``/autograder``) and the student's files in ``submission/``. It reads the bundle's
``autograder.json`` (the assignment, how hidden cases show), grades the one submission file
with the bundled course (reference outputs precomputed in ``source/cache``), and writes
Gradescope's results for the student audience: hidden cases by name, points and result only;
what the code printed in them is never shown. Whatever happens, ``results.json`` is written:
a submission that cannot be graded gets score 0 and the reason, and the grader's own failure
says so (its traceback goes to stdout, which Gradescope shows instructors only).
"""
from __future__ import annotations

import json
import os
import stat
import sys
import traceback
from pathlib import Path
from typing import Any

#: Gradescope's visibilities a hidden case may take (``visible`` would show it before the due date).
HIDDEN_AS = ("after_due_date", "after_published", "hidden")
SETTINGS = "autograder.json"


def root() -> Path:
    return Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))


def main() -> int:
    base = root()
    results = base / "results" / "results.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    try:
        settings = json.loads((base / "source" / SETTINGS).read_text(encoding="utf-8"))
        data = grade(base, settings)
    except Exception:  # noqa: BLE001 - the grader's own failure: the student still gets a results.json
        traceback.print_exc(file=sys.stdout)
        data = {"score": 0.0, "output": "The autograder itself failed on this submission (not your code's fault). "
                                        "Your instructor can see why; submit again later or ask them.",
                "tests": [], "stdout_visibility": "hidden"}
    results.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def grade(base: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The results for the submission in ``base/submission`` (see the module docstring)."""
    from grader.config import GradeConfig
    from grader.pipeline import grade_submission
    from grader.report.audience import for_audience
    from grader.report.render import render

    name = settings["assignment"]
    submission = find_submission(base / "submission", settings.get("file"))
    if submission is None:
        return {"score": 0.0, "tests": [], "stdout_visibility": "hidden",
                "output": f"No notebook (.ipynb) or Python file (.py) was found in your submission. Upload "
                          f"{settings.get('file') or 'your notebook'} and submit again."}
    config = GradeConfig(root=base / "source" / "course", assignment=name, cache_dir=base / "source" / "cache")
    report = grade_submission(submission, config)
    data = json.loads(render(for_audience(report, "student"), "gradescope"))
    data["stdout_visibility"] = "hidden"
    return with_visibility(data, settings.get("hidden_as", "after_due_date"))


def with_visibility(data: dict[str, Any], hidden_as: str) -> dict[str, Any]:
    """Gradescope results whose hidden tests show as ``hidden_as`` (one of ``HIDDEN_AS``)."""
    if hidden_as not in HIDDEN_AS:
        raise ValueError(f"invalid visibility {hidden_as!r} for hidden cases, expected one of {', '.join(HIDDEN_AS)}")
    tests = [dict(t, visibility=hidden_as) if t.get("visibility") == "hidden" else t for t in data.get("tests", [])]
    return {**data, "tests": tests}


#: How deep below ``submission/`` a notebook is looked for, and how many entries are looked at.
SEARCH_DEPTH = 3
SEARCH_ENTRIES = 10_000


def find_submission(folder: Path, preferred: str | None) -> Path | None:
    """The file to grade: ``preferred`` when the student uploaded it, else the only notebook or Python
    file (a notebook first), searched ``SEARCH_DEPTH`` folders deep; None when there is none.

    Nothing here follows a link: a folder that is a symbolic link is not entered, and a file that is
    one is returned as it is, so that reading it says why it is refused (``read_submission``).
    """
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return None
    except OSError:
        return None
    if preferred and os.path.lexists(folder / preferred) and not (folder / preferred).is_dir():
        return folder / preferred
    found: list[Path] = []
    todo, seen = [(folder, 1)], 0
    while todo and seen < SEARCH_ENTRIES:
        current, depth = todo.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    seen += 1
                    if seen > SEARCH_ENTRIES:
                        break
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if depth < SEARCH_DEPTH:
                            todo.append((Path(entry.path), depth + 1))
                    elif Path(entry.name).suffix.lower() in (".ipynb", ".py"):
                        found.append(Path(entry.path))
        except OSError:
            continue
    found.sort(key=lambda p: (p.suffix.lower() != ".ipynb", len(p.parts), str(p)))
    return found[0] if found else None


if __name__ == "__main__":
    sys.exit(main())
