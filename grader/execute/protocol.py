"""The wire between the grader and a worker: one typed protocol, validated in one place.

Parent -> worker (stdin, trusted): one JSON line holding the ``Job``, then ``inputs_size``
bytes of safetensors (the case inputs, parameters and loss weights). Nothing else.

Worker -> parent (a dedicated pipe, untrusted once student code has started): records,
each a JSON header line ``{"nonce": ..., "kind": ..., "payload": N, ...}`` followed by N bytes
of safetensors (a call's tensors; N is 0 for every other kind). The kinds, in order:
``ready`` (torch imported, job read: nothing of the submission has run yet), ``exec`` (the
top-level statements ran; their errors), one ``call`` per case, ``done``; or ``internal``
(the worker's own code failed).

``RecordReader`` is the only place where those bytes become data: it bounds every header
(size, nesting depth, numbers, string lengths, list lengths) and every payload, checks each
record against its schema, and either returns a typed record, ignores a line that is not
one of ours (no nonce: stray output of the submission), or raises ``ProtocolViolation``
with a plain reason. Records are stamped with the job's nonce so that stray writes are
easy to drop; the nonce is no secret from the submission's code (it runs in the same
process), so a well-formed forgery is simply taken as what that code returned: verdicts
are computed from the tensors in the parent, never from the worker's word.

This module is imported on both sides: it uses the standard library only.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

from grader.model.outcomes import ErrorInfo

#: The longest header line accepted (the tensors travel as the payload, not in the header).
MAX_HEADER_BYTES = 1 << 20
#: Nesting depth of any header (the schemas below need 4).
MAX_DEPTH = 8
#: Lengths of strings and lists inside records.
MAX_TEXT = 8000
MAX_ERRORS = 50
MAX_PARAMS = 10_000
MAX_FORBIDDEN = 20
#: Tensor name prefixes inside a call's tensors, e.g. "in/Q", "params/lin_Q.weight".
INPUT_PREFIXES = ("in/", "params/", "gradw/", "pin/")
OUTPUT_PREFIXES = ("out/", "grad/", "pout/")
#: Names of what an unrolled recurrent cell returns.
UNROLL_OUTPUTS = ("h_seq", "c_last")
#: Exit status of a worker whose own code failed (after the submission started, the
#: submission may have caused it: see ``docs/security.md``).
WORKER_FAILED_EXIT = 70


class ProtocolViolation(Exception):
    """A record that claims to be ours (it carries the nonce) but breaks the protocol."""


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class StatementSpec:
    """One top-level statement to execute: its source, its unit's file name and first line."""

    file: str
    lineno: int
    source: str


@dataclass(frozen=True)
class CallSpec:
    """The worker's instructions for one case (the same for the reference and a student)."""

    id: str
    target: str
    init: dict[str, Any]
    seed: int
    args: list[str]
    inputs: dict[str, Any]
    dtypes: dict[str, str]
    mask: dict[str, Any] | None
    mask_rank: int | None
    key_args: list[str]
    call: str
    returns: str | list[str]
    keys: list[str]
    grad: bool
    loss: list[str]
    perturb: bool
    build_only: bool
    #: decided from the source alone: the worker does nothing for it
    static_only: bool
    #: dotted names the target must not use (watched at run time by ``grader.execute.guard``)
    forbid: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    """Everything a worker is told: what to execute, which calls to make, how to stamp records."""

    mode: str  # "generate" (the reference: make inputs too) or "run"
    nonce: str
    statements: list[StatementSpec]
    #: file name -> {"label": "cell 3", "source": the unit's whole source} (for tracebacks)
    units: dict[str, dict[str, str]]
    calls: list[CallSpec]
    inputs_size: int = 0
    #: the most bytes of tensors one case may send back (the parent refuses more)
    max_payload: int = 64 << 20

    def to_line(self) -> bytes:
        """The job's JSON line (the inputs follow it on stdin)."""
        data = {"mode": self.mode, "nonce": self.nonce, "units": self.units, "inputs_size": self.inputs_size,
                "max_payload": self.max_payload,
                "statements": [vars(s) for s in self.statements], "calls": [vars(c) for c in self.calls]}
        return json.dumps(data).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> "Job":
        """Inverse of ``to_line`` (the worker reads its job: trusted data from the parent)."""
        data = json.loads(line)
        return cls(data["mode"], data["nonce"], [StatementSpec(**s) for s in data["statements"]],
                   data["units"], [CallSpec(**c) for c in data["calls"]], int(data["inputs_size"]),
                   int(data["max_payload"]))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ForbiddenUse:
    """A forbidden API that the submission's code called while a case ran (seen at run time)."""

    forbidden: str
    called: str


