"""A batch's SOURCE (a folder, a zip, an LMS export) turned into the submissions to grade.

Nothing here grades or runs anything: it reads folder listings, file sizes, one byte of each
candidate (to know it is readable) and, for Gradescope, a bounded metadata file. The rules each
layout follows, and the order they are tried in, are in ``docs/batch.md`` ("Sources").

Everything taken from a SOURCE is untrusted: file and folder names, the members of a zip, the
metadata. A zip is extracted into a folder the caller names, member by member, refusing
traversal, absolute names, links and special files, with the total size, the file count, each
member's size and the bytes actually written all bounded. Folders are walked without following
symbolic links, to a bounded depth. Student ids and names are plain strings kept as data: they
are never used to build a path or a command here, and whoever shows them or writes them to a
CSV makes them safe there (``grader.report.text``).
"""
from __future__ import annotations

import os
import re
import stat
import time
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from grader.errors import UsageError
from grader.plan.submission import MAX_NOTEBOOK_BYTES
from grader.report.text import human_size

#: the layouts, in the order detection tries them (the first that matches wins)
LAYOUTS = ("gradescope", "moodle", "canvas", "folder")
#: what a submission may be, best first
EXTENSIONS = (".ipynb", ".py")
#: Gradescope's metadata file (at the top of the export, or in a submission's folder)
GRADESCOPE_METADATA = "submission_metadata.yml"
#: the longest student id or name kept (the rest is cut)
MAX_TEXT = 200

_SYSTEM_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini", "__pycache__", "$recycle.bin",
                           "system volume information"})
#: Canvas's fields after a student's name: "_[late_]<user id>_<submission id>_<file>" (ids never begin with 0)
_CANVAS_AT = re.compile(r"_(?:(?P<late>late)_)?(?P<id>[1-9]\d*)_(?P<serial>[1-9]\d*)_(?P<file>.+)\Z",
                        re.IGNORECASE | re.DOTALL)
#: what Canvas never leaves inside a student's name (it writes "-<digits>-" instead)
_CANVAS_NOT_IN_NAME = re.compile(r"_\d+_")
_RESUBMISSION = re.compile(r"(?P<stem>.*)-(?P<n>\d{1,6})\Z", re.DOTALL)
#: Moodle's folder: the name is free text, Moodle's own fields end it (greedy: read from the right)
_MOODLE_FOLDER = re.compile(r"(?P<name>.*)_(?P<id>\d+)_assignsubmission_(?P<plugin>[A-Za-z]+)_\Z", re.DOTALL)
#: Moodle's fields after a student's name in a file's name, the file's own name after them
_MOODLE_AT = re.compile(r"_(?P<id>\d+)_assignsubmission_(?P<plugin>[A-Za-z]+)_(?P<file>.+)\Z", re.DOTALL)
_GRADESCOPE = re.compile(r"submission_(?P<id>\d+)\Z")
#: what reading a damaged or unsupported member raises
_DAMAGED: tuple[type[BaseException], ...] = (zipfile.BadZipFile, EOFError, OSError, ValueError,
                                             NotImplementedError, RuntimeError, zlib.error)
try:
    import lzma
    _DAMAGED += (lzma.LZMAError,)
except ImportError:  # a Python built without lzma cannot open such members anyway
    pass


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
class Submission:
    """One student's file to grade, with the other files they handed in (listed, not graded)."""

    student_id: str
    name: str | None
    path: Path
    late: bool = False
    others: tuple[Path, ...] = ()
    email: str | None = None
    #: the other members of a group submission (Gradescope), by id
    group: tuple[str, ...] = ()
    #: which upload of the student's was graded: 0 for the first, N for the LMS's ``-N`` resubmission
    resubmission: int = 0


@dataclass(frozen=True)
class Conflict:
    """Entries of the SOURCE that claim one student although the layout says they are different people
    (two Gradescope submissions whose first submitter is the same, two entries of a plain folder with
    one name, two Canvas or Moodle names with one id, an identity pattern reading one id from two
    people's entries). None of them is graded as that student: which one is theirs is a person's call."""

    student_id: str
    paths: tuple[Path, ...]

    @property
    def reason(self) -> str:
        """What happened and what to do, in plain words."""
        return (f"{len(self.paths)} entries claim this student ({', '.join(p.name for p in self.paths)}): none "
                "is graded as them; keep the one that is theirs (or rename the other) and run again")


