"""Every sentence a student or an instructor reads about a submission, in one place.

Stages return facts (``grader.model.outcomes``: typed ``Stop``, ``Cause``, ``Problem`` and
``Note`` kinds, and the ``ErrorInfo`` and ``UnitError`` records they hold); these functions
word them, dispatching on the fact's type (one small registered function per kind). Nothing
else in the grader builds student-facing text from outcomes, and nothing parses the text built here.
"""
from __future__ import annotations

import signal
from functools import singledispatch
from typing import Any, Iterable

from grader.model.outcomes import (
    CLASS_CAUSES, BrokenRedefinition, CaseStop, CaseTimeout, Cause, CellSyntaxError, CellTooDeep, ChannelNoise,
    CoursePassedOver, Crashed, Custom, DidNotRaise, DiskFull, Downstream, EqualsOther, ErrorInfo, Exited, Fact,
    Forbidden, ForbiddenRuntime, ForbiddenStatic, GradedSource, LocalCheck, MaskedLeak, MissingClass, MissingOutput,
    MissingTarget, NoGradient, NonFinite, Note, NotImplementedYet, NotRun, OutOfMemory, OutputTail, ParamCount,
    ParamMissing, ParamShape, ParamUnexpected, Pending, PerturbedChanged, Problem, ProtocolBroken, Raised,
    RaisedOther, RowSum, Scale, ShapeDiffers, SkippedStatement, Stop, Stopped, SubmissionTimeout, Suggestion,
    TopLevelStop, Unavailable, UnitCause, UnitError, UnreadableUnit, Unresponsive, UntrustedCourse, Unverified,
    ValueDiffers, WorkerFailed, WrongAnswer)

#: How each known cause of a scale error in the attention scores is explained.
SCALE_CAUSES = {
    "sqrt_d_feat": "that is what dividing by √d_feat instead of √d_head gives (divide the scores by √d_head, "
                   "the size of one head)",
    "unscaled_d_head": "the scores are not scaled at all (divide by √d_head)",
    "unscaled_d_k": "the scores are not scaled at all (divide by √d_K)",
}
_PHASES = {"build": "while building {target}", "load_params": "while loading the reference's parameters",
           "backward": "during backward"}


#: Significant digits of the numbers a report prints about a submission's outputs: a value a student
#: reads (an expected or computed value, an excerpt, a factor, a sum) and a difference between two
#: values. No more: the digits after these change from one CPU to the next (vector kernels, summation
#: order), and a student needs the size of a number, not its noise. The JSON keeps the full floats.
VALUE_DIGITS = 4
DIFFERENCE_DIGITS = 3


def points(x: float) -> str:
    """A number of points as the reports print it (``2``, ``1.5``)."""
    return f"{x:g}"


def value(x: float) -> str:
    """A value a student reads (expected, got, an excerpt, a factor, a sum): ``0.5865``, ``2``, ``-1e+09``."""
    return f"{x:.{VALUE_DIGITS}g}"


def difference(x: float) -> str:
    """How far apart two values are (a max abs or rel diff): ``0.163``."""
    return f"{x:.{DIFFERENCE_DIGITS}g}"


def time_words(seconds: float) -> str:
    """'61 s' style."""
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def _unworded(fact: Fact) -> TypeError:
    """The error of a fact whose kind no function words (each kind registers its own)."""
    return TypeError(f"no wording for {type(fact).__name__}")


# --------------------------------------------------------------------------- stops


@singledispatch
def stop_phrase(stop: Stop) -> str:
    """What the code did, to follow 'your code ...': 'timed out after 3.0 s'."""
    raise _unworded(stop)


@stop_phrase.register
def _(stop: CaseTimeout) -> str:
    return f"timed out after {time_words(stop.seconds)}"


@stop_phrase.register
def _(stop: SubmissionTimeout) -> str:
    return f"ran out of time (the limit for the whole submission is {time_words(stop.seconds)})"


@stop_phrase.register
def _(stop: Crashed) -> str:
    extra = {"SIGKILL": " (out of memory?)", "SIGXCPU": " (CPU time limit)",
             "SIGXFSZ": " (file size limit)", "SIGSEGV": " (e.g. runaway recursion)"}.get(stop.signal, "")
    return f"crashed ({stop.signal}){extra}"


@stop_phrase.register
def _(stop: Exited) -> str:
    return f"exited early with code {stop.code} (sys.exit or os._exit in the submission?)"


@stop_phrase.register
def _(stop: OutOfMemory) -> str:
    return f"used more than {stop.limit_mb} MB of memory in total (all its processes together) and was stopped"


