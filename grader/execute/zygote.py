"""The warm worker of a slot: imports torch once, then forks one fresh worker per run.

Started by ``grader.execute.slots`` as ``python -m grader.execute.zygote CONTROL_FD`` in the
same sandbox a cold worker gets (``grader.execute.sandbox.launch(zygote=True)``). It never
runs submitted code, and never sees a job: each child gets its job from the parent on its
own stdin. It answers requests on the control socket (``SOCK_SEQPACKET``, one JSON message
each), one child at a time:

``fork`` (with five file descriptors: the child's stdin, stdout, stderr, result channel and
    a hello socket)
    fork a child that becomes a worker: its own session, its own limits, its own uid (when
    the zygote is root), a fresh working folder, and its pid told to the parent through the
    kernel (the hello socket's SCM_CREDENTIALS, so the parent sees the pid in its own pid
    namespace). Answer ``{"kind": "forked"}``.
``wait`` (``timeout``)
    the child's exit status, or null while it runs.
``clean``
    kill every other process in the sandbox's pid namespace (``kill(-1)``: all but the
    zygote and the namespace's init), wait until none is left, remove every file of the
    sized tmpfs at ``/tmp`` (never entering another mount: a Python environment that lives
    under the host's /tmp is mounted there read-only) and every IPC object of the sandbox's IPC
    namespace (System V, POSIX message queues through the sandbox's own mqueue mount, anything
    in /dev/shm): nothing one child did reaches the next. Each part is bounded. Answer
    ``{"kind": "clean", "left": N, "files_left": F, "ipc_left": I, "cpu": S}`` (N: processes
    still alive, F: entries still under /tmp, I: IPC objects still there; the parent discards
    the slot unless all are 0; S: the CPU seconds the child and what it reaped used).

Protections against the child (in the sandbox without a uid of its own it shares the
zygote's uid): the zygote is not dumpable (no ptrace, no ``/proc/<pid>/mem`` or ``fd``
access), ignores every catchable signal, and the parent discards it when it stops answering
or dies. Only in ``bwrap`` mode (a pid namespace of its own) is it started at all.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import select
import signal
import socket
import sys
import time
from typing import Any

from grader.execute import worker
from grader.execute.process_group import TOKEN_VAR
from grader.execute.sandbox import WORK_DIR, apply_rlimits
from grader.execute.trees import remove_tree

#: Largest control message either way.
MAX_MESSAGE = 1 << 16
#: How long ``clean`` keeps killing before it reports what is left.
CLEAN_SECONDS = 3.0
_PR_SET_DUMPABLE = 4
_IPC_RMID = 0
_SCRATCH = "/tmp"
_IGNORED = [s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)]
#: The handlers Python started with (SIGPIPE and SIGXFSZ ignored, SIGINT raising): a child gets them back.
_ORIGINAL: dict[signal.Signals, Any] = {}


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[1]))
    warm_up()
    _protect()
    os.chdir("/")
    keep = mounts_kept(_read_mountinfo())  # read before any child runs
    child: int | None = None
    cpu_before = _children_cpu()
    _send(control, {"kind": "warm", "threads": len(os.listdir("/proc/self/task"))})
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 8)
        except OSError:
            return 0
        if not data:
            return 0  # the parent is gone
        message = json.loads(data)
        kind = message.get("kind")
        if kind == "fork" and child is None and len(fds) == 5:
            _fresh_work_dir(message.get("uid"))
            cpu_before = _children_cpu()
            child = os.fork()
            if child == 0:
                _become_worker(control, fds, message)  # never returns
            for fd in fds:
                os.close(fd)
            _send(control, {"kind": "forked"})
        elif kind == "preload" and child is None:
            loaded = _preload(message.get("modules"))
            left, files_left, ipc = _clean(keep)  # what the import left under /tmp (a cache folder) is no child's
            _send(control, {"kind": "preloaded", "modules": loaded, "left": left, "files_left": files_left,
                            "ipc_left": ipc})
        elif kind == "wait":
            code, child = _wait(child, float(message.get("timeout", 1.0)))
            _send(control, {"kind": "exit", "code": code})
        elif kind == "clean":
            left, files_left, ipc = _clean(keep)
            child = None
            _send(control, {"kind": "clean", "left": left, "files_left": files_left, "ipc_left": ipc,
                            "cpu": round(_children_cpu() - cpu_before, 6)})
        else:
            for fd in fds:
                os.close(fd)
            _send(control, {"kind": "refused"})


#: The warm-up's own classes (trusted code of ours, never the course's): the layers and calls
#: solutions use, so that torch's lazy set-up is done once here rather than in every child.
_WARM_SOURCE = """
import math
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, d=8, h=2):
        super().__init__()
        self.h, self.d_k = h, d // h
        self.lin_Q, self.lin_K, self.lin_V, self.lin_O = (nn.Linear(d, d) for _ in range(4))
        self.drop = nn.Dropout(0.1)

    def forward(self, Q, K, V, mask=None):
        b = Q.size(0)
        q, k, v = (lin(x).view(b, -1, self.h, self.d_k).transpose(1, 2)
                   for lin, x in ((self.lin_Q, Q), (self.lin_K, K), (self.lin_V, V)))
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        if mask is not None:
            scores = scores.masked_fill(mask.unsqueeze(1) == 0, float("-inf"))
        weights = self.drop(F.softmax(scores, dim=-1))
        out = torch.einsum("bhqk,bhkd->bhqd", weights, v).permute(0, 2, 1, 3).contiguous().reshape(b, -1, self.h * self.d_k)
        fused = F.scaled_dot_product_attention(q, k, v)
        return self.lin_O(out) + 0 * fused.sum(), weights


