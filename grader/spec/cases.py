"""Assignments and their cases, read from ``assignments/<name>/cases.toml``.

The file is data an instructor edits (see docs/cases.md). Every key is checked: a typo
is a ``CaseFileError`` naming the file, the case and the key, never a silent default.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import CaseFileError
from grader.memo import by_files

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
    "shape_error": "the code raised an exception about sizes that do not fit (a shape mismatch)",
    "build_error": "the constructor raised, or the reference's parameters could not be loaded",
    "forbidden": "a forbidden API is used",
    "custom": "a check of the course's own found a problem",
}
#: The default ``hint_on`` of a case: the evidence its checks can produce.
CHECK_EVIDENCE: dict[str, tuple[str, ...]] = {
    "shape": ("shape", "shape_error"), "match": ("values",), "mask": ("mask", "softmax"), "mask_invariance": ("mask",),
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

    Read once per process while the case file and ``checks.py`` stay the same (``grader.memo``).

    ``trusted``: the course was configured by whoever runs the grader (see
    ``grader.course.resolve``), so its ``checks.py`` may be imported. An untrusted course's
    own check names are accepted but never loaded: those cases cannot be checked locally.
    """
    return by_files(("assignment", str(folder), str(root), trusted),
                    (folder / "cases.toml", folder / "checks.py"), lambda: _load_assignment(folder, root, trusted))


