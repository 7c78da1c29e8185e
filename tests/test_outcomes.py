"""The facts (``grader.model.outcomes``): every kind typed, tagged, rebuilt from JSON, and worded."""
from __future__ import annotations

import json

import pytest

from grader.model import messages, summaries
from grader.model.outcomes import (CAUSE_KINDS, NOTE_KINDS, PROBLEM_KINDS, STOP_KINDS, BrokenRedefinition, CaseStop,
                                   CaseTimeout, Cause, CellSyntaxError, CellTooDeep, ChannelNoise, CoursePassedOver,
                                   Crashed, Custom, DidNotRaise, DiskFull, Downstream, EqualsOther, ErrorInfo, Exited,
                                   Fact, Forbidden, ForbiddenRuntime, ForbiddenStatic, GradedSource, LocalCheck,
                                   MaskedLeak, MissingClass, MissingOutput, MissingTarget, NoGradient, NonFinite, Note,
                                   NotImplementedYet, NotRun, OutOfMemory, OutputTail, ParamCount, ParamMissing,
                                   ParamShape, ParamUnexpected, Pending, PerturbedChanged, Problem, ProtocolBroken,
                                   Raised, RaisedOther, RowSum, Scale, ShapeDiffers, SkippedStatement, Stop, Stopped,
                                   SubmissionTimeout, Suggestion, TopLevelStop, Unavailable, UnitError, Unresponsive,
                                   UnreadableUnit, UntrustedCourse, Unverified, ValueDiffers, WorkerFailed, WrongAnswer)
from grader.spec.cases import Case

ERROR = ErrorInfo("RuntimeError", ("RuntimeError", "Exception"), "boom", "tb", "cell 7", 3, "y = x @ w", "forward")
BLANK = UnitError("blank", "cell 4", 12, "x = # FILL IN HERE")
STOPS = [CaseTimeout(3.0), SubmissionTimeout(60.0), Crashed("SIGSEGV"), Exited(9), OutOfMemory(2048), DiskFull(64),
         ProtocolBroken("a header over 64 KiB"), WorkerFailed(), Unresponsive()]
CAUSES = [NotImplementedYet("MHA", BLANK, ("split",)), CellSyntaxError("MHA", UnitError("syntax_error", "cell 2", 1, "x = (", "bad")),
          CellTooDeep("MHA", UnitError("too_deep", "cell 2", 1, "x", depth=300, limit=200)),
          MissingTarget("MHA", Suggestion("MultiHeadAttention", "cell 3", 1)), MissingTarget("MHA"),
          Raised(ERROR, "forward"), Stopped(CaseTimeout(3.0)), Stopped(Exited(1), "top-level"), NotRun("time"),
          NotRun("restarts", 4), NotRun("machine", 2), WrongAnswer(), Forbidden(), Unverified("Cell"), Pending(),
          Unavailable()]
PROBLEMS = [MissingOutput("x", in_dict=True), MissingOutput("x", purpose="mask"), ShapeDiffers("x", [2, 3], [3, 2]),
            ValueDiffers("x", 0.5, 1.0, [0, 1], 1.0, 1.5, 2, 6, row=[0], row_len=3, expected_row=[1.0, 2.0, 3.0],
                         got_row=[1.0, 1.5, 3.0]),
            ValueDiffers("h_seq", 0.5, 1.0, [0, 1, 2], 1.0, 1.5, 2, 6, grad=True, non_finite=True, first_step=0),
            Scale("scores", 2.0, known="sqrt_d_feat"), EqualsOther("x", "x_rsh2"), Downstream(["x"]),
            NonFinite("attention", [0, 1], "mask"), MaskedLeak("attention", [0, 0, 2], 0.2),
            RowSum("attention", [0, 1], 2.0), PerturbedChanged("out", [0, 1]), NoGradient("b"), ParamMissing("w", [4]),
            ParamShape("w", [3], [4]), ParamUnexpected("v", [2]), ParamCount(10, 12),
            ForbiddenStatic("cell 3", 4, "nn.LSTMCell(1, 2)", "torch.nn.LSTMCell", "torch.nn.LSTMCell"),
            ForbiddenRuntime("torch.lstm", "torch.lstm (aten::lstm)", "lstm-1"), ForbiddenRuntime(hidden=True),
            DidNotRaise(), RaisedOther("TypeError", "no"), Custom("the course's own words")]
