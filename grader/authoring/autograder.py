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

Before anything is graded, ``source/`` (and Gradescope's ``submission_metadata.json``) is made
root's alone again (``keep_private``): the student's code runs as a uid of its own, and without
bubblewrap that is all that keeps it from reading the course's reference and cached outputs.
``setup.sh`` did it once when the image was built; doing it for every submission keeps it true
whatever happened to the image since.
"""
from __future__ import annotations

import json
import os
import stat
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grader.config import GradeConfig

#: Gradescope's visibilities a hidden case may take (``visible`` would show it before the due date).
HIDDEN_AS = ("after_due_date", "after_published", "hidden")
SETTINGS = "autograder.json"
#: What under the root no user but root may read while student code runs: the bundle (the course, its
#: reference, the cached outputs), and Gradescope's metadata of the submission (its submitters' names
#: and e-mail addresses, earlier submissions' results).
PRIVATE = ("source", "submission_metadata.json")


def root() -> Path:
    return Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))


def main() -> int:
    base = root()
    results = base / "results" / "results.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    try:
        for name in PRIVATE:
            keep_private(base / name)
        settings = json.loads((base / "source" / SETTINGS).read_text(encoding="utf-8"))
        data = grade(base, settings)
    except Exception:  # noqa: BLE001 - the grader's own failure: the student still gets a results.json
        traceback.print_exc(file=sys.stdout)
        data = {"score": 0.0, "output": "The autograder itself failed on this submission (not your code's fault). "
                                        "Your instructor can see why; submit again later or ask them.",
                "tests": [], "stdout_visibility": "hidden"}
    results.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def keep_private(path: Path) -> None:
    """Take every permission of group and others off ``path`` (a file, or a folder and everything in it),
    so that no user but its owner reads or enters it; a folder itself becomes 0700. Links inside are
    neither followed nor changed; ``path`` itself must not be one. Nothing to do when it does not exist."""
    if not os.path.lexists(path):
        return
    if stat.S_ISLNK(os.lstat(path).st_mode):
        raise RuntimeError(f"{path} is a symbolic link; the autograder keeps it private only as a real file or folder")
    if not path.is_dir():
        os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & ~0o077)
        return
    os.chmod(path, 0o700)
    for top, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            entry = os.path.join(top, name)
            mode = os.lstat(entry).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                os.chmod(entry, stat.S_IMODE(mode) & ~0o077)


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
    exposed = exposed_course(config, [base / "source"])
    if exposed:
        raise RuntimeError(exposed)
    report = grade_submission(submission, config)
    data = json.loads(render(for_audience(report, "student"), "gradescope"))
    data["stdout_visibility"] = "hidden"
    return with_visibility(data, settings.get("hidden_as", "after_due_date"))


def exposed_course(config: "GradeConfig", secrets: list[Path]) -> str | None:
    """Why the submission's code could read ``secrets`` (the course, its reference, the cache) here; None when
    it cannot. With bubblewrap they are not mounted. Without it the code reads what its user may read: it must
    run as a uid of its own (the grader runs as root and finds an unused uid), which ``secrets`` keep out."""
    from grader.execute.sandbox import readable_unsandboxed, resolve_mode
    from grader.execute.uids import fresh_uid

    if resolve_mode(config.sandbox) == "bwrap":
        return None
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        why = "the autograder is not running as root, so the code would run as the user that owns the course"
    elif fresh_uid() is None:
        why = "no unused uid is available here, so the code would run as root"
    elif readable_unsandboxed(secrets, own_uid=True):
        why = f"{', '.join(map(str, secrets))} can be read by other users"
    else:
        return None
    return (f"not graded: without bubblewrap the submission's code could read the course's reference ({why}). "
            "Run run_autograder as root (as Gradescope does), or where bubblewrap works")


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
