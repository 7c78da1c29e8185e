"""Assignments and their cases, read from ``assignments/<name>/cases.toml``.

The file is data an instructor edits (see docs/cases.md). Every key is checked: a typo
is a ``CaseFileError`` naming the file, the case and the key, never a silent default.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import CaseFileError

#: The checks a case may ask for, and what each needs from the case.
CHECKS: dict[str, str] = {
    "shape": "every output is present with the reference's shape",
    "match": "outputs equal the reference's within tolerance",
    "mask": "masked attention weights are ~0 and every row sums to 1",
    "mask_invariance": "outputs don't change when masked keys/values are perturbed",
    "grad": "parameter gradients of a seeded loss equal the reference's",
    "raises": "constructing the module raises the declared exception",
    "params": "parameter names and shapes equal the template's",
    "param_count": "the number of parameters equals the reference's",
    "policy": "the class uses none of its target's forbidden APIs",
}
#: What a failing case can show (``grader.judge.hints`` reads it from the problems and the cause),
#: and so what a case's hint may be about (``hint_on``): a hint is shown only with its evidence.
EVIDENCE: dict[str, str] = {
    "shape": "an output is missing or has the wrong shape",
    "values": "an output's values differ from the reference's",
    "gradient": "a parameter's gradient differs from the reference's",
    "unused": "a parameter receives no gradient",
    "mask": "masked positions get weight, or change the output",
    "softmax": "attention rows do not sum to 1",
    "parameters": "parameter names, shapes or count differ",
    "raises": "the constructor does not raise as it should",
    "error": "the code raised an exception while running the inputs (forward or backward)",
    "build_error": "the constructor raised, or the reference's parameters could not be loaded",
    "forbidden": "a forbidden API is used",
    "custom": "a check of the course's own found a problem",
}
#: The default ``hint_on`` of a case: the evidence its checks can produce.
CHECK_EVIDENCE: dict[str, tuple[str, ...]] = {
    "shape": ("shape", "error"), "match": ("values",), "mask": ("mask", "softmax"), "mask_invariance": ("mask",),
    "grad": ("gradient", "unused"), "raises": ("raises",), "params": ("parameters",),
    "param_count": ("parameters",), "policy": ("forbidden",),
}
CALLS = ("forward", "unroll")
MASK_KINDS = ("padding", "causal", "custom")

_ASSIGNMENT_KEYS = {"name", "title", "reference", "rtol", "atol", "timeout", "released"}
_TARGET_KEYS = {"args", "returns", "keys", "attention", "key_args", "mask_rank", "loss", "final", "flow", "forbid"}
_CASE_KEYS = {"id", "name", "target", "init", "inputs", "dtypes", "mask", "checks", "points", "seed",
              "call", "compare", "rtol", "atol", "raises", "hint", "hint_on", "visibility"}
#: Keys a hidden case keeps in a released (student) case file.
RELEASED_HIDDEN_KEYS = ("id", "name", "target", "points", "visibility")
VISIBILITIES = ("public", "hidden")
#: A case file larger than this is refused (they are a few KB).
MAX_CASE_FILE_BYTES = 1 << 20
DTYPES = ("float32", "float64", "float16")


@dataclass(frozen=True)
class Target:
    """How to call one graded class and name what it returns."""

    name: str
    args: tuple[str, ...]
    #: a tuple of names (forward returns a tuple), "dict" (a dict with ``keys``), or one name
    returns: tuple[str, ...] | str
    keys: tuple[str, ...] = ()
    attention: str | None = None
    key_args: tuple[str, ...] = ()
    mask_rank: int | None = None
    loss: tuple[str, ...] = ()
    #: the output that ``mask_invariance`` compares (the module's result)
    final: str | None = None
    #: outputs in data-flow order, so a report names the first that diverges (default: as returned)
    flow: tuple[str, ...] = ()
    #: APIs the class must not use (dotted names; a prefix forbids everything below it)
    forbid: tuple[str, ...] = ()

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the outputs in the order the reference returns them."""
        if self.returns == "dict":
            return self.keys
        if isinstance(self.returns, str):
            return (self.returns,)
        return self.returns


