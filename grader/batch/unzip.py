"""Safe extraction of a batch's zip: member by member into a folder the caller names.

A zip is untrusted. Each member is refused, and listed as ``Skipped`` (the zip's path, the
member's name as the zip gives it), when its name is absolute, holds a ``..`` component, a NUL
byte or a control character, has a component over 255 bytes or is nested too deeply; when it is
a link, another special file or encrypted; when it repeats or clashes with another member; when
it declares more than a file may hold, is damaged, or yields more bytes than it declares.
Folders are made 0700 and files 0600, each created exclusively without following links, and
nothing of a refused member is left on disk. The total size, the entry count, each student's
folder and the bytes actually written are all bounded (``SourceLimits``).
"""
from __future__ import annotations

import os
import re
import stat
import time
import unicodedata
import zipfile
import zlib
from pathlib import Path

from grader.batch.walk import SourceLimits, Skipped, is_system
from grader.errors import UsageError
from grader.model.text import human_size

#: what reading a damaged or unsupported member raises
_DAMAGED: tuple[type[BaseException], ...] = (zipfile.BadZipFile, EOFError, OSError, ValueError,
                                             NotImplementedError, RuntimeError, zlib.error)
try:
    import lzma
    _DAMAGED += (lzma.LZMAError,)
except ImportError:  # a Python built without lzma cannot open such members anyway
    pass


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
            system = next((i for i, p in enumerate(parts) if is_system(p)), None)
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
        tops = {p[depth] for p in paths if len(p) > depth and not any(is_system(x) for x in p[: depth + 1])}
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
