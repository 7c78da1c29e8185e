"""Folders that hostile code wrote: removed (``remove_tree``), measured (``folder_usage``, ``folder_bytes``),
and, for a worker's own uid, found in the shared scratch folders (``owned_entries``, ``owned_bytes``,
``remove_owned``).

Every walk holds one directory file descriptor at a time: no recursion, no path longer than
one name, no symlink ever followed, no other mount entered.

Standard library only; nothing here imports torch.
"""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from grader.execute import procfs
from grader.execute.procfs import read_file

#: What ``folder_bytes`` returns for a tree with more than ``max_entries`` entries:
#: larger than any sensible disk limit, so "too many entries" reads as "over the limit".
TOO_MANY_ENTRIES = 1 << 62

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)


@dataclass
class _Level:
    """One folder on the path from the top to where the walk is."""

    name: str  # its name in its parent
    pending: list[str]  # subfolders still to visit
    scans: int = 1


class _Cursor:
    """One open folder of a tree, moved down by name and back up through '..'.

    Holds one descriptor (two for an instant while it moves), so any depth is fine with
    a small RLIMIT_NOFILE; never follows a symlink, never crosses into another mount.
    """

    def __init__(self, fd: int):
        self.fd = fd
        st = os.fstat(fd)
        self.dev = st.st_dev
        self.mount = _mount_id(fd)
        self.path: list[tuple[int, int]] = [(st.st_dev, st.st_ino)]

    def down(self, name: str, fix: bool) -> bool:
        """Enter subfolder ``name`` (making it enterable first when ``fix``)."""
        fd = _open_dir(self.fd, name, fix)
        if fd is None:
            return False
        st = os.fstat(fd)
        if st.st_dev != self.dev or _mount_id(fd) != self.mount:
            os.close(fd)  # a mount point inside the tree: leave it alone
            return False
        os.close(self.fd)
        self.fd = fd
        self.path.append((st.st_dev, st.st_ino))
        return True

    def up(self) -> bool:
        """Back to the parent; False (cursor unusable) when it is not the folder we came from."""
        fd = os.open("..", _DIR_FLAGS, dir_fd=self.fd)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self.path[-2]:
            os.close(fd)  # the tree was moved while we walked it: stop rather than wander
            return False
        os.close(self.fd)
        self.fd = fd
        self.path.pop()
        return True

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _mount_id(fd: int) -> int | None:
    """The mount a descriptor lies on (/proc/self/fdinfo), None where unknown."""
    data = read_file(f"{procfs.PROC}/self/fdinfo/{fd}", 4096)
    for line in (data or b"").split(b"\n"):
        if line.startswith(b"mnt_id:"):
            return int(line.split()[1])
    return None


def _open_dir(dir_fd: int, name: str, fix: bool) -> int | None:
    """Open subfolder ``name`` without following symlinks; when ``fix``, chmod 0o700 what
    stands in the way (the parent, then the folder itself). None when it cannot be opened."""
    for attempt in range(3):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except PermissionError:
            if not fix or attempt == 2:
                return None
            if attempt == 0:
                _fchmod(dir_fd)
            else:
                _chmod_dir_nofollow(dir_fd, name)
        except OSError:
            return None  # gone, not a folder (a symlink, a file), or too deep for the kernel
    return None


def _fchmod(fd: int) -> None:
    try:
        os.fchmod(fd, 0o700)
    except OSError:
        pass


