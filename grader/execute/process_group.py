"""Every process of one worker, found, measured and killed together.

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
    environment and, when the worker runs under a uid of its own
    (``grader.execute.uids.fresh_uid``), every process of that uid. A process once found
    stays found (by pid and start time), even after it re-execs with an empty environment.
    Without ``/proc`` (macOS) only the worker's process group is known.

The cgroups themselves are made in ``grader.execute.cgroups``; ``/proc`` is read through
``grader.execute.procfs``. Standard library only; nothing here imports torch.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Iterable

from grader.execute.cgroups import cgroup_tree, make_cgroup, make_memory_v1, rmdir_quiet
from grader.execute.procfs import (ancestors, descendants, has_env, has_uid, have_proc, process_stat, process_table,
                                   proportional, read_file, resident, send_signal, write_file)

TOKEN_VAR = "GRADER_WORKER_TOKEN"
#: How long ``kill`` keeps killing, and ``close`` keeps trying to remove the cgroup.
KILL_SECONDS = 2.0


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
        self._proc = have_proc()
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
        if use_cgroup and have_proc():
            try:
                made = make_cgroup(token, memory_bytes, max_pids)
                if memory_bytes and "memory" not in (made[1] if made else ()):
                    memory_v1 = make_memory_v1(token, memory_bytes)
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
        for join in (self._join, os.path.join(self._memory_v1, "cgroup.procs") if self._memory_v1 else None):
            if join is not None:
                write_file(join, str(pid).encode())
        self.attach(pid)

    def attach(self, pid: int) -> None:
        """Record the worker (the session leader ``Popen`` just started).

        Its session counts as the group's only when it leads one (``start_new_session``):
        never the grader's own. A worker that did not join the cgroup turns the group
        into tracking.
        """
        with self._lock:
            self._pid = pid
            st = process_stat(pid) if self._proc else None
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
                return {pid for pid in self._cgroup_pids() - ancestors() if (st := process_stat(pid)) and st.live}
            if not self._proc:  # the worker itself; its process group cannot be listed
                return {self._pid} if self._pid is not None and self._alive_without_proc() else set()
            return self._scan()

    def resident_bytes(self) -> int:
        """The group's memory: ``memory.current`` where the memory controller applies,
        else the resident set sizes of its processes added up (shared pages counted in
        each process that maps them); 0 when unknown (no /proc)."""
        current = self._memory_current()
        return current if current is not None else sum(resident(pid) for pid in self.pids())

    def proportional_bytes(self) -> int:
        """Like ``resident_bytes``, but pages shared between the group's processes (after a fork)
        are counted once, split between them: slower, so use it to confirm a limit is exceeded."""
        current = self._memory_current()
        return current if current is not None else sum(proportional(pid) for pid in self.pids())

    def _memory_current(self) -> int | None:
        """The cgroup v2 memory controller's own count, where it applies."""
        current = read_file(os.path.join(self._cgroup, "memory.current"), 64) if self._cgroup else None
        return int(current) if current and current.strip().isdigit() else None

    def oom_kills(self) -> int:
        """How many processes the group's memory limit killed (0 when unknown)."""
        for path in (os.path.join(self._cgroup, "memory.events") if self._cgroup else None,
                     os.path.join(self._memory_v1, "memory.oom_control") if self._memory_v1 else None):
            data = read_file(path) if path else None
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
                while not rmdir_quiet(self._memory_v1) and time.monotonic() < deadline:
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
            for group in reversed(cgroup_tree(self._cgroup)):
                write_file(os.path.join(group, "cgroup.kill"), b"1")
        elif not self._proc:  # no /proc: nothing to learn by looking again (a zombie looks alive)
            self._killpg()
            if self._pid is not None:
                send_signal(self._pid)
            return
        pause = 0.005
        while True:
            left = self.pids()
            self._killpg()
            if not left:
                return
            for pid in left:
                send_signal(pid)
            if time.monotonic() > deadline:
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _killpg(self) -> None:
        """Signal the worker's process group, but only while that number is surely still ours."""
        if self._pid is None:
            return
        if self._proc:
            st = process_stat(self._pid)
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
        for group in cgroup_tree(self._cgroup):  # type: ignore[arg-type]
            data = read_file(os.path.join(group, "cgroup.procs"), 1 << 22) or b""
            found.update(int(p) for p in data.split() if p.isdigit() and int(p) > 0)
        return found

    def _drop_cgroup(self) -> None:
        """Remove the cgroup (and any below it), retrying while members are still dying."""
        path = self._cgroup
        if not path:
            return
        deadline = time.monotonic() + KILL_SECONDS
        while True:
            groups = cgroup_tree(path)
            for group in reversed(groups):
                write_file(os.path.join(group, "cgroup.kill"), b"1")
                rmdir_quiet(group)
            if not os.path.exists(path) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self._cgroup = self._join = None

    def _scan(self) -> set[int]:
        """Tracking: one pass over /proc; everything found joins ``_members``."""
        table = process_table()
        mine = ancestors(table)
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
        found = descendants(seeds, table, mine)
        self._members = {pid: table[pid].start for pid in found}
        self._strangers = {p: s for p, s in self._strangers.items() if p in table and table[p].start == s}
        return {pid for pid in found if table[pid].live}

    def _tagged(self, pid: int) -> bool:
        """Whether a process seen for the first time carries our token or our uid."""
        return (self.uid is not None and has_uid(pid, self.uid)) or has_env(pid, self._needle)
