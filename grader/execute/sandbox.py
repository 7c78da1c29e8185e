"""Where a worker runs: a bubblewrap sandbox when it can, else a plain subprocess; limits either way.

``bwrap`` mode: new PID, network, IPC and UTS namespaces; a read-only view of the system
and of the Python environment; nothing of the host writable: the working folder and
``/tmp`` are one sized tmpfs, ``/dev`` is read-only; nothing of the course
(``reference/``, the cases, other submissions, the reference cache) mounted; killed when
the grader dies. When the grader runs as root the worker drops to a uid of its own once
its imports are done, before the job, so the process limit counts only its processes.

``none`` mode (bwrap missing or unusable: macOS, some containers): a plain subprocess in
its own session with the same resource limits, in a host scratch folder (watched for size
by the runner). As root it also runs as a uid of its own. The file system and the network
stay reachable; docs/security.md says what that means.

Resource limits are ``setrlimit`` values set just before exec (inherited by anything the
submission starts): address space, CPU seconds, file size, open files, processes. The
total memory of all the worker's processes is watched by ``grader.execute.runner``.
"""
from __future__ import annotations

import functools
import os
import resource
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from grader.config import Limits
from grader.errors import UsageError

MODES = ("auto", "bwrap", "none")
#: Where the grader package appears inside the sandbox, and the worker's working folder.
SANDBOX_ROOT = "/grader"
WORK_DIR = "/tmp/work"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True)
class Launch:
    """How to start one worker: the command, its environment, its folder and its child-side setup."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    preexec: Callable[[], None]


def resolve_mode(mode: str | None) -> str:
    """'bwrap' or 'none' for a requested mode (``$GRADER_SANDBOX`` when None)."""
    mode = mode or os.environ.get("GRADER_SANDBOX") or "auto"
    if mode not in MODES:
        raise UsageError(f"invalid sandbox {mode!r}, expected one of {', '.join(MODES)}")
    if mode == "none":
        return "none"
    usable = bwrap_usable()
    if mode == "bwrap" and not usable:
        raise UsageError("--sandbox bwrap was asked for, but bubblewrap is missing or cannot run here "
                         "(install it: apt-get install bubblewrap), or use --sandbox auto")
    return "bwrap" if usable else "none"


@functools.lru_cache(maxsize=1)
def bwrap_usable() -> bool:
    """Whether bubblewrap exists and can create its namespaces here (probed once)."""
    exe = shutil.which("bwrap")
    if not exe:
        return False
    try:
        probe = subprocess.run([exe, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                               capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def launch(mode: str, run_dir: Path, channel_fd: int, limits: Limits, hide: list[Path],
           uid: int | None, join_group: Callable[[], None], zygote: bool = False) -> Launch:
    """The command that starts ``python -m grader.execute.worker`` for ``mode``.

    ``run_dir`` is the worker's host scratch folder (``none`` mode only); ``hide`` are
    folders it must never see; ``uid``, when given (the grader runs as root), is the
    worker's own user; ``join_group`` runs in the child before exec (the process group).
    ``zygote`` starts ``grader.execute.zygote`` instead, in the same sandbox: it stays root
    where the grader is (its children become ``uid``s of their own) and has no CPU limit of
    its own (each child gets one, ``rlimits``); ``channel_fd`` is then its control socket.
    """
    module = "grader.execute.zygote" if zygote else "grader.execute.worker"
    package_parent = Path(__file__).resolve().parents[2]
    # A clean environment: nothing of the grader's (tokens, paths, credentials) leaks in.
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TERM") if k in os.environ}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
                "MPLBACKEND": "Agg"})
    if uid is not None and not zygote:  # the worker gives up root itself, after its imports
        env["GRADER_WORKER_UID"] = str(uid)
    if mode == "none":
        env.update({"PYTHONPATH": str(package_parent), "HOME": str(run_dir), "TMPDIR": str(run_dir)})
        if uid is not None:
            os.chown(run_dir, uid, uid)
        argv = [sys.executable, "-m", module, str(channel_fd)]
        return Launch(argv, env, str(run_dir), _child_setup(limits, uid, join_group, zygote))
    env.update({"PYTHONPATH": f"{SANDBOX_ROOT}/pkg", "HOME": WORK_DIR, "TMPDIR": "/tmp"})
    bwrap = shutil.which("bwrap") or "bwrap"
    if uid is not None:  # as root: no user namespace, so that the worker can become its own user
        argv = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        argv = [bwrap, "--unshare-all", "--cap-drop", "ALL"]
    argv += ["--die-with-parent", "--new-session"]
    for d in _SYSTEM_DIRS:
        argv += ["--ro-bind-try", d, d]
    # One sized tmpfs holds everything the worker may write; /tmp first, so that a Python
    # environment that lives under /tmp (a venv) is mounted on top of it.
    argv += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
             "--perms", "1777", "--size", str(limits.disk_mb << 20), "--tmpfs", "/tmp",
             "--perms", "1777", "--dir", WORK_DIR]
    made: set[str] = {"/tmp"}
    for d in python_roots():
        for parent in reversed(Path(d).parents):  # traversable mount points, whatever the host's modes
            if str(parent) != "/" and str(parent) not in made and not any(_under(str(parent), s) for s in _SYSTEM_DIRS):
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        argv += ["--ro-bind", d, d]
    for d in (SANDBOX_ROOT, f"{SANDBOX_ROOT}/pkg"):
        argv += ["--perms", "0755", "--dir", d]
    argv += ["--ro-bind", str(package_parent / "grader"), f"{SANDBOX_ROOT}/pkg/grader"]
    for hidden in _hidden_paths([package_parent, *hide]):
        argv += ["--tmpfs", hidden]
    argv += ["--chdir", WORK_DIR, "--", python_executable(), "-m", module, str(channel_fd)]
    return Launch(argv, env, str(run_dir), _child_setup(limits, uid, join_group, zygote))


def describe(mode: str) -> str:
    """The isolation line of a report."""
    if mode == "bwrap":
        return ("bubblewrap sandbox (no network, read-only system, private sized /tmp, "
                "course files not mounted) with resource limits")
    return ("plain subprocess with resource limits, NOT sandboxed (no bubblewrap): the submission "
            "could read files and use the network")


def python_executable() -> str:
    """The real interpreter path (not a shim or a symlink outside the mounted trees)."""
    return os.path.realpath(sys.executable) if not _in_venv() else sys.executable


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


@functools.lru_cache(maxsize=1)
def _python_roots() -> tuple[str, ...]:
    return tuple(_find_python_roots())


def python_roots() -> list[str]:
    """Folders the worker's interpreter needs, read-only (computed once per process)."""
    return list(_python_roots())