def _chmod_dir_nofollow(dir_fd: int, name: str) -> None:
    """chmod 0o700 the folder ``name``, never a symlink's target."""
    o_path = getattr(os, "O_PATH", 0)
    try:
        if o_path and os.path.isdir(f"{procfs.PROC}/self/fd"):
            fd = os.open(name, o_path | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                os.chmod(f"{procfs.PROC}/self/fd/{fd}", 0o700)  # the inode itself, through procfs
            finally:
                os.close(fd)
        else:
            os.chmod(name, 0o700, dir_fd=dir_fd, follow_symlinks=False)
    except (OSError, NotImplementedError):
        pass


def _clear(fd: int, deadline: float | None = None) -> list[str]:
    """Unlink every non-folder in the open folder (until ``deadline``); the names of its subfolders."""
    subdirs = []
    fixed = False
    try:
        with os.scandir(fd) as entries:
            for n, entry in enumerate(entries):
                if deadline is not None and not n % 256 and time.monotonic() > deadline:
                    break
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    subdirs.append(entry.name)
                    continue
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except IsADirectoryError:
                    subdirs.append(entry.name)
                except PermissionError:
                    if not fixed:  # a folder we may read but not write: fix it once, retry
                        fixed = True
                        _fchmod(fd)
                        _unlink_quiet(fd, entry.name)
                except OSError:
                    pass  # gone already, or immutable: left for the caller to see
    except OSError:
        _fchmod(fd)  # unreadable although open (mode 0o300 on some systems): next scan may work
    return subdirs


def _unlink_quiet(fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=fd)
    except OSError:
        pass


def remove_tree(path: str | os.PathLike[str], deadline: float | None = None) -> bool:
    """Remove a folder tree that hostile code wrote. Never raises, never follows a symlink.

    Iterative and descriptor-based (depth and PATH_MAX do not matter; a handful of
    descriptors at most), linear in the number of entries (each folder is read once,
    plus one re-read when it is done), fixing the modes of folders that cannot be read,
    entered or written. ``path`` itself may be a file or a symlink (then only the link
    goes). Never enters another mount, ``path`` itself included (a mount point is left
    alone, whatever it holds). What cannot be removed (immutable files, other mounts, a
    tree moved while it is walked) is left in place; so is the rest once ``time.monotonic()``
    passes ``deadline``. True when ``path`` is gone. The caller should kill the tree's writers first.
    """
    try:
        if os.fspath(path):  # never "" (abspath would make it the current folder)
            _remove_tree(os.path.abspath(os.fspath(path)), deadline)
    except Exception:  # noqa: BLE001 - removal must never raise
        pass
    return not os.path.lexists(path)


def _remove_tree(path: str, deadline: float | None) -> None:
    parent, name = os.path.split(path.rstrip("/"))
    if not name:
        return  # never "/"
    try:
        st = os.lstat(path)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode):
        _unlink_path(path)  # a file, or a symlink: the link goes, its target stays
        return
    top_parent = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _open_dir(top_parent, name, fix=False)
        if fd is None:
            _chmod_dir_nofollow(top_parent, name)  # the top itself may be fixed, never its parent
            fd = _open_dir(top_parent, name, fix=False)
        if fd is None:
            return
        cursor = _Cursor(fd)
        try:
            if os.fstat(top_parent).st_dev != cursor.dev or _mount_id(top_parent) != cursor.mount:
                return  # a mount point (a read-only environment bound into a sandbox's /tmp): not ours to empty
            if _empty_walk(cursor, deadline):
                os.rmdir(name, dir_fd=top_parent)
        finally:
            cursor.close()
    except OSError:
        pass
    finally:
        os.close(top_parent)


