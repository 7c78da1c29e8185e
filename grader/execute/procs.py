"""Every process of one worker, found, measured and killed together; hostile folders removed.

A submission can fork, double-fork, ``setsid``, re-exec itself with an empty
environment and allocate memory in several processes at once. ``ProcessGroup`` keeps
hold of all of them:

``cgroup`` kind
    The worker joins a cgroup v2 child of our own cgroup (``grader-<token>``) between
    fork and exec. Every process it starts stays in it, whatever it does (unless it can
    write to the cgroup file system itself, i.e. runs as root). ``cgroup.kill`` kills
    them all at once; ``memory.max`` / ``pids.max`` apply when the parent delegates the
    memory and pids controllers, ``memory.current`` measures them.
``tracking`` kind (no writable cgroup v2)
    One scan of ``/proc`` per call: the descendants of the worker, the members of its
    session, the processes carrying ``GRADER_WORKER_TOKEN=<token>`` in their
    environment and, when the worker runs under a uid of its own (``fresh_uid``), every
    process of that uid. A process once found stays found (by pid and start time), even
    after it re-execs with an empty environment. Without ``/proc`` (macOS) only the
    worker's process group is known.

``remove_tree`` and ``folder_usage``/``folder_bytes`` walk a tree that hostile code wrote
with one directory file descriptor at a time: no recursion, no path longer than one
name, no symlink ever followed.

Standard library only; nothing here imports torch.
"""
from __future__ import annotations

import os
import secrets
import signal
import stat
import threading
import time
from dataclasses import dataclass
from typing import Iterable, NamedTuple

TOKEN_VAR = "GRADER_WORKER_TOKEN"
#: Where fresh uids come from: far above any real account or container mapping.
UID_RANGE = (10_000_000, 2_000_000_000)
#: How long ``kill`` keeps killing, and ``close`` keeps trying to remove the cgroup.
KILL_SECONDS = 2.0
#: What ``folder_bytes`` returns for a tree with more than ``max_entries`` entries:
#: larger than any sensible disk limit, so "too many entries" reads as "over the limit".
TOO_MANY_ENTRIES = 1 << 62

_PROC = "/proc"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_issued_uids: set[int] = set()
_uid_lock = threading.Lock()


# --------------------------------------------------------------------------- /proc


class _Stat(NamedTuple):
    """The fields of /proc/<pid>/stat that tracking needs."""

    ppid: int
    pgrp: int
    sid: int
    start: int  # start time in clock ticks since boot: (pid, start) names one process
    live: bool  # not a zombie (or a zombie leader whose other threads still run)


def _have_proc() -> bool:
    return os.path.isdir(f"{_PROC}/self/task")


def _read(path: str, limit: int = 1 << 16) -> bytes | None:
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


def _write(path: str, data: bytes) -> bool:
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


def _stat(pid: int) -> _Stat | None:
    """Parse /proc/<pid>/stat (None when the process is gone)."""
    data = _read(f"{_PROC}/{pid}/stat", 4096)
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
            live = len(os.listdir(f"{_PROC}/{pid}/task")) > 1
        except OSError:
            live = False
    return _Stat(ppid, pgrp, sid, start, live)


def _process_table() -> dict[int, _Stat]:
    """Every process's stat, from one pass over /proc."""
    table: dict[int, _Stat] = {}
    try:
        names = os.listdir(_PROC)
    except OSError:
        return table
    for name in names:
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                table[int(name)] = st
    return table


def _ancestors(table: dict[int, _Stat] | None = None) -> set[int]:
    """This process and its ancestors: never part of any worker's group."""
    me = os.getpid()
    found = {me}
    pid = me
    while pid > 1:
        st = table.get(pid) if table is not None else _stat(pid)
        if st is None or st.ppid in found:
            break
        pid = st.ppid
        found.add(pid)
    return found


def _has_uid(pid: int, uid: int) -> bool:
    """Whether any of the process's uids (real, effective, saved, fs) is ``uid``.

    /proc/<pid>/status, not the owner of /proc/<pid>: a process that changed uid or
    called prctl(PR_SET_DUMPABLE, 0) shows root as the owner of its /proc folder.
    """
    data = _read(f"{_PROC}/{pid}/status")
    if not data:
        return False
    for line in data.split(b"\n"):
        if line.startswith(b"Uid:"):
            return str(uid).encode() in line.split()[1:]
    return False


