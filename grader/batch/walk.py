"""The ground every reader of a batch's SOURCE stands on: its bounds, what is skipped and why, the walk.

``SourceLimits`` bounds what a SOURCE may hold (the zip's extraction, the walk, Gradescope's
metadata all read their caps from it); ``Skipped`` is how any of them says that something is
not graded, and why. ``Walk`` lists folders: no symbolic link is followed, hidden and system
entries are skipped, every entry is counted against the source's cap and a student's own, and
folders are walked to a bounded depth. Names found on disk are untrusted data, kept as found.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from grader.errors import UsageError
from grader.plan.limits import MAX_NOTEBOOK_BYTES
from grader.model.text import human_size

#: the longest student id or name kept (the rest is cut)
MAX_TEXT = 200

_SYSTEM_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini", "__pycache__", "$recycle.bin",
                           "system volume information"})


@dataclass(frozen=True)
class SourceLimits:
    """The bounds on what a SOURCE may hold; the defaults suit a large class."""

    #: entries in a zip, or files and folders met while walking a folder, in all (leaving out a
    #: student's folder over ``max_student_files``: one student alone never reaches this)
    max_files: int = 100_000
    #: files and folders in one student's folders (their entries included); more: that student is
    #: reported and not read, the rest of the class is graded
    max_student_files: int = 2_000
    #: the declared size of a zip's content, and the bytes actually written from it (leaving out a
    #: student's folder over ``max_student_bytes``)
    max_total_bytes: int = 2 << 30
    #: the declared size of one student's folder in a zip; more: it is not extracted
    max_student_bytes: int = 512 << 20
    #: one file (a member larger than this is not extracted; a file larger is not a submission)
    max_file_bytes: int = MAX_NOTEBOOK_BYTES
    #: folders below the SOURCE's top that are walked
    max_depth: int = 8
    #: Gradescope's metadata file
    max_metadata_bytes: int = 16 << 20


@dataclass(frozen=True)
class Skipped:
    """Something in the SOURCE that is not graded, and why.

    ``path`` is the file or folder; for a zip member that was refused at extraction, it is the
    zip itself and ``member`` is the member's name as the zip gives it (never touched on disk).
    ``student_id`` is known when the thing belongs to a student (their folder, their name).
    """

    path: Path
    reason: str
    student_id: str | None = None
    member: str | None = None


@dataclass(frozen=True)
class Entry:
    """One visible entry of a listed folder: a regular file or a folder, never a link."""

    path: Path
    name: str
    is_dir: bool


class TooMany(Exception):
    """A student's folders hold more entries than ``max_student_files``."""


def is_system(name: str) -> bool:
    """Whether ``name`` is a hidden or system file or folder (``.git``, ``._x``, ``~$x``, ``__MACOSX``, ...)."""
    return name.startswith((".", "~$", "._")) or name.lower() in _SYSTEM_NAMES


class Walk:
    """Bounded listings: no symbolic link followed, hidden and system entries skipped, files counted."""

    def __init__(self, limits: SourceLimits, exts: tuple[str, ...]):
        self.limits, self.exts, self.seen = limits, exts, 0

    def entries(self, folder: Path, skipped: list[Skipped], owner: str | None = None,
                most: int | None = None) -> list[Entry]:
        """The entries of ``folder`` by name; raises ``TooMany`` past ``most`` (a student's budget),
        ``UsageError`` past the source's ``max_files`` in all. Never lists more than that."""
        listing: list[os.DirEntry] = []
        try:
            with os.scandir(folder) as it:
                for e in it:
                    listing.append(e)
                    if most is not None and len(listing) > most:
                        self.seen += len(listing)
                        raise TooMany
                    if self.seen + len(listing) > self.limits.max_files:
                        raise UsageError(f"the source holds more than {self.limits.max_files} files and folders; "
                                         "a batch reads no more")
        except OSError as e:
            skipped.append(Skipped(folder, f"cannot be read ({type(e).__name__})", owner))
            return []
        self.seen += len(listing)
        listing.sort(key=lambda e: e.name)
        out = []
        for e in listing:
            path = Path(e.path)
            if is_system(e.name):
                skipped.append(Skipped(path, "hidden or system file", owner))
            elif e.is_symlink():
                skipped.append(Skipped(path, "a symbolic link (not followed)", owner))
            elif e.is_dir(follow_symlinks=False):
                out.append(Entry(path, e.name, True))
            elif e.is_file(follow_symlinks=False):
                out.append(Entry(path, e.name, False))
            else:
                skipped.append(Skipped(path, "not a regular file", owner))
        return out

    def files(self, folder: Path, skipped: list[Skipped], owner: str | None, depth: int,
              most: int | None = None) -> tuple[list[Path], int]:
        """Every file under ``folder`` (iteratively), in name order, to the depth bound, and how many
        entries were listed; raises ``TooMany`` past ``most`` entries."""
        out, stack, used = [], [(folder, depth)], 0
        while stack:
            here, level = stack.pop()
            before = self.seen
            listed = self.entries(here, skipped, owner, None if most is None else most - used)
            used += self.seen - before  # every entry listed, hidden ones and links included
            for e in reversed(listed):
                if not e.is_dir:
                    out.append(e.path)
                elif level + 1 > self.limits.max_depth:
                    skipped.append(Skipped(e.path, f"nested more than {self.limits.max_depth} folders deep "
                                                   "(not read)", owner))
                else:
                    stack.append((e.path, level + 1))
        return sorted(out), used

    def problem(self, path: Path) -> str | None:
        """Why ``path`` is not a submission, or None: its extension, its size, its readability."""
        if path.suffix.lower() not in self.exts:
            return f"not a {' or '.join(self.exts)} file"
        try:
            st = os.lstat(path)
        except OSError as e:
            return f"unreadable ({type(e).__name__})"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size == 0:
            return "empty"
        if st.st_size > self.limits.max_file_bytes:
            return f"{human_size(st.st_size)}, more than the {human_size(self.limits.max_file_bytes)} a submission may have"
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            try:
                os.read(fd, 1)
            finally:
                os.close(fd)
        except OSError as e:
            return f"unreadable ({type(e).__name__})"
        return None