@dataclass(frozen=True)
class Collected:
    """What ``collect`` found: the layout, the folder it read, submissions by id, what it skipped, and the
    students claimed by more than one entry (``conflicts``, by student id: none of those is graded)."""

    layout: str
    root: Path
    submissions: tuple[Submission, ...]
    skipped: tuple[Skipped, ...]
    notes: tuple[str, ...] = ()
    conflicts: tuple[Conflict, ...] = ()


def collect(source: str | os.PathLike, *, extract_to: str | os.PathLike | None = None,
            layout: str = "auto", identity: str | re.Pattern | None = None,
            extensions: Iterable[str] = EXTENSIONS, fits: Callable[[Path], bool] | None = None,
            limits: SourceLimits = SourceLimits()) -> Collected:
    """The submissions in ``source``, a folder or a zip (extracted into ``extract_to``).

    ``layout``: "auto" (detected) or one of ``LAYOUTS``. ``identity``: a regular expression with
    a named group ``id`` (and optionally ``name``), searched in each student's file or folder
    name, instead of the layout's own rule. ``extensions``: what a submission may be, best first.
    ``fits``: the caller's test that a file fits the assignment; a file that fits is preferred.
    Raises ``UsageError`` for what the instructor must fix.
    """
    pattern = identity_pattern(identity)
    if layout != "auto" and layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}: choose one of auto, {', '.join(LAYOUTS)}")
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not exts:
        raise UsageError("no file extension was given for submissions")
    source = Path(source)
    skipped: list[Skipped] = []
    notes: list[str] = []
    if source.is_dir():
        root = source
    elif source.is_file():
        if not zipfile.is_zipfile(source):
            raise UsageError(f"{source} is neither a folder nor a zip file")
        if extract_to is None:
            raise UsageError(f"{source} is a zip: give a folder to extract it into")
        root = Path(extract_to)
        skipped += extract_zip(source, root, limits)
        notes.append(f"extracted {source.name} into {root}")
    elif source.exists() or source.is_symlink():
        raise UsageError(f"{source} is neither a folder nor a zip file")
    else:
        raise UsageError(f"{source}: no such file or folder")

    walk = _Walk(limits, exts)
    top = walk.entries(root, skipped)
    chosen = layout
    if layout == "auto":
        chosen, why = _detect(top)
        # An export wrapped in one folder (Gradescope's "assignment_N_export/"): step inside.
        for _ in range(3):
            if chosen != "folder" or len(top) != 1 or not top[0].is_dir:
                break
            inner_skipped: list[Skipped] = []
            inner = walk.entries(top[0].path, inner_skipped)
            inner_layout, inner_why = _detect(inner)
            if inner_layout == "folder":
                break
            skipped += inner_skipped
            notes.append(f"stepped into {top[0].name}/")
            root, top, chosen, why = top[0].path, inner, inner_layout, inner_why
        notes.append(f"layout {chosen}: {why}")
    if not top:
        raise UsageError(f"{source} holds no files to grade")

    reader = _Reader(walk, pattern, root, limits)
    found = reader.read(chosen, top, skipped)
    if layout != "auto" and layout != "folder" and not reader.followed and not pattern:
        raise UsageError(f"{source} does not look like a {layout.capitalize()} export: "
                         f"no entry follows its naming (see docs/batch.md, Sources)")
    submissions = _choose(found, exts, fits, skipped)
    skipped.sort(key=lambda s: (str(s.path), s.member or "", s.reason))
    return Collected(chosen, root, tuple(submissions), tuple(skipped), tuple(notes), tuple(reader.conflicts))


