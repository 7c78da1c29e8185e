"""Where a worker runs: a bubblewrap sandbox when it can, else a plain subprocess; limits either way.

``bwrap`` mode: new PID, network, IPC and UTS namespaces; a read-only view of the system
and of the Python environment; nothing of the host writable: the working folder and
``/tmp`` are one sized tmpfs, ``/dev`` is read-only; nothing of the course
(``reference/``, the cases, other submissions, the reference cache) mounted; killed when
the grader dies. When the grader runs as root the worker drops to a uid of its own once
its imports are done, before the job, so the process limit counts only its processes.

``none`` mode (bwrap missing or unusable: macOS, some containers): a plain subprocess in
its own session with the same resource limits, in a host scratch folder (watched for size
by the runner). As root it also runs as a uid of its own, in an empty network namespace of
its own (``unshare(CLONE_NEWNET)`` before exec: no interface but a loopback that is down, so
nothing, not even 127.0.0.1, can be reached). The file system stays reachable, and so does
the network where the grader is not root (``none_network``); docs/security.md says what that means.

Resource limits are ``setrlimit`` values set just before exec (inherited by anything the
submission starts): address space, CPU seconds, file size, open files, processes. The
total memory of all the worker's processes is watched by ``grader.execute.runner``.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import os
import resource
import shutil
import site
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from grader.config import Limits
from grader.errors import UsageError

MODES = ("auto", "bwrap", "none")
#: ``unshare``'s flag for a new network namespace (Linux, ``<sched.h>``).
CLONE_NEWNET = 0x40000000
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


def requested_mode() -> str:
    """The sandbox mode asked for by the environment: ``$GRADER_SANDBOX``, else "auto"."""
    return os.environ.get("GRADER_SANDBOX") or "auto"


def resolve_mode(mode: str | None) -> str:
    """'bwrap' or 'none' for a requested mode (``requested_mode()`` when None)."""
    mode = mode or requested_mode()
    if mode not in MODES:
        raise UsageError(f"invalid sandbox {mode!r}, expected one of {', '.join(MODES)}")
    if mode == "none":
        return "none"
    probe = bwrap_probe()
    if mode == "bwrap" and not probe.usable:
        raise UsageError(f"--sandbox bwrap was asked for, but {_why_not(probe)} "
                         "(install it: apt-get install bubblewrap), or use --sandbox auto")
    return "bwrap" if probe.usable else "none"


@dataclass(frozen=True)
class BwrapProbe:
    """Whether bubblewrap can sandbox workers here: ``missing`` (not installed), ``failed`` (installed,
    but it could not set up its namespaces: ``detail`` is the last line it wrote), or usable."""

    usable: bool
    missing: bool = False
    detail: str = ""


@functools.lru_cache(maxsize=1)
def bwrap_probe() -> BwrapProbe:
    """Whether bubblewrap exists and can create the namespaces a worker gets here (probed once, with the
    same namespace options as ``launch``)."""
    exe = shutil.which("bwrap")
    if not exe:
        return BwrapProbe(False, missing=True)
    try:
        probe = subprocess.run([exe, *_namespaces(os.geteuid() == 0), "--die-with-parent", "--ro-bind", "/", "/",
                                "true"], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        return BwrapProbe(False, detail="it did not finish within 10 s")
    except OSError as e:
        return BwrapProbe(False, detail=e.strerror or str(e))
    if probe.returncode == 0:
        return BwrapProbe(True)
    lines = [line.strip() for line in probe.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return BwrapProbe(False, detail=(lines[-1] if lines else f"exit status {probe.returncode}")[:200])


def bwrap_usable() -> bool:
    """Whether bubblewrap exists and can create its namespaces here (probed once)."""
    return bwrap_probe().usable


def _why_not(probe: BwrapProbe) -> str:
    if probe.missing:
        return "bubblewrap is not installed"
    return f"bubblewrap is installed but cannot create its namespaces here ({probe.detail})"


def _namespaces(as_root: bool) -> list[str]:
    """The namespace options of a worker's bubblewrap: as root no user namespace, so that the worker can
    become a user of its own; otherwise every namespace, with no capabilities."""
    if as_root:
        return ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    return ["--unshare-all", "--cap-drop", "ALL"]


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
        offline = none_network() is None  # as root: no network at all; else it stays (the report says so)
        return Launch(argv, env, str(run_dir), _child_setup(limits, uid, join_group, zygote, offline))
    env.update({"PYTHONPATH": f"{SANDBOX_ROOT}/pkg", "HOME": WORK_DIR, "TMPDIR": "/tmp"})
    bwrap = shutil.which("bwrap") or "bwrap"
    argv = [bwrap, *_namespaces(uid is not None), "--die-with-parent", "--new-session"]
    for d in _SYSTEM_DIRS:
        argv += ["--ro-bind-try", d, d]
    # One sized tmpfs holds everything the worker may write; /tmp first, so that a Python
    # environment that lives under /tmp (a venv) is mounted on top of it (the zygote's clean-up
    # never enters another mount).
    # An mqueue filesystem of the sandbox's own IPC namespace: the zygote's clean-up sees (and removes)
    # every POSIX message queue a child made there.
    argv += ["--proc", "/proc", "--dev", "/dev", "--mqueue", "/dev/mqueue", "--remount-ro", "/dev",
             "--perms", "1777", "--size", str(limits.disk_mb << 20), "--tmpfs", "/tmp",
             "--perms", "1777", "--dir", WORK_DIR]
    package_dir = Path(__file__).resolve().parents[1]
    # The folder above the package is hidden too: in a checkout it holds the course.
    argv += mount_args(python_roots(), _hidden_paths([package_dir.parent, *hide]))
    for d in (SANDBOX_ROOT, f"{SANDBOX_ROOT}/pkg"):
        argv += ["--perms", "0755", "--dir", d]
    argv += ["--ro-bind", str(package_dir), f"{SANDBOX_ROOT}/pkg/grader"]
    argv += ["--chdir", WORK_DIR, "--", python_executable(), "-m", module, str(channel_fd)]
    return Launch(argv, env, str(run_dir), _child_setup(limits, uid, join_group, zygote))


def describe(mode: str, course_readable: bool = True) -> str:
    """The isolation line of a report; ``course_readable``: without a sandbox, whether the worker could
    read the course's files (``readable_unsandboxed``)."""
    if mode == "bwrap":
        return ("bubblewrap sandbox (no network, read-only system, private sized /tmp, "
                "course files not mounted) with resource limits")
    why = not_requested_reason() or "--sandbox none was asked for"
    reads = ("files, the course's reference and cached answers among them" if course_readable
             else "other files, but not the course's files or the cache (closed to its user)")
    network = ("no network (a network namespace of its own)" if none_network() is None
               else "the network")
    return f"plain subprocess with resource limits, NOT sandboxed ({why}): the submission could read {reads}; " \
           f"it had {network}"


