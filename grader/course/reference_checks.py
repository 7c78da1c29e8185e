"""The reference's run, checked: what goes wrong there is the case file's (or the reference's) mistake.

The reference is the instructor's code and the case file their data, so a reference that raises
on a case, times out, or returns other dict keys than the target declares is a
``CaseFileError`` (exit 2) that names the file, the case, the key most likely at fault and the
reference's own message. Only a failure of the grader's own worker is an ``InternalError``.
``grader.course.reference_outputs`` calls these on every fresh run of the reference (and checks the
declared keys again on a cached one).
"""
from __future__ import annotations

import ast
import difflib
import re
from typing import Callable

from grader.errors import CaseFileError, InternalError
from grader.execute.observation import Observation
from grader.execute.protocol import ErrorInfo
from grader.execute.runner import WorkerRun
from grader.plan.slicing import Statement
from grader.model.messages import kwargs, stop_phrase
from grader.spec.cases import Assignment, Case
from grader.plan.parsing import parse as parse_python


def checked_reference(assignment: Assignment, run: WorkerRun,
                       statements: tuple[Statement, ...] = ()) -> dict[str, Observation]:
    """The reference ran cleanly: every case as the case file expects (or it is the course's fault).

    Only a failure of the grader's own worker is an ``InternalError``; whatever the reference's code
    or a case makes of it is a ``CaseFileError`` naming the file, the case and the key at fault.
    """
    if run.internal or run.start_failure:
        raise InternalError(f"the worker failed while running the reference: {run.internal or run.start_failure}")
    if run.exec_errors:
        e = run.exec_errors[0]
        raise CaseFileError(str(assignment.reference), (e.label or "top level") + (f", line {e.line}" if e.line else ""),
                            f"the reference's own code raised {_raised(e)}{_code(e)}; fix the reference "
                            "(its top-level code must run without errors)")
    if not run.finished:
        why = stop_phrase(run.stop) if run.stop else "did not finish"
        if run.stop is not None and run.stop.kind in _COURSE_STOPS:
            if run.running:
                raise CaseFileError(str(assignment.cases_file), f"case {run.running!r}",
                                    f"inputs: the reference {why} on this case; make its inputs smaller, or fix "
                                    f"the reference {assignment.reference}")
            raise CaseFileError(str(assignment.reference), "top level",
                                f"the reference's top-level code {why}; fix the reference")
        raise InternalError(f"the reference's code {why}:\n{run.late_traceback or run.stderr[-2000:]}")
    for case in assignment.cases:
        obs = run.observations.get(case.id)
        if obs is None:
            raise InternalError(f"the worker sent no result for the reference's case {case.id!r}")
        _check_case(assignment, case, obs)
    check_keys(assignment, run.observations, statements)
    return run.observations


#: Ways a worker stops that the course's own code or a case's sizes cause (not the grader's worker).
_COURSE_STOPS = ("case_timeout", "submission_timeout", "crashed", "exited", "memory", "disk")


def _check_case(assignment: Assignment, case: Case, obs: Observation) -> None:
    """The reference's run of one case is what the case asks for; else the key most likely at fault."""
    where, ctx = str(assignment.cases_file), f"case {case.id!r}"
    built = f"{case.target}({kwargs(case.init)})"
    e = obs.error
    if case.raises is not None:
        if obs.status != "error" or e is None:
            raise CaseFileError(where, ctx, f"raises: the reference's {built} does not raise {case.raises}; "
                                "change init so that it does, or the raises key")
        if case.raises not in e.bases:
            raise CaseFileError(where, ctx, f"raises: the reference's {built} raises {_raised(e)}{_at(e)}, "
                                f"not {case.raises}")
        return
    if obs.status != "error" or e is None:
        return
    if obs.phase == "build":
        if e.label is None and (e.message.endswith("is not defined") or "derived from nn.Module" in e.message):
            raise CaseFileError(where, f"[targets.{case.target}]",
                                f"the reference {assignment.reference}: {_plain(e.message)}")
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", e.message)
        if e.type == "TypeError" and unexpected:
            raise CaseFileError(where, ctx, f"init: {unexpected.group(1)!r} is not a keyword argument of the "
                                f"reference's {case.target} (it raised {_raised(e)})")
        raise CaseFileError(where, ctx, f"init: the reference's {built} raised {_raised(e)}{_at(e)}; check the "
                            "init keywords and values")
    if obs.phase == "load_params":  # generate mode: making the seeded inputs and the mask
        key = "mask" if case.mask is not None else "inputs"
        raise CaseFileError(where, ctx, f"{key}: the case's inputs ({_shapes(case)}) could not be made: "
                            f"{_raised(e)}")
    if obs.phase in ("forward", "perturbed forward"):
        if e.api_misuse:
            raise CaseFileError(where, f"[targets.{case.target}]",
                                f"returns: on case {case.id!r} the reference's forward: {_plain(e.message)}")
        key = "inputs or mask" if case.mask is not None else "inputs"
        raise CaseFileError(where, ctx, f"{key}: the reference's {built}, called on {_shapes(case)}, raised "
                            f"{_raised(e)}{_at(e)}; do the shapes fit each other and init?")
    if obs.phase == "backward":
        raise CaseFileError(where, ctx, f"checks: the grad check's backward failed on the reference: {_raised(e)}"
                            f"{_at(e)}")
    raise CaseFileError(where, ctx, f"the reference raised {_raised(e)}{_at(e)}")