class Cell(nn.Module):
    def __init__(self, d_in=4, d_h=3):
        super().__init__()
        self.x2g, self.h2g, self.d_h = nn.Linear(d_in, 4 * d_h), nn.Linear(d_h, 4 * d_h, bias=False), d_h

    def forward(self, x, state=None):
        if state is None:
            z = torch.zeros(x.size(0), self.d_h)
            state = (z, z.clone())
        h, c = state
        i, f, g, o = torch.chunk(self.x2g(x) + self.h2g(h), 4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), torch.cat([c[:, :0], c], dim=1)
"""


class _Collect:
    """A channel that keeps what it is sent (the warm-up's records)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, dict[str, Any]]] = []

    def send(self, kind: str, payload: bytes = b"", **fields: Any) -> None:
        self.records.append((kind, payload, fields))


def warm_up() -> None:
    """What every child would otherwise pay for: the imports, one generate and one guarded run of our own
    small classes through the worker's code, then the garbage collector's objects frozen (a child's
    collections then leave the zygote's pages shared instead of touching every one)."""
    import gc
    import linecache

    import torch
    from safetensors.torch import load as load_tensors, save as save_tensors

    from grader.execute.protocol import INPUT_PREFIXES, CallSpec, Job, StatementSpec

    torch.set_num_threads(1)
    worker.preload()

    def spec(id: str, target: str, **kw: Any) -> CallSpec:
        base: dict[str, Any] = dict(init={}, seed=1, args=["Q", "K", "V"], inputs={}, dtypes={}, mask=None,
                                    mask_rank=None, key_args=["K", "V"], call="forward", returns=["out", "attention"],
                                    keys=[], grad=False, loss=[], perturb=False, build_only=False, static_only=False)
        base.update(kw)
        return CallSpec(id=id, target=target, **base)

    shapes = {"Q": [2, 3, 8], "K": [2, 4, 8], "V": [2, 4, 8]}
    calls = [spec("plain", "Attention", inputs=shapes, grad=True),
             spec("causal", "Attention", inputs={k: [2, 4, 8] for k in shapes}, mask={"kind": "causal"}, perturb=True),
             spec("padding", "Attention", inputs=shapes, mask={"kind": "padding", "lengths": [4, 2]}, grad=True),
             spec("cell", "Cell", args=["x"], key_args=[], inputs={"x": [2, 5, 4]}, call="unroll",
                  returns=["h_seq", "c_last"], grad=True)]
    name = "<warm-up>"
    units = {name: {"label": "warm-up", "source": _WARM_SOURCE}}
    statements = [StatementSpec(name, 1, _WARM_SOURCE)]
    generated = _Collect()
    worker.run_job(Job("generate", "warm", statements, units, calls), {}, {}, generated)
    inputs: dict[str, torch.Tensor] = {}
    for kind, payload, fields in generated.records:
        if kind == "call" and payload:
            inputs.update({f"{fields['id']}/{k}": v for k, v in load_tensors(payload).items()
                           if k.startswith(INPUT_PREFIXES)})
    watched = [CallSpec(**{**vars(c), "forbid": ["torch.nn.functional.scaled_dot_product_attention"]}) for c in calls]
    job = Job("run", "warm", statements, units, watched)
    worker.run_job(job, load_tensors(save_tensors(inputs)), worker._guards(job), _Collect())
    linecache.cache.pop(name, None)
    gc.collect()
    gc.freeze()


#: What a parent may ask the zygote to import between children (``preload``): torch modules that torch
#: imports lazily and that take a child long (``torch._dynamo``: about a second, on the first call of a
#: ``torch.library.custom_op``, ``torch.compile`` or ``torch.export``), so that every later child has them.
PRELOADABLE = frozenset({"torch._dynamo"})


def _preload(modules: Any) -> list[str]:
    """Import each of ``modules`` that is ``PRELOADABLE`` (never anything else); the ones now imported."""
    import gc

    done = []
    for name in modules if isinstance(modules, list) else []:
        if name in PRELOADABLE:
            try:
                __import__(name)
                done.append(name)
            except Exception:  # noqa: BLE001 - a child then imports it itself, as without the preload
                pass
    gc.collect()
    gc.freeze()  # as after the warm-up: a child's collections leave these pages shared
    return done


def _protect() -> None:
    """Not dumpable (a process of the same uid cannot trace or read it); catchable signals ignored."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    for sig in _IGNORED:
        try:
            _ORIGINAL[sig] = signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError, RuntimeError):
            pass


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    control.send(json.dumps(message).encode())


def _fresh_work_dir(uid: Any) -> None:
    """The next child's working folder, empty, its own when it has a uid of its own."""
    os.makedirs(WORK_DIR, mode=0o755, exist_ok=True)
    if isinstance(uid, int) and os.geteuid() == 0:
        os.chown(WORK_DIR, uid, uid)


def _become_worker(control: socket.socket, fds: list[int], message: dict[str, Any]) -> None:
    """In the child: take the given pipes as stdin, stdout, stderr and channel, drop everything of
    the zygote's, set the limits and the uid, say hello, and serve one job. Never returns."""
    code = worker.WORKER_FAILED_EXIT
    try:
        control.close()
        stdin, stdout, stderr, channel, hello = fds
        for sig, handler in _ORIGINAL.items():
            try:
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            except (OSError, ValueError, RuntimeError, TypeError):
                pass
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
        channel_fd, hello = os.dup(channel), os.dup(hello)
        _close_all_but(sorted({channel_fd, hello}))
        os.setsid()
        os.chdir(WORK_DIR)
        token = message.get("token")
        if isinstance(token, str):
            os.environ[TOKEN_VAR] = token
        apply_rlimits([(str(n), int(v)) for n, v in message.get("rlimits", [])])
        uid = message.get("uid")
        if isinstance(uid, int) and os.geteuid() == 0:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        else:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)  # the parent measures it
        hello_socket = socket.socket(fileno=hello)
        hello_socket.send(b"h")  # the kernel attaches our pid, as the parent sees it
        hello_socket.close()
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False, buffering=1)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        code = worker.serve(worker.Channel(channel_fd), sys.stdin.buffer)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
    except BaseException:
        pass
    finally:
        os._exit(code)


