"""The cluster's chunk bookkeeping, with no Dask in it: how a batch's submissions are cut into chunks,
which chunk is sent next, and what becomes of one that does not come back with results.

A chunk lost on its way (a worker gone, a fetch that timed out, a task the scheduler can run nowhere)
is sent again first. A chunk whose worker was killed while it ran (Dask's ``KilledWorker``, after its
own retries) is split in halves, down to single submissions; a single one is a *suspect*, sent again
alone once everything else is done, with nothing else in flight: killed again then, it is recorded as
the machine's loss (``grader.pipeline.machine_lost_report``), otherwise its result stands.
"""
from __future__ import annotations

import collections
from collections.abc import Hashable, Iterator
from pathlib import Path

from grader.plan.submission import size_cap

#: A chunk's most submissions, and its most bytes (a single larger file goes alone).
MAX_CHUNK = 16
MAX_CHUNK_BYTES = 64 * 1024 * 1024

#: Submissions as the batch numbers them (its index, the file).
Chunk = list[tuple[int, Path]]


def make_chunks(indexed: Chunk, slots: int, fixed: int | None = None) -> list[Chunk]:
    """Consecutive chunks of at most ``MAX_CHUNK_BYTES`` (a larger file alone) and ``fixed`` submissions,
    or, without ``fixed``, a quarter of each slot's share of what is left (1 to ``MAX_CHUNK``): large
    chunks first, small ones at the end, so that the slots finish together."""
    chunks: list[Chunk] = []
    current: Chunk = []
    used = 0
    left = len(indexed)
    size = fixed or max(1, min(MAX_CHUNK, left // max(1, 4 * slots)))
    for index, path in indexed:
        nbytes = sent_bytes(path)
        if current and (len(current) >= size or used + nbytes > MAX_CHUNK_BYTES):
            chunks.append(current)
            left -= len(current)
            current, used = [], 0
            size = fixed or max(1, min(MAX_CHUNK, left // max(1, 4 * slots)))
        current.append((index, path))
        used += nbytes
    if current:
        chunks.append(current)
    return chunks


def sent_bytes(path: Path) -> int:
    """What sending ``path`` costs (0 for a file too large to read, which is graded as such where it lands)."""
    try:
        size = path.stat().st_size
    except OSError:
        return 0
    return size if size <= size_cap(path) else 0


class Chunks:
    """The chunks of one batch on their way: waiting, in flight (by the handle the caller gives each one:
    a Dask future), and suspects. ``slots`` chunks run at once and one more is ready, so the next goes to
    whichever slot frees first; suspects run one at a time."""

    def __init__(self, chunks: list[Chunk], slots: int) -> None:
        self.waiting: collections.deque[Chunk] = collections.deque(chunks)
        self.running: dict[Hashable, Chunk] = {}
        self.suspects: list[Chunk] = []
        self.in_flight = slots + 1
        #: the largest chunk's size (how long a chunk may take scales with it)
        self.largest = max((len(c) for c in chunks), default=1)

    def __bool__(self) -> bool:
        """Whether any submission still has no result."""
        return bool(self.waiting or self.running or self.suspects)

    @property
    def alone(self) -> bool:
        """Whether the chunks now in flight run one at a time (the suspects' turn)."""
        return self.in_flight == 1

    def to_send(self) -> Iterator[Chunk]:
        """The chunks to send now (each must be given its handle with ``sent``); the suspects, one at a
        time, once nothing else is left."""
        if not self.waiting and not self.running and self.suspects:
            self.waiting.append(self.suspects.pop(0))
            self.in_flight = 1
        while self.waiting and len(self.running) < self.in_flight:
            yield self.waiting.popleft()

    def sent(self, handle: Hashable, chunk: Chunk) -> None:
        """``chunk`` is in flight as ``handle`` (``to_send`` counts it before it gives the next one)."""
        self.running[handle] = chunk

    def returned(self, handle: Hashable) -> Chunk:
        """The chunk of a handle that finished, one way or another: no longer in flight."""
        return self.running.pop(handle)

    def again(self, chunk: Chunk) -> None:
        """A chunk lost on its way: sent again before any other."""
        self.waiting.appendleft(chunk)

    def stuck(self, handles: list[Hashable]) -> None:
        """Chunks in flight that can run nowhere: sent again, afresh."""
        for handle in handles:
            self.again(self.running.pop(handle))

    def killed(self, chunk: Chunk) -> bool:
        """A chunk whose worker was killed while it ran: split in halves (sent again first), or, a single
        submission, kept as a suspect. False when it was already a suspect running alone: that submission
        is the machine's loss."""
        if len(chunk) > 1:
            half = len(chunk) // 2
            self.waiting.extendleft([chunk[half:], chunk[:half]])
            return True
        if not self.alone:
            self.suspects.append(chunk)
            return True
        return False