@dataclass(frozen=True)
class Ready:
    """The worker imported torch and read its job; from now on, submitted code runs."""


@dataclass(frozen=True)
class ExecRecord:
    """The top-level statements ran; the errors they raised (each statement is skipped on error)."""

    errors: tuple[ErrorInfo, ...]


@dataclass(frozen=True)
class CallRecord:
    """One case's run: its status, the phase it stopped in, and its tensors (safetensors bytes)."""

    id: str
    status: str  # "ok" or "error"
    phase: str | None
    error: ErrorInfo | None
    params: dict[str, tuple[int, ...]]
    duration: float
    forbidden: tuple[ForbiddenUse, ...]
    tensors: bytes = b""


@dataclass(frozen=True)
class Done:
    """Every call was made."""


@dataclass(frozen=True)
class Internal:
    """The worker's own code failed, with its traceback."""

    traceback: str


Record = Ready | ExecRecord | CallRecord | Done | Internal
PHASES = ("build", "load_params", "forward", "backward", "perturbed forward")


#: The worker's own encoder, made when this module is imported (before any submitted code runs).
_ENCODE = json.JSONEncoder(allow_nan=False).encode


def encode_record(kind: str, nonce: str, payload: bytes = b"", **fields: Any) -> bytes:
    """A record's bytes on the wire (the worker's side)."""
    header = {"nonce": nonce, "kind": kind, "payload": len(payload), **fields}
    return _ENCODE(header).encode() + b"\n" + payload


# --------------------------------------------------------------------------- the reader