def check_keys(assignment: Assignment, observations: dict[str, Observation],
                statements: tuple[Statement, ...] | Callable[[], tuple[Statement, ...]]) -> None:
    """Every key a target declares (``keys``) is a key of the dict the reference returns.

    ``statements`` are the reference's (or how to read them, only when a key is wrong)."""
    for case in assignment.cases:
        target = assignment.targets[case.target]
        obs = observations.get(case.id)
        ran_forward = (case.call == "forward" and case.inputs and case.raises is None
                       and not set(case.checks) <= {"policy"})
        if target.returns != "dict" or not ran_forward or obs is None or obs.status != "ok":
            continue
        returned = [k[len("out/"):] for k in obs.tensors if k.startswith("out/")]
        unknown = [k for k in target.keys if k not in returned]
        if not unknown:
            continue
        if callable(statements):
            statements = statements()
        built = _dict_keys(statements, target.name)
        hints = [f"{m[0]!r} for {k!r}" for k in unknown for m in [difflib.get_close_matches(k, built, 1)] if m]
        known = (f"its forward returns the keys {', '.join(built)}" if built else
                 f"of the declared keys it returns {', '.join(k for k in target.keys if k in returned) or 'none'}")
        raise CaseFileError(str(assignment.cases_file), f"[targets.{target.name}]",
                            f"keys: {', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not "
                            f"in the dict the reference {assignment.reference.name} returns (case {case.id!r}); "
                            f"{known}" + (f" (did you mean {', '.join(hints)}?)" if hints else ""))


def _dict_keys(statements: tuple[Statement, ...], name: str) -> list[str]:
    """The string keys of the dicts that ``name.forward`` builds, from the reference's source (best effort)."""
    keys: list[str] = []
    for st in statements:
        if not (st.is_class and name in st.defines):
            continue
        try:
            tree = parse_python(st.source)
        except (SyntaxError, ValueError, RecursionError):
            continue
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name):
            for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "forward"):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Dict):
                        keys += [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
                    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
                        keys += [k.arg for k in node.keywords if k.arg]
    return list(dict.fromkeys(keys))


def _plain(message: str, limit: int = 400) -> str:
    """An exception's message on one line, bounded."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _raised(e: ErrorInfo) -> str:
    return f"{e.type}: {_plain(e.message)}" if e.message.strip() else e.type


def _at(e: ErrorInfo) -> str:
    """Where in the reference it was raised: ' (reference cell 6, line 12)'."""
    return f" (reference {e.label}, line {e.line})" if e.label else ""


def _code(e: ErrorInfo) -> str:
    return f" at `{e.code.strip()}`" if e.code and e.code.strip() else ""


def _shapes(case: Case) -> str:
    """'Q [2, 5, 21], K [2, 5, 21], mask padding lengths [6, 2]'."""
    parts = [f"{k} {v}" for k, v in case.inputs.items()]
    if case.mask is not None:
        m = case.mask
        parts.append("mask " + m["kind"] + (f" lengths {m['lengths']}" if m["kind"] == "padding" else ""))
    return ", ".join(parts) or "no inputs"
