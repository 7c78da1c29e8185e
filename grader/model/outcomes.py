"""What happened, as data: the facts each stage returns, and ``grader.model.messages`` words.

Nothing here is English meant for a person. Each kind of fact is a small frozen dataclass
under one of four families:

- ``Stop``: why a worker stopped before it finished (``CaseTimeout``, ``Crashed``, ...);
- ``Cause``: why a case did not pass, or did not run (``Raised``, ``Stopped``, ``WrongAnswer``, ...);
- ``Problem``: one thing a check found wrong (``ValueDiffers``, ``MaskedLeak``, ...);
- ``Note``: a remark about the whole submission (``SkippedStatement``, ``TopLevelStop``, ...).

A fact is serialised with its kind as a tag, ``{"kind": "exception", "data": {...}}``
(``Fact.to_dict``), and rebuilt from the family's table of kinds (``Cause.from_dict``), so a
report read back from JSON or the batch's store holds the same typed facts it was written
with. Consumers dispatch on the type (``isinstance``, ``functools.singledispatch``) or, to
filter, on ``kind``; nothing reads a fact by key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping


# --------------------------------------------------------------------------- records the facts hold


@dataclass(frozen=True)
class ErrorInfo:
    """An exception raised by submitted code, as the student should see it."""

    type: str
    #: the names of the exception class and its bases (to match `raises = "ValueError"`)
    bases: tuple[str, ...] = ()
    message: str = ""
    traceback: str = ""
    #: where it was raised in the submission: "cell 7", line, the line's code, the function
    label: str | None = None
    line: int | None = None
    code: str | None = None
    function: str | None = None
    #: True when the code ran but returned the wrong kind of thing (wrong arity, not a tensor)
    api_misuse: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ErrorInfo":
        return _build(cls, d, {"bases": tuple})


#: What a cell the grader cannot read holds: a template's blank, a SyntaxError, or nesting too deep.
UNIT_ERRORS = ("blank", "syntax_error", "too_deep")


@dataclass(frozen=True)
class UnitError:
    """A cell (or one of its statements) that cannot be graded as it is: where, the code, and why.

    ``what`` is one of ``UNIT_ERRORS``; ``depth`` and ``limit`` are for ``too_deep`` (``depth`` 0:
    the parser gave up before saying how deep).
    """

    what: str
    label: str
    line: int | None = None
    code: str = ""
    message: str = ""
    depth: int = 0
    limit: int = 0

    def __post_init__(self) -> None:
        _check_kind(self.what, UNIT_ERRORS, "unit error")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UnitError":
        return _build(cls, {"what": d.get("kind"), **d})


@dataclass(frozen=True)
class Suggestion:
    """A class that may be the graded one under another name: its name and where it is defined."""

    name: str
    label: str
    line: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Suggestion":
        return _build(cls, d)


# --------------------------------------------------------------------------- the base of every fact


class Fact:
    """A fact of one kind. Subclasses are frozen dataclasses declared with ``kind=``; each family
    (``Stop``, ``Cause``, ``Problem``, ``Note``) keeps its own table of kinds."""

    kind: ClassVar[str] = ""
    #: kind -> class, one table per family (set by the family's base)
    kinds: ClassVar[dict[str, type["Fact"]]]
    #: field -> how to rebuild it from JSON (a nested fact or record)
    decoders: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def __init_subclass__(cls, kind: str | None = None, family: bool = False, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if family:
            cls.kinds = {}
        elif kind is not None:
            if kind in cls.kinds:
                raise TypeError(f"two {cls.__mro__[1].__name__} classes of kind {kind!r}")
            cls.kind = kind
            cls.kinds[kind] = cls

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., "data": {field: value}}`` in plain JSON-able values."""
        return {"kind": self.kind, "data": {f.name: plain(getattr(self, f.name))
                                            for f in dataclasses.fields(self)}}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        """The fact ``to_dict`` gave, of this family (``ValueError`` for a kind it does not hold)."""
        sub = cls.kinds.get(str(d.get("kind")))
        if sub is None or not issubclass(sub, cls):
            raise ValueError(f"invalid {cls.__name__.lower()} {d.get('kind')!r}, expected one of {', '.join(cls.kinds)}")
        return _build(sub, sub.upgraded(dict(d.get("data") or {})), sub.decoders)

    @classmethod
    def upgraded(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The data of a fact as an older grader wrote it, in this version's fields (default: as is)."""
        return data


def plain(value: Any) -> Any:
    """A fact's value as JSON-able data: facts as ``{"kind", "data"}``, records as dicts, tuples as lists."""
    if isinstance(value, Fact):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(x) for x in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _build(cls: type, data: Mapping[str, Any], decoders: Mapping[str, Callable[[Any], Any]] = {}) -> Any:
    """``cls`` from the fields of ``data`` it has (others ignored), each through its decoder."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: (decoders[k](v) if k in decoders and v is not None else v)
                  for k, v in data.items() if k in names})


def _check_kind(kind: str, allowed: tuple[str, ...], what: str) -> None:
    if kind not in allowed:
        raise ValueError(f"invalid {what} {kind!r}, expected one of {', '.join(allowed)}")


# --------------------------------------------------------------------------- stops


class Stop(Fact, family=True):
    """Why a worker stopped before finishing."""


@dataclass(frozen=True)
class CaseTimeout(Stop, kind="case_timeout"):
    seconds: float


@dataclass(frozen=True)
class SubmissionTimeout(Stop, kind="submission_timeout"):
    seconds: float


@dataclass(frozen=True)
class Crashed(Stop, kind="crashed"):
    #: the signal's name, e.g. "SIGSEGV"
    signal: str = ""


@dataclass(frozen=True)
class Exited(Stop, kind="exited"):
    code: int | None = None


@dataclass(frozen=True)
class OutOfMemory(Stop, kind="memory"):
    limit_mb: int


@dataclass(frozen=True)
class DiskFull(Stop, kind="disk"):
    limit_mb: int


@dataclass(frozen=True)
class ProtocolBroken(Stop, kind="protocol"):
    """The code interfered with the result channel: ``rule`` is the rule its bytes broke."""

    rule: str = ""


@dataclass(frozen=True)
class WorkerFailed(Stop, kind="worker_failed"):
    """The worker's own code failed (after the submission broke what it relies on)."""


@dataclass(frozen=True)
class Unresponsive(Stop, kind="unresponsive"):
    """The worker stopped answering."""


STOP_KINDS = tuple(Stop.kinds)


# --------------------------------------------------------------------------- causes


class Cause(Fact, family=True):
    """Why a case did not pass (or did not run)."""


@dataclass(frozen=True)
class UnitCause(Cause):
    """A graded class whose cell cannot run as it is (``unit`` says where and why)."""

    target: str
    unit: UnitError
    decoders: ClassVar = {"unit": UnitError.from_dict}

    @classmethod
    def upgraded(cls, data: dict[str, Any]) -> dict[str, Any]:
        # graders before typed facts wrote the unit's fields flat, beside the target
        return {**data, "unit": data} if "unit" not in data and "label" in data else data


@dataclass(frozen=True)
class NotImplementedYet(UnitCause, kind="not_implemented"):
    """The graded class (or a statement it needs, named in ``needed``) still holds the template's blank."""

    needed: tuple[str, ...] = ()
    decoders: ClassVar = {**UnitCause.decoders, "needed": tuple}


@dataclass(frozen=True)
class CellSyntaxError(UnitCause, kind="syntax_error"):
    """The graded class's cell does not parse."""


@dataclass(frozen=True)
class CellTooDeep(UnitCause, kind="too_deep"):
    """The graded class's cell nests too deeply to read."""


@dataclass(frozen=True)
class MissingTarget(Cause, kind="missing_target"):
    """The graded class is not defined; ``suggestion``: a class that may be it under another name."""

    target: str
    suggestion: Suggestion | None = None
    decoders: ClassVar = {"suggestion": Suggestion.from_dict}


@dataclass(frozen=True)
class Raised(Cause, kind="exception"):
    """The submission's code raised, in ``phase`` (``grader.execute.protocol.PHASES``)."""

    error: ErrorInfo
    phase: str | None = None
    decoders: ClassVar = {"error": ErrorInfo.from_dict}


@dataclass(frozen=True)
class Stopped(Cause, kind="stopped"):
    """The worker stopped in this case (``scope`` "case") or in the top-level code before it ("top-level")."""

    stop: Stop
    scope: str = "case"
    decoders: ClassVar = {"stop": Stop.from_dict}


@dataclass(frozen=True)
class NotRun(Cause, kind="not_run"):
    """No time or restarts were left: ``why`` is "time", "restarts" (``stops`` stops) or "machine" (a
    cluster's worker died with it ``stops`` times, the last time alone)."""

    why: str = "time"
    stops: int | None = None


@dataclass(frozen=True)
class WrongAnswer(Cause, kind="wrong_answer"):
    """The code ran; the checks found problems."""


@dataclass(frozen=True)
class Forbidden(Cause, kind="forbidden"):
    """A forbidden API is used (the problems say where)."""


@dataclass(frozen=True)
class Unverified(Cause, kind="unverified"):
    """The forbidden-call check needs a run of the class, and none completed."""

    target: str


@dataclass(frozen=True)
class Pending(Cause, kind="pending"):
    """A hidden case in a student's local check."""


@dataclass(frozen=True)
class Unavailable(Cause, kind="unavailable"):
    """A check a student's local check cannot run (the course's own code)."""


CAUSE_KINDS = tuple(Cause.kinds)
#: The causes that say a graded class cannot run at all (and why).
CLASS_CAUSES = (UnitCause, MissingTarget)


# --------------------------------------------------------------------------- problems


class Problem(Fact, family=True):
    """One thing a check found wrong."""

    @property
    def output(self) -> str | None:
        """The output it is about (``name``), for kinds that name one."""
        return getattr(self, "name", None)


@dataclass(frozen=True)
class MissingOutput(Problem, kind="missing_output"):
    """An output is missing: from the returned dict (``in_dict``), or needed to compare or check masking
    (``purpose``: "compare", "mask", "masking")."""

    name: str
    in_dict: bool = False
    purpose: str | None = None


@dataclass(frozen=True)
class ShapeDiffers(Problem, kind="shape_differs"):
    name: str
    got: list[int]
    expected: list[int]
    grad: bool = False


@dataclass(frozen=True)
class ValueDiffers(Problem, kind="value_differs"):
    """Values differ: the largest differences, where, how many; ``first_step`` of a sequence, and a
    row around ``index`` (``expected_row``, ``got_row`` of ``row_len`` values) where one helps."""

    name: str
    max_abs: float
    max_rel: float
    index: list[int]
    expected: float
    got: float
    n_bad: int
    n_total: int
    grad: bool = False
    non_finite: bool = False
    first_step: int | None = None
    row: list[int] | None = None
    row_len: int = 0
    expected_row: list[float] | None = None
    got_row: list[float] | None = None


@dataclass(frozen=True)
class Scale(Problem, kind="scale"):
    """The output is ``factor`` times the expected values; ``known``: a scale error with a known cause."""

    name: str
    factor: float
    grad: bool = False
    known: str | None = None


@dataclass(frozen=True)
class EqualsOther(Problem, kind="equals_other"):
    """The output equals the reference's ``other`` output (a step missing after it?)."""

    name: str
    other: str


@dataclass(frozen=True)
class Downstream(Problem, kind="downstream"):
    """Later outputs that differ too, which may follow from the first difference."""

    names: list[str]


@dataclass(frozen=True)
class NonFinite(Problem, kind="non_finite"):
    name: str
    index: list[int]
    purpose: str | None = None


@dataclass(frozen=True)
class MaskedLeak(Problem, kind="masked_leak"):
    """A masked position gets attention ``value`` at ``index``."""

    name: str
    index: list[int]
    value: float


@dataclass(frozen=True)
class RowSum(Problem, kind="row_sum"):
    """An attention row sums to ``total``, not 1."""

    name: str
    index: list[int]
    total: float


@dataclass(frozen=True)
class PerturbedChanged(Problem, kind="perturbed_changed"):
    """The output changed at ``index`` when only a masked key/value changed."""

    name: str
    index: list[int]


@dataclass(frozen=True)
class NoGradient(Problem, kind="no_gradient"):
    param: str


@dataclass(frozen=True)
class ParamMissing(Problem, kind="param_missing"):
    param: str
    expected: list[int]


@dataclass(frozen=True)
class ParamShape(Problem, kind="param_shape"):
    param: str
    got: list[int]
    expected: list[int]


@dataclass(frozen=True)
class ParamUnexpected(Problem, kind="param_unexpected"):
    param: str
    got: list[int]


@dataclass(frozen=True)
class ParamCount(Problem, kind="param_count"):
    got: int
    expected: int


@dataclass(frozen=True)
class ForbiddenStatic(Problem, kind="forbidden_static"):
    """The source uses ``used`` (which the entry ``forbidden`` forbids) at ``label``, ``line``."""

    label: str
    line: int | None
    code: str
    used: str
    forbidden: str


@dataclass(frozen=True)
class ForbiddenRuntime(Problem, kind="forbidden_runtime"):
    """Case ``case`` called ``called`` (which ``forbidden`` forbids); ``hidden``: seen only while hidden
    cases ran, and told without its facts."""

    forbidden: str = ""
    called: str = ""
    case: str = ""
    hidden: bool = False


@dataclass(frozen=True)
class DidNotRaise(Problem, kind="did_not_raise"):
    """The constructor should have raised the case's exception."""


@dataclass(frozen=True)
class RaisedOther(Problem, kind="raised_other"):
    """The constructor raised another exception than the case's."""

    type: str
    message: str = ""


@dataclass(frozen=True)
class Custom(Problem, kind="custom"):
    """What a course's own check found, in its words."""

    text: str


PROBLEM_KINDS = tuple(Problem.kinds)


# --------------------------------------------------------------------------- notes


class Note(Fact, family=True):
    """A remark about the whole submission, shown above a report's table."""


@dataclass(frozen=True)
class MissingClass(Note, kind="missing_target"):
    """A graded class that cannot run (one of ``CLASS_CAUSES``), said once for the whole submission."""

    cause: Cause
    decoders: ClassVar = {"cause": Cause.from_dict}


@dataclass(frozen=True)
class UnreadableUnit(Note, kind="unit_error"):
    """A cell that cannot be read, which no graded class needs."""

    error: UnitError
    decoders: ClassVar = {"error": UnitError.from_dict}


@dataclass(frozen=True)
class BrokenRedefinition(Note, kind="broken_redefinition"):
    """A later cell also defines ``target`` but cannot be read; the definition in ``graded`` was graded."""

    target: str
    graded: str
    error: UnitError
    decoders: ClassVar = {"error": UnitError.from_dict}


@dataclass(frozen=True)
class SkippedStatement(Note, kind="skipped_statement"):
    """A top-level statement raised, and was skipped."""

    error: ErrorInfo
    decoders: ClassVar = {"error": ErrorInfo.from_dict}


@dataclass(frozen=True)
class OutputTail(Note, kind="output_tail"):
    """The last output of the code before it stopped."""

    text: str


@dataclass(frozen=True)
class TopLevelStop(Note, kind="top_level_stop"):
    stop: Stop
    decoders: ClassVar = {"stop": Stop.from_dict}


@dataclass(frozen=True)
class CaseStop(Note, kind="case_stop"):
    stop: Stop
    case: str
    decoders: ClassVar = {"stop": Stop.from_dict}


@dataclass(frozen=True)
class LocalCheck(Note, kind="local_check"):
    """A student's local check: the public cases only; ``hidden_points`` are graded after submission."""

    hidden_points: float


@dataclass(frozen=True)
class UntrustedCourse(Note, kind="untrusted_course"):
    """No course is configured: the released bundle at ``root`` was used for a local check only."""

    root: str


@dataclass(frozen=True)
class CoursePassedOver(Note, kind="course_passed_over"):
    """Graded against ``used`` ($GRADER_ROOT), though the current folder is in ``passed_over``."""

    used: str
    passed_over: str


@dataclass(frozen=True)
class ChannelNoise(Note, kind="channel_noise"):
    """The code wrote ``lines`` lines to the result channel, which were ignored."""

    lines: int


@dataclass(frozen=True)
class GradedSource(Note, kind="graded_source"):
    """What ``check()`` graded: the saved ``notebook`` ("file"), or the kernel's history ("history": cells
    ``first`` to ``last``), and the classes whose saved code ``differs`` from what ran."""

    source: str
    notebook: str | None = None
    first: str = ""
    last: str = ""
    differs: tuple[str, ...] = ()
    decoders: ClassVar = {"differs": tuple}


NOTE_KINDS = tuple(Note.kinds)