def _load_assignment(folder: Path, root: Path, trusted: bool) -> Assignment:
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
    rtol = _number(head, "rtol", 1e-4, where, "[assignment]")
    atol = _number(head, "atol", 1e-5, where, "[assignment]")
    title = _string(head, "title", name, where, "[assignment]")
    released = head.get("released", False)
    if not isinstance(released, bool):
        raise CaseFileError(where, "[assignment]", f"released must be true or false, not {_show(released)}")
    timeout = _number(head, "timeout", None, where, "[assignment]", positive=True)
    ref_name = _get(head, "reference", str, where, "[assignment]")
    if not ref_name:
        raise CaseFileError(where, "[assignment]", "reference must name the reference's file in reference/")
    reference = root / "reference" / ref_name
    targets = {t: _target(t, spec, where) for t, spec in _table(data, "targets", where, "top level").items()}
    if not targets:
        raise CaseFileError(where, "[targets]", "declares no target; add a [targets.ClassName] table")
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
    return Assignment(name, title, folder, reference, targets, tuple(cases), timeout, released, custom or {},
                      trusted)


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
    if not name.isidentifier():
        raise CaseFileError(where, ctx, f"{name!r} is not a class name")
    if "args" not in spec:
        raise CaseFileError(where, ctx, "missing key 'args' (forward's positional inputs, e.g. [\"Q\", \"K\", \"V\"])")
    args = _names(spec, "args", where, ctx, identifiers=True)
    if not args:
        raise CaseFileError(where, ctx, "args is empty; list forward's positional inputs")
    returns = spec.get("returns")
    if isinstance(returns, list):
        returns = _names(spec, "returns", where, ctx)
        if not returns:
            raise CaseFileError(where, ctx, "returns is empty; name forward's outputs")
    elif not isinstance(returns, str) or not _is_name(returns):
        raise CaseFileError(where, ctx, "returns must be a list of output names, \"dict\", or one name, not "
                            f"{_show(returns)}")
    keys = _names(spec, "keys", where, ctx)
    if returns == "dict" and not keys:
        raise CaseFileError(where, ctx, "returns = \"dict\" needs keys = [...] listing the dict's keys")
    if keys and returns != "dict":
        raise CaseFileError(where, ctx, "keys is only for returns = \"dict\"; here returns = "
                            f"{list(returns) if isinstance(returns, tuple) else returns!r}")
    forbid = spec.get("forbid", [])
    if not isinstance(forbid, list) or not all(isinstance(f, str) and f for f in forbid):
        raise CaseFileError(where, ctx, "forbid must be a list of dotted names such as \"torch.nn.LSTMCell\"")
    key_args = _names(spec, "key_args", where, ctx)
    for arg in key_args:
        if arg not in args:
            raise CaseFileError(where, ctx, f"key_args: {arg!r} is not one of args {list(args)}")
    mask_rank = spec.get("mask_rank")
    if mask_rank is not None and (not _is_int(mask_rank) or mask_rank < 2):
        raise CaseFileError(where, ctx, f"mask_rank must be an integer >= 2 (the rank of the scores), "
                            f"not {_show(mask_rank)}")
    attention, final = (_string(spec, k, None, where, ctx) for k in ("attention", "final"))
    t = Target(name, args, returns, keys, attention, key_args, mask_rank, _names(spec, "loss", where, ctx),
               final, _names(spec, "flow", where, ctx), tuple(forbid))
    named = [("attention", t.attention), ("final", t.final), *(("loss", k) for k in t.loss),
             *(("flow", k) for k in t.flow)]
    for what, key in named:
        if key is not None and key not in t.output_names:
            raise CaseFileError(where, ctx, f"{what}: {key!r} is not one of the outputs {list(t.output_names)}")
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
    if "checks" not in raw:
        raise CaseFileError(where, ctx, "missing key 'checks'")
    checks = _names(raw, "checks", where, ctx)
    known = [*CHECKS, *(custom or {})]
    for c in checks:
        if c not in known and custom is not None:
            raise CaseFileError(where, ctx, f"unknown check {c!r}; known checks: {', '.join(known)}")
    if not checks:
        raise CaseFileError(where, ctx, "checks is empty; name at least one check")
    if "points" not in raw:
        raise CaseFileError(where, ctx, "missing key 'points' (a number >= 0)")
    points = _number(raw, "points", None, where, ctx)
    name = _string(raw, "name", cid, where, ctx)
    init = _init(raw, where, ctx)
    call = raw.get("call", "forward")
    if call not in CALLS:
        raise CaseFileError(where, ctx, f"call must be one of {CALLS}, not {_show(call)}")
    inputs = raw.get("inputs", {})
    if not isinstance(inputs, dict):
        raise CaseFileError(where, ctx, f"inputs must be a table of name = shape, such as {{ x = [2, 3] }}, "
                            f"not {_show(inputs)}")
    for arg, shape in inputs.items():
        if arg not in target.args:
            raise CaseFileError(where, ctx, f"input {arg!r} is not an argument of {target_name}; "
                                f"arguments: {list(target.args)}")
        if not _is_shape(shape) and not (isinstance(shape, list) and shape and all(_is_shape(s) for s in shape)):
            raise CaseFileError(where, ctx, f"input {arg!r}: {shape!r} is not a shape (a list of positive ints) "
                                "or a list of shapes")
    _inputs_fit(inputs, target, call, where, ctx)
    dtypes = raw.get("dtypes", {})
    if not isinstance(dtypes, dict):
        raise CaseFileError(where, ctx, f"dtypes must be a table of input = dtype, such as {{ x = \"float64\" }}, "
                            f"not {_show(dtypes)}")
    for arg, dtype in dtypes.items():
        if arg not in inputs:
            raise CaseFileError(where, ctx, f"dtypes: {arg!r} is not an input of this case; inputs: {list(inputs)}")
        if dtype not in DTYPES:
            raise CaseFileError(where, ctx, f"dtypes: {arg} = {_show(dtype)}; use one of {', '.join(DTYPES)}")
    mask = raw.get("mask")
    if mask is not None:
        mask = _mask(mask, where, ctx)
        _mask_fits(mask, inputs, target, call, checks, where, ctx)
    seed = raw.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        raise CaseFileError(where, ctx, f"seed must be an integer >= 0, not {_show(seed)}")
    raises = _string(raw, "raises", None, where, ctx)
    if raises is not None and not raises.isidentifier():
        raise CaseFileError(where, ctx, f"raises = {raises!r} is not an exception's name (such as \"ValueError\")")
    needs = {"mask": mask is not None and target.attention is not None,
             "mask_invariance": mask is not None and bool(target.key_args) and target.final is not None,
             "grad": True, "raises": raises is not None, "policy": bool(target.forbid)}
    for c in checks:
        if not needs.get(c, True):
            raise CaseFileError(where, ctx, f"check {c!r} needs " + {
                "mask": "a mask and a target with attention = ...",
                "mask_invariance": "a mask and a target with key_args = [...] and final = ...",
                "raises": "raises = \"SomeError\"",
                "policy": f"a target with forbid = [...] (in [targets.{target_name}])"}[c])
    if raises is not None:
        if "raises" not in checks:
            raise CaseFileError(where, ctx, f"raises = {raises!r} needs the raises check: checks = [\"raises\"]")
        others = [c for c in checks if c not in ("raises", "policy")]
        if others:
            raise CaseFileError(where, ctx, f"checks: the raises check expects the constructor to fail, so {others} "
                                "could never run; put them in a case of their own")
        if inputs or mask is not None:
            raise CaseFileError(where, ctx, f"{'inputs' if inputs else 'mask'}: a raises case only builds the "
                                "module, so its inputs and mask are never used; remove them")
    needing_inputs = [c for c in checks if c in ("shape", "match", "mask", "mask_invariance", "grad")]
    if needing_inputs and not inputs:
        raise CaseFileError(where, ctx, f"checks {needing_inputs} need inputs = {{ name = [shape], ... }}")
    if mask is not None and not inputs:
        raise CaseFileError(where, ctx, "mask: the case has no inputs to mask")
    compare = _names(raw, "compare", where, ctx)
    outputs = ("h_seq", "c_last") if call == "unroll" else target.output_names
    for key in compare:
        if key not in outputs:
            raise CaseFileError(where, ctx, f"compare: {key!r} is not an output of {target_name}"
                                f"{' unrolled' if call == 'unroll' else ''}; outputs: {list(outputs)}")
    if compare and "match" not in checks and all(c in CHECKS for c in checks):
        raise CaseFileError(where, ctx, "compare chooses what the match check compares, but the case has no "
                            "match check")
    visibility = raw.get("visibility", "public")
    if visibility not in VISIBILITIES:
        raise CaseFileError(where, ctx, f"visibility must be \"public\" or \"hidden\", not {_show(visibility)}")
    hint = _string(raw, "hint", "", where, ctx)
    hint_on = _hint_on(raw, checks, where, ctx)
    return Case(
        id=cid, name=name, target=target_name, checks=checks, points=points,
        init=init, inputs=dict(inputs), mask=mask, seed=seed,
        call=call, compare=compare, rtol=_number(raw, "rtol", rtol, where, ctx),
        atol=_number(raw, "atol", atol, where, ctx),
        raises=raises, hint=hint, hint_on=hint_on, visibility=visibility,
        dtypes=dict(dtypes),
    )


