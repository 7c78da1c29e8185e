"""Fresh uids: an unused numeric uid (also free as a gid) for each worker, when the grader runs as root.

With a uid of its own, RLIMIT_NPROC and kill-by-uid count only that worker, and without a
sandbox it reads only what every user may read (and what it leaves in the shared scratch
folders can be found by its owner: ``grader.execute.trees.owned_entries``).

Standard library only; nothing here imports torch.
"""
from __future__ import annotations

import os
import secrets
import threading
import time

from grader.execute import procfs
from grader.execute.procfs import read_file

#: Where fresh uids come from: far above any real account or container mapping.
UID_RANGE = (10_000_000, 2_000_000_000)

_issued_uids: set[int] = set()
_uid_lock = threading.Lock()


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
    data = read_file(f"{procfs.PROC}/self/{name}")
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
        names = [n for n in os.listdir(procfs.PROC) if n.isdigit()]
    except OSError:
        return ids
    for name in names:
        for line in (read_file(f"{procfs.PROC}/{name}/status") or b"").split(b"\n"):
            if line.startswith((b"Uid:", b"Gid:")):
                ids.update(int(v) for v in line.split()[1:] if v.isdigit())
    return ids