def _has_env(pid: int, entry: bytes) -> bool:
    """Whether the process's initial environment holds exactly ``entry`` (NAME=value)."""
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:
        return False


def _resident(pid: int) -> int:
    """Resident bytes of one process (/proc/<pid>/statm), 0 when it is gone."""
    data = _read(f"{_PROC}/{pid}/statm", 256)
    try:
        return int(data.split()[1]) * _PAGE if data else 0
    except (IndexError, ValueError):
        return 0


def _proportional(pid: int) -> int:
    """Proportional set size of one process (its share of every page it maps), else its RSS; 0 when gone.

    Pages shared after a fork are split between the processes that share them, so the sum
    over a group is what the group really holds. About 4 ms for a process that imported
    torch: read only to confirm a cheap ``_resident`` sum that looks over a limit.
    """
    data = _read(f"{_PROC}/{pid}/smaps_rollup", 4096)
    if data:
        for line in data.split(b"\n"):
            if line.startswith(b"Pss:"):
                try:
                    return int(line.split()[1]) * 1024
                except (IndexError, ValueError):
                    break
    return _resident(pid)


def _descendants(roots: Iterable[int], table: dict[int, _Stat], blocked: set[int]) -> set[int]:
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


def _signal(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


# --------------------------------------------------------------------------- cgroup v2


def _own_cgroup2_dirs() -> list[str]:
    """Where our own cgroup v2 appears in the file system (every cgroup2 mount that shows it)."""
    data = _read(f"{_PROC}/self/cgroup")
    rel = None
    for line in (data or b"").decode(errors="replace").splitlines():
        if line.startswith("0::"):
            rel = line[3:].strip()
    if not rel or not rel.startswith("/") or "/.." in rel or rel.endswith(" (deleted)"):
        return []
    mounts = _read(f"{_PROC}/self/mountinfo", 1 << 20) or b""
    dirs = []
    for line in mounts.decode(errors="replace").splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or not right.startswith("cgroup2 ") or len(fields) < 5:
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if root == "/":
            dirs.append(os.path.join(point, rel.lstrip("/")))
        elif rel == root or rel.startswith(root + "/"):
            dirs.append(os.path.join(point, rel[len(root):].lstrip("/")))
    return [d.rstrip("/") or "/" for d in dirs]


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (\\040 for a space)."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")


def _enable_controllers(parent: str, wanted: list[str]) -> None:
    """Best effort: enable ``wanted`` controllers for ``parent``'s children.

    Fails (EBUSY, ignored) when ``parent`` holds processes and is not a root: the
    cgroup v2 rule "no internal processes". Then limits are simply not enforced.
    """
    available = (_read(os.path.join(parent, "cgroup.controllers")) or b"").split()
    enabled = (_read(os.path.join(parent, "cgroup.subtree_control")) or b"").split()
    for name in wanted:
        if name.encode() in available and name.encode() not in enabled:
            _write(os.path.join(parent, "cgroup.subtree_control"), f"+{name}".encode())


def _make_cgroup(token: str, memory_bytes: int | None, max_pids: int | None) -> tuple[str, list[str]] | None:
    """Create ``grader-<token>`` under our own cgroup v2: (its folder, limits enforced), or None."""
    safe = "".join(c for c in token if c.isalnum() or c in "-_")[:64] or secrets.token_hex(8)
    for parent in _own_cgroup2_dirs():
        procs = os.path.join(parent, "cgroup.procs")
        if not (os.path.isdir(parent) and os.access(parent, os.W_OK) and os.access(procs, os.W_OK)):
            continue
        wanted = (["memory"] if memory_bytes else []) + (["pids"] if max_pids else [])
        if wanted:
            _enable_controllers(parent, wanted)
        for name in (f"grader-{safe}", f"grader-{safe}-{secrets.token_hex(4)}"):
            path = os.path.join(parent, name)
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                continue
            except OSError:
                break
            if not os.access(os.path.join(path, "cgroup.procs"), os.W_OK):
                _rmdir_quiet(path)
                break
            return path, _set_limits(path, memory_bytes, max_pids)
    return None