def _hint_on(raw: dict, checks: tuple[str, ...], where: str, ctx: str) -> tuple[str, ...]:
    """What a hint is about, as given (empty: the case's default, from its checks)."""
    if "hint_on" not in raw:
        return ()
    given = raw["hint_on"]
    if not isinstance(given, list) or not given or any(not isinstance(e, str) or e not in EVIDENCE for e in given):
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
    if "points" not in raw:
        raise CaseFileError(where, ctx, "missing key 'points' (a number >= 0)")
    points = _number(raw, "points", None, where, ctx)
    cid = _get(raw, "id", str, where, ctx)
    return Case(id=cid, name=_string(raw, "name", cid, where, ctx), target=target, checks=(), points=points,
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
    extra = {"padding": {"values"}, "causal": {"lengths", "values"}, "custom": {"lengths"}}[kind] & set(mask)
    if extra:
        raise CaseFileError(where, f"{ctx}, mask", f"{sorted(extra)[0]} is not used by a {kind} mask; remove it")
    if kind == "padding" and not _is_shape(mask.get("lengths")):
        raise CaseFileError(where, f"{ctx}, mask", "padding needs lengths = [...] (one positive int per batch row), "
                            f"not {_show(mask.get('lengths'))}")
    if kind == "custom" and not _is_01_array(mask.get("values")):
        raise CaseFileError(where, f"{ctx}, mask", "custom needs values = [[1, 0, ...], ...]: nested lists of 0/1, "
                            "broadcastable to the scores")
    return dict(mask)


def _inputs_fit(inputs: dict, target: Target, call: str, where: str, ctx: str) -> None:
    """What the worker can do with these inputs: positional, in order; an unrolled cell gets only ``x``."""
    given = [a for a in target.args if a in inputs]
    if given:
        last = target.args.index(given[-1])
        skipped = [a for a in target.args[:last] if a not in inputs]
        if skipped:
            raise CaseFileError(where, ctx, f"inputs: {given[-1]!r} is given but {skipped[0]!r} before it is not; "
                                f"inputs are passed by position ({', '.join(target.args)}), so give "
                                f"{skipped[0]!r} too")
    if call == "unroll" and inputs:
        first = target.args[0]
        shape = inputs.get(first)
        if shape is None or not _is_shape(shape) or len(shape) != 3:
            raise CaseFileError(where, ctx, f"inputs: call = \"unroll\" feeds {first} [N, L, D] step by step; "
                                f"give {first} = [N, L, D], not {_show(shape)}")
        ignored = [a for a in inputs if a != first]
        if ignored:
            raise CaseFileError(where, ctx, f"inputs: an unrolled cell starts from its default state, so "
                                f"{ignored} would never be used; remove them")


def _mask_fits(mask: dict, inputs: dict, target: Target, call: str, checks: tuple[str, ...],
               where: str, ctx: str) -> None:
    """The mask the worker will build from these inputs broadcasts to the scores (checked without torch)."""
    mctx = f"{ctx}, mask"
    if call == "unroll":
        raise CaseFileError(where, mctx, "an unrolled cell takes no mask (call = \"unroll\")")
    if len(target.args) < 2 and not target.key_args:
        raise CaseFileError(where, mctx, f"{target.name} takes one input, so there are no keys to mask")
    q_arg = target.args[0]
    k_arg = target.key_args[0] if target.key_args else target.args[1]
    for arg in dict.fromkeys((q_arg, k_arg)):
        shape = inputs.get(arg)
        if shape is None:
            raise CaseFileError(where, mctx, f"the mask is shaped from the inputs {q_arg} (queries) and {k_arg} "
                                f"(keys): give inputs {arg} = [...]")
        if not _is_shape(shape) or len(shape) < 2:
            raise CaseFileError(where, mctx, f"the mask needs input {arg} to be one tensor [..., n, d], not "
                                f"{_show(shape)}")
    q, k = inputs[q_arg], inputs[k_arg]
    n_q, n_k = q[-2], k[-2]
    rank = target.mask_rank or len(q)
    kind = mask["kind"]
    hides_last = True
    if kind == "padding":
        lengths = mask["lengths"]
        if len(lengths) != q[0]:
            raise CaseFileError(where, mctx, f"lengths = {lengths} gives {len(lengths)} lengths for a batch of "
                                f"{q[0]} ({q_arg} = {q}); give one length per batch row")
        if k[0] != q[0]:
            raise CaseFileError(where, mctx, f"a padding mask needs {q_arg} and {k_arg} to have the same batch "
                                f"size, not {q[0]} and {k[0]}")
        too_long = [n for n in lengths if n > n_k]
        if too_long:
            raise CaseFileError(where, mctx, f"lengths = {lengths}: {too_long[0]} is more than the {n_k} keys "
                                f"({k_arg} = {k}); each length must be at most n_K = {n_k}")
        hides_last = any(n < n_k for n in lengths)
    elif kind == "causal":
        hides_last = n_k >= 2
    else:
        values = mask["values"]
        shape = _array_shape(values)
        if shape is None:
            raise CaseFileError(where, mctx, "values must be a rectangular nested list (every row the same length)")
        # the scores' leading dims are the queries' own, unless the module adds some (MHA's heads)
        lead: list[int | None] = list(q[:-2]) if rank == len(q) else [None] * (rank - 2)
        scores = [*lead, n_q, n_k]
        if len(shape) > len(scores) or any(m != 1 and s is not None and m != s
                                           for m, s in zip(reversed(shape), reversed(scores))):
            shown = ["*" if s is None else s for s in scores]
            raise CaseFileError(where, mctx, f"values of shape {list(shape)} do not broadcast to the scores' "
                                f"shape {shown} ({q_arg} = {q}, {k_arg} = {k})")
        last = [row[-1] for row in _rows(values)]
        hides_last = 0 in last
    if "mask_invariance" in checks:
        missing = [a for a in target.key_args if a not in inputs]
        if missing:
            raise CaseFileError(where, ctx, f"mask_invariance changes the last key of {list(target.key_args)}: "
                                f"give inputs {missing[0]} = [...]")
        if not hides_last:
            raise CaseFileError(where, mctx, "mask_invariance changes the last key, which this mask hides from "
                                "no query, so the check could never fail; mask the last key for some row")


def _array_shape(x: Any) -> tuple[int, ...] | None:
    """The shape of a rectangular nested list (None when ragged)."""
    if not isinstance(x, list):
        return ()
    inner = {_array_shape(v) for v in x}
    if len(inner) != 1 or None in inner:
        return None
    return (len(x), *inner.pop())


def _rows(x: Any) -> list[list]:
    """The innermost lists of a nested list."""
    return [x] if not x or not isinstance(x[0], list) else [r for v in x for r in _rows(v)]


def _init(raw: dict, where: str, ctx: str) -> dict[str, Any]:
    """Constructor keywords: a table of name = TOML value (no dates, which the worker cannot receive)."""
    init = raw.get("init", {})
    if not isinstance(init, dict):
        raise CaseFileError(where, ctx, "init must be a table of keyword = value, such as { d_feat = 20, n_head = 4 }, "
                            f"not {_show(init)}")
    for key, value in init.items():
        if not key.isidentifier():
            raise CaseFileError(where, ctx, f"init: {key!r} is not a keyword argument's name")
        bad = _not_plain(value)
        if bad:
            raise CaseFileError(where, ctx, f"init: {key} = {_show(value)}: {bad}")
    return dict(init)


def _not_plain(value: Any) -> str:
    """Why ``value`` cannot be passed to a constructor ("" when it can): strings, numbers, booleans, lists, tables."""
    if isinstance(value, (str, bool, int)):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else "must be a finite number"
    if isinstance(value, list):
        return next((b for b in map(_not_plain, value) if b), "")
    if isinstance(value, dict):
        return next((b for b in map(_not_plain, value.values()) if b), "")
    return f"a {type(value).__name__} cannot be passed to the constructor; use a string, number, boolean or list"


def _number(table: dict, key: str, default: Any, where: str, ctx: str, positive: bool = False) -> Any:
    """A finite number >= 0 (> 0 when ``positive``), as a float; ``default`` when the key is absent."""
    if key not in table:
        return default
    value = table[key]
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value < 0 or (positive and value == 0)):
        raise CaseFileError(where, ctx, f"{key} must be a number {'>' if positive else '>='} 0, not {_show(value)}")
    return float(value)


