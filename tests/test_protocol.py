"""grader.execute.protocol.RecordReader on forged bytes: the one place the worker's channel becomes data.

Pure: no worker, no process. The bytes are what a submission could make the channel carry (it
shares the process with the worker until the sandbox ends it): split anywhere, interleaved with
stray output, lying about sizes, nested deep, of unknown kinds.
"""
from __future__ import annotations

import json

import pytest

from grader.execute import protocol
from grader.execute.protocol import (CallRecord, Done, ExecRecord, Internal, ProtocolViolation, Ready, RecordReader,
                                     encode_record)

NONCE = "n0nce-7f3a"
CALL = dict(id="c1", status="ok", phase=None, error=None, params={"lin.weight": [4, 4]}, duration=0.25,
            forbidden=[])


def read(data: bytes, chunk: int | None = None, max_payload: int = 1 << 20) -> tuple[list, int]:
    reader = RecordReader(NONCE, max_payload)
    pieces = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    records = [r for piece in pieces for r in reader.feed(piece)]
    return records, reader.ignored


def stream() -> bytes:
    return (encode_record("ready", NONCE) + b"print from the student\n"
            + encode_record("exec", NONCE, errors=[])
            + encode_record("call", NONCE, b"\x00\n" + NONCE.encode() + b"\n{}", **CALL)
            + encode_record("done", NONCE))


def test_records_come_out_the_same_whatever_the_chunks():
    whole, ignored = read(stream())
    assert [type(r) for r in whole] == [Ready, ExecRecord, CallRecord, Done] and ignored == 1
    # the payload is taken by its announced size, newlines and the nonce inside it included
    assert whole[2].tensors == b"\x00\n" + NONCE.encode() + b"\n{}" and whole[2].params == {"lin.weight": (4, 4)}
    for chunk in (1, 2, 7, 64):
        assert read(stream(), chunk) == (whole, 1), chunk


@pytest.mark.parametrize("line", [
    b"no nonce here",
    NONCE.encode() + b" is in this line but it is not JSON",
    json.dumps({"nonce": "another-nonce " + NONCE, "kind": "done", "payload": 0}).encode(),
    json.dumps([NONCE, "done"]).encode(),
    b'{"nonce": "' + NONCE.encode() + b'", "kind": "done", "payload": 0, "x": NaN}',
])
def test_stray_lines_are_counted_and_skipped(line):
    records, ignored = read(line + b"\n" + encode_record("done", NONCE))
    assert records == [Done()] and ignored == 1


def test_an_endless_line_is_dropped_and_the_next_record_still_read():
    flood = b"x" * (protocol.MAX_HEADER_BYTES + 10)
    records, ignored = read(flood + b"\n" + encode_record("done", NONCE), chunk=1 << 16)
    assert records == [Done()] and ignored >= 1


@pytest.mark.parametrize("payload", [-1, 1 << 21, 1.5, "12", True, None])
def test_a_header_lying_about_its_payload_is_a_violation(payload):
    line = json.dumps({"nonce": NONCE, "kind": "call", "payload": payload}).encode() + b"\n"
    with pytest.raises(ProtocolViolation, match="bytes of tensors"):
        read(line, max_payload=1 << 20)


def test_a_header_nested_too_deeply_is_a_violation():
    deep: object = 1
    for _ in range(protocol.MAX_DEPTH + 1):
        deep = [deep]
    line = json.dumps({"nonce": NONCE, "kind": "done", "payload": 0, "x": deep}).encode() + b"\n"
    with pytest.raises(ProtocolViolation, match="nested too deeply"):
        read(line)


@pytest.mark.parametrize("fields, words", [
    ({"kind": "exploit"}, "unknown kind"),
    ({"kind": "call", **{**CALL, "status": "maybe"}}, "valid status"),
    ({"kind": "call", **{**CALL, "phase": "import"}}, "unknown phase"),
    ({"kind": "call", **{**CALL, "status": "error"}}, "status and error disagree"),
    ({"kind": "call", **{**CALL, "params": {"w": [-1]}}}, "parameter"),
])
def test_records_that_break_the_schema_are_violations(fields, words):
    line = json.dumps({"nonce": NONCE, "payload": 0, **fields}).encode() + b"\n"
    with pytest.raises(ProtocolViolation, match=words):
        read(line)


def test_a_record_waits_for_its_whole_payload_and_an_internal_error_is_bounded():
    head = encode_record("call", NONCE, b"abcdef", **CALL)
    reader = RecordReader(NONCE, 1 << 20)
    assert list(reader.feed(head[:-3])) == []  # the payload is not all there yet
    [call] = list(reader.feed(head[-3:]))
    assert call.tensors == b"abcdef"
    [internal] = read(encode_record("internal", NONCE, traceback="t" * (protocol.MAX_TEXT * 3)))[0]
    assert isinstance(internal, Internal) and len(internal.traceback) <= protocol.MAX_TEXT + 100
