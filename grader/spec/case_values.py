"""A case file's values, checked without running anything: every error a ``CaseFileError``.

The readers take a TOML table, a key and where it is (the file and the table, for the message):
``read_number``, ``read_string``, ``read_names``, ``read_table``, ``read_required`` check a
value's type, ``only_keys`` refuses an unknown key, ``show`` writes a value as the file does.
A case's constructor keywords (``read_init``), inputs and mask (``read_mask``,
``check_inputs_fit``, ``check_mask_fits``) are checked against its target's arguments: the mask
the worker will build from the inputs must broadcast to the scores, decided from the shapes alone.
``grader.spec.case_file`` reads the file's tables with them.
"""
from __future__ import annotations

import math
from typing import Any

from grader.errors import CaseFileError
from grader.spec.cases import MASK_KINDS, Target


def read_number(table: dict, key: str, default: Any, where: str, ctx: str, positive: bool = False) -> Any:
    """A finite number >= 0 (> 0 when ``positive``), as a float; ``default`` when the key is absent."""
    if key not in table:
        return default
    value = table[key]
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value < 0 or (positive and value == 0)):
        raise CaseFileError(where, ctx, f"{key} must be a number {'>' if positive else '>='} 0, not {show(value)}")
    return float(value)


def read_string(table: dict, key: str, default: Any, where: str, ctx: str) -> Any:
    """A string; ``default`` when the key is absent."""
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, str):
        raise CaseFileError(where, ctx, f"{key} must be a string, not {show(value)}")
    return value


def read_names(table: dict, key: str, where: str, ctx: str, identifiers: bool = False) -> tuple[str, ...]:
    """A list of distinct names (``()`` when the key is absent)."""
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and is_name(v) for v in value):
        raise CaseFileError(where, ctx, f"{key} must be a list of names (strings), not {show(value)}")
    if identifiers:
        for v in value:
            if not v.isidentifier():
                raise CaseFileError(where, ctx, f"{key}: {v!r} is not a Python name")
    twice = [v for i, v in enumerate(value) if v in value[:i]]
    if twice:
        raise CaseFileError(where, ctx, f"{key} lists {twice[0]!r} twice")
    return tuple(value)


def read_table(data: dict, key: str, where: str, ctx: str) -> dict:
    """The table under ``key`` (a missing or non-table value is an error)."""
    value = data.get(key)
    if not isinstance(value, dict):
        raise CaseFileError(where, ctx, f"missing table [{key}]")
    return value


def read_required(table: dict, key: str, kind: type, where: str, ctx: str) -> Any:
    """The value of ``key``, which must be present and of type ``kind``."""
    if key not in table:
        raise CaseFileError(where, ctx, f"missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise CaseFileError(where, ctx, f"{key} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def only_keys(table: dict, allowed: set[str], where: str, ctx: str) -> None:
    """Refuse any key of ``table`` not in ``allowed`` (a typo is an error, never a silent default)."""
    for key in table:
        if key not in allowed:
            raise CaseFileError(where, ctx, f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")


def show(value: Any) -> str:
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


def is_int(x: Any) -> bool:
    """An integer, not a boolean."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_name(x: str) -> bool:
    """An output or input name: non-empty, without '/' (it is part of a tensor's key)."""
    return bool(x) and "/" not in x and x == x.strip()


def is_shape(x: Any) -> bool:
    """A tensor's shape: a non-empty list of positive integers."""
    return isinstance(x, list) and bool(x) and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in x)


def read_init(raw: dict, where: str, ctx: str) -> dict[str, Any]:
    """Constructor keywords: a table of name = TOML value (no dates, which the worker cannot receive)."""
    init = raw.get("init", {})
    if not isinstance(init, dict):
        raise CaseFileError(where, ctx, "init must be a table of keyword = value, such as { d_feat = 20, n_head = 4 }, "
                            f"not {show(init)}")
    for key, value in init.items():
        if not key.isidentifier():
            raise CaseFileError(where, ctx, f"init: {key!r} is not a keyword argument's name")
        bad = _not_plain(value)
        if bad:
            raise CaseFileError(where, ctx, f"init: {key} = {show(value)}: {bad}")
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


def read_mask(mask: Any, where: str, ctx: str) -> dict[str, Any]:
    if isinstance(mask, str):
        mask = {"kind": mask}
    if not isinstance(mask, dict):
        raise CaseFileError(where, ctx, "mask must be \"causal\" or a table like { kind = \"padding\", lengths = [...] }")
    only_keys(mask, {"kind", "lengths", "values"}, where, f"{ctx}, mask")
    kind = mask.get("kind")
    if kind not in MASK_KINDS:
        raise CaseFileError(where, f"{ctx}, mask", f"kind must be one of {MASK_KINDS}, not {kind!r}")
    extra = {"padding": {"values"}, "causal": {"lengths", "values"}, "custom": {"lengths"}}[kind] & set(mask)
    if extra:
        raise CaseFileError(where, f"{ctx}, mask", f"{sorted(extra)[0]} is not used by a {kind} mask; remove it")
    if kind == "padding" and not is_shape(mask.get("lengths")):
        raise CaseFileError(where, f"{ctx}, mask", "padding needs lengths = [...] (one positive int per batch row), "
                            f"not {show(mask.get('lengths'))}")
    if kind == "custom" and not _is_01_array(mask.get("values")):
        raise CaseFileError(where, f"{ctx}, mask", "custom needs values = [[1, 0, ...], ...]: nested lists of 0/1, "
                            "broadcastable to the scores")
    return dict(mask)


def check_inputs_fit(inputs: dict, target: Target, call: str, where: str, ctx: str) -> None:
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
        if shape is None or not is_shape(shape) or len(shape) != 3:
            raise CaseFileError(where, ctx, f"inputs: call = \"unroll\" feeds {first} [N, L, D] step by step; "
                                f"give {first} = [N, L, D], not {show(shape)}")
        ignored = [a for a in inputs if a != first]
        if ignored:
            raise CaseFileError(where, ctx, f"inputs: an unrolled cell starts from its default state, so "
                                f"{ignored} would never be used; remove them")


def check_mask_fits(mask: dict, inputs: dict, target: Target, call: str, checks: tuple[str, ...],
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
        if not is_shape(shape) or len(shape) < 2:
            raise CaseFileError(where, mctx, f"the mask needs input {arg} to be one tensor [..., n, d], not "
                                f"{show(shape)}")
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


def _is_01_array(x: Any) -> bool:
    """A non-empty nested list of 0s and 1s, every element at the same depth."""
    if isinstance(x, list) and x:
        return all(_is_01_array(v) for v in x) and len({_depth(v) for v in x}) == 1
    return x in (0, 1) and not isinstance(x, float)


def _depth(x: Any) -> int:
    """How deeply ``x`` nests lists (its first element's)."""
    return 1 + _depth(x[0]) if isinstance(x, list) else 0