@dataclass(frozen=True)
class Case:
    """One graded test: build ``target`` with ``init``, feed seeded inputs, run ``checks``."""

    id: str
    name: str
    target: str
    checks: tuple[str, ...]
    points: float
    init: dict[str, Any] = field(default_factory=dict)
    #: input name -> shape (list of ints), or a tuple of shapes for a tuple input such as (h, c)
    inputs: dict[str, Any] = field(default_factory=dict)
    mask: dict[str, Any] | None = None
    seed: int = 0
    call: str = "forward"
    compare: tuple[str, ...] = ()
    rtol: float = 1e-4
    atol: float = 1e-5
    raises: str | None = None
    hint: str = ""
    #: the evidence (``EVIDENCE``) that shows the hint is about this failure (default: what the checks find)
    hint_on: tuple[str, ...] = ()
    visibility: str = "public"
    #: input name -> dtype name (default float32)
    dtypes: dict[str, str] = field(default_factory=dict)
    #: a hidden case in a released case file: listed with its points, never run locally
    placeholder: bool = False

    def __post_init__(self) -> None:
        if not self.hint_on:
            found = [e for c in self.checks for e in CHECK_EVIDENCE.get(c, ("custom",))]
            object.__setattr__(self, "hint_on", tuple(dict.fromkeys(found)))

    @property
    def hidden(self) -> bool:
        """True for cases whose data students never see."""
        return self.visibility == "hidden"


@dataclass(frozen=True)
class Assignment:
    """An assignment: its graded classes, reference file and cases."""

    name: str
    title: str
    folder: Path
    reference: Path
    targets: dict[str, Target]
    cases: tuple[Case, ...]
    timeout: float | None = None
    #: a student bundle's case file (made by ``grade release``): no reference, hidden cases as placeholders
    released: bool = False
    #: custom checks: name -> function, from the assignment folder's ``checks.py`` (trusted courses only)
    custom_checks: dict[str, Any] = field(default_factory=dict)
    #: False for a bundle found beside a submission: nothing of it is imported or run (``grader.course.resolve``)
    trusted: bool = True

    @property
    def classes(self) -> tuple[str, ...]:
        """The graded class names, in case order of first use."""
        return tuple(self.targets)

    @property
    def max_score(self) -> float:
        """Total points of all cases."""
        return sum(c.points for c in self.cases)

    @property
    def fixtures_file(self) -> Path:
        """The public cases' inputs, parameters and expected outputs (made by ``grade release``)."""
        return self.folder / "public.safetensors"

    @property
    def cases_file(self) -> Path:
        """The ``cases.toml`` this assignment was read from."""
        return self.folder / "cases.toml"


