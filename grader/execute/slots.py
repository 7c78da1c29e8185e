"""Warm worker slots: torch imported once per slot, a fresh forked worker per run.

A ``WarmSlot`` starts a zygote (``grader.execute.zygote``) in the same sandbox a cold worker
gets, with torch imported and warmed up. ``new_worker()`` asks it to fork a child that
becomes an ordinary worker (``grader.execute.runner.Worker``, driven exactly like a cold
one): its own stdin, stdout, stderr and result channel (pipes made here and passed over
the control socket), its own session, resource limits, uid (as root) and process group
(``ProcessGroup.adopt``: its cgroups, or tracking), a fresh working folder.

Nothing of one run reaches the next. When a worker is closed, its group is killed, then
the zygote kills every process left in the sandbox's pid namespace, removes every file
under its ``/tmp`` and every IPC object, and must report nothing left alive before the next
child is forked (the clean-up runs while the caller judges; its answer is read before the
next fork); a zygote that does not answer in time, reports survivors, or died is discarded,
and the next run gets a new zygote. A fork that fails falls back to a cold worker.

Warm slots exist only in ``bwrap`` mode, where the sandbox's pid namespace lets the zygote
find and kill everything a child left; elsewhere (``none`` mode) every run is a cold worker.
Not thread-safe: one slot serves one thread at a time.
"""
from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grader.config import Limits
from grader.errors import InternalError
from grader.execute.process_group import TOKEN_VAR, ProcessGroup
from grader.execute.runner import STARTUP_TIMEOUT, Process, Worker, pipes, new_token
from grader.execute.sandbox import launch, rlimits
from grader.execute.uids import fresh_uid

#: Seconds the zygote may take to fork a child, report an exit status or clean up.
ANSWER_TIMEOUT = 10.0
_CREDENTIALS = struct.calcsize("3i")


#: Text in a submission's code that means its children would import a ``zygote.PRELOADABLE`` module
#: themselves (a hint, never a check: a miss costs that child the import, as it did before).
_PRELOAD_HINTS = {"torch._dynamo": ("custom_op", "torch.library", "compile(", "_dynamo", "torch.export")}
#: How long the zygote may take to import what it is asked to preload.
PRELOAD_TIMEOUT = 60.0


def worth_preloading(sources: Iterable[str]) -> frozenset[str]:
    """The modules a slot's zygote should import before forking the workers of code made of ``sources``."""
    text = "\n".join(sources)
    return frozenset(m for m, hints in _PRELOAD_HINTS.items() if any(h in text for h in hints))


class ZygoteGone(Exception):
    """The zygote did not answer as it should (dead, stopped, or misbehaving): discard it."""