def _set_limits(path: str, memory_bytes: int | None, max_pids: int | None) -> list[str]:
    """Write the limits whose files exist in the cgroup; the names of those that took."""
    enforced = []
    if memory_bytes and _write(os.path.join(path, "memory.max"), str(int(memory_bytes)).encode()):
        enforced.append("memory")
        _write(os.path.join(path, "memory.swap.max"), b"0")  # no escaping the limit into swap
        _write(os.path.join(path, "memory.oom.group"), b"1")  # out of memory: the whole worker goes
    if max_pids and _write(os.path.join(path, "pids.max"), str(int(max_pids)).encode()):
        enforced.append("pids")
    return enforced


def _cgroup_tree(path: str) -> list[str]:
    """``path`` and every cgroup below it (a root worker may make its own), deepest last."""
    found, todo = [], [path]
    while todo:
        here = todo.pop()
        found.append(here)
        try:
            with os.scandir(here) as it:
                todo.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
        except OSError:
            pass
    return found


def _rmdir_quiet(path: str) -> bool:
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- cgroup v1 memory


def _memory_v1_dir() -> str | None:
    """Our own folder in a cgroup v1 memory hierarchy (a hybrid host), if one is mounted."""
    own = None
    for line in (_read(f"{_PROC}/self/cgroup") or b"").decode(errors="replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "memory" in parts[1].split(","):
            own = parts[2]
    if own is None:
        return None
    for line in (_read(f"{_PROC}/self/mountinfo", 1 << 20) or b"").decode(errors="replace").splitlines():
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) >= 5 and len(extra) >= 3 and extra[0] == "cgroup" and "memory" in extra[2].split(","):
            root, mount = _unescape(fields[3]), _unescape(fields[4])
            if own == root or own.startswith(root.rstrip("/") + "/"):
                return os.path.join(mount, own[len(root):].lstrip("/"))
    return None