class RecordReader:
    """Turns the channel's bytes into typed records; the one place they are validated.

    ``feed`` takes whatever the pipe delivered and yields complete records. Lines without
    the nonce are counted in ``ignored`` and skipped; a header that carries it but is
    malformed raises ``ProtocolViolation``.
    """

    def __init__(self, nonce: str, max_payload: int):
        self.nonce = nonce.encode()
        self.max_payload = max_payload
        self.ignored = 0
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for a newline
        self._header: dict[str, Any] | None = None  # waiting for its payload

    def feed(self, chunk: bytes) -> Iterator[Record]:
        """Add bytes from the channel; yield each record they complete."""
        self._buffer += chunk
        while True:
            if self._header is not None:
                size = self._header["payload"]
                if len(self._buffer) < size:
                    return
                payload = bytes(self._buffer[:size])
                del self._buffer[:size]
                header, self._header = self._header, None
                yield _record(header, payload)
                continue
            end = self._buffer.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(self._buffer)
                if len(self._buffer) > MAX_HEADER_BYTES:  # no line of ours is this long
                    self.ignored += 1
                    self._buffer.clear()
                    self._scanned = 0
                return
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            self._scanned = 0
            header = self._header_of(line)
            if header is None:
                continue
            if header["payload"]:
                self._header = header
            else:
                yield _record(header, b"")

    def _header_of(self, line: bytes) -> dict[str, Any] | None:
        if self.nonce not in line or len(line) > MAX_HEADER_BYTES:
            self.ignored += 1
            return None
        try:
            data = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError, MemoryError):
            self.ignored += 1  # not JSON: stray output that happens to contain the nonce
            return None
        if not isinstance(data, dict) or data.get("nonce") != self.nonce.decode():
            self.ignored += 1
            return None
        if _depth(data) > MAX_DEPTH:
            raise ProtocolViolation("a record nested too deeply")
        payload = data.get("payload", 0)
        if not _is_int(payload) or not 0 <= payload <= self.max_payload:
            raise ProtocolViolation(f"a record announced {payload!r} bytes of tensors (at most "
                                    f"{self.max_payload} are accepted)")
        return data


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON, iteratively (the decoder already bounds recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            return d
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def _record(data: dict[str, Any], payload: bytes) -> Record:
    kind = data.get("kind")
    if kind == "ready":
        return Ready()
    if kind == "done":
        return Done()
    if kind == "internal":
        return Internal(_text(data.get("traceback"), "traceback", limit=MAX_TEXT))
    if kind == "exec":
        errors = _list(data.get("errors"), "errors", MAX_ERRORS)
        return ExecRecord(tuple(_error(e) for e in errors))
    if kind == "call":
        return call_record(data, payload)
    raise ProtocolViolation(f"a record of unknown kind {str(kind)[:40]!r}")


def call_record(data: dict[str, Any], payload: bytes = b"") -> CallRecord:
    """A call's fields checked against the schema (also used for saved fixtures and caches)."""
    if not isinstance(data, dict):
        raise ProtocolViolation("a call record is not a table")
    status = data.get("status")
    if status not in ("ok", "error"):
        raise ProtocolViolation("a call record without a valid status")
    phase = data.get("phase")
    if phase is not None and phase not in PHASES:
        raise ProtocolViolation("a call record with an unknown phase")
    error = data.get("error")
    if (status == "error") != (error is not None):
        raise ProtocolViolation("a call record whose status and error disagree")
    params_raw = data.get("params") or {}
    if not isinstance(params_raw, dict) or len(params_raw) > MAX_PARAMS:
        raise ProtocolViolation("a call record with malformed parameters")
    params = {}
    for name, shape in params_raw.items():
        dims = _list(shape, "a parameter's shape", 16)
        if len(name) > 200 or not all(_is_int(d) and 0 <= d < 1 << 40 for d in dims):
            raise ProtocolViolation("a call record with a malformed parameter shape")
        params[name] = tuple(dims)
    duration = data.get("duration", 0.0)
    if not _in_range(duration, 0, 1e6):
        raise ProtocolViolation("a call record with an impossible duration")
    forbidden = []
    for use in _list(data.get("forbidden", []), "forbidden", MAX_FORBIDDEN):
        if not isinstance(use, dict):
            raise ProtocolViolation("a malformed forbidden-call entry")
        forbidden.append(ForbiddenUse(_text(use.get("forbidden"), "forbidden", 200),
                                      _text(use.get("called"), "called", 300)))
    return CallRecord(_text(data.get("id"), "id", 200), status, phase,
                      _error(error) if error is not None else None, params, float(duration),
                      tuple(forbidden), payload)


def _error(raw: Any) -> ErrorInfo:
    if not isinstance(raw, dict):
        raise ProtocolViolation("a malformed error description")
    line = raw.get("line")
    if line is not None and not (_is_int(line) and 0 <= line < 10**7):
        raise ProtocolViolation("an error description with an impossible line number")
    bases = tuple(_text(m, "bases", 100) for m in _list(raw.get("bases", []), "bases", 50))
    return ErrorInfo(_text(raw.get("type"), "type", 100) or "Error", bases, _text(raw.get("message"), "message"),
                     _text(raw.get("traceback"), "traceback"), _optional_text(raw.get("label"), 100),
                     line, _optional_text(raw.get("code"), 500), _optional_text(raw.get("function"), 200),
                     raw.get("api_misuse") is True)


def _text(value: Any, name: str, limit: int = MAX_TEXT) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolViolation(f"{name} is not text")
    return value[:limit]


def _optional_text(value: Any, limit: int) -> str | None:
    return _text(value, "a location", limit) or None


def _list(value: Any, name: str, limit: int) -> list:
    if not isinstance(value, list) or len(value) > limit:
        raise ProtocolViolation(f"{name} is not a list of at most {limit} items")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(value: Any, low: float, high: float) -> bool:
    """A finite number within [low, high] (a huge int is compared as an int, never converted)."""
    if _is_int(value):
        return low <= value <= high
    return isinstance(value, float) and math.isfinite(value) and low <= value <= high


def split_key(key: str) -> tuple[str, str]:
    """'case-id/out/x' -> ('case-id', 'out/x')."""
    cid, _, rest = key.partition("/")
    return cid, rest
