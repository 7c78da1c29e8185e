"""Known mistakes, as an assignment's ``mistakes.toml`` declares them: edits of the reference.

Each mistake has a name students understand, a hint, and how to make it from the
reference's code (exact text, replaced a known number of times). ``grader.course.store``
makes and runs every variant once; ``grader.judge.diagnose`` names the one a failing case
matches.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from grader.errors import CaseFileError


@dataclass(frozen=True)
class Mistake:
    """One known mistake: a name students understand, a hint, and how to make it."""

    id: str
    name: str
    hint: str
    edits: tuple[tuple[str, str, int], ...]


def mistakes_file(folder: Path) -> Path:
    """Where an assignment declares its known mistakes."""
    return folder / "mistakes.toml"


def load_mistakes(folder: Path) -> list[Mistake]:
    """The assignment's known mistakes (none without a mistakes.toml)."""
    path = mistakes_file(folder)
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
        unknown = set(raw) - {"id", "name", "hint", "edits"}
        if unknown:
            raise CaseFileError(where, ctx, f"unknown keys {sorted(unknown)}; allowed: id, name, hint, edits")
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
        mistakes.append(Mistake(raw["id"], str(raw.get("name", raw["id"])), str(raw.get("hint", "")), tuple(edits)))
    return mistakes
