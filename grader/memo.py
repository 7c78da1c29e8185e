"""Results worth computing once per process, as long as the files they were read from stay the same.

``grade batch`` grades hundreds of submissions of one assignment in one process: the case
file, the known mistakes and the reference's cached outputs would otherwise be parsed again
for every one. ``by_files(key, paths, compute)`` returns ``compute()``'s last result for
``key`` while every path has the same size, modification time and inode as when it was
computed and, for a small file (up to ``DIGEST_BYTES``), the same content (file times can
be coarser than a quick rewrite); a missing file counts as a state too. Bounded; safe to
call from several threads.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

T = TypeVar("T")
#: How many results are kept (oldest dropped first).
MAX_ENTRIES = 64
#: Files up to this size are also compared by content.
DIGEST_BYTES = 1 << 15

_lock = threading.Lock()
_entries: "OrderedDict[Hashable, tuple[tuple, object]]" = OrderedDict()


def _state(path: os.PathLike[str] | str) -> tuple | None:
    try:
        st = os.stat(path)
        digest = b""
        if st.st_size <= DIGEST_BYTES:
            with open(path, "rb") as f:
                digest = hashlib.blake2b(f.read(DIGEST_BYTES + 1), digest_size=16).digest()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, digest)


def by_files(key: Hashable, paths: Iterable[os.PathLike[str] | str], compute: Callable[[], T]) -> T:
    """``compute()``, or its kept result for ``key`` while ``paths`` are unchanged. Exceptions are not kept."""
    paths = tuple(str(p) for p in paths)
    state = tuple(_state(p) for p in paths)
    with _lock:
        kept = _entries.get(key)
        if kept is not None and kept[0] == (paths, state):
            _entries.move_to_end(key)
            return kept[1]  # type: ignore[return-value]
    value = compute()
    if tuple(_state(p) for p in paths) == state:  # changed while we read it: do not keep
        with _lock:
            _entries[key] = ((paths, state), value)
            _entries.move_to_end(key)
            while len(_entries) > MAX_ENTRIES:
                _entries.popitem(last=False)
    return value


def clear() -> None:
    """Forget everything kept (tests)."""
    with _lock:
        _entries.clear()