def load_assignment(folder: Path, root: Path, trusted: bool = True) -> Assignment:
    """Read ``folder/cases.toml``; ``root`` is the course folder holding ``reference/``.

    ``trusted``: the course was configured by whoever runs the grader (see
    ``grader.course.resolve``), so its ``checks.py`` may be imported. An untrusted course's
    own check names are accepted but never loaded: those cases cannot be checked locally.
    """
    path = folder / "cases.toml"
    where = str(path)
    try:
        if path.stat().st_size > MAX_CASE_FILE_BYTES:
            raise CaseFileError(where, "file", f"larger than {MAX_CASE_FILE_BYTES >> 20} MB; a case file is a few KB")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CaseFileError(where, "file", f"not valid TOML: {e}") from None
    except (RecursionError, MemoryError, UnicodeDecodeError):
        raise CaseFileError(where, "file", "cannot be read (nested too deeply, or not UTF-8 text)") from None
    _only(data, {"assignment", "targets", "cases"}, where, "top level")
    head = _table(data, "assignment", where, "top level")
    _only(head, _ASSIGNMENT_KEYS, where, "[assignment]")
    name = _get(head, "name", str, where, "[assignment]")
    if name != folder.name:
        raise CaseFileError(where, "[assignment]", f"name = {name!r} but the folder is {folder.name!r}")
    rtol = float(head.get("rtol", 1e-4))
    atol = float(head.get("atol", 1e-5))
    ref_name = _get(head, "reference", str, where, "[assignment]")
    reference = root / "reference" / ref_name
    targets = {t: _target(t, spec, where) for t, spec in _table(data, "targets", where, "top level").items()}
    released = bool(head.get("released", False))
    custom = load_custom_checks(folder) if trusted else None
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise CaseFileError(where, "top level", "no [[cases]] tables; add at least one case")
    cases = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_cases, start=1):
        case = _case(raw, i, targets, where, rtol, atol, released, custom)
        if case.id in seen:
            raise CaseFileError(where, f"case {case.id!r}", "duplicate id; every case needs its own")
        seen.add(case.id)
        cases.append(case)
    timeout = head.get("timeout")
    return Assignment(name, str(head.get("title", name)), folder, reference, targets, tuple(cases),
                      float(timeout) if timeout is not None else None, released, custom or {}, trusted)


def load_custom_checks(folder: Path) -> dict[str, Any]:
    """Check functions an instructor registers in ``<assignment>/checks.py`` (trusted code).

    The module defines ``CHECKS = {"name": function}``; each function takes the same
    arguments as the built-in checks and returns a list of problems (empty = passed).
    """
    path = folder / "checks.py"
    if not path.is_file():
        return {}
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"grader_custom_checks_{folder.name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise CaseFileError(str(path), "file", f"could not be loaded: {type(e).__name__}: {e}") from None
    checks = getattr(module, "CHECKS", None)
    if not isinstance(checks, dict) or not all(callable(f) for f in checks.values()):
        raise CaseFileError(str(path), "CHECKS", "must be a dict of name -> function")
    clash = set(checks) & set(CHECKS)
    if clash:
        raise CaseFileError(str(path), "CHECKS", f"{sorted(clash)} would replace built-in checks; rename them")
    return dict(checks)


def _target(name: str, spec: Any, where: str) -> Target:
    ctx = f"[targets.{name}]"
    if not isinstance(spec, dict):
        raise CaseFileError(where, ctx, "must be a table")
    _only(spec, _TARGET_KEYS, where, ctx)
    args = tuple(_get(spec, "args", list, where, ctx))
    returns = spec.get("returns")
    if isinstance(returns, list):
        returns = tuple(returns)
    elif not isinstance(returns, str):
        raise CaseFileError(where, ctx, "returns must be a list of output names, \"dict\", or one name")
    keys = tuple(spec.get("keys", ()))
    if returns == "dict" and not keys:
        raise CaseFileError(where, ctx, "returns = \"dict\" needs keys = [...] listing the dict's keys")
    forbid = spec.get("forbid", [])
    if not isinstance(forbid, list) or not all(isinstance(f, str) and f for f in forbid):
        raise CaseFileError(where, ctx, "forbid must be a list of dotted names such as \"torch.nn.LSTMCell\"")
    t = Target(name, args, returns, keys, spec.get("attention"), tuple(spec.get("key_args", ())),
               spec.get("mask_rank"), tuple(spec.get("loss", ())), spec.get("final"),
               tuple(spec.get("flow", ())), tuple(forbid))
    for key in (t.attention, t.final, *t.loss, *t.flow):
        if key is not None and key not in t.output_names:
            raise CaseFileError(where, ctx, f"{key!r} is not one of the outputs {list(t.output_names)}")
    return t