def readable_unsandboxed(folders: list[Path], own_uid: bool, limit: int = 10_000) -> bool:
    """Whether a worker without bubblewrap could read a file under ``folders``.

    Without a uid of its own (``own_uid`` False: the grader is not root, or no free uid was
    found) the worker is the grader's own user: it reads what the grader reads. With one, it
    reads a file only where every folder on the way lets others through and the file lets
    others read it. At most ``limit`` entries are looked at (past that, readable is assumed).
    """
    if not own_uid:
        return any(Path(f).exists() for f in folders)
    seen = 0
    for folder in folders:
        folder = Path(os.path.realpath(folder))
        if not folder.is_dir() or not all(_others_may(p, 0o001) for p in (folder, *folder.parents)):
            continue
        todo = [folder]
        while todo:
            current = todo.pop()
            try:
                entries = list(os.scandir(current))
            except OSError:
                continue
            for entry in entries:
                seen += 1
                if seen > limit:
                    return True
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if st.st_mode & 0o001:
                        todo.append(Path(entry.path))
                elif stat.S_ISREG(st.st_mode) and st.st_mode & 0o004:
                    return True
    return False


def _others_may(path: Path, bits: int) -> bool:
    try:
        return bool(os.stat(path).st_mode & bits)
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def none_network() -> str | None:
    """Why a ``none``-mode worker keeps the network here; None when it gets an empty network namespace of
    its own (the grader runs as root, and the kernel lets it make one: probed once, in a child)."""
    if not sys.platform.startswith("linux"):
        return "only Linux has network namespaces"
    if os.geteuid() != 0:
        return "the grader does not run as root, which making a network namespace without bubblewrap needs"
    code = ("import ctypes, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            f"sys.exit(0 if libc.unshare({CLONE_NEWNET}) == 0 else ctypes.get_errno() or 255)\n")
    try:
        probe = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the probe for a network namespace failed ({e})"
    if probe.returncode == 0:
        return None
    why = os.strerror(probe.returncode) if 0 < probe.returncode < 255 else f"exit status {probe.returncode}"
    return f"the kernel refused a network namespace ({why})"


def _leave_network() -> None:
    """In the child, before exec: an empty network namespace of its own (fails loudly, never silently)."""
    if hasattr(os, "unshare"):  # Python 3.12+
        os.unshare(CLONE_NEWNET)
        return
    if _LIBC.unshare(CLONE_NEWNET) != 0:
        code = ctypes.get_errno() or errno.EPERM
        raise OSError(code, f"unshare(CLONE_NEWNET): {os.strerror(code)}")


_LIBC = ctypes.CDLL(None, use_errno=True)


def not_requested_reason() -> str | None:
    """Why workers run unsandboxed although no one asked for that (None when bubblewrap works here)."""
    probe = bwrap_probe()
    return None if probe.usable else _why_not(probe)


def python_executable() -> str:
    """The interpreter's path inside the mounted trees (whose folders are real paths): the real file
    outside a virtual environment (not a shim or a link); in one, its own ``bin/python`` reached by the
    venv's real path (the file itself stays a link: Python finds the venv beside what it was started
    as), so that a venv reached through a symlinked folder runs too."""
    if not _in_venv():
        return os.path.realpath(sys.executable)
    return os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


@functools.lru_cache(maxsize=1)
def _python_roots() -> tuple[str, ...]:
    return tuple(_find_python_roots())


def python_roots() -> list[str]:
    """Folders the worker's interpreter needs, read-only (computed once per process)."""
    return list(_python_roots())


def _find_python_roots() -> list[str]:
    """Folders the worker's interpreter needs, read-only: prefixes and site-packages, none inside another
    (those inside a system folder are seen through it)."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  str(Path(os.path.realpath(sys.executable)).parent.parent)}
    for p in [*site.getsitepackages(), *sys.path]:
        if p and ("site-packages" in p or "dist-packages" in p) and os.path.isdir(p):
            candidates.add(p)
    roots = sorted({os.path.realpath(c) for c in candidates if c and os.path.isdir(c)})
    roots = [r for r in roots if r != "/"]
    return [r for r in roots if not any(r != o and _under(r, o) for o in roots)]


def _import_dirs() -> list[str]:
    """The folders the interpreter imports from (``sys.path``), resolved."""
    return [os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)]


def _hidden_paths(paths: list[Path]) -> list[str]:
    """Folders that must stay unseen but sit inside a mounted tree: masked with an empty tmpfs.

    Never the Python environment: a folder that is, or holds, one the interpreter imports from
    inside a mounted tree (``site-packages``, where an ordinary install puts the grader itself) is
    not masked. One that holds a whole mounted tree (a venv inside the course) is masked, and
    ``mount_args`` mounts the tree again on top.
    """
    roots = python_roots() + list(_SYSTEM_DIRS)

    def tree(path: str) -> str | None:  # the mounted tree that shows ``path`` (the deepest)
        return max((r for r in roots if _under(path, r)), key=len, default=None)

    needed = [(i, tree(i)) for i in _import_dirs()]
    hide = {os.path.realpath(p) for p in paths if p}
    return sorted(h for h in hide if tree(h) not in (None, h)
                  and not any(t is not None and _under(i, h) and _under(h, t) for i, t in needed))


def mount_args(roots: list[str], hidden: list[str]) -> list[str]:
    """bubblewrap arguments that mount the Python environment's folders ``roots`` read-only and mask the
    folders ``hidden`` with an empty tmpfs, once the system folders and ``/tmp`` are in place.

    Mounts are made shallowest first, so that a deeper one wins: a course inside a mounted tree is
    masked, and a Python environment inside a masked folder is visible again. A root inside a
    system folder is mounted only when a masked folder would otherwise hide it. Folders on the
    way to a mount point that exist nowhere yet are made traversable (0755), whatever the host's modes.
    """
    def in_system(path: str) -> bool:
        return any(_under(path, s) for s in _SYSTEM_DIRS)

    binds = [r for r in roots if not in_system(r) or any(_under(r, h) for h in hidden)]
    ops = sorted([(len(Path(r).parts), 0, r) for r in binds] + [(len(Path(h).parts), 1, h) for h in hidden])
    args: list[str] = []
    covered = ["/tmp"]  # mount points and made folders so far, the sized tmpfs first
    fresh = {"/tmp", *hidden}  # of those, the ones on a tmpfs (a folder can be made inside)
    for _, kind, path in ops:
        if kind == 1:
            args += ["--tmpfs", path]
        else:
            for parent in reversed(Path(path).parents):
                p = str(parent)
                if p == "/" or p in covered:
                    continue
                inner = max((c for c in covered if _under(p, c)), key=len, default=None)
                if inner in fresh or (inner is None and not in_system(p)):
                    args += ["--perms", "0755", "--dir", p]  # on a tmpfs: made here
                    covered.append(p)
                    fresh.add(p)
            args += ["--ro-bind", path, path]
        covered.append(path)
    return args


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
                 zygote: bool = False, offline: bool = False) -> Callable[[], None]:
    """What the child does between fork and exec: join the process group, leave the network (``offline``:
    ``none`` mode as root; a failure stops the start), set the limits.

    Computed now; the child only makes system calls (no imports, no allocation to speak of).
    A zygote keeps no CPU or process limit: each of its children sets its own (it may only lower them).
    """
    settings = rlimits(limits, uid)
    if zygote:
        settings = [(n, v) for n, v in settings if n not in ("RLIMIT_CPU", "RLIMIT_NPROC")]

    def apply() -> None:
        join_group()
        if offline:
            _leave_network()
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