def _unlink_path(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _empty_walk(cursor: _Cursor, deadline: float | None = None) -> bool:
    """Empty the folder the cursor is on, depth first; True when the walk got back to it (in time)."""
    levels = [_Level("", _clear(cursor.fd, deadline))]
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return False
        level = levels[-1]
        if level.pending:
            name = level.pending.pop()
            if cursor.down(name, fix=True):
                levels.append(_Level(name, _clear(cursor.fd, deadline)))
            else:  # replaced by a file or a link since the scan, or a mount point (rmdir: EBUSY)
                _unlink_quiet(cursor.fd, name)
                _rmdir_at(cursor.fd, name)
            continue
        if level.scans < 2:  # done: one more look for what a racing writer (or a flaky fs) left
            level.scans += 1
            level.pending = _clear(cursor.fd, deadline)
            if level.pending:
                continue
        if len(levels) == 1:
            return True
        if not cursor.up():
            return False
        levels.pop()
        if not _rmdir_at(cursor.fd, level.name):
            _fchmod(cursor.fd)  # a parent we may enter but not write
            _rmdir_at(cursor.fd, level.name)  # still not empty: what could not go stays


def _rmdir_at(fd: int, name: str) -> bool:
    try:
        os.rmdir(name, dir_fd=fd)
        return True
    except OSError:
        return False


class FolderUsage(NamedTuple):
    """What ``folder_usage`` counted."""

    bytes: int  # non-folders, each max(st_size, allocated blocks); a hard-linked file once
    entries: int  # entries seen (files, folders, links, ...)
    truncated: bool  # stopped at max_entries: the real figures are larger


def folder_usage(path: str | os.PathLike[str], max_entries: int = 100_000) -> FolderUsage:
    """The size of the files under a folder, walked like ``remove_tree`` but read-only.

    A file counts as the larger of its apparent size and its allocated blocks, so
    neither sparse files nor many tiny files slip under a limit. Folders that cannot be
    read are skipped (nothing is chmodded). Stops after ``max_entries`` entries with
    ``truncated=True``. Never raises; a missing folder or a symlink counts 0.
    """
    seen: set[tuple[int, int]] = set()
    try:
        cursor = _Cursor(os.open(os.fspath(path), _DIR_FLAGS))
    except (OSError, TypeError, ValueError):
        return FolderUsage(0, 0, False)
    total = entries = 0
    try:
        subdirs, entries, total, truncated = _measure(cursor.fd, seen, max_entries)
        levels = [subdirs]
        while not truncated:
            if levels[-1]:
                if cursor.down(levels[-1].pop(), fix=False):
                    subdirs, n, size, truncated = _measure(cursor.fd, seen, max_entries - entries)
                    entries, total = entries + n, total + size
                    levels.append(subdirs)
                continue
            if len(levels) == 1 or not cursor.up():
                break
            levels.pop()
    except OSError:
        truncated = False
    finally:
        cursor.close()
    return FolderUsage(total, entries, truncated)


def _measure(fd: int, seen: set[tuple[int, int]], budget: int) -> tuple[list[str], int, int, bool]:
    """One folder: (its subfolders, entries seen, bytes of its non-folders, over budget)."""
    subdirs: list[str] = []
    n = size = 0
    try:
        with os.scandir(fd) as it:
            for entry in it:
                if n >= budget:
                    return subdirs, n, size, True
                n += 1
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(entry.name)
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                size += max(st.st_size, getattr(st, "st_blocks", 0) * 512)
    except OSError:
        pass
    return subdirs, n, size, False


def folder_bytes(path: str | os.PathLike[str], max_entries: int = 100_000) -> int:
    """Bytes of the files under ``path``, or ``TOO_MANY_ENTRIES`` (larger than any
    limit) when it holds more than ``max_entries`` entries. Never raises."""
    usage = folder_usage(path, max_entries)
    return TOO_MANY_ENTRIES if usage.truncated else usage.bytes


#: Folders every user may write to: without a sandbox, a worker's own user can leave files there.
SHARED_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")


def owned_entries(uid: int, folders: Iterable[str] = SHARED_SCRATCH) -> list[str]:
    """The top-level entries of the shared scratch folders that ``uid`` owns (a worker's own
    user: nothing else has that uid). Never raises."""
    found = []
    for folder in folders:
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        if entry.stat(follow_symlinks=False).st_uid == uid:
                            found.append(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue
    return found


def owned_bytes(uid: int, max_entries: int = 100_000) -> int:
    """Bytes ``uid`` holds in the shared scratch folders (``TOO_MANY_ENTRIES`` past ``max_entries``)."""
    total = 0
    for path in owned_entries(uid):
        total += folder_bytes(path, max_entries) if os.path.isdir(path) and not os.path.islink(path) \
            else _file_bytes(path)
    return total


def remove_owned(uid: int) -> None:
    """Remove what ``uid`` left in the shared scratch folders. Never raises."""
    for path in owned_entries(uid):
        remove_tree(path)


def _file_bytes(path: str) -> int:
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    return max(st.st_size, getattr(st, "st_blocks", 0) * 512)