def _string(table: dict, key: str, default: Any, where: str, ctx: str) -> Any:
    """A string; ``default`` when the key is absent."""
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, str):
        raise CaseFileError(where, ctx, f"{key} must be a string, not {_show(value)}")
    return value


def _names(table: dict, key: str, where: str, ctx: str, identifiers: bool = False) -> tuple[str, ...]:
    """A list of distinct names (``()`` when the key is absent)."""
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and _is_name(v) for v in value):
        raise CaseFileError(where, ctx, f"{key} must be a list of names (strings), not {_show(value)}")
    if identifiers:
        for v in value:
            if not v.isidentifier():
                raise CaseFileError(where, ctx, f"{key}: {v!r} is not a Python name")
    twice = [v for i, v in enumerate(value) if v in value[:i]]
    if twice:
        raise CaseFileError(where, ctx, f"{key} lists {twice[0]!r} twice")
    return tuple(value)


def _is_name(x: str) -> bool:
    """An output or input name: non-empty, without '/' (it is part of a tensor's key)."""
    return bool(x) and "/" not in x and x == x.strip()


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _show(value: Any) -> str:
    """A value as the case file writes it, short: '"abc"', '[64, 4]', 'a table'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + (value if len(value) <= 40 else value[:37] + "...") + '"'
    if isinstance(value, dict):
        return "a table"
    if hasattr(value, "isoformat"):  # TOML's dates and times
        return value.isoformat()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
