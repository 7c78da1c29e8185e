"""Where a worker runs: a bubblewrap sandbox when it can, else a plain subprocess; limits either way.

``bwrap`` mode: new PID, network, IPC and UTS namespaces; a read-only view of the system
and of the Python environment; a private ``/tmp``; only this worker's own folders
writable; nothing of the course (``reference/``, the cases, other submissions, the
reference cache) mounted; killed when the grader dies. When the grader runs as root the
worker drops to ``nobody`` before it imports anything, so process limits apply.

``none`` mode (bwrap missing or unusable: macOS, some containers): a plain subprocess in
its own session with the same resource limits. The file system and the network stay
reachable; docs/security.md says what that means.

Resource limits are ``setrlimit`` values set just before exec (inherited by anything the
submission starts): address space, CPU seconds, file size, open files, processes.
"""
from __future__ import annotations

import functools
import os
import resource
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from grader.errors import UsageError

MODES = ("auto", "bwrap", "none")
NOBODY = 65534
#: Where the worker's folders appear inside the sandbox.
SANDBOX_ROOT = "/grader"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one worker process (and everything it starts)."""

    memory_mb: int = 4096
    cpu_seconds: int = 600
    file_mb: int = 64
    processes: int = 64
    open_files: int = 1024
    #: how much of stdout and stderr is kept (the rest is counted and dropped)
    output_kb: int = 64
    #: largest tensor file a worker may return for one case
    tensor_mb: int = 64


@dataclass(frozen=True)
class Launch:
    """How to start one worker: the command, its environment and where its folders appear."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    preexec: Callable[[], None]
    #: host folder -> the path the worker sees for it
    paths: dict[Path, str] = field(default_factory=dict)

    def inside(self, host: Path) -> str:
        """The worker's path for a host path under one of the mapped folders."""
        for root, seen in self.paths.items():
            try:
                rel = Path(host).relative_to(root)
            except ValueError:
                continue
            return str(Path(seen) / rel) if str(rel) != "." else seen
        return str(host)


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


def describe(mode: str) -> str:
    """The isolation line of a report."""
    if mode == "bwrap":
        return ("bubblewrap sandbox (no network, read-only system, private /tmp, "
                "course files not mounted) with resource limits")
    return ("plain subprocess with resource limits, NOT sandboxed (no bubblewrap): the submission "
            "could read files and use the network")


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


def launch(mode: str, workdir: Path, shared: list[Path], channel_fd: int, limits: Limits,
           hide: list[Path] | None = None) -> Launch:
    """The command that starts ``python -m grader.execute.worker`` for ``mode``.

    ``workdir`` holds the worker's writable ``run`` (its cwd) and ``out`` folders;
    ``shared`` are read-only files it may read (the case inputs).
    """
    package_parent = Path(__file__).resolve().parents[2]
    # A clean environment: nothing of the grader's (tokens, paths, credentials) leaks in.
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TERM") if k in os.environ}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
                "MPLBACKEND": "Agg"})
    run_dir, out_dir = workdir / "run", workdir / "out"
    drop = os.geteuid() == 0 if hasattr(os, "geteuid") else False
    if mode == "none":
        env.update({"PYTHONPATH": str(package_parent), "HOME": str(run_dir), "TMPDIR": str(run_dir)})
        argv = [sys.executable, "-m", "grader.execute.worker", str(channel_fd)]
        return Launch(argv, env, str(run_dir), _limiter(limits, own_uid=True))
    inner = SANDBOX_ROOT
    env.update({"PYTHONPATH": f"{inner}/pkg", "HOME": f"{inner}/run", "TMPDIR": "/tmp"})
    if drop:
        env["GRADER_WORKER_UID"] = str(NOBODY)
        for d in (run_dir, out_dir):
            os.chown(d, NOBODY, NOBODY)
    bwrap = shutil.which("bwrap") or "bwrap"
    if drop:  # as root: no user namespace, so that the worker can become nobody itself
        argv = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        argv = [bwrap, "--unshare-all", "--cap-drop", "ALL"]
    argv += ["--die-with-parent", "--new-session"]
    for d in _SYSTEM_DIRS:
        argv += ["--ro-bind-try", d, d]
    # /tmp first: a Python environment that lives under /tmp (a venv) is mounted on top of it.
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(4 * limits.file_mb << 20),
             "--tmpfs", "/tmp"]
    made: set[str] = {"/tmp"}
    for d in python_roots():
        for parent in reversed(Path(d).parents):  # traversable mount points, whatever the host's modes
            if str(parent) != "/" and str(parent) not in made and not any(_under(str(parent), s) for s in _SYSTEM_DIRS):
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        argv += ["--ro-bind", d, d]
    for d in (inner, f"{inner}/pkg", f"{inner}/shared"):
        argv += ["--perms", "0755", "--dir", d]
    argv += ["--ro-bind", str(package_parent / "grader"), f"{inner}/pkg/grader",
             "--bind", str(run_dir), f"{inner}/run", "--bind", str(out_dir), f"{inner}/out"]
    paths = {run_dir: f"{inner}/run", out_dir: f"{inner}/out"}
    for i, f in enumerate(shared):
        argv += ["--ro-bind", str(f), f"{inner}/shared/{i}-{f.name}"]
        paths[f] = f"{inner}/shared/{i}-{f.name}"
    for hidden in _hidden_paths([package_parent, *(hide or [])]):
        argv += ["--tmpfs", hidden]
    argv += ["--chdir", f"{inner}/run", "--", python_executable(), "-m", "grader.execute.worker", str(channel_fd)]
    return Launch(argv, env, str(run_dir), _limiter(limits, own_uid=not drop), paths)


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


def _limiter(limits: Limits, own_uid: bool) -> Callable[[], None]:
    """A preexec function setting the limits (computed now, applied in the child)."""
    nproc = None
    if hasattr(resource, "RLIMIT_NPROC"):
        uid = os.getuid() if own_uid else NOBODY
        nproc = _count_processes(uid) + limits.processes
    settings = [
        (resource.RLIMIT_AS, limits.memory_mb << 20),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_mb << 20),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ]
    if nproc is not None:
        settings.append((resource.RLIMIT_NPROC, nproc))

    def apply() -> None:
        for kind, value in settings:
            try:
                resource.setrlimit(kind, (value, value))
            except (ValueError, OSError):
                pass  # a limit this platform won't lower: the others still hold

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
