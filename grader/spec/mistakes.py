"""Known mistakes, as an assignment's ``mistakes.toml`` declares them: edits of the reference.

Each mistake has a name students understand, a hint, and how to make it from the
reference's code (exact text, replaced a known number of times). ``grader.course.reference_outputs``
makes and runs every variant once; ``grader.judge.diagnose`` names the one a failing case
matches. A mistake may also declare a ``signature`` (a built-in detector that recognises it
where the variant's outputs are not matched exactly) and a ``credit`` (the share of a case's
points it still earns; applied by the judge).
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from grader.errors import CaseFileError
from grader.memo import by_files

#: The built-in signatures a mistake may declare; ``grader.judge.diagnose`` implements each.
SIGNATURES: dict[str, str] = {
    "softmax_dim": "the attention weights sum to 1 over another dimension, not over the last",
    "integer_scores": "the scores (or the log-ratios of each row's attention weights) are integers, "
                      "where the reference's are not",
}
_KEYS = ("id", "name", "hint", "edits", "signature", "credit")


@dataclass(frozen=True)
class Mistake:
    """One known mistake: a name students understand, a hint, and how to make it."""

    id: str
    name: str
    hint: str
    edits: tuple[tuple[str, str, int], ...]
    #: a built-in detector (a key of ``SIGNATURES``) that also recognises it, or None
    signature: str | None = None
    #: the share, in [0, 1], of the points of each case it explains that a submission still earns
    credit: float = 0.0


def mistakes_file(folder: Path) -> Path:
    """Where an assignment declares its known mistakes."""
    return folder / "mistakes.toml"


def load_mistakes(folder: Path) -> list[Mistake]:
    """The assignment's known mistakes (none without a mistakes.toml); read once per process while
    the file stays the same (``grader.memo``)."""
    path = mistakes_file(folder)
    return list(by_files(("mistakes", str(path)), (path,), lambda: tuple(_load_mistakes(path))))


def _load_mistakes(path: Path) -> list[Mistake]:
    if not path.is_file():
        return []
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CaseFileError(where, "file", f"not valid TOML: {e}") from None
    mistakes, seen = [], set()
    for i, raw in enumerate(data.get("mistakes", []), start=1):
        ctx = f"mistake {raw.get('id', f'#{i}')!r}"
        unknown = set(raw) - set(_KEYS)
        if unknown:
            raise CaseFileError(where, ctx, f"unknown keys {sorted(unknown)}; allowed: {', '.join(_KEYS)}")
        if not isinstance(raw.get("id"), str) or raw["id"] in seen:
            raise CaseFileError(where, ctx, "needs a unique id")
        seen.add(raw["id"])
        edits = []
        for edit in raw.get("edits", []):
            if set(edit) - {"find", "replace", "count"} or not isinstance(edit.get("find"), str) \
                    or not isinstance(edit.get("replace"), str):
                raise CaseFileError(where, ctx, "each edit is { find = \"...\", replace = \"...\", count = N }")
            edits.append((edit["find"], edit["replace"], int(edit.get("count", 1))))
        if not edits:
            raise CaseFileError(where, ctx, "needs at least one edit")
        mistakes.append(Mistake(raw["id"], str(raw.get("name", raw["id"])), str(raw.get("hint", "")), tuple(edits),
                                _signature(raw, where, ctx), _credit(raw, where, ctx)))
    return mistakes


def _signature(raw: dict, where: str, ctx: str) -> str | None:
    signature = raw.get("signature")
    if signature is not None and signature not in SIGNATURES:
        raise CaseFileError(where, f"{ctx}, key 'signature'", f"unknown signature {signature!r}; known: "
                            f"{', '.join(SIGNATURES)}")
    return signature


def _credit(raw: dict, where: str, ctx: str) -> float:
    credit = raw.get("credit", 0.0)
    if isinstance(credit, bool) or not isinstance(credit, (int, float)) or not math.isfinite(credit) \
            or not 0.0 <= credit <= 1.0:
        raise CaseFileError(where, f"{ctx}, key 'credit'", f"credit = {credit!r}: it must be a number from 0 to 1 "
                            "(the share of each case's points the mistake still earns)")
    return float(credit)