def _find_python_roots() -> list[str]:
    """Folders the worker's interpreter needs, read-only: prefixes and site-packages."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  str(Path(os.path.realpath(sys.executable)).parent.parent)}
    for p in [*site.getsitepackages(), *sys.path]:
        if p and ("site-packages" in p or "dist-packages" in p) and os.path.isdir(p):
            candidates.add(p)
    roots = sorted({os.path.realpath(c) for c in candidates if c and os.path.isdir(c)})
    roots = [r for r in roots if r != "/" and not any(_under(r, d) for d in _SYSTEM_DIRS)]
    return [r for r in roots if not any(r != o and _under(r, o) for o in roots)]


def _hidden_paths(paths: list[Path]) -> list[str]:
    """Folders that must stay unseen but sit inside a mounted tree: masked with an empty tmpfs."""
    roots = python_roots() + list(_SYSTEM_DIRS)
    hide = {os.path.realpath(p) for p in paths}
    return sorted(h for h in hide if any(_under(h, r) for r in roots))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def rlimits(limits: Limits, uid: int | None) -> list[tuple[str, int]]:
    """The resource limits of one worker, by name (``resource.RLIMIT_*``), as numbers.

    RLIMIT_NPROC counts every process of a uid: a fresh uid runs nothing yet; our own uid's
    limit adds what it already runs.
    """
    settings = [("RLIMIT_AS", limits.memory_mb << 20), ("RLIMIT_CPU", limits.cpu_seconds),
                ("RLIMIT_FSIZE", limits.file_mb << 20), ("RLIMIT_NOFILE", limits.open_files),
                ("RLIMIT_CORE", 0)]
    if hasattr(resource, "RLIMIT_NPROC"):
        settings.append(("RLIMIT_NPROC",
                         limits.processes if uid is not None else _count_processes(os.getuid()) + limits.processes))
    return settings


def apply_rlimits(settings: list[tuple[str, int]]) -> None:
    """Set each limit (soft and hard); one this platform won't lower is skipped, the others still hold."""
    for name, value in settings:
        kind = getattr(resource, name, None)
        if kind is None:
            continue
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass


def _child_setup(limits: Limits, uid: int | None, join_group: Callable[[], None],
                 zygote: bool = False) -> Callable[[], None]:
    """What the child does between fork and exec: join the process group, set the limits.

    Computed now; the child only makes system calls (no imports, no allocation to speak of).
    A zygote keeps no CPU or process limit: each of its children sets its own (it may only lower them).
    """
    settings = rlimits(limits, uid)
    if zygote:
        settings = [(n, v) for n, v in settings if n not in ("RLIMIT_CPU", "RLIMIT_NPROC")]

    def apply() -> None:
        join_group()
        apply_rlimits(settings)

    return apply


def _count_processes(uid: int) -> int:
    """How many processes ``uid`` runs now (RLIMIT_NPROC counts them all)."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    n = 0
    for pid in pids:
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                n += 1
        except OSError:
            pass
    return n