def _close_all_but(keep: list[int]) -> None:
    """Close every descriptor from 3 up but ``keep`` (sorted): nothing of the zygote's stays open."""
    low = 3
    for fd in keep:
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)


def _children_cpu() -> float:
    """CPU seconds of every child reaped so far (and of what they reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wait(child: int | None, timeout: float) -> tuple[int | None, int | None]:
    """(exit status, the child still to wait for): negative for a signal; None while it runs."""
    if child is None:
        return None, None
    deadline = time.monotonic() + max(0.0, min(timeout, 30.0))
    try:
        exited = os.pidfd_open(child)  # readable once the child has exited: no polling delay
    except (AttributeError, OSError):
        exited = None
    try:
        while True:
            try:
                pid, status = os.waitpid(child, os.WNOHANG)
            except ChildProcessError:
                return None, None
            if pid == child:
                return os.waitstatus_to_exitcode(status), child
            left = deadline - time.monotonic()
            if left <= 0:
                return None, child
            if exited is not None:
                select.select([exited], [], [], left)
            else:
                time.sleep(min(0.005, left))
    finally:
        if exited is not None:
            os.close(exited)


def _clean(keep: frozenset[str]) -> tuple[int, int, int]:
    """Kill every process of the namespace but ours and its init, reap, wipe /tmp and IPC.

    (processes still alive, entries still under /tmp, IPC objects still there): all must be 0 for
    the next child. Only
    the sized tmpfs is emptied: ``keep`` are the folders on the way to the mounts inside it (a
    Python environment that lives under the host's /tmp), which stay, and are never entered.
    The removal stops after ``CLEAN_SECONDS``; what it left is counted, and the parent then
    discards the whole sandbox.
    """
    me = os.getpid()
    deadline = time.monotonic() + CLEAN_SECONDS
    pause = 0.002
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        _reap()
        left = [p for p in _live_pids() if p not in (1, me)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    _reap()
    files_deadline = time.monotonic() + CLEAN_SECONDS
    _empty(_SCRATCH, keep, files_deadline)
    return len(left), _count_left(_SCRATCH, keep), _remove_ipc()


def _empty(folder: str, keep: frozenset[str], deadline: float) -> None:
    """Remove everything under ``folder`` but the folders in ``keep`` (each emptied the same way)."""
    for name in _listdir(folder):
        path = os.path.join(folder, name)
        if path in keep:
            if not os.path.ismount(path):
                _empty(path, keep, deadline)
        else:
            remove_tree(path, deadline)


def _count_left(folder: str, keep: frozenset[str]) -> int:
    """Entries under ``folder`` that are neither in ``keep`` nor a mount point."""
    n = 0
    for name in _listdir(folder):
        path = os.path.join(folder, name)
        if path in keep:
            n += 0 if os.path.ismount(path) else _count_left(path, keep)
        else:
            n += 1
    return n


def mounts_kept(mountinfo: str, scratch: str = _SCRATCH) -> frozenset[str]:
    """The mount points below ``scratch`` in ``/proc/self/mountinfo``'s text, and every folder on the way
    to them: what the clean-up leaves (they are not the child's)."""
    kept: set[str] = set()
    prefix = scratch.rstrip("/") + "/"
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape(fields[4])
        if point.startswith(prefix):
            while point.startswith(prefix):
                kept.add(point)
                point = os.path.dirname(point)
    return frozenset(kept)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _read_mountinfo() -> str:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return ""


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _live_pids() -> list[int]:
    """Processes of this pid namespace that are not zombies."""
    live = []
    for name in _listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rpartition(b")")[2].split()[:1]
        except OSError:
            continue
        if state and state[0] not in (b"Z", b"X"):
            live.append(int(name))
    return live


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


#: Where the sandbox's POSIX IPC objects are seen: its own mqueue filesystem (``launch`` mounts one) and
#: /dev/shm (read-only in the sandbox, so normally empty). Unlinking an entry removes the object.
POSIX_IPC = ("/dev/mqueue", "/dev/shm")
_MAX_IPC = 10_000


def _remove_ipc() -> int:
    """Remove every IPC object of the sandbox's IPC namespace: System V shared memory segments, semaphore
    sets and message queues, POSIX message queues and shared memory; how many are still there after."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        libc = None
    if libc is not None:
        for table, remove in (("shm", lambda i: libc.shmctl(i, _IPC_RMID, None)),
                              ("sem", lambda i: libc.semctl(i, 0, _IPC_RMID)),
                              ("msg", lambda i: libc.msgctl(i, _IPC_RMID, None))):
            for key in _sysv_ids(table)[:_MAX_IPC]:
                remove(key)
    for folder in POSIX_IPC:
        for name in _listdir(folder)[:_MAX_IPC]:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
    return ipc_left()


def ipc_left() -> int:
    """IPC objects in this IPC namespace, of every kind the clean-up removes."""
    return (sum(len(_sysv_ids(t)) for t in ("shm", "sem", "msg"))
            + sum(len(_listdir(folder)) for folder in POSIX_IPC))


def _sysv_ids(table: str) -> list[int]:
    """The ids listed in ``/proc/sysvipc/<table>`` (this IPC namespace's System V objects of that kind)."""
    try:
        with open(f"/proc/sysvipc/{table}") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return []
    return [int(fields[1]) for fields in (line.split() for line in lines) if len(fields) > 1 and fields[1].isdigit()]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