def _case(raw: Any, i: int, targets: dict[str, Target], where: str, rtol: float, atol: float,
          released: bool = False, custom: dict[str, Any] | None = None) -> Case:
    if not isinstance(raw, dict):
        raise CaseFileError(where, f"case #{i}", "must be a table")
    cid = raw.get("id")
    ctx = f"case {cid!r}" if isinstance(cid, str) else f"case #{i}"
    _only(raw, _CASE_KEYS, where, ctx)
    if released and raw.get("visibility") == "hidden":
        return _placeholder(raw, targets, where, ctx)
    cid = _get(raw, "id", str, where, ctx)
    if not cid or "/" in cid:
        raise CaseFileError(where, ctx, "id must be non-empty and must not contain '/'")
    target_name = _get(raw, "target", str, where, ctx)
    if target_name not in targets:
        raise CaseFileError(where, ctx, f"target {target_name!r} is not declared; known: {sorted(targets)}")
    target = targets[target_name]
    checks = tuple(_get(raw, "checks", list, where, ctx))
    known = [*CHECKS, *(custom or {})]
    for c in checks:
        if c not in known and custom is not None:
            raise CaseFileError(where, ctx, f"unknown check {c!r}; known checks: {', '.join(known)}")
    if not checks:
        raise CaseFileError(where, ctx, "checks is empty; name at least one check")
    points = raw.get("points")
    if not isinstance(points, (int, float)) or points < 0:
        raise CaseFileError(where, ctx, "points must be a number >= 0")
    inputs = raw.get("inputs", {})
    if not isinstance(inputs, dict):
        raise CaseFileError(where, ctx, "inputs must be a table of name = shape")
    for arg, shape in inputs.items():
        if arg not in target.args:
            raise CaseFileError(where, ctx, f"input {arg!r} is not an argument of {target_name}; "
                                f"arguments: {list(target.args)}")
        if not _is_shape(shape) and not (isinstance(shape, list) and shape and all(_is_shape(s) for s in shape)):
            raise CaseFileError(where, ctx, f"input {arg!r}: {shape!r} is not a shape (a list of positive ints) "
                                "or a list of shapes")
    dtypes = raw.get("dtypes", {})
    if not isinstance(dtypes, dict) or any(k not in inputs or v not in DTYPES for k, v in dtypes.items()):
        raise CaseFileError(where, ctx, f"dtypes must map inputs of this case to one of {', '.join(DTYPES)}")
    mask = raw.get("mask")
    if mask is not None:
        mask = _mask(mask, where, ctx)
    call = raw.get("call", "forward")
    if call not in CALLS:
        raise CaseFileError(where, ctx, f"call must be one of {CALLS}, not {call!r}")
    needs = {"mask": mask is not None and target.attention is not None,
             "mask_invariance": mask is not None and bool(target.key_args) and target.final is not None,
             "grad": True, "raises": "raises" in raw, "policy": bool(target.forbid)}
    for c in checks:
        if not needs.get(c, True):
            raise CaseFileError(where, ctx, f"check {c!r} needs " + {
                "mask": "a mask and a target with attention = ...",
                "mask_invariance": "a mask and a target with key_args = [...] and final = ...",
                "raises": "raises = \"SomeError\"",
                "policy": f"a target with forbid = [...] (in [targets.{target_name}])"}[c])
    needing_inputs = [c for c in checks if c in ("shape", "match", "mask", "mask_invariance", "grad")]
    if needing_inputs and not inputs:
        raise CaseFileError(where, ctx, f"checks {needing_inputs} need inputs = {{ name = [shape], ... }}")
    compare = tuple(raw.get("compare", ()))
    for key in compare:
        if key not in target.output_names and call == "forward":
            raise CaseFileError(where, ctx, f"compare: {key!r} is not an output of {target_name}")
    visibility = raw.get("visibility", "public")
    if visibility not in VISIBILITIES:
        raise CaseFileError(where, ctx, "visibility must be \"public\" or \"hidden\"")
    hint_on = _hint_on(raw, checks, where, ctx)
    return Case(
        id=cid, name=str(raw.get("name", cid)), target=target_name, checks=checks, points=float(points),
        init=dict(raw.get("init", {})), inputs=dict(inputs), mask=mask, seed=int(raw.get("seed", 0)),
        call=call, compare=compare, rtol=float(raw.get("rtol", rtol)), atol=float(raw.get("atol", atol)),
        raises=raw.get("raises"), hint=str(raw.get("hint", "")), hint_on=hint_on, visibility=visibility,
        dtypes=dict(dtypes),
    )