def identity_pattern(identity: str | re.Pattern | None) -> re.Pattern | None:
    """``identity`` compiled and checked: it must have a named group ``id``."""
    if identity is None:
        return None
    try:
        pattern = re.compile(identity) if isinstance(identity, str) else identity
    except re.error as e:
        raise UsageError(f"the identity pattern {identity!r} is not a valid regular expression: {e}") from None
    if "id" not in pattern.groupindex:
        raise UsageError(f"the identity pattern {pattern.pattern!r} needs a named group for the student's id, "
                         "as in (?P<id>\\d+)")
    return pattern


# --- the zip ---------------------------------------------------------------------------------

def extract_zip(archive: Path, dest: Path, limits: SourceLimits = SourceLimits()) -> list[Skipped]:
    """Extract ``archive`` into ``dest`` (absent or empty) safely; the members refused, with why.

    A student's folder (a folder at the top, or below the single folders that wrap an export, as
    Gradescope's ``assignment_N_export/`` does) with more than ``max_student_files`` entries or
    ``max_student_bytes`` declared is not extracted at all, and listed once. The whole zip is refused
    (``UsageError``) when the rest declares more than ``max_files`` entries or ``max_total_bytes`` of
    content, or when more than that comes out of it.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise UsageError(f"cannot extract {archive.name} into {dest}: it must be an empty folder or not exist")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UsageError(f"{archive} cannot be read as a zip file: {e}") from None
    skipped: list[Skipped] = []

    def refuse(member: str, reason: str) -> None:
        skipped.append(Skipped(archive, reason, member=member))

    with zf:
        members = []  # (info, name, parts, problem), in the zip's order
        for info in zf.infolist():
            name, problem = _member_name(info)
            parts: tuple[str, ...] = ()
            if not problem:
                parts, problem = _member_parts(name, limits)
            members.append((info, name, parts, problem or _member_kind(info)))
        too_large = _oversized_folders([(i, p) for i, _, p, _ in members], limits)
        for folder, reason in sorted(too_large.items()):
            refuse("/".join(folder), reason)
        members = [m for m in members if not any(m[2][:n] in too_large for n in range(1, len(m[2]) + 1))]
        if len(members) > limits.max_files:
            raise UsageError(f"{archive} holds {len(members)} entries, more than the {limits.max_files} a batch reads")
        declared = sum(i.file_size for i, *_ in members if not i.is_dir())
        if declared > limits.max_total_bytes:
            raise UsageError(f"{archive} declares {human_size(declared)} of content, more than the "
                             f"{human_size(limits.max_total_bytes)} a batch extracts (a zip bomb?)")
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        seen: set[tuple[str, ...]] = set()
        hidden: set[tuple[str, ...]] = set()
        written = 0
        for info, name, parts, problem in members:
            if problem:
                refuse(name, problem)
                continue
            system = next((i for i, p in enumerate(parts) if _is_system(p)), None)
            if system is not None:
                prefix = parts[: system + 1]
                if prefix not in hidden:
                    hidden.add(prefix)
                    refuse("/".join(prefix), "hidden or system file")
                continue
            if parts in seen:
                refuse(name, "the zip holds another member with this name")
                continue
            seen.add(parts)
            target = dest.joinpath(*parts)
            try:
                if info.is_dir():
                    target.mkdir(mode=0o700, parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError:
                refuse(name, "clashes with another member of the zip")
                continue
            if info.file_size > limits.max_file_bytes:
                refuse(name, f"declares {human_size(info.file_size)}, more than the {human_size(limits.max_file_bytes)} "
                             "a file may have (not extracted)")
                continue
            outcome = _extract_member(zf, info, target, limits.max_total_bytes - written)
            if isinstance(outcome, str):
                refuse(name, outcome)
                continue
            written += outcome
    return skipped


def _oversized_folders(members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]],
                       limits: SourceLimits) -> dict[tuple[str, ...], str]:
    """The students' folders of a zip over their caps, with why: a folder at the level where the
    students are (below up to three single folders that wrap the whole export, as the reader steps
    into them) holding more than ``max_student_files`` entries or declaring more than
    ``max_student_bytes``. Names only; nothing is read."""
    paths = [p for _, p in members if p]
    depth = 0
    while depth < 3:  # the single visible folder that holds everything is a wrapper, not a student
        tops = {p[depth] for p in paths if len(p) > depth and not any(_is_system(x) for x in p[: depth + 1])}
        if len(tops) != 1 or not any(len(p) > depth + 1 and p[depth] in tops for p in paths):
            break
        depth += 1
    count: dict[tuple[str, ...], int] = {}
    size: dict[tuple[str, ...], int] = {}
    for info, p in members:
        if len(p) > depth + 1:
            folder = p[: depth + 1]
            count[folder] = count.get(folder, 0) + 1
            size[folder] = size.get(folder, 0) + (0 if info.is_dir() else info.file_size)
    out = {}
    for folder in count:
        if count[folder] > limits.max_student_files:
            out[folder] = (f"a folder of {count[folder]} files and folders, more than the {limits.max_student_files} "
                           "a student's submission may hold (not extracted)")
        elif size[folder] > limits.max_student_bytes:
            out[folder] = (f"a folder declaring {human_size(size[folder])}, more than the "
                           f"{human_size(limits.max_student_bytes)} a student's submission may hold (not extracted)")
    return out


def _member_name(info: zipfile.ZipInfo) -> tuple[str, str | None]:
    """The member's name decoded (UTF-8 when it is valid UTF-8, else code page 437), or why not."""
    raw_name = info.orig_filename
    if info.flag_bits & 0x800:
        name = raw_name
    else:
        try:
            raw = raw_name.encode("cp437")
        except UnicodeEncodeError:  # already decoded another way (metadata_encoding)
            name = raw_name
        else:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                name = raw_name
    if "\x00" in name:
        return name.replace("\x00", "\\x00"), "its name holds a NUL byte"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        return name, "its name holds control characters"
    return name, None


