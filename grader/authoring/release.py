"""Releasing an assignment, and checking that what is committed still equals a fresh release.

The reference notebook is the one source of truth. Its solution lines are marked:

    scores = Q @ K.transpose(-2, -1) / math.sqrt(d_K)  # SOLUTION
    # BEGIN SOLUTION
    ...several lines...
    # END SOLUTION

``grade release`` turns them into ``# FILL IN HERE`` blanks (an assignment keeps its
left-hand side: ``scores = # FILL IN HERE``), clears outputs, and writes a student
bundle: the notebook (with ``metadata.grader.assignment``), a case file in which hidden
cases keep only their name and points, and the public cases' fixtures (inputs,
parameters, expected outputs). Nothing of the reference goes in.

Release refuses, writing nothing, when the markers are broken (``marker_problems``: file, cell,
line), when a graded class has none, or when the template earns a point; ``force`` lets the
last two through. Every released file is mode 644, every folder it makes 755.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.config import GradeConfig
from grader.spec.cases import RELEASED_HIDDEN_KEYS, Assignment
from grader.errors import UsageError
from grader.model.result import Report

SOLUTION = "# SOLUTION"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
BLANK = "# FILL IN HERE"
_ASSIGN = re.compile(r"^(?P<indent>\s*)(?P<lhs>[A-Za-z_][\w.\[\], ()]*?)\s*(?P<op>[-+*/@]?=)(?!=)\s*\S")


def blank_solutions(source: str) -> str:
    """The student's version of one cell's source (pure). Broken markers raise ``UsageError``."""
    kinds, problems = scan_markers(source)
    if problems:
        line, problem = problems[0]
        raise UsageError(f"line {line}: {problem}")
    out: list[str] = []
    for line, kind in zip(source.split("\n"), kinds):
        if kind == "begin":
            out.append(line[: len(line) - len(line.lstrip())] + BLANK)
        elif kind == "line":
            code = line.rstrip()[: -len(SOLUTION)].rstrip()
            m = _ASSIGN.match(code)
            indent = code[: len(code) - len(code.lstrip())]
            out.append(f"{m['indent']}{m['lhs']} {m['op']} {BLANK}" if m else f"{indent}{BLANK}")
        elif kind is None:
            out.append(line)
    return "\n".join(out)


#: A comment at the end of a line (the last ``#`` that starts one; good enough for marker lines).
_COMMENT = re.compile(r"(?:^|\s)#(?P<text>[^#]*)$")
_MARKER_LETTERS = {"SOLUTION": SOLUTION, "BEGINSOLUTION": BEGIN, "ENDSOLUTION": END}


def scan_markers(source: str) -> tuple[list[str | None], list[tuple[int, str]]]:
    """What each line of one cell is to ``blank_solutions``, and what is wrong with its markers (pure).

    A line's kind is ``"begin"``/``"end"`` (a block marker), ``"inside"`` (in a block), ``"line"``
    (a line ending in ``# SOLUTION``) or None (kept as it is). Problems are ``(line, text)``, lines
    counted from 1 within the cell: a BEGIN without its END, an END without a BEGIN, a BEGIN in a
    block, and a comment so close to a marker that it is probably a misspelled one.
    """
    kinds: list[str | None] = []
    problems: list[tuple[int, str]] = []
    opened = 0  # the line of the open BEGIN, 0 when none
    for n, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if opened:
                problems.append((n, f"`{BEGIN}` inside the block that line {opened} opens (close it first with "
                                    f"`{END}`)"))
            else:
                opened = n
            kinds.append("begin")
        elif stripped == END:
            if not opened:
                problems.append((n, f"`{END}` without a `{BEGIN}` before it in this cell"))
            opened = 0
            kinds.append("end")
        elif opened:
            kinds.append("inside")
            typo = None if line.rstrip().endswith(SOLUTION) else _probable_typo(line)
            if typo:
                problems.append((n, typo))
        elif line.rstrip().endswith(SOLUTION):
            kinds.append("line")
        else:
            kinds.append(None)
            typo = _probable_typo(line)
            if typo:
                problems.append((n, typo))
    if opened:
        problems.append((opened, f"`{BEGIN}` has no `{END}` after it in this cell"))
    return kinds, sorted(problems)


def _probable_typo(line: str) -> str | None:
    """Why a comment that is not a marker looks like a misspelled one, or None."""
    m = _COMMENT.search(line)
    if not m:
        return None
    words = re.findall(r"[A-Z]+", m["text"].upper())
    letters = "".join(words)
    for word, marker in _MARKER_LETTERS.items():
        one_word = word == "SOLUTION"
        if len(words) <= (1 if one_word else 3) and _distance(letters, word, 3) <= (1 if one_word else 2):
            comment = "#" + m["text"].rstrip()
            where = "at the end of a line of code" if one_word else "on a line of its own"
            return (f"`{comment.strip()}` is probably a misspelled `{marker}` marker (markers are exact: upper "
                    f"case, {where}); fix it, or reword the comment if it is not meant as a marker")
    return None


def _distance(a: str, b: str, most: int) -> int:
    """Levenshtein distance of ``a`` and ``b``, or ``most`` when it is at least that."""
    if abs(len(a) - len(b)) >= most:
        return most
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return min(row[-1], most)


@dataclass(frozen=True)
class MarkerProblem:
    """Something in the reference that would make the template wrong or leak the solution.

    ``forcible``: ``grade release --force`` may release anyway (a class without markers);
    broken markers (unbalanced, misspelled) never: their template would be nonsense or leak.
    """

    where: str
    problem: str
    forcible: bool

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def marker_problems(assignment: Assignment) -> list[MarkerProblem]:
    """Every problem of the reference's solution markers (the one check behind release and validate)."""
    from grader.plan.slicing import parse_units
    from grader.plan.submission import read_submission

    shown = _shown_path(assignment)
    problems: list[MarkerProblem] = []
    solution_lines: dict[int, set[int]] = {}  # cell number -> its lines that the template blanks
    for number, cell in enumerate(read_notebook_json(assignment.reference).get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        kinds, found = scan_markers(_source(cell))
        problems += [MarkerProblem(f"{shown}, cell {number}, line {line}", text, False) for line, text in found]
        solution_lines[number] = {n for n, kind in enumerate(kinds, start=1) if kind}
    parsed = parse_units(read_submission(assignment.reference).units)
    for target in assignment.targets:
        stmt = next((s for s in reversed(parsed.statements) if s.is_class and target in s.defines), None)
        if stmt is None:
            problems.append(MarkerProblem(shown, f"graded class {target} is not defined in any cell that parses",
                                          True))
            continue
        lines = set(range(stmt.lineno, stmt.lineno + stmt.source.count("\n") + 1))
        if not lines & solution_lines.get(stmt.unit.index, set()):
            problems.append(MarkerProblem(
                f"{shown}, {stmt.unit.label}, line {stmt.lineno}",
                f"class {target} has no solution marker (a line ending in `{SOLUTION}`, or a "
                f"`{BEGIN}` ... `{END}` block), so the template would hold its whole solution", True))
    return problems


def template_passes(report: Report) -> list[str]:
    """The cases a released template passes, as "name [id]" (it should pass none)."""
    return [f"{c.name} [{c.case_id}]" for c in report.cases if c.status == "passed"]


def grade_template(notebook: Path, assignment: Assignment, config: GradeConfig) -> Report:
    """Grade a freshly released template against the course's reference."""
    from grader.pipeline import grade_submission

    return grade_submission(notebook, dataclasses.replace(config, assignment=assignment.name,
                                                          root=assignment.folder.parent.parent))


def _shown_path(assignment: Assignment) -> str:
    try:
        return str(assignment.reference.relative_to(assignment.folder.parent.parent))
    except ValueError:
        return str(assignment.reference)


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def template_notebook(reference: dict[str, Any], assignment: str) -> dict[str, Any]:
    """The student notebook made from the reference notebook (as plain JSON data)."""
    nb = copy.deepcopy(reference)
    for cell in nb.get("cells", []):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "code":
            cell["source"] = blank_solutions(source)
            cell["outputs"] = []
            cell["execution_count"] = None
        else:
            cell["source"] = source
    nb.setdefault("metadata", {})["grader"] = {"assignment": assignment}
    return nb


def released_cases_toml(assignment: Assignment) -> str:
    """The case file of a student bundle: public cases whole, hidden ones as name and points."""
    import tomllib

    data = tomllib.loads(assignment.cases_file.read_text(encoding="utf-8"))
    data["assignment"]["released"] = True
    data["cases"] = [c if c.get("visibility") != "hidden" else {k: c[k] for k in RELEASED_HIDDEN_KEYS if k in c}
                     for c in data["cases"]]
    return ("# Released by `grade release`: public cases in full, hidden cases by name and points only.\n"
            + dumps_toml(data))


@dataclass(frozen=True)
class Bundle:
    """Paths of a student bundle's files, and what ``--force`` let through (empty when nothing)."""

    notebook: Path
    cases: Path
    fixtures: Path
    records: Path
    overridden: tuple[str, ...] = ()


def bundle_paths(assignment: Assignment, out: Path) -> Bundle:
    """Where ``grade release`` writes each file under ``out``."""
    folder = out / "assignments" / assignment.name
    return Bundle(out / f"{assignment.name}.ipynb", folder / "cases.toml", folder / "public.safetensors",
                  folder / "public.json")


FILE_MODE, FOLDER_MODE = 0o644, 0o755
"""Released files are readable by everyone (a shared file system), whatever the umask."""


def release(assignment: Assignment, out: Path, config: GradeConfig, force: bool = False) -> Bundle:
    """Write a student bundle for ``assignment`` into ``out`` (the reference runs as ``config`` says).

    Refuses (``UsageError``, nothing written to ``out``) when the reference's solution markers are
    broken, when a graded class has none, or when the template earns a point; ``force`` releases
    anyway in the last two cases, and the bundle's ``overridden`` says what was let through.
    """
    if assignment.released:
        raise UsageError(f"{assignment.name} is itself a released bundle; release from the course folder")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    problems = marker_problems(assignment)
    broken = [p for p in problems if not p.forcible]
    if broken:
        raise UsageError(f"refusing to release {assignment.name}: the reference's solution markers are broken "
                         "(--force cannot override this; fix the markers):" + _listed(broken))
    unmarked = [str(p) for p in problems]
    if unmarked and not force:
        raise UsageError(f"refusing to release {assignment.name}: the template would contain the solution:"
                         + _listed(unmarked) + "\nMark the solution in the reference, or pass --force to "
                         "release anyway.")
    with _staging(out) as stage:
        staged = write_bundle(assignment, stage, config)
        passes = template_passes(grade_template(staged.notebook, assignment, config))
        earns = [f"the released template passes {len(passes)} case{'' if len(passes) == 1 else 's'} (it should "
                 f"pass none): {'; '.join(passes)}"] if passes else []
        if earns and not force:
            raise UsageError(f"refusing to release {assignment.name}: {earns[0]}. The template gives code that "
                             "earns points (fix the reference's markers or the cases), or pass --force to release "
                             "anyway.")
        _publish(stage, out)
    return dataclasses.replace(bundle_paths(assignment, out), overridden=tuple(unmarked + earns))


def write_bundle(assignment: Assignment, out: Path, config: GradeConfig) -> Bundle:
    """Write the bundle's files into ``out`` with no checks (``release`` checks; ``validate`` compares)."""
    from grader.course.reference_outputs import reference_outputs

    paths = bundle_paths(assignment, out)
    paths.cases.parent.mkdir(parents=True, exist_ok=True)
    write_notebook(paths.notebook, template_notebook(read_notebook_json(assignment.reference), assignment.name))
    paths.cases.write_text(released_cases_toml(assignment), encoding="utf-8")
    reference_outputs(assignment, config).public(assignment).save(paths.fixtures, paths.records)
    if (assignment.folder / "checks.py").is_file():
        shutil.copy(assignment.folder / "checks.py", paths.cases.parent / "checks.py")
    return paths


def _listed(items: list) -> str:
    return "".join(f"\n  {item}" for item in items)


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A temporary folder next to ``out``, removed at the end (with any parents made for it on failure)."""
    parent = out.absolute().parent
    made = next((p for p in reversed([parent, *parent.parents]) if not p.exists()), None)
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.release-", dir=parent))
    try:
        yield stage
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _publish(stage: Path, out: Path) -> None:
    """Give the staged files their modes, then move them into ``out`` (the whole folder when ``out`` is new)."""
    for folder, _, files in os.walk(stage):
        os.chmod(folder, FOLDER_MODE)
        for name in files:
            os.chmod(os.path.join(folder, name), FILE_MODE)
    if not out.exists():
        os.rename(stage, out)
        return
    for path in sorted(p for p in stage.rglob("*") if not p.is_dir()):
        target = out / path.relative_to(stage)
        for folder in reversed([target.parent, *target.parent.parents]):
            if not folder.exists():
                folder.mkdir()
                os.chmod(folder, FOLDER_MODE)
        os.replace(path, target)


def read_notebook_json(path: Path) -> dict[str, Any]:
    """A notebook as JSON data, upgraded to nbformat 4."""
    import nbformat

    return json.loads(nbformat.writes(nbformat.read(str(path), as_version=4)))


def write_notebook(path: Path, nb: dict[str, Any]) -> None:
    """Write notebook JSON the way Jupyter does (stable bytes: same input, same file)."""
    import nbformat

    path.write_text(nbformat.writes(nbformat.from_dict(nb)) + "\n", encoding="utf-8")


def dumps_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for case files: tables, arrays of tables, inline values."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, (dict, list)) or _inline(v)}
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in data.items():
        if k in scalars:
            continue
        if isinstance(v, dict):
            if all(isinstance(x, dict) for x in v.values()) and v:
                for sub, table in v.items():
                    lines += ["", f"[{_key(k)}.{_key(sub)}]"] + [f"{_key(a)} = {_value(b)}" for a, b in table.items()]
            else:
                lines += ["", f"[{_key(k)}]"] + [f"{_key(a)} = {_value(b)}" for a, b in v.items()]
        else:
            for table in v:
                lines += ["", f"[[{_key(k)}]]"] + [f"{_key(a)} = {_value(b)}" for a, b in table.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def _inline(v: Any) -> bool:
    return isinstance(v, list) and not any(isinstance(x, dict) for x in v)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(a)} = {_value(b)}" for a, b in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