@stop_phrase.register
def _(stop: DiskFull) -> str:
    return f"wrote more than {stop.limit_mb} MB of files and was stopped"


@stop_phrase.register
def _(stop: ProtocolBroken) -> str:
    return f"interfered with the grader's result channel ({stop.rule or 'a malformed record'})"


@stop_phrase.register
def _(stop: WorkerFailed) -> str:
    return ("broke the grader's worker process (did it close files it did not open, or change Python's "
            "or torch's own functions, such as json or os?)")


@stop_phrase.register
def _(stop: Unresponsive) -> str:
    return "stopped responding"


def signal_name(number: int) -> str:
    """'SIGSEGV' for 11."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --------------------------------------------------------------------------- phrases said in several places


def location(label: str, line: Any, function: str | None = None, code: str | None = None) -> str:
    """Where something is in the submission: 'cell 7, line 21 (forward): `y = x @ w`' (the function
    and the code only where known; a module's top level is not named)."""
    where = f"{label}, line {line}"
    if function and function != "<module>":
        where += f" ({function})"
    return where + (f": `{code}`" if code else "")


def error_lead(err: ErrorInfo, phase: str | None, target: str, where: str = "") -> str:
    """'RuntimeError in cell 7, line 21 while building MHA': the exception's type, where, and during what."""
    during = _PHASES.get(phase or "", "").format(target=target)
    return f"{err.type}{where}{' ' + during if during else ''}"


def _did_you_mean(target: str, s: Suggestion) -> str:
    return f"{target} is not defined; did you mean `{s.name}` ({location(s.label, s.line)})?"


def rename_to(target: str) -> str:
    return f"Rename the class to {target}, the name the assignment grades."


def function_names(names: Iterable[str]) -> str:
    """'`split_heads`, `forward`': the functions a blank is in."""
    return ", ".join(f"`{n}`" for n in names)


def mistake_lead(names: list[str]) -> str:
    return f"Known mistake: {names[0]}" if len(names) == 1 else "Known mistake, one of: " + "; ".join(names)


# --------------------------------------------------------------------------- errors


def student_error(err: ErrorInfo, phase: str | None, target: str) -> str:
    """'RuntimeError in cell 7, line 21 (forward): `y = x @ w` — <message>' for a captured exception."""
    where = " in " + location(err.label, err.line, err.function, err.code) if err.label else ""
    message = " ".join(err.message.split())
    if err.api_misuse:
        return message if not where else f"{message} ({where.strip()})"
    lead = error_lead(err, phase, target, where)
    return f"{lead} — {message}" if message else lead


# --------------------------------------------------------------------------- problems


@singledispatch
def problem_text(p: Problem, case: Any = None) -> str:
    """One problem in plain words (a first line, then any excerpt lines)."""
    raise _unworded(p)


def _label(p: ShapeDiffers | ValueDiffers | Scale) -> str:
    return f"gradient of {p.name}" if p.grad else f"`{p.name}`"


@problem_text.register
def _(p: MissingOutput, case: Any = None) -> str:
    if p.purpose == "compare":
        return f"`{p.name}` is missing, so it cannot be compared"
    if p.purpose == "mask":
        return f"`{p.name}` is missing, so the mask cannot be checked"
    if p.purpose == "masking":
        return f"`{p.name}` is missing, so masking cannot be checked"
    return f"`{p.name}` is missing from {'the returned dict' if p.in_dict else 'the outputs'}"


@problem_text.register
def _(p: ShapeDiffers, case: Any = None) -> str:
    got, exp = p.got, p.expected
    msg = f"{_label(p)} has shape {got}, expected {exp}"
    if len(got) != len(exp):
        return msg + f" ({len(got)} dims instead of {len(exp)})"
    dims = [i for i, (a, b) in enumerate(zip(exp, got)) if a != b]
    return msg + f" (dim{'s' if len(dims) > 1 else ''} {', '.join(map(str, dims))} differ{'' if len(dims) > 1 else 's'})"


@problem_text.register
def _(p: ValueDiffers, case: Any = None) -> str:
    msg = (f"{_label(p)} differs from the reference: max abs diff {difference(p.max_abs)}, max rel diff "
           f"{difference(p.max_rel)}, at{index_text(p.index)} (expected {value(p.expected)}, "
           f"got {value(p.got)}; {p.n_bad} of {p.n_total} values off)")
    if p.first_step is not None:
        msg += f"; the first time step that differs is t={p.first_step}" + (
            " (the very first step)" if p.first_step == 0 else "")
    if p.non_finite:
        msg += "; it contains NaN or inf"
    if p.row is not None:
        more = p.row_len > len(p.expected_row or ())
        msg += (f"\n      expected{index_text(p.row)}: {_excerpt(p.expected_row or [], more)}"
                f"\n      got     {index_text(p.row)}: {_excerpt(p.got_row or [], more)}")
    return msg


@problem_text.register
def _(p: Scale, case: Any = None) -> str:
    text = f"{_label(p)} is {value(p.factor)}× the expected values"
    return f"{text} — {SCALE_CAUSES[p.known]}" if p.known in SCALE_CAUSES else text


@problem_text.register
def _(p: EqualsOther, case: Any = None) -> str:
    return f"`{p.name}` equals the reference's `{p.other}`: is a step missing after it?"


@problem_text.register
def _(p: Downstream, case: Any = None) -> str:
    return f"{', '.join(f'`{n}`' for n in p.names)} differ too, which may follow from the first difference above"


@problem_text.register
def _(p: NonFinite, case: Any = None) -> str:
    return (f"`{p.name}`{index_text(p.index)} is NaN or inf; every value must be a finite number "
            "(is something divided by zero, or a mask filled with -inf in a row that is all masked?)")


@problem_text.register
def _(p: MaskedLeak, case: Any = None) -> str:
    return (f"masked positions get attention: `{p.name}`{index_text(p.index)} = {value(p.value)} where mask == 0 "
            "(expected ≈ 0; fill the masked scores with -1e9 before the softmax)")


@problem_text.register
def _(p: RowSum, case: Any = None) -> str:
    return (f"rows of `{p.name}` must sum to 1 over the keys (last dim); row{index_text(p.index)} sums to "
            f"{value(p.total)} (is the softmax over dim=-1?)")


@problem_text.register
def _(p: PerturbedChanged, case: Any = None) -> str:
    return (f"`{p.name}` changed at row{index_text(p.index)} when only a masked key/value was changed "
            "(masked positions must not influence the output)")


@problem_text.register
def _(p: NoGradient, case: Any = None) -> str:
    return f"parameter `{p.param}` received no gradient (is it used in forward?)"


@problem_text.register
def _(p: ParamMissing, case: Any = None) -> str:
    return f"parameter `{p.param}` {p.expected} is missing"


@problem_text.register
def _(p: ParamShape, case: Any = None) -> str:
    return f"parameter `{p.param}` has shape {p.got}, expected {p.expected}"


@problem_text.register
def _(p: ParamUnexpected, case: Any = None) -> str:
    return f"unexpected parameter `{p.param}` {p.got}"


@problem_text.register
def _(p: ParamCount, case: Any = None) -> str:
    call = f"{case.target}({kwargs(case.init)})" if case is not None else "the module"
    return f"{call} has {p.got:,} parameters, expected {p.expected:,}"


@problem_text.register
def _(p: ForbiddenStatic, case: Any = None) -> str:
    rule = "" if p.used == p.forbidden else f" (it forbids {p.forbidden})"
    return (f"{location(p.label, p.line, code=p.code)} uses {p.used}, which this exercise "
            f"forbids{rule}; write the computation yourself")


@problem_text.register
def _(p: ForbiddenRuntime, case: Any = None) -> str:
    if p.hidden:  # seen only while hidden cases ran: no more is told
        return "while a hidden case ran, your code called an API this exercise forbids; write the computation yourself"
    # "torch.lstm (aten::lstm)" already names the family its entry forbids: no "(that is …)" again
    rule = "" if p.called == p.forbidden or p.called.startswith(p.forbidden + " (") else f" (that is {p.forbidden})"
    return (f"while case {p.case!r} ran, your code called {p.called}{rule}, which this exercise "
            "forbids; write the computation yourself")


@problem_text.register
def _(p: DidNotRaise, case: Any = None) -> str:
    return f"{case.target}({kwargs(case.init)}) did not raise {case.raises}"


@problem_text.register
def _(p: RaisedOther, case: Any = None) -> str:
    return f"raised {p.type} ({' '.join(p.message.split())}), expected {case.raises}"


@problem_text.register
def _(p: Custom, case: Any = None) -> str:
    return p.text


def kwargs(init: dict[str, Any]) -> str:
    """'d_feat=20, n_head=4'."""
    return ", ".join(f"{k}={v!r}" for k, v in init.items())


def index_text(idx: Iterable[int]) -> str:
    """' [0, 3, 1]': a tensor position as the reports show it (nothing for a scalar's empty index)."""
    idx = list(idx)
    return f" [{', '.join(str(int(i)) for i in idx)}]" if idx else ""


def _excerpt(values: list[float], more: bool) -> str:
    shown = ", ".join(value(v) if v > -1e8 else "masked" for v in values)
    return f"[{shown}{', …' if more else ''}]"


# --------------------------------------------------------------------------- causes


@singledispatch
def cause_reason(cause: Cause, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    """The one-line reason of a case that did not pass."""
    raise _unworded(cause)


@cause_reason.register
def _(c: NotImplementedYet, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    inside = " in " + function_names(c.needed) if c.needed else ""
    return f"not implemented yet ({location(c.unit.label, c.unit.line)} is a blank{inside})"


@cause_reason.register
def _(c: CellSyntaxError, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    return f"{c.target} has a SyntaxError ({location(c.unit.label, c.unit.line)})"


@cause_reason.register
def _(c: CellTooDeep, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    return f"{c.target}'s cell is nested too deeply to read ({location(c.unit.label, c.unit.line)})"


@cause_reason.register
def _(c: MissingTarget, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    return _did_you_mean(c.target, c.suggestion) if c.suggestion else f"{c.target} is not defined"


@cause_reason.register
def _(c: Raised, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    return student_error(c.error, c.phase, case.target)


@cause_reason.register
def _(c: Stopped, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    if c.scope == "top-level":
        return f"your top-level code {stop_phrase(c.stop)}"
    return f"your code {stop_phrase(c.stop)} in this case"


@cause_reason.register
def _(c: NotRun, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    why = ("the time limit for the submission ran out" if c.why == "time"
           else (f"the grading machine's process ended {c.stops} times while grading this submission, "
                 "the last time with nothing else running; your instructor will look at it")
           if c.why == "machine" else f"your code stopped the grader's process {c.stops} times")
    return f"not run: {why}"


@cause_reason.register
def _(c: Unverified, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    return f"cannot confirm that {c.target} avoids the forbidden APIs: none of its cases ran to completion"


@cause_reason.register
def _(c: Pending, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    return f"graded after submission ({points(case.points)} point{'' if case.points == 1 else 's'})"


@cause_reason.register
def _(c: Unavailable, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    return "checked when graded: this case uses the course's own check, which a local check does not run"


@cause_reason.register(WrongAnswer)
@cause_reason.register(Forbidden)
def _(c: Cause, case: Any, problems: tuple[Problem, ...] = ()) -> str:
    return problem_text(problems[0], case).split("\n")[0] if problems else c.kind.replace("_", " ")


def cause_details(cause: Cause, case: Any, problems: tuple[Problem, ...]) -> str:
    """Everything below the reason: the rest of the problems, the traceback; never the reason again."""
    lines: list[str] = []
    if isinstance(cause, Raised):
        lines.append(cause.error.traceback)
    elif isinstance(cause, CLASS_CAUSES):
        lines.append(missing_explanation(cause))
    texts = [problem_text(p, case) for p in problems]
    if texts and isinstance(cause, (WrongAnswer, Forbidden)):
        first, *rest = texts[0].split("\n")
        lines += rest + texts[1:]
    else:
        lines += texts
    return "\n".join(x for x in lines if x)


def unit_error_text(u: UnitError, target: str = "", needed: tuple[str, ...] = ()) -> str:
    """A cell that cannot be read: where, the code, what to do (a blank in ``needed``, the functions
    the graded class ``target`` needs, says so)."""
    where = location(u.label, u.line)
    if u.what == "blank":
        shown = f" (`{u.code}`)" if u.code else ""
        inside = f", in {function_names(needed)}, which {target} needs" if needed else ""
        return f"not implemented yet: {where} is still a blank{shown}{inside}; replace `# FILL IN HERE` with your code"
    if u.what == "too_deep":
        how = f"{u.depth} levels deep" if u.depth else f"more than {u.limit} levels deep"
        shown = f" (`{u.code}`)" if u.code else ""
        return (f"{where}{shown}: this expression is nested {how}; the grader reads at most {u.limit}; "
                "split it into smaller statements (compute parts into variables first), so the cell can be graded")
    shown = f": `{u.code}`" if u.code else ""
    return f"SyntaxError in {where}{shown} ({u.message}); fix this line so the cell runs"


def missing_explanation(cause: MissingTarget | UnitCause) -> str:
    """The full explanation of a graded class that is missing, a blank, or in a cell that cannot be read."""
    target = cause.target
    if isinstance(cause, MissingTarget):
        if cause.suggestion:
            return f"{_did_you_mean(target, cause.suggestion)} {rename_to(target)}"
        return (f"{target} is not defined in the submission; define `class {target}(nn.Module)` at the top "
                "level of a cell, with exactly this name")
    needed = cause.needed if isinstance(cause, NotImplementedYet) else ()
    return f"{target}: {unit_error_text(cause.unit, target, needed)}"


def known_mistake(names_and_hints: list[tuple[str, str]]) -> str:
    """The reason of a case whose outputs match known mistake(s)."""
    lead = mistake_lead([name for name, _ in names_and_hints])
    return f"{lead}. {names_and_hints[0][1]}".strip() if len(names_and_hints) == 1 else lead


# --------------------------------------------------------------------------- notes


@singledispatch
def note_text(note: Note) -> str:
    """A remark shown above a report's table."""
    raise _unworded(note)


@note_text.register
def _(note: MissingClass) -> str:
    return missing_explanation(note.cause)


@note_text.register
def _(note: UnreadableUnit) -> str:
    return unit_error_text(note.error)


@note_text.register
def _(note: BrokenRedefinition) -> str:
    return (f"{note.error.label} also defines {note.target} but cannot be read; graded the definition in "
            f"{note.graded}. {unit_error_text(note.error)}")


@note_text.register
def _(note: SkippedStatement) -> str:
    return f"{student_error(note.error, None, '')} (this statement was skipped)"


@note_text.register
def _(note: OutputTail) -> str:
    return "Last output of your code before it stopped: " + note.text


@note_text.register
def _(note: TopLevelStop) -> str:
    return f"Your top-level code {stop_phrase(note.stop)}; no case could run."


@note_text.register
def _(note: CaseStop) -> str:
    return f"Your code {stop_phrase(note.stop)} in case {note.case!r}."


@note_text.register
def _(note: LocalCheck) -> str:
    return ("Local check: only the public cases ran, against the released fixtures. "
            f"Hidden cases ({points(note.hidden_points)} points) are graded after you submit.")


@note_text.register
def _(note: UntrustedCourse) -> str:
    return (f"No course is configured here (--root, $GRADER_ROOT, or a course around the current folder), "
            f"so the released bundle beside the submission ({note.root}) was used for a local check only; "
            "this is not a grade.")


@note_text.register
def _(note: CoursePassedOver) -> str:
    return (f"Graded against the course in {note.used} ($GRADER_ROOT); the current folder is inside another "
            f"course, {note.passed_over}, which was not used (pass --root to choose it).")


@note_text.register
def _(note: ChannelNoise) -> str:
    return f"Your code wrote {note.lines} line(s) to the grader's result channel; they were ignored."


@note_text.register
def _(note: GradedSource) -> str:
    saved = note.notebook
    if note.source == "file":
        return f"This kernel has not run any of your code yet, so the saved notebook {saved} was graded."
    ran = f"{note.first} to {note.last}" if note.first != note.last else note.first
    lead = f"Graded the code this kernel ran (the kernel's input history, {ran}), not a saved file."
    if not saved:
        return lead + " No saved notebook was found to compare it with: submit a notebook that holds this code."
    if note.differs:
        return (f"{lead} The saved notebook differs from the code you ran: save it before you submit "
                f"({saved} has other code for {', '.join(note.differs)}).")
    return f"{lead} The saved notebook {saved} holds the same code for the graded classes."


def partial_credit(score: float, max_score: float) -> str:
    """The per-case line of a recognised mistake that earns a share of the points."""
    return f"partial credit for a recognised mistake: {points(score)} of {points(max_score)}"


def hint_line(hint: str) -> str:
    """A case's hint, as the reports print it."""
    return f"Hint: {hint}"


# --------------------------------------------------------------------------- audiences


def hidden_case_reason(status: str) -> str:
    """What a student's report says of a hidden case beyond its name, points and result."""
    return ("hidden case: passed" if status == "passed"
            else "hidden case: its inputs and the reference's values are not shown; the public cases' causes "
                 "above may explain it")


def hidden_cause_title(n_cases: int) -> str:
    """The entry of a student's report that counts the hidden cases that lost points (whatever their cause)."""
    one = n_cases == 1
    return (f"{n_cases} hidden case{'' if one else 's'} fail{'s' if one else ''} (hidden cases' details are not "
            f"shown; a cause of the public cases may explain {'it' if one else 'them'})")


def hidden_label() -> str:
    """How every view marks a hidden case."""
    return "(hidden)"
