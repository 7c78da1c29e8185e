"""The cgroups a worker's processes live in: a cgroup v2 child of our own, or a cgroup v1 memory child.

``make_cgroup`` creates ``grader-<token>`` under our own cgroup v2 (found through
``/proc/self/cgroup`` and ``/proc/self/mountinfo``) and writes ``memory.max`` /
``pids.max`` where the parent delegates those controllers. On a hybrid host whose memory
controller is still v1, ``make_memory_v1`` caps the group's memory there instead.
``cgroup_tree`` lists a cgroup and every one below it, ``rmdir_quiet`` removes one.
Nothing here raises for lack of cgroups or permissions: a cgroup that cannot be made is None.

Standard library only; nothing here imports torch.
"""
from __future__ import annotations

import os
import secrets

from grader.execute import procfs
from grader.execute.procfs import read_file, write_file


# --------------------------------------------------------------------------- cgroup v2


def _own_cgroup2_dirs() -> list[str]:
    """Where our own cgroup v2 appears in the file system (every cgroup2 mount that shows it)."""
    data = read_file(f"{procfs.PROC}/self/cgroup")
    rel = None
    for line in (data or b"").decode(errors="replace").splitlines():
        if line.startswith("0::"):
            rel = line[3:].strip()
    if not rel or not rel.startswith("/") or "/.." in rel or rel.endswith(" (deleted)"):
        return []
    mounts = read_file(f"{procfs.PROC}/self/mountinfo", 1 << 20) or b""
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
    available = (read_file(os.path.join(parent, "cgroup.controllers")) or b"").split()
    enabled = (read_file(os.path.join(parent, "cgroup.subtree_control")) or b"").split()
    for name in wanted:
        if name.encode() in available and name.encode() not in enabled:
            write_file(os.path.join(parent, "cgroup.subtree_control"), f"+{name}".encode())


def make_cgroup(token: str, memory_bytes: int | None, max_pids: int | None) -> tuple[str, list[str]] | None:
    """Create ``grader-<token>`` under our own cgroup v2: (its folder, limits enforced), or None."""
    safe = "".join(c for c in token if c.isalnum() or c in "-_")[:64] or secrets.token_hex(8)
    for parent in _own_cgroup2_dirs():
        members = os.path.join(parent, "cgroup.procs")
        if not (os.path.isdir(parent) and os.access(parent, os.W_OK) and os.access(members, os.W_OK)):
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
                rmdir_quiet(path)
                break
            return path, _set_limits(path, memory_bytes, max_pids)
    return None


def _set_limits(path: str, memory_bytes: int | None, max_pids: int | None) -> list[str]:
    """Write the limits whose files exist in the cgroup; the names of those that took."""
    enforced = []
    if memory_bytes and write_file(os.path.join(path, "memory.max"), str(int(memory_bytes)).encode()):
        enforced.append("memory")
        write_file(os.path.join(path, "memory.swap.max"), b"0")  # no escaping the limit into swap
        write_file(os.path.join(path, "memory.oom.group"), b"1")  # out of memory: the whole worker goes
    if max_pids and write_file(os.path.join(path, "pids.max"), str(int(max_pids)).encode()):
        enforced.append("pids")
    return enforced


def cgroup_tree(path: str) -> list[str]:
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


def rmdir_quiet(path: str) -> bool:
    """Remove an (empty) cgroup folder: True when it is gone, False (never an exception) when it stays."""
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- cgroup v1 memory


# --------------------------------------------------------------------------- cgroup v1 memory


def _memory_v1_dir() -> str | None:
    """Our own folder in a cgroup v1 memory hierarchy (a hybrid host), if one is mounted."""
    own = None
    for line in (read_file(f"{procfs.PROC}/self/cgroup") or b"").decode(errors="replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "memory" in parts[1].split(","):
            own = parts[2]
    if own is None:
        return None
    for line in (read_file(f"{procfs.PROC}/self/mountinfo", 1 << 20) or b"").decode(errors="replace").splitlines():
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) >= 5 and len(extra) >= 3 and extra[0] == "cgroup" and "memory" in extra[2].split(","):
            root, mount = _unescape(fields[3]), _unescape(fields[4])
            if own == root or own.startswith(root.rstrip("/") + "/"):
                return os.path.join(mount, own[len(root):].lstrip("/"))
    return None


def make_memory_v1(token: str, memory_bytes: int) -> str | None:
    """A cgroup v1 memory child that caps the group's memory (swap included), or None."""
    parent = _memory_v1_dir()
    if parent is None or not os.access(parent, os.W_OK):
        return None
    path = os.path.join(parent, f"grader-{token}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    if not write_file(os.path.join(path, "memory.limit_in_bytes"), str(memory_bytes).encode()):
        rmdir_quiet(path)
        return None
    write_file(os.path.join(path, "memory.memsw.limit_in_bytes"), str(memory_bytes).encode())  # no swapping past it
    return path
