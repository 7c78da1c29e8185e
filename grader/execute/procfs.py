"""Reading /proc: one process's fields, the process table, the tree below a process; small control files.

Every read goes through ``PROC`` at call time (tests point it at a fake tree), and none raises:
a process that is gone, or a file that cannot be read, reads as nothing. ``read_file`` and
``write_file`` serve the cgroup file system too. Without ``/proc`` (macOS) ``have_proc`` is
False and the callers fall back on what they can learn otherwise.

Standard library only; nothing here imports torch.
"""
from __future__ import annotations

import os
import signal
from typing import Iterable, NamedTuple

#: The procfs root. Read at call time, here and in every module that needs it (``procfs.PROC``).
PROC = "/proc"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ProcessStat(NamedTuple):
    """The fields of /proc/<pid>/stat that tracking needs."""

    ppid: int
    pgrp: int
    sid: int
    start: int  # start time in clock ticks since boot: (pid, start) names one process
    live: bool  # not a zombie (or a zombie leader whose other threads still run)


def have_proc() -> bool:
    """Whether /proc is there to read (not on macOS)."""
    return os.path.isdir(f"{PROC}/self/task")


def read_file(path: str, limit: int = 1 << 16) -> bytes | None:
    """A small file's bytes (procfs, cgroupfs), or None when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def write_file(path: str, data: bytes) -> bool:
    """Write ``data`` to a control file; False (never an exception) when it fails."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, data)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def process_stat(pid: int) -> ProcessStat | None:
    """Parse /proc/<pid>/stat (None when the process is gone)."""
    data = read_file(f"{PROC}/{pid}/stat", 4096)
    if not data:
        return None
    fields = data.rpartition(b")")[2].split()  # the command name may hold spaces and ')'
    try:
        state, ppid, pgrp, sid, start = fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None
    live = state not in (b"Z", b"X", b"x")
    if not live:  # a leader that called pthread_exit is a zombie while its threads run on
        try:
            live = len(os.listdir(f"{PROC}/{pid}/task")) > 1
        except OSError:
            live = False
    return ProcessStat(ppid, pgrp, sid, start, live)


def process_table() -> dict[int, ProcessStat]:
    """Every process's stat, from one pass over /proc."""
    table: dict[int, ProcessStat] = {}
    try:
        names = os.listdir(PROC)
    except OSError:
        return table
    for name in names:
        if name.isdigit():
            st = process_stat(int(name))
            if st is not None:
                table[int(name)] = st
    return table


def ancestors(table: dict[int, ProcessStat] | None = None) -> set[int]:
    """This process and its ancestors: never part of any worker's group."""
    me = os.getpid()
    found = {me}
    pid = me
    while pid > 1:
        st = table.get(pid) if table is not None else process_stat(pid)
        if st is None or st.ppid in found:
            break
        pid = st.ppid
        found.add(pid)
    return found


def has_uid(pid: int, uid: int) -> bool:
    """Whether any of the process's uids (real, effective, saved, fs) is ``uid``.

    /proc/<pid>/status, not the owner of /proc/<pid>: a process that changed uid or
    called prctl(PR_SET_DUMPABLE, 0) shows root as the owner of its /proc folder.
    """
    data = read_file(f"{PROC}/{pid}/status")
    if not data:
        return False
    for line in data.split(b"\n"):
        if line.startswith(b"Uid:"):
            return str(uid).encode() in line.split()[1:]
    return False


def has_env(pid: int, entry: bytes) -> bool:
    """Whether the process's initial environment holds exactly ``entry`` (NAME=value)."""
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:
        return False


def resident(pid: int) -> int:
    """Resident bytes of one process (/proc/<pid>/statm), 0 when it is gone."""
    data = read_file(f"{PROC}/{pid}/statm", 256)
    try:
        return int(data.split()[1]) * _PAGE if data else 0
    except (IndexError, ValueError):
        return 0


def proportional(pid: int) -> int:
    """Proportional set size of one process (its share of every page it maps), else its RSS; 0 when gone.

    Pages shared after a fork are split between the processes that share them, so the sum
    over a group is what the group really holds. About 4 ms for a process that imported
    torch: read only to confirm a cheap ``resident`` sum that looks over a limit.
    """
    data = read_file(f"{PROC}/{pid}/smaps_rollup", 4096)
    if data:
        for line in data.split(b"\n"):
            if line.startswith(b"Pss:"):
                try:
                    return int(line.split()[1]) * 1024
                except (IndexError, ValueError):
                    break
    return resident(pid)


def descendants(roots: Iterable[int], table: dict[int, ProcessStat], blocked: set[int]) -> set[int]:
    """``roots`` and all their descendants, not walking through ``blocked``; linear in the table."""
    children: dict[int, list[int]] = {}
    for pid, st in table.items():
        children.setdefault(st.ppid, []).append(pid)
    found = set(roots) - blocked
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found and child not in blocked:
                found.add(child)
                todo.append(child)
    return found


def send_signal(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` (SIGKILL) to one process; a process that is gone (or not ours) is no error."""
    try:
        os.kill(pid, sig)
    except OSError:
        pass