def _member_parts(name: str, limits: SourceLimits) -> tuple[tuple[str, ...], str | None]:
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        return (), "an absolute path (not extracted)"
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        return (), "leads outside the folder with '..' (not extracted)"
    if not parts:
        return (), "an empty name"
    if any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        return (), "a name longer than 255 bytes"
    if len(parts) > limits.max_depth + 1:
        return (), f"nested more than {limits.max_depth} folders deep (not extracted)"
    return parts, None


def _member_kind(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "a symbolic link (not extracted)"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "not a regular file (not extracted)"
    if info.flag_bits & 0x1:
        return "encrypted (not extracted)"
    return None


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, room: int) -> int | str:
    """Write one member; the bytes written, or why it was refused (nothing is left of it then)."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError:
        return "clashes with another member of the zip"
    count, problem = 0, None
    try:
        with os.fdopen(fd, "wb") as out, zf.open(info) as member:
            while True:
                chunk = member.read(1 << 20)
                if not chunk:
                    break
                count += len(chunk)
                if count > info.file_size:
                    problem = "holds more than the size it declares (a zip bomb?)"
                    break
                if count > room:
                    problem = "would take the zip's content past its total size cap"
                    break
                out.write(chunk)
    except _DAMAGED as e:  # a damaged member is that member's problem, never the batch's end
        problem = f"damaged or unsupported in the zip ({type(e).__name__}: {e})"
    if problem:
        try:
            target.unlink()
        except OSError:
            pass
        if problem.startswith("would take"):
            raise UsageError(f"{zf.filename}: more content came out than the cap allows; extraction stopped")
        return problem
    if info.date_time >= (1980, 1, 1, 0, 0, 0):
        try:
            t = time.mktime(info.date_time + (0, 0, -1))
            os.utime(target, (t, t))
        except (OverflowError, ValueError, OSError):
            pass
    return count


# --- the folder ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    path: Path
    name: str
    is_dir: bool


def _is_system(name: str) -> bool:
    return name.startswith((".", "~$", "._")) or name.lower() in _SYSTEM_NAMES


class _Walk:
    """Bounded listings: no symbolic link followed, hidden and system entries skipped, files counted."""

    def __init__(self, limits: SourceLimits, exts: tuple[str, ...]):
        self.limits, self.exts, self.seen = limits, exts, 0

    def entries(self, folder: Path, skipped: list[Skipped], owner: str | None = None,
                most: int | None = None) -> list[_Entry]:
        """The entries of ``folder`` by name; raises ``_TooMany`` past ``most`` (a student's budget),
        ``UsageError`` past the source's ``max_files`` in all. Never lists more than that."""
        listing: list[os.DirEntry] = []
        try:
            with os.scandir(folder) as it:
                for e in it:
                    listing.append(e)
                    if most is not None and len(listing) > most:
                        self.seen += len(listing)
                        raise _TooMany
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
            if _is_system(e.name):
                skipped.append(Skipped(path, "hidden or system file", owner))
            elif e.is_symlink():
                skipped.append(Skipped(path, "a symbolic link (not followed)", owner))
            elif e.is_dir(follow_symlinks=False):
                out.append(_Entry(path, e.name, True))
            elif e.is_file(follow_symlinks=False):
                out.append(_Entry(path, e.name, False))
            else:
                skipped.append(Skipped(path, "not a regular file", owner))
        return out

    def files(self, folder: Path, skipped: list[Skipped], owner: str | None, depth: int,
              most: int | None = None) -> tuple[list[Path], int]:
        """Every file under ``folder`` (iteratively), in name order, to the depth bound, and how many
        entries were listed; raises ``_TooMany`` past ``most`` entries."""
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


# --- layouts ---------------------------------------------------------------------------------
#
# Who an entry belongs to comes only from what the LMS itself wrote: Canvas's and Moodle's fixed
# fields in the entry's name, Gradescope's own metadata at the top of the export, the entry's
# name in a plain folder. Never from anything a student put inside their submission. Where a
# student's free text sits on both sides of the fixed fields (a display name on the left, a file
# name on the right), every way of reading the name is tried: a name that reads as two students
# is not guessed at (below, ``_Reader.settle``).

def _canvas_readings(name: str) -> list[dict]:
    """Every way ``name`` reads as Canvas's ``<name>_[late_]<user id>_<submission id>_<file>``, left to right.

    Canvas writes a ``_<digits>_`` inside a student's name as ``-<digits>-`` (it reads ids back the
    same way), and its ids never begin with 0: a reading whose name part holds one is not Canvas's.
    """
    out = []
    for at in re.finditer(r"(?<=.)_(?=(?:late_)?[1-9])", name, re.IGNORECASE | re.DOTALL):
        i = at.start()
        m = _CANVAS_AT.match(name, i)
        if m is None or _CANVAS_NOT_IN_NAME.search(name[:i]):
            continue
        resub = _RESUBMISSION.match(Path(m["file"]).stem)
        out.append({"id": m["id"], "name": name[:i], "late": m["late"] is not None, "serial": int(m["serial"][:18]),
                    "resubmission": int(resub["n"]) if resub else 0})
    return out


def _moodle_readings(name: str, is_dir: bool) -> list[dict]:
    """Every way ``name`` reads as Moodle's: a folder ``<name>_<id>_assignsubmission_<plugin>_`` (read from
    the right, where Moodle's own fields end it: one reading), or a file
    ``<name>_<id>_assignsubmission_<plugin>_<file>`` (the student's name on the left and their file's
    name on the right are both free text: every reading, left to right)."""
    if is_dir:
        m = _MOODLE_FOLDER.match(name)
        return [{"id": m["id"], "name": m["name"]}] if m and m["name"] else []
    out = []
    for at in re.finditer(r"(?<=.)_(?=\d+_assignsubmission_)", name, re.DOTALL):
        m = _MOODLE_AT.match(name, at.start())
        if m is not None:
            out.append({"id": m["id"], "name": name[:at.start()]})
    return out


def _detect(top: list[_Entry]) -> tuple[str, str]:
    """The layout of a folder from its top-level entries, and the reason, in ``LAYOUTS`` order."""
    entries = [e for e in top if e.name != GRADESCOPE_METADATA]
    half = len(entries) / 2
    if len(entries) < len(top):
        return "gradescope", f"{GRADESCOPE_METADATA} at the top"
    scope = sum(1 for e in entries if e.is_dir and _GRADESCOPE.match(e.name))
    if entries and scope > half:
        return "gradescope", f"{scope} of {len(entries)} entries are submission_<id> folders"
    moodle = sum(1 for e in entries if _moodle_readings(e.name, e.is_dir))
    if entries and moodle > half:
        return "moodle", f"{moodle} of {len(entries)} entries are named Name_<id>_assignsubmission_..."
    canvas = sum(1 for e in entries if not e.is_dir and _canvas_readings(e.name))
    if entries and canvas > half:
        return "canvas", f"{canvas} of {len(entries)} files are named name_<userid>_<submissionid>_<file>"
    return "folder", "a file or a folder per student"


@dataclass
class _Candidate:
    path: Path
    late: bool = False
    resubmission: int = 0
    serial: int = 0


@dataclass
class _Student:
    student_id: str
    name: str | None = None
    email: str | None = None
    group: tuple[str, ...] = ()
    candidates: list[_Candidate] | None = None


@dataclass(frozen=True)
class _Claim:
    """One top-level entry read as one student's: the layout's facts, the id it gives, and the *unit*:
    who the layout itself says the entry is (the LMS's id and name for Canvas and Moodle, whose several
    entries may be one student's; the entry itself for Gradescope and a plain folder)."""

    entry: _Entry
    facts: dict
    student_id: str
    name: str | None
    unit: object


class _TooMany(Exception):
    """A student's folders hold more entries than ``max_student_files``."""


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()[:MAX_TEXT]
    return value or None


class _Reader:
    """Each layout's rule: which entry is whose, with which facts."""

    def __init__(self, walk: _Walk, pattern: re.Pattern | None, root: Path, limits: SourceLimits):
        self.walk, self.pattern, self.root, self.limits = walk, pattern, root, limits
        self.students: dict[str, _Student] = {}
        self.conflicts: list[Conflict] = []
        #: entries that follow the layout's naming (a forced layout that none follows is a usage error)
        self.followed = 0

    def read(self, layout: str, top: list[_Entry], skipped: list[Skipped]) -> dict[str, _Student]:
        metadata: dict[str, list[dict[str, str]]] = {}
        if layout == "gradescope" and any(e.name == GRADESCOPE_METADATA and not e.is_dir for e in top):
            metadata = read_gradescope_metadata(self.root / GRADESCOPE_METADATA, self.limits.max_metadata_bytes,
                                                skipped)
        readings: list[tuple[_Entry, list[dict]]] = []
        for entry in top:
            if layout == "gradescope" and entry.name == GRADESCOPE_METADATA and not entry.is_dir:
                continue
            options = getattr(self, "_" + layout)(entry, metadata, skipped)
            if options:
                readings.append((entry, options))
        claims: dict[str, list[_Claim]] = {}
        for entry, facts in self.settle(readings, skipped, self.pattern is not None):
            claim = self._claim(entry, facts, skipped)
            if claim is not None:
                claims.setdefault(claim.student_id, []).append(claim)
        for sid in sorted(claims):
            group = claims[sid]
            if len({c.unit for c in group}) > 1:  # two entries the LMS says are different people claim one id
                self.conflicts.append(Conflict(sid, tuple(sorted(c.entry.path for c in group))))
            else:
                self._student(sid, layout, group, skipped)
        return self.students

    @staticmethod
    def settle(readings: list[tuple[_Entry, list[dict]]], skipped: list[Skipped],
               patterned: bool = False) -> list[tuple[_Entry, dict]]:
        """One reading per entry. An entry whose readings give several ids keeps those not contradicted by
        an entry that reads one way only (one LMS id, one name); if that still leaves more than one id,
        whose it is cannot be told: it is skipped, never guessed (``patterned``: the caller's identity
        pattern decides, and the entry counts as its own person, without the layout's facts)."""
        certain: dict[str | None, set[str | None]] = {}
        for _, options in readings:
            if len({o.get("id") for o in options}) == 1:
                certain.setdefault(options[0].get("id"), set()).add(options[0].get("name"))
        out = []
        for entry, options in readings:
            every = sorted({str(o.get("id")) for o in options})
            if len(every) > 1:
                options = [o for o in options if o.get("id") not in certain or o.get("name") in certain[o.get("id")]]
                if len({o.get("id") for o in options}) != 1 and patterned:
                    out.append((entry, {}))
                    continue
                if len({o.get("id") for o in options}) != 1:
                    skipped.append(Skipped(entry.path, f"its name reads as more than one student's (ids "
                                                       f"{', '.join(every)}): whose it is cannot be told, so it is "
                                                       "not graded"))
                    continue
            out.append((entry, options[0]))
        return out

    def _claim(self, entry: _Entry, facts: dict, skipped: list[Skipped]) -> _Claim | None:
        """The student ``entry`` is, by the layout's rule or the caller's identity pattern."""
        unit = facts.get("unit", entry.path)
        if self.pattern is not None:
            found = [m for m in self.pattern.finditer(entry.name) if _text(m.group("id"))]
            ids = sorted({_text(m.group("id")) for m in found})
            if not ids:
                skipped.append(Skipped(entry.path, "its name does not match the identity pattern"))
                return None
            if len(ids) > 1:
                skipped.append(Skipped(entry.path, f"the identity pattern finds more than one id in its name "
                                                   f"({', '.join(ids)}): whose it is cannot be told, so it is "
                                                   "not graded"))
                return None
            m = found[0]
            name = m.group("name") if "name" in self.pattern.groupindex else None
            return _Claim(entry, facts, ids[0], _text(name) or _text(facts.get("name")), unit)
        student_id = _text(facts.get("id"))
        if student_id is None:
            skipped.append(Skipped(entry.path, "no student id in its name"))
            return None
        return _Claim(entry, facts, student_id, _text(facts.get("name")), unit)

    def _student(self, sid: str, layout: str, claims: list[_Claim], skipped: list[Skipped]) -> None:
        """The student ``sid`` from their entries, their folders walked within ``max_student_files``
        (more: the student is reported, not read; the rest of the class is not held up)."""
        mine: list[Skipped] = []
        found: list[tuple[Path, _Claim]] = []
        budget = self.limits.max_student_files
        try:
            for claim in claims:
                budget -= 1
                if budget < 0:
                    raise _TooMany
                entry = claim.entry
                if not entry.is_dir:
                    found.append((entry.path, claim))
                    continue
                files, used = self.walk.files(entry.path, mine, sid, 1, budget)
                budget -= used
                own = [f for f in files if layout == "gradescope" and f.name == GRADESCOPE_METADATA
                       and f.parent == entry.path]
                for f in own:
                    mine.append(Skipped(f, "the student's own submission_metadata.yml: not read (who handed in a "
                                           "submission comes only from the export's metadata, at its top)", sid))
                files = [f for f in files if f not in own]
                if not files and not own:
                    mine.append(Skipped(entry.path, "holds no files", sid))
                found += [(f, claim) for f in files]
        except _TooMany:
            cap = self.limits.max_student_files
            skipped.append(Skipped(claims[0].entry.path, f"holds more than {cap} files and folders, more than a "
                                   "student's submission may: not read, not graded (take out what is not the "
                                   "submission, such as a virtual environment or a data set, or grade the notebook "
                                   "alone with `grade FILE`)", sid))
            return
        skipped += mine
        student = _Student(sid, candidates=[])
        for claim in claims:
            student.name = student.name or claim.name
            student.email = student.email or _text(claim.facts.get("email"))
            student.group = student.group or tuple(claim.facts.get("group", ()))
        for path, claim in found:
            problem = self.walk.problem(path)
            if problem:
                skipped.append(Skipped(path, problem, sid))
            else:
                f = claim.facts
                student.candidates.append(_Candidate(path, bool(f.get("late")), int(f.get("resubmission", 0)),
                                                     int(f.get("serial", 0))))
        self.students[sid] = student

    def _not_layout(self, entry: _Entry, layout: str, skipped: list[Skipped]) -> list[dict]:
        if self.pattern is not None:  # the caller's pattern decides who it is
            return [{}]
        skipped.append(Skipped(entry.path, f"does not follow {layout}'s naming"))
        return []

    def _canvas(self, entry: _Entry, metadata, skipped) -> list[dict]:
        readings = [] if entry.is_dir else _canvas_readings(entry.name)
        if not readings:
            return self._not_layout(entry, "Canvas", skipped)
        self.followed += 1
        return [{**r, "unit": ("canvas", r["id"], r["name"])} for r in readings]

    def _moodle(self, entry: _Entry, metadata, skipped) -> list[dict]:
        readings = _moodle_readings(entry.name, entry.is_dir)
        if not readings:
            return self._not_layout(entry, "Moodle", skipped)
        self.followed += 1
        return [{**r, "unit": ("moodle", r["id"], r["name"])} for r in readings]

    def _gradescope(self, entry: _Entry, metadata, skipped) -> list[dict]:
        m = _GRADESCOPE.match(entry.name) if entry.is_dir else None
        if not m:
            return self._not_layout(entry, "Gradescope", skipped)
        self.followed += 1
        people = metadata.get(entry.name, [])  # the export's own metadata; never a file the student handed in
        ids = [_text(p.get("sid")) or _text(p.get("email")) or _text(p.get("name")) for p in people]
        ids = [i for i in ids if i]
        first = people[0] if people else {}
        return [{"id": _text(first.get("sid")) or _text(first.get("email")) or entry.name,
                 "name": first.get("name"), "email": _text(first.get("email")), "group": ids[1:]}]

    def _folder(self, entry: _Entry, metadata, skipped) -> list[dict]:
        self.followed += 1
        if not entry.is_dir and entry.path.suffix.lower() not in self.walk.exts and self.pattern is None:
            skipped.append(Skipped(entry.path, f"not a {' or '.join(self.walk.exts)} file"))  # a README: no one's
            return []
        return [{"id": entry.name if entry.is_dir else Path(entry.name).stem}]


def _choose(students: dict[str, _Student], exts: tuple[str, ...], fits: Callable[[Path], bool] | None,
            skipped: list[Skipped]) -> list[Submission]:
    """Each student's best file: one that fits, then by extension, resubmission, upload order, mtime.
    Every other file of theirs is listed in ``skipped``, saying which file was chosen and why that one."""
    def key(c: _Candidate):
        try:
            mtime = os.lstat(c.path).st_mtime_ns
        except OSError:
            mtime = 0
        return (bool(fits(c.path)) if fits else True, -exts.index(c.path.suffix.lower()),
                c.resubmission, c.serial, mtime, str(c.path))

    out = []
    for sid in sorted(students):
        student = students[sid]
        if not student.candidates:
            continue
        keyed = sorted(((key(c), c) for c in student.candidates), key=lambda kc: kc[0], reverse=True)
        (best_key, best), rest = keyed[0], keyed[1:]
        skipped += [Skipped(c.path, _not_chosen(c, k, best, best_key), sid) for k, c in rest]
        out.append(Submission(student.student_id, student.name, best.path, best.late,
                              tuple(c.path for _, c in rest), student.email, student.group, best.resubmission))
    return out


def _not_chosen(c: _Candidate, k: tuple, best: _Candidate, best_key: tuple) -> str:
    """Why another of a student's files was not graded: the first way ``_choose``'s order put ``best`` first."""
    chosen = f"{best.path.name} was graded instead"
    if k[0] != best_key[0]:
        return f"does not fit the assignment; {chosen}"
    if k[1] != best_key[1]:
        return f"a {c.path.suffix.lower()} file, and a {best.path.suffix.lower()} one comes first; {chosen}"
    if k[2] != best_key[2]:
        return (f"an older upload ({_upload(c.resubmission)}); {best.path.name}, {_upload(best.resubmission)}, "
                "was graded instead")
    if k[3] != best_key[3]:
        return f"uploaded before {best.path.name}, which was graded instead"
    if k[4] != best_key[4]:
        return f"older (modified earlier) than {best.path.name}, which was graded instead"
    return f"one file per student is graded; {chosen}"


def _upload(resubmission: int) -> str:
    return f"resubmission {resubmission}" if resubmission else "the first upload"


# --- Gradescope's metadata -------------------------------------------------------------------

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
        if indent == 0 and m and not m["dash"] and _GRADESCOPE.match(m["key"]) and not (m["value"] or "").strip():
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