def _hint_on(raw: dict, checks: tuple[str, ...], where: str, ctx: str) -> tuple[str, ...]:
    """What a hint is about, as given (empty: the case's default, from its checks)."""
    if "hint_on" not in raw:
        return ()
    given = raw["hint_on"]
    if not isinstance(given, list) or not given or any(e not in EVIDENCE for e in given):
        raise CaseFileError(where, ctx, f"hint_on must be a non-empty list of: {', '.join(EVIDENCE)}")
    if "hint" not in raw:
        raise CaseFileError(where, ctx, "hint_on says when to show the hint, but the case has no hint")
    return tuple(given)


def _placeholder(raw: dict, targets: dict[str, Target], where: str, ctx: str) -> Case:
    """A hidden case as a student bundle lists it: name and points only."""
    extra = set(raw) - set(RELEASED_HIDDEN_KEYS)
    if extra:
        raise CaseFileError(where, ctx, f"a hidden case in a released file keeps only {RELEASED_HIDDEN_KEYS}; "
                            f"remove {sorted(extra)}")
    target = _get(raw, "target", str, where, ctx)
    if target not in targets:
        raise CaseFileError(where, ctx, f"target {target!r} is not declared; known: {sorted(targets)}")
    points = raw.get("points")
    if not isinstance(points, (int, float)) or points < 0:
        raise CaseFileError(where, ctx, "points must be a number >= 0")
    cid = _get(raw, "id", str, where, ctx)
    return Case(id=cid, name=str(raw.get("name", cid)), target=target, checks=(), points=float(points),
                visibility="hidden", placeholder=True)


def _mask(mask: Any, where: str, ctx: str) -> dict[str, Any]:
    if isinstance(mask, str):
        mask = {"kind": mask}
    if not isinstance(mask, dict):
        raise CaseFileError(where, ctx, "mask must be \"causal\" or a table like { kind = \"padding\", lengths = [...] }")
    _only(mask, {"kind", "lengths", "values"}, where, f"{ctx}, mask")
    kind = mask.get("kind")
    if kind not in MASK_KINDS:
        raise CaseFileError(where, f"{ctx}, mask", f"kind must be one of {MASK_KINDS}, not {kind!r}")
    if kind == "padding" and not _is_shape(mask.get("lengths")):
        raise CaseFileError(where, f"{ctx}, mask", "padding needs lengths = [...] (one positive int per batch row)")
    if kind == "custom" and not _is_01_array(mask.get("values")):
        raise CaseFileError(where, f"{ctx}, mask", "custom needs values = [[1, 0, ...], ...]: nested lists of 0/1, "
                            "broadcastable to the scores")
    return dict(mask)


def _is_01_array(x: Any) -> bool:
    if isinstance(x, list) and x:
        return all(_is_01_array(v) for v in x) and len({_depth(v) for v in x}) == 1
    return x in (0, 1) and not isinstance(x, float)


def _depth(x: Any) -> int:
    return 1 + _depth(x[0]) if isinstance(x, list) else 0


def _is_shape(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in x)


def _only(table: dict, allowed: set[str], where: str, ctx: str) -> None:
    for key in table:
        if key not in allowed:
            raise CaseFileError(where, ctx, f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")


def _table(data: dict, key: str, where: str, ctx: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise CaseFileError(where, ctx, f"missing table [{key}]")
    return value


def _get(table: dict, key: str, kind: type, where: str, ctx: str) -> Any:
    if key not in table:
        raise CaseFileError(where, ctx, f"missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise CaseFileError(where, ctx, f"{key} must be a {kind.__name__}, not {type(value).__name__}")
    return value
