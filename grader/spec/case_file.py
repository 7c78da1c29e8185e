"""Reading ``assignments/<name>/cases.toml`` into an ``Assignment``: ``load_assignment``.

Every key is checked: a typo is a ``CaseFileError`` naming the file, the case and the key,
never a silent default. This module reads the file and its tables (``[assignment]``,
``[targets.*]``, ``[[cases]]``, a released file's hidden placeholders) and the constraints
between a case's keys; ``grader.spec.case_values`` checks each value, a case's inputs and its mask.
A trusted course's own checks come from the assignment folder's ``checks.py``
(``load_custom_checks``).
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from grader.errors import CaseFileError
from grader.memo import by_files
from grader.spec.case_values import (check_inputs_fit, check_mask_fits, is_int, is_name, is_shape, only_keys,
                                     read_init, read_mask, read_names, read_number, read_required, read_string,
                                     read_table, show)
from grader.spec.cases import (CALLS, CHECKS, DTYPES, EVIDENCE, RELEASED_HIDDEN_KEYS, VISIBILITIES, Assignment,
                               Case, Target)

_ASSIGNMENT_KEYS = {"name", "title", "reference", "rtol", "atol", "timeout", "released"}
_TARGET_KEYS = {"args", "returns", "keys", "attention", "key_args", "mask_rank", "loss", "final", "flow", "forbid"}
_CASE_KEYS = {"id", "name", "target", "init", "inputs", "dtypes", "mask", "checks", "points", "seed",
              "call", "compare", "rtol", "atol", "raises", "hint", "hint_on", "visibility"}
#: A case file larger than this is refused (they are a few KB).
MAX_CASE_FILE_BYTES = 1 << 20


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
    only_keys(data, {"assignment", "targets", "cases"}, where, "top level")
    head = read_table(data, "assignment", where, "top level")
    only_keys(head, _ASSIGNMENT_KEYS, where, "[assignment]")
    name = read_required(head, "name", str, where, "[assignment]")
    if name != folder.name:
        raise CaseFileError(where, "[assignment]", f"name = {name!r} but the folder is {folder.name!r}")
    rtol = read_number(head, "rtol", 1e-4, where, "[assignment]")
    atol = read_number(head, "atol", 1e-5, where, "[assignment]")
    title = read_string(head, "title", name, where, "[assignment]")
    released = head.get("released", False)
    if not isinstance(released, bool):
        raise CaseFileError(where, "[assignment]", f"released must be true or false, not {show(released)}")
    timeout = read_number(head, "timeout", None, where, "[assignment]", positive=True)
    ref_name = read_required(head, "reference", str, where, "[assignment]")
    if not ref_name:
        raise CaseFileError(where, "[assignment]", "reference must name the reference's file in reference/")
    reference = root / "reference" / ref_name
    targets = {t: _target(t, spec, where) for t, spec in read_table(data, "targets", where, "top level").items()}
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
    only_keys(spec, _TARGET_KEYS, where, ctx)
    if not name.isidentifier():
        raise CaseFileError(where, ctx, f"{name!r} is not a class name")
    if "args" not in spec:
        raise CaseFileError(where, ctx, "missing key 'args' (forward's positional inputs, e.g. [\"Q\", \"K\", \"V\"])")
    args = read_names(spec, "args", where, ctx, identifiers=True)
    if not args:
        raise CaseFileError(where, ctx, "args is empty; list forward's positional inputs")
    returns = spec.get("returns")
    if isinstance(returns, list):
        returns = read_names(spec, "returns", where, ctx)
        if not returns:
            raise CaseFileError(where, ctx, "returns is empty; name forward's outputs")
    elif not isinstance(returns, str) or not is_name(returns):
        raise CaseFileError(where, ctx, "returns must be a list of output names, \"dict\", or one name, not "
                            f"{show(returns)}")
    keys = read_names(spec, "keys", where, ctx)
    if returns == "dict" and not keys:
        raise CaseFileError(where, ctx, "returns = \"dict\" needs keys = [...] listing the dict's keys")
    if keys and returns != "dict":
        raise CaseFileError(where, ctx, "keys is only for returns = \"dict\"; here returns = "
                            f"{list(returns) if isinstance(returns, tuple) else returns!r}")
    forbid = spec.get("forbid", [])
    if not isinstance(forbid, list) or not all(isinstance(f, str) and f for f in forbid):
        raise CaseFileError(where, ctx, "forbid must be a list of dotted names such as \"torch.nn.LSTMCell\"")
    key_args = read_names(spec, "key_args", where, ctx)
    for arg in key_args:
        if arg not in args:
            raise CaseFileError(where, ctx, f"key_args: {arg!r} is not one of args {list(args)}")
    mask_rank = spec.get("mask_rank")
    if mask_rank is not None and (not is_int(mask_rank) or mask_rank < 2):
        raise CaseFileError(where, ctx, f"mask_rank must be an integer >= 2 (the rank of the scores), "
                            f"not {show(mask_rank)}")
    attention, final = (read_string(spec, k, None, where, ctx) for k in ("attention", "final"))
    t = Target(name, args, returns, keys, attention, key_args, mask_rank, read_names(spec, "loss", where, ctx),
               final, read_names(spec, "flow", where, ctx), tuple(forbid))
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
    only_keys(raw, _CASE_KEYS, where, ctx)
    if released and raw.get("visibility") == "hidden":
        return _placeholder(raw, targets, where, ctx)
    cid = read_required(raw, "id", str, where, ctx)
    if not cid or "/" in cid:
        raise CaseFileError(where, ctx, "id must be non-empty and must not contain '/'")
    target_name = read_required(raw, "target", str, where, ctx)
    if target_name not in targets:
        raise CaseFileError(where, ctx, f"target {target_name!r} is not declared; known: {sorted(targets)}")
    target = targets[target_name]
    if "checks" not in raw:
        raise CaseFileError(where, ctx, "missing key 'checks'")
    checks = read_names(raw, "checks", where, ctx)
    known = [*CHECKS, *(custom or {})]
    for c in checks:
        if c not in known and custom is not None:
            raise CaseFileError(where, ctx, f"unknown check {c!r}; known checks: {', '.join(known)}")
    if not checks:
        raise CaseFileError(where, ctx, "checks is empty; name at least one check")
    if "points" not in raw:
        raise CaseFileError(where, ctx, "missing key 'points' (a number >= 0)")
    points = read_number(raw, "points", None, where, ctx)
    name = read_string(raw, "name", cid, where, ctx)
    init = read_init(raw, where, ctx)
    call = raw.get("call", "forward")
    if call not in CALLS:
        raise CaseFileError(where, ctx, f"call must be one of {CALLS}, not {show(call)}")
    inputs = raw.get("inputs", {})
    if not isinstance(inputs, dict):
        raise CaseFileError(where, ctx, f"inputs must be a table of name = shape, such as {{ x = [2, 3] }}, "
                            f"not {show(inputs)}")
    for arg, shape in inputs.items():
        if arg not in target.args:
            raise CaseFileError(where, ctx, f"input {arg!r} is not an argument of {target_name}; "
                                f"arguments: {list(target.args)}")
        if not is_shape(shape) and not (isinstance(shape, list) and shape and all(is_shape(s) for s in shape)):
            raise CaseFileError(where, ctx, f"input {arg!r}: {shape!r} is not a shape (a list of positive ints) "
                                "or a list of shapes")
    check_inputs_fit(inputs, target, call, where, ctx)
    dtypes = raw.get("dtypes", {})
    if not isinstance(dtypes, dict):
        raise CaseFileError(where, ctx, f"dtypes must be a table of input = dtype, such as {{ x = \"float64\" }}, "
                            f"not {show(dtypes)}")
    for arg, dtype in dtypes.items():
        if arg not in inputs:
            raise CaseFileError(where, ctx, f"dtypes: {arg!r} is not an input of this case; inputs: {list(inputs)}")
        if dtype not in DTYPES:
            raise CaseFileError(where, ctx, f"dtypes: {arg} = {show(dtype)}; use one of {', '.join(DTYPES)}")
    mask = raw.get("mask")
    if mask is not None:
        mask = read_mask(mask, where, ctx)
        check_mask_fits(mask, inputs, target, call, checks, where, ctx)
    seed = raw.get("seed", 0)
    if not is_int(seed) or seed < 0:
        raise CaseFileError(where, ctx, f"seed must be an integer >= 0, not {show(seed)}")
    raises = read_string(raw, "raises", None, where, ctx)
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
    compare = read_names(raw, "compare", where, ctx)
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
        raise CaseFileError(where, ctx, f"visibility must be \"public\" or \"hidden\", not {show(visibility)}")
    hint = read_string(raw, "hint", "", where, ctx)
    hint_on = _hint_on(raw, checks, where, ctx)
    return Case(
        id=cid, name=name, target=target_name, checks=checks, points=points,
        init=init, inputs=dict(inputs), mask=mask, seed=seed,
        call=call, compare=compare, rtol=read_number(raw, "rtol", rtol, where, ctx),
        atol=read_number(raw, "atol", atol, where, ctx),
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
    target = read_required(raw, "target", str, where, ctx)
    if target not in targets:
        raise CaseFileError(where, ctx, f"target {target!r} is not declared; known: {sorted(targets)}")
    if "points" not in raw:
        raise CaseFileError(where, ctx, "missing key 'points' (a number >= 0)")
    points = read_number(raw, "points", None, where, ctx)
    cid = read_required(raw, "id", str, where, ctx)
    return Case(id=cid, name=read_string(raw, "name", cid, where, ctx), target=target, checks=(), points=points,
                visibility="hidden", placeholder=True)