def _make_memory_v1(token: str, memory_bytes: int) -> str | None:
    """A cgroup v1 memory child that caps the group's memory (swap included), or None."""
    parent = _memory_v1_dir()
    if parent is None or not os.access(parent, os.W_OK):
        return None
    path = os.path.join(parent, f"grader-{token}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    if not _write(os.path.join(path, "memory.limit_in_bytes"), str(memory_bytes).encode()):
        _rmdir_quiet(path)
        return None
    _write(os.path.join(path, "memory.memsw.limit_in_bytes"), str(memory_bytes).encode())  # no swapping past it
    return path


# --------------------------------------------------------------------------- ProcessGroup


class ProcessGroup:
    """Every process of one worker: found reliably, measured, killed together.

    Use: ``group = ProcessGroup.create(token, uid=...)``; start the worker with
    ``preexec_fn`` calling ``group.preexec()`` first (before dropping privileges), and
    ``start_new_session=True``; then ``group.attach(proc.pid)``. Poll ``resident_bytes()``;
    end with ``close()``. Methods are safe to call from several threads.
    """

    def __init__(self, token: str, uid: int | None = None, cgroup: str | None = None,
                 enforced: Iterable[str] = (), memory_v1: str | None = None):
        self.token = token
        self.uid = uid
        self._cgroup = cgroup
        self._join = os.path.join(cgroup, "cgroup.procs") if cgroup else None
        #: a cgroup v1 memory child that caps the group's memory, where v2 cannot (a hybrid host)
        self._memory_v1 = memory_v1
        self.enforced: tuple[str, ...] = tuple(enforced) + (("memory",) if memory_v1 else ())
        self._kind = "cgroup" if cgroup else "tracking"
        self._needle = f"{TOKEN_VAR}={token}".encode()
        self._proc = _have_proc()
        self._pid: int | None = None
        self._start: int | None = None  # the attached pid's start time
        self._sid: int | None = None  # its session, while that session may still have members
        self._members: dict[int, int] = {}  # pid -> start time of every process found so far
        self._strangers: dict[int, int] = {}  # pid -> start time: seen, carries neither token nor uid
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def create(cls, token: str, uid: int | None = None, memory_bytes: int | None = None,
               max_pids: int | None = None, use_cgroup: bool = True) -> "ProcessGroup":
        """A group for one worker: a cgroup when one can be made here, else tracking.

        ``memory_bytes`` and ``max_pids`` become ``memory.max`` and ``pids.max`` when the
        cgroup has those files (``enforced`` says which did). ``use_cgroup=False`` forces
        tracking. Never raises for lack of cgroups, permissions or /proc.
        """
        made = memory_v1 = None
        if use_cgroup and _have_proc():
            try:
                made = _make_cgroup(token, memory_bytes, max_pids)
                if memory_bytes and "memory" not in (made[1] if made else ()):
                    memory_v1 = _make_memory_v1(token, memory_bytes)
            except Exception:  # noqa: BLE001 - an odd cgroup file system: track instead
                made = None
        if made is None:
            return cls(token, uid, memory_v1=memory_v1)
        return cls(token, uid, cgroup=made[0], enforced=made[1], memory_v1=memory_v1)

    # -- what it is

    @property
    def kind(self) -> str:
        """``"cgroup"`` or ``"tracking"`` (stays what it was after ``close``)."""
        return self._kind

    @property
    def cgroup_path(self) -> str | None:
        """The cgroup folder (None when tracking)."""
        return self._cgroup

    def describe(self) -> str:
        """One line for a report's isolation line."""
        if self._kind == "cgroup":
            limits = " and ".join({"memory": "memory", "pids": "process count"}[e] for e in self.enforced)
            return "all its processes tracked in a cgroup" + (f" that limits their total {limits}" if limits else "")
        if not self._proc:
            return "processes tracked by process group only (no /proc)"
        return "processes tracked by session, tree and token" + (" and by a uid of their own" if self.uid is not None else "")

    # -- starting

    def preexec(self) -> None:
        """In the child, between fork and exec: join the cgroup(s) (open and write only)."""
        for join in (self._join, os.path.join(self._memory_v1, "cgroup.procs") if self._memory_v1 else None):
            if join is None:
                continue
            try:
                fd = os.open(join, os.O_WRONLY)
                try:
                    os.write(fd, b"0")  # "0": the writing process itself, whatever its pid namespace
                finally:
                    os.close(fd)
            except OSError:
                pass  # attach() notices and falls back to tracking

    def adopt(self, pid: int) -> None:
        """Move a process someone else started (a zygote's child, still waiting for its job)
        into the group's cgroup(s), then ``attach`` it. It must not have started anything yet:
        what it started before would stay outside."""
        for procs in (self._join, os.path.join(self._memory_v1, "cgroup.procs") if self._memory_v1 else None):
            if procs is not None:
                _write(procs, str(pid).encode())
        self.attach(pid)

    def attach(self, pid: int) -> None:
        """Record the worker (the session leader ``Popen`` just started).

        Its session counts as the group's only when it leads one (``start_new_session``):
        never the grader's own. A worker that did not join the cgroup turns the group
        into tracking.
        """
        with self._lock:
            self._pid = pid
            st = _stat(pid) if self._proc else None
            if st is not None:
                self._start = st.start
                self._members[pid] = st.start
                if st.sid == pid:
                    self._sid = pid
            if self._cgroup and pid not in self._cgroup_pids():
                self._drop_cgroup()  # it did not join (preexec not used, or refused): track instead
                self._kind, self.enforced = "tracking", ()

    # -- finding and measuring

    def pids(self) -> set[int]:
        """Every live process of the worker (never this process nor its ancestors)."""
        with self._lock:
            if self._cgroup:  # zombies stay members until reaped: they hold nothing and can do nothing
                return {pid for pid in self._cgroup_pids() - _ancestors() if (st := _stat(pid)) and st.live}
            if not self._proc:  # the worker itself; its process group cannot be listed
                return {self._pid} if self._pid is not None and self._alive_without_proc() else set()
            return self._scan()

    def resident_bytes(self) -> int:
        """The group's memory: ``memory.current`` where the memory controller applies,
        else the resident set sizes of its processes added up (shared pages counted in
        each process that maps them); 0 when unknown (no /proc)."""
        current = self._memory_current()
        return current if current is not None else sum(_resident(pid) for pid in self.pids())

    def proportional_bytes(self) -> int:
        """Like ``resident_bytes``, but pages shared between the group's processes (after a fork)
        are counted once, split between them: slower, so use it to confirm a limit is exceeded."""
        current = self._memory_current()
        return current if current is not None else sum(_proportional(pid) for pid in self.pids())

    def _memory_current(self) -> int | None:
        """The cgroup v2 memory controller's own count, where it applies."""
        current = _read(os.path.join(self._cgroup, "memory.current"), 64) if self._cgroup else None
        return int(current) if current and current.strip().isdigit() else None

    def oom_kills(self) -> int:
        """How many processes the group's memory limit killed (0 when unknown)."""
        for path in (os.path.join(self._cgroup, "memory.events") if self._cgroup else None,
                     os.path.join(self._memory_v1, "memory.oom_control") if self._memory_v1 else None):
            data = _read(path) if path else None
            for line in (data or b"").split(b"\n"):
                if line.startswith(b"oom_kill ") and line.split()[1].isdigit():
                    return int(line.split()[1])
        return 0

    # -- ending

    def kill(self) -> None:
        """SIGKILL every process of the group, until none is left or ``KILL_SECONDS`` pass."""
        try:
            self._kill()
        except Exception:  # noqa: BLE001 - cleanup must never raise
            pass

    def close(self) -> None:
        """Kill everything, then remove the cgroup. Idempotent; never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.kill()
        try:
            self._drop_cgroup()
            if self._memory_v1:
                deadline = time.monotonic() + KILL_SECONDS
                while not _rmdir_quiet(self._memory_v1) and time.monotonic() < deadline:
                    time.sleep(0.02)  # its last members are still being reaped
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals

    def _kill(self) -> None:
        deadline = time.monotonic() + KILL_SECONDS
        if self._cgroup:
            for group in reversed(_cgroup_tree(self._cgroup)):
                _write(os.path.join(group, "cgroup.kill"), b"1")
        elif not self._proc:  # no /proc: nothing to learn by looking again (a zombie looks alive)
            self._killpg()
            if self._pid is not None:
                _signal(self._pid)
            return
        pause = 0.005
        while True:
            left = self.pids()
            self._killpg()
            if not left:
                return
            for pid in left:
                _signal(pid)
            if time.monotonic() > deadline:
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _killpg(self) -> None:
        """Signal the worker's process group, but only while that number is surely still ours."""
        if self._pid is None:
            return
        if self._proc:
            st = _stat(self._pid)
            leader_alive = st is not None and st.start == self._start
            # tracking: members of its session were seen in the last scan, so the number is still theirs
            if not leader_alive and (self._cgroup or self._sid is None):
                return
        try:
            os.killpg(self._pid, signal.SIGKILL)
        except OSError:
            pass

    def _alive_without_proc(self) -> bool:
        try:
            os.kill(self._pid, 0)  # type: ignore[arg-type]
            return True
        except PermissionError:
            return True
        except OSError:
            return False

    def _cgroup_pids(self) -> set[int]:
        found: set[int] = set()
        for group in _cgroup_tree(self._cgroup):  # type: ignore[arg-type]
            data = _read(os.path.join(group, "cgroup.procs"), 1 << 22) or b""
            found.update(int(p) for p in data.split() if p.isdigit() and int(p) > 0)
        return found

    def _drop_cgroup(self) -> None:
        """Remove the cgroup (and any below it), retrying while members are still dying."""
        path = self._cgroup
        if not path:
            return
        deadline = time.monotonic() + KILL_SECONDS
        while True:
            groups = _cgroup_tree(path)
            for group in reversed(groups):
                _write(os.path.join(group, "cgroup.kill"), b"1")
                _rmdir_quiet(group)
            if not os.path.exists(path) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self._cgroup = self._join = None

    def _scan(self) -> set[int]:
        """Tracking: one pass over /proc; everything found joins ``_members``."""
        table = _process_table()
        mine = _ancestors(table)
        seeds = []
        session_seen = False
        for pid, st in table.items():
            if pid in mine:
                continue
            if self._members.get(pid) == st.start:
                seeds.append(pid)
            elif self._sid is not None and st.sid == self._sid:
                seeds.append(pid)
            elif self._strangers.get(pid) != st.start:
                if self._tagged(pid):
                    seeds.append(pid)
                else:
                    self._strangers[pid] = st.start
            if self._sid is not None and st.sid == self._sid:
                session_seen = True
        if self._sid is not None and not session_seen:
            self._sid = None  # the session is over: its number may be handed out again
        found = _descendants(seeds, table, mine)
        self._members = {pid: table[pid].start for pid in found}
        self._strangers = {p: s for p, s in self._strangers.items() if p in table and table[p].start == s}
        return {pid for pid in found if table[pid].live}

    def _tagged(self, pid: int) -> bool:
        """Whether a process seen for the first time carries our token or our uid."""
        return (self.uid is not None and _has_uid(pid, self.uid)) or _has_env(pid, self._needle)


# --------------------------------------------------------------------------- fresh uid


def fresh_uid() -> int | None:
    """An unused numeric uid (also free as a gid) for one worker; None when not root.

    Random in ``UID_RANGE``, inside this user namespace's uid and gid maps, not in
    /etc/passwd or /etc/group, used by no running process and not handed out before by
    this process. With it, RLIMIT_NPROC and kill-by-uid count only that worker.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    try:
        return _pick_uid()
    except (OSError, ValueError):
        return None


def _pick_uid() -> int | None:
    ranges = _intersect(_id_map("uid_map"), _id_map("gid_map"), [UID_RANGE])
    total = sum(hi - lo for lo, hi in ranges)
    if total <= 0:
        return None
    listed = _listed_ids("/etc/passwd") | _listed_ids("/etc/group")
    with _uid_lock:
        used = listed | _recent_running_ids()
        for _ in range(100):
            pick, uid = secrets.randbelow(total), -1
            for lo, hi in ranges:
                if pick < hi - lo:
                    uid = lo + pick
                    break
                pick -= hi - lo
            if uid not in used and uid not in _issued_uids:
                _issued_uids.add(uid)
                return uid
    return None


def _id_map(name: str) -> list[tuple[int, int]]:
    """The id ranges valid in this user namespace, as [lo, hi) (all ids when unknown)."""
    data = _read(f"{_PROC}/self/{name}")
    if data is None:
        return [(0, 1 << 32)]
    ranges = []
    for line in data.decode().splitlines():
        parts = line.split()
        if len(parts) == 3:
            ranges.append((int(parts[0]), int(parts[0]) + int(parts[2])))
    return ranges


def _intersect(*range_lists: list[tuple[int, int]]) -> list[tuple[int, int]]:
    result = range_lists[0]
    for other in range_lists[1:]:
        result = [(max(a, c), min(b, d)) for a, b in result for c, d in other if max(a, c) < min(b, d)]
    return result


def _listed_ids(path: str) -> set[int]:
    """The numeric ids (third field) of /etc/passwd or /etc/group."""
    ids = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 2 and parts[2].isdigit():
                    ids.add(int(parts[2]))
    except OSError:
        pass
    return ids


#: How long one look at the running processes' ids serves ``fresh_uid`` (a batch forks two workers a
#: submission; reading every /proc/N/status each time cost about 4 ms a fork). A uid that a process took
#: since is missed only if a random pick out of ~2e9 lands on it, which the look never excluded either
#: (two processes picking at once); this process never hands out a uid twice.
RUNNING_IDS_SECONDS = 1.0
_running_seen: tuple[float, set[int]] = (-RUNNING_IDS_SECONDS, set())


def _recent_running_ids() -> set[int]:
    """``_running_ids``, looked at again once ``RUNNING_IDS_SECONDS`` have passed (call under ``_uid_lock``)."""
    global _running_seen
    now = time.monotonic()
    if now - _running_seen[0] >= RUNNING_IDS_SECONDS:
        _running_seen = (now, _running_ids())
    return _running_seen[1]


def _running_ids() -> set[int]:
    """Every uid and gid that a running process has."""
    ids: set[int] = set()
    try:
        names = [n for n in os.listdir(_PROC) if n.isdigit()]
    except OSError:
        return ids
    for name in names:
        for line in (_read(f"{_PROC}/{name}/status") or b"").split(b"\n"):
            if line.startswith((b"Uid:", b"Gid:")):
                ids.update(int(v) for v in line.split()[1:] if v.isdigit())
    return ids


# --------------------------------------------------------------------------- hostile trees

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
    data = _read(f"{_PROC}/self/fdinfo/{fd}", 4096)
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
        if o_path and os.path.isdir(f"{_PROC}/self/fd"):
            fd = os.open(name, o_path | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                os.chmod(f"{_PROC}/self/fd/{fd}", 0o700)  # the inode itself, through procfs
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