class _Zygote:
    """One started zygote and its control socket."""

    def __init__(self, mode: str, limits: Limits, hide: tuple[Path, ...]):
        self.token = new_token()
        run_dir = Path("/")  # bubblewrap mode: the sandbox has its own folders; nothing on the host is written
        self.group = ProcessGroup.create(self.token, None, use_cgroup=False)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # As root the sandbox has no user namespace and each child becomes a uid of its own
        # (launch() only needs to know that one is given); otherwise everything runs as our uid.
        probe = fresh_uid()
        self.root = probe is not None
        spec = launch(mode, run_dir, theirs.fileno(), limits, list(hide), probe, self.group.preexec, zygote=True)
        spec.env[TOKEN_VAR] = self.token
        self._stderr = tempfile.TemporaryFile()  # already unlinked: nothing to leave behind, nothing to fill a pipe
        try:
            self.proc = subprocess.Popen(spec.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=self._stderr, pass_fds=(theirs.fileno(),), cwd=spec.cwd,
                                         env=spec.env, start_new_session=True, preexec_fn=spec.preexec)
        except BaseException:
            ours.close()
            theirs.close()
            self._stderr.close()
            raise
        finally:
            theirs.close()
        self.group.attach(self.proc.pid)
        self.control = ours
        self.warm = False
        self.preloaded: set[str] = set()  # modules imported (or tried) since the warm-up, on request
        self.busy = False  # a child was forked and not cleaned up after yet
        self.cleaning = False  # a clean request was sent; its answer is read before the next fork

    def request(self, message: dict[str, Any], fds: list[int] = (), timeout: float = ANSWER_TIMEOUT) -> dict:
        """Send one request and wait for its answer (ZygoteGone when it does not come as it should)."""
        self.send(message, fds)
        return self.answer(timeout)

    def send(self, message: dict[str, Any], fds: list[int] = ()) -> None:
        """Send one request; its answer is read by ``answer``."""
        try:
            if fds:
                socket.send_fds(self.control, [json.dumps(message).encode()], list(fds))
            else:
                self.control.send(json.dumps(message).encode())
        except OSError as e:
            raise ZygoteGone(f"could not reach it ({e})") from None

    def answer(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.control], [], [], timeout)
        if not ready:
            raise ZygoteGone(f"no answer within {timeout:.0f} s")
        try:
            data = self.control.recv(1 << 16)
        except OSError as e:
            raise ZygoteGone(f"its socket failed ({e})") from None
        if not data:
            raise ZygoteGone("it ended")
        try:
            message = json.loads(data)
        except ValueError:
            raise ZygoteGone("it sent something that is not a message") from None
        if not isinstance(message, dict):
            raise ZygoteGone("it sent something that is not a message")
        return message

    def wait_warm(self) -> None:
        if not self.warm:
            message = self.answer(STARTUP_TIMEOUT)
            if message.get("kind") != "warm":
                raise ZygoteGone(f"it did not start ({message!r})")
            self.warm = True

    def stderr_tail(self) -> str:
        """What the zygote wrote to stderr (read once it is gone)."""
        try:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 4000))
            return self._stderr.read().decode("utf-8", "replace")[-2000:]
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        self.group.close()
        try:
            self.control.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
        self._stderr.close()


class _ForkedProcess(Process):
    """A zygote's child as the runner drives it: its exit status comes from the zygote."""

    def __init__(self, zygote: _Zygote, fds: tuple[int, int, int, int]):
        super().__init__(*fds)
        self.zygote = zygote
        self._code: int | None = None

    def exit_code(self, timeout: float) -> int | None:
        if self._code is None:
            try:
                message = self.zygote.request({"kind": "wait", "timeout": timeout}, timeout=timeout + ANSWER_TIMEOUT)
            except ZygoteGone:
                return None
            code = message.get("code")
            self._code = code if isinstance(code, int) and not isinstance(code, bool) else None
        return self._code


#: The most reasons a tally keeps (each distinct one once), and the longest one.
MAX_REASONS = 5
_REASON_CHARS = 300


@dataclass(frozen=True)
class SlotTally:
    """What warm slots did, counted as it happened (not what was planned); adds up across slots.

    ``zygotes_started``: zygotes started (one per slot when all went well); ``forks``: workers
    forked warm; ``cold``: workers started cold instead, because no zygote could give one;
    ``replaced``: zygotes discarded after a run and started again; ``reasons``: why a zygote
    was discarded or never started, each distinct reason once, in order.
    """

    zygotes_started: int = 0
    forks: int = 0
    cold: int = 0
    replaced: int = 0
    reasons: tuple[str, ...] = ()

    def __add__(self, other: "SlotTally") -> "SlotTally":
        reasons = self.reasons + tuple(r for r in other.reasons if r not in self.reasons)
        return SlotTally(self.zygotes_started + other.zygotes_started, self.forks + other.forks,
                         self.cold + other.cold, self.replaced + other.replaced, reasons[:MAX_REASONS])

    def __sub__(self, before: "SlotTally") -> "SlotTally":
        """What happened since ``before`` (an earlier tally of the same slot)."""
        return SlotTally(self.zygotes_started - before.zygotes_started, self.forks - before.forks,
                         self.cold - before.cold, self.replaced - before.replaced,
                         tuple(r for r in self.reasons if r not in before.reasons))