NOTES = [MissingClass(CAUSES[0]), UnreadableUnit(BLANK), BrokenRedefinition("MHA", "cell 3", BLANK),
         SkippedStatement(ERROR), OutputTail("printed"), TopLevelStop(Exited(1)), CaseStop(Crashed("SIGSEGV"), "c1"),
         LocalCheck(12.5), UntrustedCourse("/course"), CoursePassedOver("/a", "/b"), ChannelNoise(3),
         GradedSource("history", "mha.ipynb", "In [1]", "In [3]", ("MHA",))]
CASE = Case("c1", "MHA: values", "MHA", ("match",), 2.0, init={"d_feat": 20, "n_head": 4}, raises="ValueError")


@pytest.mark.parametrize("family, samples, kinds", [
    (Stop, STOPS, STOP_KINDS), (Cause, CAUSES, CAUSE_KINDS), (Problem, PROBLEMS, PROBLEM_KINDS), (Note, NOTES, NOTE_KINDS),
], ids=["stops", "causes", "problems", "notes"])
def test_every_kind_survives_json_and_is_worded(family, samples, kinds):
    assert {s.kind for s in samples} == set(kinds)  # a new kind gets a sample here, so it is worded and read back
    for fact in samples:
        back = family.from_dict(json.loads(json.dumps(fact.to_dict())))
        assert back == fact and type(back) is type(fact)
        text = {Stop: messages.stop_phrase, Note: messages.note_text,
                Problem: lambda p: messages.problem_text(p, CASE),
                Cause: lambda c: messages.cause_reason(c, CASE, tuple(PROBLEMS[:1]))}[family](fact)
        assert text and "{" not in text and text != fact.kind.replace("_", " ")  # worded, not the kind's name


def test_a_family_rebuilds_only_its_own_kinds():
    with pytest.raises(ValueError, match="invalid cause 'case_timeout'"):
        Cause.from_dict(CaseTimeout(1.0).to_dict())
    with pytest.raises(ValueError, match="invalid problem 'nonsense'"):
        Problem.from_dict({"kind": "nonsense", "data": {}})
    assert all(issubclass(cls, family) for family in (Stop, Cause, Problem, Note) for cls in family.kinds.values())
    assert not set(Stop.kinds) & set(Note.kinds)


def test_facts_are_data_not_words():
    """No fact carries a sentence the grader made: only numbers, names, and what the submission said."""
    for fact in [*STOPS, *CAUSES, *PROBLEMS, *NOTES]:
        assert isinstance(fact, Fact) and not hasattr(fact, "data")


def test_a_cause_stored_by_an_older_grader_reads_back_typed():
    """Batch stores keep reports across versions: the unit causes' old flat layout and the dict error still read."""
    old = {"kind": "not_implemented", "data": {"target": "MHA", "kind": "blank", "label": "cell 4", "line": 12,
                                                "code": "x = # FILL IN HERE", "message": "", "needed": ["split"]}}
    assert Cause.from_dict(old) == NotImplementedYet("MHA", BLANK, ("split",))
    old = {"kind": "exception", "data": {"error": {"type": "RuntimeError", "message": "boom", "bases": ["RuntimeError"]},
                                          "phase": "forward"}}
    assert Cause.from_dict(old) == Raised(ErrorInfo("RuntimeError", ("RuntimeError",), "boom"), "forward")
    old = {"kind": "stopped", "data": {"stop": {"kind": "memory", "data": {"limit_mb": 2048}}, "scope": "case"}}
    assert messages.cause_reason(Cause.from_dict(old), CASE) == messages.cause_reason(Stopped(OutOfMemory(2048)), CASE)


def test_wording_dispatches_on_type_and_refuses_a_kind_without_words():
    class Strange(Problem, kind="strange_for_this_test"):
        pass

    try:
        with pytest.raises(TypeError, match="no wording"):
            messages.problem_text(Strange())
    finally:
        del Problem.kinds["strange_for_this_test"]
    assert summaries.problem_headline(PROBLEMS[3]) == "`x` differs from the reference"
