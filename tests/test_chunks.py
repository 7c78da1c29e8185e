"""grader.batch.chunks: cutting a batch into chunks, and what becomes of a chunk that comes back
without results (no Dask: the bookkeeping alone, on made-up handles)."""
from __future__ import annotations

from pathlib import Path

from grader.batch import chunks
from grader.batch.chunks import Chunks


def test_chunks_by_count_and_bytes(tmp_path, monkeypatch):
    files = []
    for i, size in enumerate([10, 10, 10, 50, 10]):
        p = tmp_path / f"s{i}.py"
        p.write_bytes(b"x" * size)
        files.append((i, p))
    assert [[i for i, _ in c] for c in chunks.make_chunks(files, 4, 2)] == [[0, 1], [2, 3], [4]]
    monkeypatch.setattr(chunks, "MAX_CHUNK_BYTES", 55)
    assert [[i for i, _ in c] for c in chunks.make_chunks(files, 1, 16)] == [[0, 1, 2], [3], [4]]


def test_chunks_shrink_towards_the_end(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("x = 1\n")
    sizes = [len(c) for c in chunks.make_chunks([(i, path) for i in range(1000)], 4)]
    assert sum(sizes) == 1000 and sizes[0] == chunks.MAX_CHUNK and sizes[-1] == 1
    assert sizes == sorted(sizes, reverse=True)
    assert [len(c) for c in chunks.make_chunks([(i, path) for i in range(6)], 2)] == [1] * 6


def _ids(chunk) -> list[int]:
    return [i for i, _ in chunk]


def _send(c: Chunks, names: list[str]) -> list[list[int]]:
    """Send what the bookkeeping gives, each under the next made-up handle; the chunks sent."""
    sent = []
    for chunk in c.to_send():
        c.sent(names.pop(0), chunk)
        sent.append(_ids(chunk))
    return sent


def test_one_chunk_more_than_the_slots_is_in_flight_and_the_next_goes_when_one_returns():
    made = [[(i, Path(f"s{i}.py"))] for i in range(5)]
    c = Chunks(made, slots=2)
    handles = [f"h{i}" for i in range(10)]
    assert _send(c, handles) == [[0], [1], [2]] and set(c.running) == {"h0", "h1", "h2"}
    assert _send(c, handles) == []  # full
    assert _ids(c.returned("h1")) == [1]
    assert _send(c, handles) == [[3]]
    for h in ("h0", "h2", "h3"):
        c.returned(h)
    assert _send(c, handles) == [[4]] and c
    c.returned("h4")
    assert not c


def test_a_lost_chunk_goes_again_first_and_a_stuck_one_is_sent_afresh():
    c = Chunks([[(0, Path("a"))], [(1, Path("b"))], [(2, Path("c"))]], slots=0)  # one in flight at a time
    handles = ["h0", "h1", "h2", "h3"]
    assert _send(c, handles) == [[0]]
    c.again(c.returned("h0"))
    assert _send(c, handles) == [[0]]
    c.stuck(["h1"])
    assert not c.running and _send(c, handles) == [[0]]


def test_a_killed_chunk_is_halved_then_its_single_submissions_run_alone_at_the_end():
    chunk = [(i, Path(f"s{i}.py")) for i in range(4)]
    c = Chunks([chunk, [(9, Path("s9.py"))]], slots=1)
    handles = [f"h{i}" for i in range(20)]
    assert _send(c, handles) == [[0, 1, 2, 3], [9]]
    assert c.killed(c.returned("h0"))  # split in halves, sent before the rest
    assert _send(c, handles) == [[0, 1]]
    assert c.killed(c.returned("h2"))
    assert _send(c, handles) == [[0]]  # h1 (9) still in flight: one more fits
    assert c.killed(c.returned("h3")) and _ids(c.suspects[0]) == [0]  # alone but not the suspects' turn
    assert _send(c, handles) == [[1]]
    for h in ("h1", "h4"):
        c.returned(h)
    assert _send(c, handles) == [[2, 3]]
    c.returned("h5")
    assert not c.alone and _send(c, handles) == [[0]] and c.alone  # the suspect, with nothing else in flight
    assert not c.killed(c.returned("h6"))  # killed again, alone: the machine's loss, the caller's to record
    assert not c