class WarmSlot:
    """One worker slot: a warm zygote, and a fresh forked worker per ``new_worker()``; a context manager.

    ``mode``, ``limits`` and ``hide`` are what every worker of the slot gets (as for a cold
    ``Worker``). The zygote starts now, in the background; the first ``new_worker()`` waits
    for its imports.
    """

    def __init__(self, mode: str, limits: Limits | None = None, hide: tuple[Path, ...] = ()):
        if mode != "bwrap":
            raise ValueError("warm slots need the bubblewrap sandbox (its pid namespace)")
        self.mode, self.limits, self.hide = mode, limits or Limits(), tuple(hide)
        self.zygotes_started = 0
        self.forks = 0
        self.fallbacks = 0
        self.replaced = 0
        #: CPU seconds the forked workers used, as their zygotes measured them
        self.worker_cpu = 0.0
        self._zygote: _Zygote | None = None
        self._current: Worker | None = None  # the last worker handed out
        self._wanted: set[str] = set()  # modules the zygote should import before its next fork (``prefer``)
        #: why zygotes were discarded or never started, each distinct reason once (``tally``)
        self.failures: list[str] = []
        #: a zygote never started here: every worker of the slot is a cold one
        self.cold = False
        self._start()

    def __enter__(self) -> "WarmSlot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tally(self) -> SlotTally:
        """What this slot did so far."""
        return SlotTally(self.zygotes_started, self.forks, self.fallbacks, self.replaced,
                         tuple(self.failures[:MAX_REASONS]))

    def _start(self) -> None:
        self._zygote = _Zygote(self.mode, self.limits, self.hide)
        self.zygotes_started += 1

    def _failed(self, reason: str) -> None:
        reason = " ".join(reason.split())[:_REASON_CHARS]
        if reason not in self.failures:
            self.failures.append(reason)

    def _discard(self, reason: str | None = None) -> None:
        """Stop the zygote; ``reason``: it is discarded because it failed (counted as replaced when it had
        been warm; the next run starts a new one)."""
        if self._zygote is not None:
            if reason is not None:
                self._failed(reason)
                if self._zygote.warm:
                    self.replaced += 1
            self._zygote.close()
            self._zygote = None

    def prefer(self, modules: Iterable[str]) -> None:
        """Have the zygote import ``modules`` (``worth_preloading``) before its next fork, once: from then on
        no child of it pays for them."""
        self._wanted.update(modules)

    def _preload(self, zygote: _Zygote) -> None:
        wanted = sorted(self._wanted - zygote.preloaded)
        if wanted:
            answer = zygote.request({"kind": "preload", "modules": wanted}, timeout=PRELOAD_TIMEOUT)
            why = _unclean(answer, "preloaded")  # the zygote cleans up after a preload as after a child
            if why:
                raise ZygoteGone(why)
            zygote.preloaded.update(wanted)  # tried: one that failed is not asked for again

    def new_worker(self) -> Worker:
        """A fresh worker forked from the zygote; a cold one when the zygote cannot give one (it could not
        start, or was broken by the last run and its replacement fails too)."""
        for _ in range(2 if not self.cold else 0):
            if self._zygote is None:
                self._start()
            zygote = self._zygote
            assert zygote is not None
            if zygote.busy and self._current is not None:
                self._current.close()  # a restart after a crash: the last child goes first, and its leftovers
                if self._zygote is None:
                    continue
            if zygote.cleaning:
                self._settle(zygote)  # the last child's clean-up, which ran while its grade was judged
                if self._zygote is None:
                    continue
            if zygote.busy:
                raise InternalError("a warm slot was asked for a worker before the last one was closed")
            try:
                zygote.wait_warm()
                self._preload(zygote)
                worker = self._fork(zygote)
            except ZygoteGone as e:
                was_warm = zygote.warm
                self._discard(f"{e}" if was_warm else f"it never started: {e}: {_last_line(zygote.stderr_tail())}")
                if was_warm:
                    continue  # it worked before, so a run broke it: a new one for this run
                self.cold = True  # it never started: cold workers from now on
                break
            self.forks += 1
            self._current = worker
            return worker
        self.fallbacks += 1
        return Worker(self.mode, self.limits, self.hide)

    def _fork(self, zygote: _Zygote) -> Worker:
        token = new_token()
        uid = fresh_uid() if zygote.root else None
        if zygote.root and uid is None:  # never a child that stays root: a cold worker instead
            raise ZygoteGone("no uid of its own for the child")
        group = ProcessGroup.create(token, uid, memory_bytes=self.limits.memory_mb << 20,
                                    max_pids=self.limits.processes)
        made = pipes(4)
        hello_ours, hello_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        hello_ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        (stdin_r, stdin_w), (out_r, out_w), (err_r, err_w), (chan_r, chan_w) = made
        ours = (stdin_w, out_r, err_r, chan_r)
        request = {"kind": "fork", "uid": uid, "token": token, "rlimits": rlimits(self.limits, uid)}
        started = time.perf_counter()
        try:
            zygote.busy = True
            answer = zygote.request(request, [stdin_r, out_w, err_w, chan_w, hello_theirs.fileno()])
            if answer.get("kind") != "forked":
                raise ZygoteGone(f"it refused to fork ({answer.get('kind')!r})")
            pid = _hello_pid(hello_ours)
            # Moving a process into a cgroup waits for the kernel (about 10 ms): the child waits for its job,
            # which is sent only once it is in (``Worker.run``), so the move overlaps reading and planning.
            adopting = threading.Thread(target=group.adopt, args=(pid,), name="grader-adopt", daemon=True)
            adopting.start()
        except BaseException:
            group.close()
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, out_w, err_w, chan_w):
                os.close(fd)
            hello_ours.close()
            hello_theirs.close()
        return Worker.adopt(self.mode, self.limits, group, _ForkedProcess(zygote, ours), started,
                            lambda: self._after(zygote), adopting.join)

    def _after(self, zygote: _Zygote) -> None:
        """Once a child's worker is closed (its group killed): ask the zygote to clean the whole sandbox.
        The answer is read before the next fork (``_settle``), so the clean-up runs meanwhile."""
        if zygote is not self._zygote:
            return
        try:
            zygote.send({"kind": "clean"})
            zygote.cleaning = True
        except ZygoteGone as e:
            self._discard(f"its clean-up could not be asked for: {e}")

    def _settle(self, zygote: _Zygote) -> None:
        """Read the clean-up's answer: nothing may be left alive, or the zygote goes with its sandbox."""
        try:
            answer = zygote.answer(ANSWER_TIMEOUT)
            why = _unclean(answer, "clean")
            if why:
                raise ZygoteGone(why)
            zygote.cleaning = zygote.busy = False
            cpu = answer.get("cpu")
            if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) and 0 <= cpu < 1e6:
                self.worker_cpu += cpu
        except ZygoteGone as e:
            self._discard(str(e))

    def settle(self) -> None:
        """Wait for the last child's clean-up (``worker_cpu`` then counts it)."""
        if self._zygote is not None and self._zygote.cleaning:
            self._settle(self._zygote)

    def close(self) -> None:
        """Stop the zygote and everything in its sandbox."""
        self._discard()


