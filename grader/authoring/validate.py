"""``grade validate``: is an assignment consistent, and do its committed files match a release?

Checks, each a plain finding: the reference gets full marks (each case it fails named with its
reason); every known mistake changes what some case sees (a no-op edit can never be named); the
released template gets 0
with clean "not implemented yet" reasons (naming each case it passes, which earns points on
code the template gives, apart from those that fail for another reason); the committed template and public fixtures equal
a fresh release; every case has points and targets a class the reference defines; the
reference's solution markers are balanced, spelled right and mark something in every graded
class (``release.marker_problems``, the same check that makes ``grade release`` refuse).
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.authoring.release import (grade_template, marker_problems, read_notebook_json, template_passes,
                                      write_bundle)
from grader.config import GradeConfig
from grader.errors import CaseFileError
from grader.model.outcomes import NotImplementedYet
from grader.model.result import Report
from grader.model.text import shortened
from grader.spec.cases import Assignment


@dataclass(frozen=True)
class Finding:
    """One validation check: what was checked, whether it held, and why not."""

    assignment: str
    check: str
    ok: bool
    detail: str = ""


def validate(assignment: Assignment, config: GradeConfig, update: bool = False) -> list[Finding]:
    """Validate one assignment; with ``update``, rewrite the committed template and fixtures first."""
    from grader.pipeline import grade_submission

    findings: list[Finding] = []

    def add(check: str, ok: bool, detail: str = "") -> None:
        findings.append(Finding(assignment.name, check, ok, detail))

    bad_points = [c.id for c in assignment.cases if c.points <= 0]
    add("every case has points", not bad_points, f"no points: {bad_points}" if bad_points else "")
    unused = [t for t in assignment.targets if not any(c.target == t for c in assignment.cases)]
    add("every target has a case", not unused, f"no case for {unused}" if unused else "")
    config = dataclasses.replace(config, assignment=assignment.name, root=assignment.folder.parent.parent)
    try:
        from grader.course.reference_outputs import apply_edits
        from grader.plan.submission import read_submission
        from grader.spec.mistakes import load_mistakes
        units = read_submission(assignment.reference).units
        for m in load_mistakes(assignment.folder):
            apply_edits(units, m, str(assignment.folder / "mistakes.toml"))
        add("every known mistake applies to the reference", True)
    except CaseFileError as e:
        add("every known mistake applies to the reference", False, str(e))

    ref = grade_submission(assignment.reference, config)
    missing = [f"{c.name} [{c.case_id}]: {shortened(' '.join(c.reason.split()), 300) or c.status}"
               for c in ref.cases if c.status != "passed"]
    add("the reference gets full marks", ref.all_passed and ref.score == assignment.max_score,
        f"{ref.score:g}/{ref.max_score:g}; not passed: " + " | ".join(missing) if missing else "")
    if ref.all_passed:
        silent = _silent_mistakes(assignment, config)
        add("every known mistake changes what some case sees", not silent,
            "; ".join(f"{m} gives the reference's results in every case (its edit changes nothing a case "
                      "checks): it can never be named; change the edit or add a case that tells it apart"
                      for m in silent))

    problems = marker_problems(assignment)  # what `grade release` refuses, as findings
    broken = [str(p) for p in problems if not p.forcible]
    unmarked = [str(p) for p in problems if p.forcible]
    add("the reference's solution markers are balanced and spelled right", not broken, "; ".join(broken))
    add("every graded class has a solution marker in the reference", not unmarked, "; ".join(unmarked))
    release_checks = ("the committed template equals a fresh release",
                      "the committed public fixtures equal a fresh release",
                      "the released template gets 0, every case 'not implemented yet'")
    if broken:
        for check in release_checks:
            add(check, False, "not checked: the reference's solution markers are broken")
        return findings

    with tempfile.TemporaryDirectory(prefix="grader-validate-") as tmp:
        fresh = write_bundle(assignment, Path(tmp), config)
        template = assignment.folder / f"{assignment.name}.ipynb"
        if update and not unmarked:  # never commit a template that holds a class's whole solution
            template.write_text(fresh.notebook.read_text(encoding="utf-8"), encoding="utf-8")
            written = [template]
            for name in ("public.safetensors", "public.json"):
                (assignment.folder / name).write_bytes((fresh.cases.parent / name).read_bytes())
                written.append(assignment.folder / name)
            add("--update wrote only inside the course folder", all(p.is_relative_to(assignment.folder)
                                                                    for p in written),
                "wrote " + ", ".join(str(p) for p in written))
        same = template.is_file() and read_notebook_json(template) == read_notebook_json(fresh.notebook)
        add(release_checks[0], same,
            "" if same else f"{template} differs; run `grade validate {assignment.name} --update`"
            + (" once every graded class has solution markers" if unmarked else ""))
        add(release_checks[1], *_same_fixtures(assignment, fresh.cases.parent))

        student = grade_template(fresh.notebook, assignment, config)
        add(release_checks[2], *_template_verdict(student))
    return findings


def _silent_mistakes(assignment: Assignment, config: GradeConfig) -> list[str]:
    """The known mistakes (by id) whose variant no case can tell from the reference."""
    from grader.course.reference_outputs import expected_outputs, variant_outputs
    from grader.judge.diagnose import tells_apart
    from grader.spec.mistakes import load_mistakes

    mistakes = load_mistakes(assignment.folder)
    if not mistakes:
        return []
    reference = expected_outputs(assignment, config)
    variants = variant_outputs(assignment, reference, config)
    cases = {c.id: c for c in assignment.cases}
    return [m.id for m in mistakes
            if not any(tells_apart(cases[cid], reference.observations[cid], seen)
                       for cid, seen in variants.get(m.id, {}).items()
                       if cid in cases and cid in reference.observations)]


def _template_verdict(student: Report) -> tuple[bool, str]:
    """Does the released template score 0 with every case 'not implemented yet'? If not, which cases, why.

    A case the template passes earns points on code the template gives: the case or the template
    must change. A case that fails for another reason than a blank is listed apart, with its cause.
    """
    passed = template_passes(student)  # what `grade release` refuses
    other = [f"{c.name} [{c.case_id}]: {c.cause.kind.replace('_', ' ') if c.cause else c.status}" for c in student.cases
             if c.status != "passed" and (c.status != "error" or not isinstance(c.cause, NotImplementedYet))]
    parts = []
    if passed:
        parts.append(f"The template passes {len(passed)} case{'' if len(passed) == 1 else 's'} on code it gives "
                     f"(fix the case or the template): {'; '.join(passed)}")
    if other:
        parts.append(f"Not 'not implemented yet' (is a blank missing from the template?): {'; '.join(other)}")
    if student.score and not parts:
        parts.append(f"The template scores {student.score:g}")
    return not parts and student.score == 0, (f"{student.score:g} points. " + ". ".join(parts)) if parts else ""


def _same_fixtures(assignment: Assignment, fresh_folder: Path) -> tuple[bool, str]:
    from safetensors.numpy import load_file

    committed = assignment.folder / "public.safetensors"
    if not committed.is_file() or not (assignment.folder / "public.json").is_file():
        return False, f"{committed} is missing; run `grade validate {assignment.name} --update`"
    old, new = load_file(str(committed)), load_file(str(fresh_folder / "public.safetensors"))
    if set(old) != set(new):
        return False, f"tensors differ: {sorted(set(old) ^ set(new))[:5]}"
    for k in new:  # tolerance, not bytes: another CPU may round the last bit differently
        if old[k].shape != new[k].shape or not np.allclose(old[k], new[k], rtol=1e-5, atol=1e-6):
            return False, f"{k} differs from a fresh release"
    if json.loads((assignment.folder / "public.json").read_text()) != json.loads(
            (fresh_folder / "public.json").read_text()):
        return False, "public.json differs from a fresh release"
    return True, ""
