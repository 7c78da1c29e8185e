# The victim that sees leftovers: it scores 4/4 only in a sandbox where nothing of an earlier
# submission is left (no other process than its own, its parent and the namespace's init; nothing
# under /tmp but its own empty working folder and the mounts the sandbox made there; no IPC object of
# any kind: System V, POSIX message queues, POSIX shared memory). Otherwise every output is wrong.
# It also needs one torch thread. It imports modules no worker preloads, so that a module planted in its folder would be picked up.
import os
import random
import statistics

import torch
import torch.nn as nn


def mounted() -> tuple[set[str], set[str]]:
    """(the mount points under /tmp and the folders on the way to them, the mount points): a Python
    environment that lives under the host's /tmp is mounted there, read-only; not a leftover."""
    kept, points = set(), set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point.startswith("/tmp/"):
                points.add(point)
            while point.startswith("/tmp/"):
                kept.add(point)
                point = os.path.dirname(point)
    return kept, points


def posix_queues_left() -> list[str]:
    """The POSIX message queues an earlier run may have left under the names a submission would use,
    opened by name (that needs no mount: what a submission would do)."""
    import ctypes

    try:
        rt = ctypes.CDLL("librt.so.1", use_errno=True)
    except OSError:
        return ["no librt to look with"]
    found = []
    for name in ("/grader-cross-q", "/q", "/queue"):
        fd = rt.mq_open(name.encode(), os.O_RDONLY)
        if fd >= 0:
            found.append(name)
            rt.mq_close(fd)
    return found


def leftovers() -> list[str]:
    found = []
    mine = {1, os.getpid(), os.getppid()}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if int(pid) not in mine and state not in ("Z", "X"):
            found.append(f"process {pid}")
    kept, points = mounted()
    folders = ["/tmp"]
    while folders:  # into the folders on the way to a mount, never into a mount
        folder = folders.pop()
        for n in os.listdir(folder):
            path = f"{folder}/{n}"
            if path in kept:
                if path not in points:
                    folders.append(path)
            elif path != "/tmp/work":
                found.append(path)
    found += [f"/tmp/work/{n}" for n in os.listdir("/tmp/work")]
    for table in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{table}") as f:
                found += [f"{table} {line.split()[1]}" for line in f.read().splitlines()[1:]]
        except OSError:
            pass
    for folder in ("/dev/mqueue", "/dev/shm"):  # POSIX message queues, POSIX shared memory
        found += [f"{folder}/{n}" for n in (os.listdir(folder) if os.path.isdir(folder) else [])]
    found += [f"POSIX queue {name}" for name in posix_queues_left()]
    if torch.get_num_threads() != 1:
        found.append(f"{torch.get_num_threads()} torch threads")
    if getattr(random, "PLANTED", False) or getattr(statistics, "PLANTED", False):
        found.append("a planted module")
    return found


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.clean = not leftovers()

    def forward(self, x):
        return 2 * self.lin(x) if self.clean and not leftovers() else 3 * self.lin(x)
