"""Making text that came from a submission safe to show, in every format.

A student controls their file's name, comments, exception messages and printed output.
``safe_text`` is applied where that text enters the report model (``grader.model.result``),
so every renderer receives text in which control characters (terminal escapes, carriage
returns, bidirectional overrides, zero-width characters), lone surrogates and
non-characters are shown escaped (``\\x1b``, ``\\u202e``), never interpreted. What is left
is valid in XML 1.0. Renderers never parse it as markup (rich ``Text``, ``html.escape``), and
the CSV writer neutralises cells that a spreadsheet would run as a formula.
"""
from __future__ import annotations

import re
import unicodedata

#: Unicode categories shown escaped: controls, format characters, surrogates, line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_KEPT = frozenset("\n\t")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_PLAIN = re.compile(r"[\x20-\x7e\n\t]*\Z")  # the common case, checked without a per-character loop


def safe_text(text: str, one_line: bool = False) -> str:
    """``text`` with every unsafe character escaped; with ``one_line``, line breaks become spaces."""
    if not isinstance(text, str):
        text = str(text)
    if one_line:
        text = " ".join(text.split("\n")) if "\n" in text else text
    if _PLAIN.match(text) or text.replace("\n", "").replace("\t", "").isprintable():
        return text  # isprintable() is False for every category escaped below, and for noncharacters
    return "".join(_escaped(c) for c in text)


def _escaped(c: str) -> str:
    if c in _KEPT:
        return c
    code = ord(c)
    if unicodedata.category(c) in _UNSAFE_CATEGORIES or _noncharacter(code):
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return c


def _noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def shortened(text: str, most: int) -> str:
    """``text`` cut to ``most`` characters, with an ellipsis where it was cut."""
    return text if len(text) <= most else text[: most - 1] + "…"


def spreadsheet_safe(cell: str) -> str:
    """A CSV cell that no spreadsheet runs as a formula (a leading =, +, -, @ gets a quote)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def human_size(n: int) -> str:
    """A size in bytes for people: '1.6 MB', '2 KB', '12 bytes' (binary units, one decimal at most)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} bytes"
