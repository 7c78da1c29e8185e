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
"""
from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.config import GradeConfig
from grader.spec.cases import RELEASED_HIDDEN_KEYS, Assignment
from grader.errors import UsageError

SOLUTION = "# SOLUTION"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
BLANK = "# FILL IN HERE"
_ASSIGN = re.compile(r"^(?P<indent>\s*)(?P<lhs>[A-Za-z_][\w.\[\], ()]*?)\s*(?P<op>[-+*/@]?=)(?!=)\s*\S")


def blank_solutions(source: str) -> str:
    """The student's version of one cell's source (pure)."""
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            inside = True
            out.append(line[: len(line) - len(line.lstrip())] + BLANK)
            continue
        if stripped == END:
            inside = False
            continue
        if inside:
            continue
        if line.rstrip().endswith(SOLUTION):
            code = line.rstrip()[: -len(SOLUTION)].rstrip()
            m = _ASSIGN.match(code)
            indent = code[: len(code) - len(code.lstrip())]
            out.append(f"{m['indent']}{m['lhs']} {m['op']} {BLANK}" if m else f"{indent}{BLANK}")
            continue
        out.append(line)
    if inside:
        raise UsageError(f"a `{BEGIN}` has no matching `{END}`")
    return "\n".join(out)


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
    """Paths of a student bundle's files."""

    notebook: Path
    cases: Path
    fixtures: Path
    records: Path


def bundle_paths(assignment: Assignment, out: Path) -> Bundle:
    """Where ``grade release`` writes each file under ``out``."""
    folder = out / "assignments" / assignment.name
    return Bundle(out / f"{assignment.name}.ipynb", folder / "cases.toml", folder / "public.safetensors",
                  folder / "public.json")


def release(assignment: Assignment, out: Path, config: GradeConfig) -> Bundle:
    """Write a student bundle for ``assignment`` into ``out`` (the reference runs as ``config`` says)."""
    from grader.course.store import reference_outputs

    if assignment.released:
        raise UsageError(f"{assignment.name} is itself a released bundle; release from the course folder")
    paths = bundle_paths(assignment, out)
    paths.cases.parent.mkdir(parents=True, exist_ok=True)
    write_notebook(paths.notebook, template_notebook(read_notebook_json(assignment.reference), assignment.name))
    paths.cases.write_text(released_cases_toml(assignment), encoding="utf-8")
    reference_outputs(assignment, config).public(assignment).save(paths.fixtures, paths.records)
    if (assignment.folder / "checks.py").is_file():
        shutil.copy(assignment.folder / "checks.py", paths.cases.parent / "checks.py")
    return paths


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
