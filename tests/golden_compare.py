"""How a rendering is compared with its golden text: numbers as numbers, every other character exactly.

The numbers of a report come from float32 computations whose last bits change from one CPU to the
next (vector kernels, the order of a sum). So in the JSON formats floats are parsed and compared
within ``REL_TOL`` (or ``ABS_TOL``); in a text, each number may differ by one unit of its last
printed digit; integers (counts, indices, lines, points) and every word, space and line break must be
the same.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from grader.model.result import FIGURE_DECIMALS

JSON_FORMATS = ("json", "gradescope")
#: How far a JSON float may be from the golden's: the grader's own relative tolerance (cases.toml's rtol,
#: a difference it would not call one; cross-CPU differences of float32 results are ~1e-6 of the value),
#: or, near 0, a few float32 ulps of values of order 1-10 (differences of nearly equal values carry the
#: absolute error of those values, not a relative one; the cases' atol is 1e-5, ten times more).
REL_TOL, ABS_TOL = 1e-4, 1e-6
#: A figure's weights are rounded to FIGURE_DECIMALS: one unit of the last decimal is rounding.
FIGURE_TOL = 10.0 ** -FIGURE_DECIMALS
#: A number in a text, never part of a word (``x_rsh2``, ``#0969da``, ``2.6rem``): a sign, digits, a
#: fraction, an exponent.
NUMBER = re.compile(r"(?<![\w.])(-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?)(?!\w|\.\d)")
#: Slack for binary floating point in "within one unit" (0.5865 - 0.5864 is 1.00000000000655e-4).
_ULP_SLACK = 1 + 1e-6


def same_number(a: str, b: str) -> bool:
    """Whether two printed numbers may stand for one value: equal, or, where either has a fraction or an
    exponent, within one unit of the finer one's last printed digit. Integers (counts, indices, lines,
    points) are exact."""
    if a == b:
        return True
    if not any(c in ".eE" for c in a + b):
        return False
    return abs(float(a) - float(b)) <= min(_unit(a), _unit(b)) * _ULP_SLACK


def _unit(number: str) -> float:
    """One unit of a printed number's last digit: 0.001 for '0.163', 1e-08 for '9.999e-05'."""
    mantissa, _, exponent = number.lower().partition("e")
    return 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))


def text_differences(golden: str, new: str) -> list[str]:
    """How ``new`` differs from ``golden`` beyond the last printed digit of its numbers ([]: they agree)."""
    g, n = NUMBER.split(golden), NUMBER.split(new)
    words = next((i for i in range(0, min(len(g), len(n)), 2) if g[i] != n[i]), None)
    if words is not None or len(g) != len(n):
        i = words if words is not None else min(len(g), len(n)) - 1
        return [f"the text differs: {_excerpt(g, i)!r} became {_excerpt(n, i)!r}"]
    return [f"{a} became {b}" for a, b in zip(g[1::2], n[1::2]) if not same_number(a, b)]


def _excerpt(parts: list[str], i: int) -> str:
    text = parts[i] if i < len(parts) else ""
    return text if len(text) <= 60 else text[:28] + "…" + text[-28:]


def json_differences(golden: Any, new: Any, where: str = "") -> list[str]:
    """How the parsed JSON ``new`` differs from ``golden``: the same structure and keys, equal integers
    and words, floats within ``REL_TOL``/``ABS_TOL`` (a figure's weights: one unit of their last decimal),
    the numbers in strings as ``text_differences`` compares them."""
    if isinstance(golden, dict) and isinstance(new, dict):
        if list(golden) != list(new):
            return [f"{where or '/'}: keys {list(golden)} became {list(new)}"]
        return [d for k in golden for d in json_differences(golden[k], new[k], f"{where}/{k}")]
    if isinstance(golden, list) and isinstance(new, list):
        if len(golden) != len(new):
            return [f"{where}: {len(golden)} items became {len(new)}"]
        return [d for i, (a, b) in enumerate(zip(golden, new)) for d in json_differences(a, b, f"{where}/{i}")]
    if isinstance(golden, str) and isinstance(new, str):
        return [f"{where}: {d}" for d in text_differences(golden, new)]
    if _is_float(golden, new):
        floor = FIGURE_TOL * _ULP_SLACK if "/figures/" in where else ABS_TOL
        if golden == new or (math.isnan(golden) and math.isnan(new)) \
                or abs(golden - new) <= max(REL_TOL * max(abs(golden), abs(new)), floor):
            return []
    elif golden == new and type(golden) is type(new):
        return []
    return [f"{where}: {golden!r} became {new!r}"]


def _is_float(a: Any, b: Any) -> bool:
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return numbers and (isinstance(a, float) or isinstance(b, float))


def differences(golden: str, new: str, fmt: str) -> list[str]:
    """How a rendering differs from its golden text beyond what another CPU may change ([]: it matches)."""
    if fmt in JSON_FORMATS:
        return json_differences(json.loads(golden), json.loads(new))
    return text_differences(golden, new)
