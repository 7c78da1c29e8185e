"""Gradescope's ``submission_metadata.yml``: who handed in each submission of an export, read safely.

The export's own metadata, at its top, is the only place a Gradescope submitter's id comes from
(a file of that name inside a submission is the student's, and never read). It is read by a small
line parser of the plain YAML Gradescope writes (``:key:`` names, block lists, plain or quoted
scalars), bounded in size; everything but each submission's ``:submitters:`` (``name``, ``sid``,
``email``) is passed over, nothing in it is ever evaluated, and no YAML library is needed.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from grader.batch.walk import MAX_TEXT, SourceLimits, Skipped
from grader.model.text import human_size

#: Gradescope's metadata file (at the top of the export, or in a submission's folder)
GRADESCOPE_METADATA = "submission_metadata.yml"
#: the name Gradescope gives a submission: its folder in the export, its key in the metadata
SUBMISSION_NAME = re.compile(r"submission_(?P<id>\d+)\Z")

_KEY = re.compile(r"(?P<dash>-\s+)?:?(?P<key>[A-Za-z_][\w]*):(?:\s+(?P<value>.*))?\Z")
_PEOPLE_KEYS = ("name", "sid", "email")


def read_gradescope_metadata(path: Path, limit: int = SourceLimits.max_metadata_bytes,
                             skipped: list[Skipped] | None = None) -> dict[str, list[dict[str, str]]]:
    """The submitters in a ``submission_metadata.yml``: ``{"submission_<id>": [{name, sid, email}]}``.

    Reads only the simple YAML Gradescope writes (block mappings and lists, Ruby-style
    ``:key:`` names, plain or quoted scalars), line by line, bounded; everything but each
    submission's ``:submitters:`` is passed over. A file with no ``submission_<id>`` keys (one
    submission's own metadata) gives its submitters under ``""``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        if skipped is not None:
            skipped.append(Skipped(Path(path), f"Gradescope metadata unreadable ({type(e).__name__})"))
        return {}
    if len(data) > limit:
        if skipped is not None:
            skipped.append(Skipped(Path(path), f"Gradescope metadata larger than {human_size(limit)}, not read"))
        return {}
    return parse_gradescope_metadata(data.decode("utf-8", errors="replace"))


def parse_gradescope_metadata(text: str) -> dict[str, list[dict[str, str]]]:
    """See ``read_gradescope_metadata``; ``text`` is the file's content."""
    records: dict[str, list[dict[str, str]]] = {}
    record: str | None = None
    record_indent: int | None = None  # the indent of a record's own keys
    people_indent: int | None = None  # the indent of its ":submitters:" key, while inside
    person: dict[str, str] | None = None
    person_indent = -1
    for raw in text.splitlines():
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            continue  # YAML forbids tabs in indentation; such a line is not Gradescope's
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        if people_indent is not None and (indent < people_indent
                                          or (indent == people_indent and not stripped.startswith("-"))):
            people_indent, person = None, None
        m = _KEY.match(stripped)
        if indent == 0 and m and not m["dash"] and SUBMISSION_NAME.match(m["key"]) and not (m["value"] or "").strip():
            record, record_indent, people_indent, person = m["key"], None, None, None
            records.setdefault(record, [])
            continue
        if people_indent is None:
            if not m or m["dash"]:
                continue
            if record is None:
                record, record_indent = "", 0
                records.setdefault(record, [])
            if record_indent is None:
                record_indent = indent
            if indent == record_indent and m["key"] == "submitters" and not (m["value"] or "").strip():
                people_indent = indent
            continue
        if stripped.startswith("-"):
            rest = stripped[1:].lstrip()
            person = {}
            records[record].append(person)
            person_indent = len(raw) - len(rest)
            m = _KEY.match(rest) if rest else None
        elif indent != person_indent:
            continue
        if person is not None and m and not m["dash"] and m["key"] in _PEOPLE_KEYS:
            value = _scalar(m["value"] or "")
            if value is not None:
                person[m["key"]] = value[:MAX_TEXT]
    return records


def _scalar(value: str) -> str | None:
    """A YAML scalar on one line: quoted ('..', "..") or plain (a trailing comment dropped)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        return re.sub(r'\\(["\\/])', r"\1", inner)
    if value.startswith(("|", ">", "&", "*", "!", "[", "{")):
        return None  # a block, an anchor, a tag, a flow collection: not a plain name
    value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
    return None if value in ("", "~", "null", "Null", "NULL") else value