def _last_line(text: str) -> str:
    """The last non-empty line of what a process wrote (its error, usually)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(it wrote nothing)"


def _unclean(answer: dict, kind: str) -> str:
    """Why an answer that ends with a clean-up (``kind``: "clean" after a child, "preloaded" after a preload)
    does not let the next child run; "" when it does."""
    left, files, ipc = answer.get("left"), answer.get("files_left"), answer.get("ipc_left")
    if answer.get("kind") != kind:
        return f"it answered {str(answer.get('kind'))[:40]!r}, not {kind!r}"
    if left != 0:
        return f"{left} processes of the last run survived its clean-up"
    if files != 0:
        return f"{files} entries under /tmp outlived its clean-up (too many to remove in time, or not removable)"
    if ipc != 0:
        return f"{ipc} IPC objects of the last run outlived its clean-up"
    return ""


def _hello_pid(sock: socket.socket) -> int:
    """The pid the kernel attached to the child's hello, as this process sees it."""
    ready, _, _ = select.select([sock], [], [], ANSWER_TIMEOUT)
    if not ready:
        raise ZygoteGone("its child did not say hello")
    _, ancillary, _, _ = sock.recvmsg(16, socket.CMSG_SPACE(_CREDENTIALS))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= _CREDENTIALS:
            pid, _, _ = struct.unpack("3i", data[:_CREDENTIALS])
            if pid > 0:
                return pid
    raise ZygoteGone("its child's hello carried no pid")
