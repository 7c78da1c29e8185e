"""Causes said once: grouping cases by their facts, hints shown only with their evidence."""
from __future__ import annotations

import pytest

from conftest import course
from grader.course.assignments import get_assignment
from grader.errors import CaseFileError
from grader.judge.causes import group_causes
from grader.judge.hints import evidence, hint_applies
from grader.model.outcomes import (Cause, ErrorInfo, MaskedLeak, NoGradient, NonFinite, Pending, Raised, RowSum, Scale,
                                   ShapeDiffers, ValueDiffers, WrongAnswer)
from grader.model.result import CaseResult
from grader.spec.case_file import load_assignment
from grader.spec.mistakes import Mistake

MHA = get_assignment(course(), "mha")
CASES = {c.id: c for c in MHA.cases}


def _error(line: int, phase: str = "forward", message: str = "boom") -> Cause:
    return Raised(ErrorInfo("RuntimeError", message=message, label="cell 4", line=line, function="forward",
                            code="y = x @ w", traceback="tb"), phase)


def _values(name: str, grad: bool = False) -> ValueDiffers:
    return ValueDiffers(name, max_abs=1.0, max_rel=1.0, index=[0], expected=1.0, got=2.0, n_bad=1, n_total=4, grad=grad)


def _result(case_id: str, status: str = "error", cause: Cause | None = None, problems=(), mistakes=(),
            score: float = 0.0) -> CaseResult:
    case = CASES[case_id]
    return CaseResult(case_id, case.name, case.target, status, score if status != "passed" else case.points,
                      case.points, "reason", "", cause=cause, problems=tuple(problems), mistakes=tuple(mistakes))


def test_one_exception_in_eight_cases_is_one_cause_with_its_cost():
    ids = [c.id for c in MHA.cases if c.target == "MultiHeadedAttention" and c.checks != ("policy",)][:8]
    results = tuple(_result(i, cause=_error(12, message=f"size {n}")) for n, i in enumerate(ids))
    out, causes = group_causes(results, CASES, {})
    assert len(causes) == 1 and causes[0].cases == tuple(ids)
    assert causes[0].points_lost == sum(CASES[i].points for i in ids)
    assert causes[0].title == "RuntimeError: size 0" and causes[0].where == "cell 4, line 12 (forward): `y = x @ w`"
    assert {r.cause_ref for r in out} == {1}


def test_causes_are_numbered_down_the_table_and_passed_cases_point_nowhere():
    results = (_result("sdpa-shape-3d", "passed"), _result("sdpa-match-3d", cause=_error(3)),
               _result("sdpa-padding", cause=_error(9)), _result("sdpa-causal", cause=_error(3)),
               _result("sdpa-match-4d", "pending", Pending()))
    out, causes = group_causes(results, CASES, {})
    assert [r.cause_ref for r in out] == [0, 1, 2, 1, 0]
    assert [c.cases for c in causes] == [("sdpa-match-3d", "sdpa-causal"), ("sdpa-padding",)]


def test_a_build_error_is_not_the_same_cause_as_a_forward_error_on_the_same_line():
    results = (_result("mha-match", cause=_error(3, "build")), _result("mha-cross", cause=_error(3)))
    assert len(group_causes(results, CASES, {})[1]) == 2


def test_a_recognised_mistake_is_one_cause_and_its_partial_credit_is_counted():
    m = Mistake("sqrt-dfeat", "scores divided by √d_feat", "Divide by √d_head.", (("a", "b", 1),), credit=0.5)
    wrong = WrongAnswer()
    results = (_result("mha-match", "failed", wrong, [Scale("scores", 0.5)],
                       ["sqrt-dfeat"], score=1.5),
               _result("mha-grad", "failed", wrong, [_values("lin_Q.weight", grad=True)],
                       ["sqrt-dfeat"]))
    _, causes = group_causes(results, CASES, {"sqrt-dfeat": m})
    assert len(causes) == 1 and causes[0].kind == "mistake" and causes[0].fix == "Divide by √d_head."
    assert causes[0].points_lost == 3 - 1.5 + 2


def test_wrong_answers_group_by_their_first_problem():
    wrong = WrongAnswer()
    x = _values("x")
    scores = ShapeDiffers("scores", got=[1], expected=[2])
    results = (_result("mha-match", "failed", wrong, [x]), _result("mha-cross", "failed", wrong, [x]),
               _result("mha-batch1", "failed", wrong, [scores]))
    _, causes = group_causes(results, CASES, {})
    assert [c.cases for c in causes] == [("mha-match", "mha-cross"), ("mha-batch1",)]
    assert causes[0].title == "`x` differs from the reference" and causes[0].seen_in == CASES["mha-match"].name


@pytest.mark.parametrize("cause, problems, shows", [
    (_error(3, "build"), (), set()),                        # a constructor error is no evidence about shapes
    (_error(3, "forward"), (), {"error"}),
    (None, (Scale("scores", 2.0),), {"values"}),
    (None, (_values("w", grad=True),), {"gradient"}),
    (None, (NonFinite("attention", [0], purpose="mask"),), {"mask"}),
    (None, (RowSum("attention", [0], 0.5),), {"softmax"}),
])
def test_evidence_of_a_failure(cause, problems, shows):
    found = evidence(cause, problems)
    assert shows <= found and not (shows == set() and found & {"shape", "error"})


def test_shipped_hints_show_only_with_their_evidence():
    scale = (Scale("scores", 0.5),)
    assert not hint_applies(CASES["mha-cross"].hint_on, WrongAnswer(), scale)  # "use -1 ..." is about shapes
    assert not hint_applies(CASES["mha-grad"].hint_on, WrongAnswer(), (_values("lin_Q.weight", grad=True),))
    assert hint_applies(CASES["mha-grad"].hint_on, WrongAnswer(), (NoGradient("w"),))
    assert not hint_applies(CASES["sdpa-padding"].hint_on, WrongAnswer(), scale)
    assert hint_applies(CASES["sdpa-padding"].hint_on, WrongAnswer(), (MaskedLeak("attention", [0], 0.5),))
    lstm = {c.id: c for c in get_assignment(course(), "lstm").cases}
    assert not hint_applies(lstm["rnn-shape"].hint_on, _error(2, "build"), ())
    shapes = "mat1 and mat2 shapes cannot be multiplied (6x20 and 16x20)"
    assert hint_applies(lstm["rnn-shape"].hint_on, _error(2, "forward", shapes), ())
    # a shape hint is for an exception about shapes: a plain RuntimeError at the top of forward gets none
    assert not hint_applies(lstm["rnn-shape"].hint_on, _error(2, "forward"), ())
    assert not hint_applies(CASES["mha-cross"].hint_on, _error(2, "forward", "not implemented"), ())
    for message in ("The size of tensor a (3) must match the size of tensor b (7) at non-singleton dimension 2",
                    "Dimension out of range (expected to be in range of [-3, 2], but got 3)",
                    "view size is not compatible with input tensor's size and stride"):
        assert hint_applies(CASES["mha-cross"].hint_on, _error(2, "forward", message), ()), message
    assert hint_applies(("error",), _error(2, "forward"), ())  # what `error` always meant


HEAD = '[assignment]\nname = "demo"\nreference = "demo.py"\n[targets.Net]\nargs = ["x"]\nreturns = "y"\n'
CASE = '[[cases]]\nid = "c"\ntarget = "Net"\ninputs = { x = [2, 3] }\nchecks = ["shape", "match"]\npoints = 1\n'


def _load(tmp_path, extra: str):
    folder = tmp_path / "assignments" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cases.toml").write_text(HEAD + CASE + extra)
    return load_assignment(folder, tmp_path)


def test_hint_on_defaults_to_what_the_checks_can_find(tmp_path):
    assert _load(tmp_path, 'hint = "h"\n').cases[0].hint_on == ("shape", "shape_error", "values")
    assert _load(tmp_path, 'hint = "h"\nhint_on = ["values"]\n').cases[0].hint_on == ("values",)


@pytest.mark.parametrize("extra, words", [
    ('hint = "h"\nhint_on = ["shapes"]\n', "hint_on must be a non-empty list of: shape, values"),
    ('hint = "h"\nhint_on = "shape"\n', "hint_on must be"),
    ('hint_on = ["shape"]\n', "the case has no hint"),
])
def test_hint_on_mistakes_name_the_key(tmp_path, extra, words):
    with pytest.raises(CaseFileError) as e:
        _load(tmp_path, extra)
    assert words in str(e.value) and "case 'c'" in str(e.value)


def test_partial_credit_for_a_recognised_mistake_when_the_course_gives_it(tmp_path):
    """The course's own 2021 solution divides by √d_feat: with credit = 0.5 it earns half of each value case."""
    import shutil

    from conftest import ROOT, SUBMISSIONS
    from grader import GradeConfig, grade_submission
    from grader.report.render import render_rich_text

    shutil.copytree(ROOT / "assignments" / "mha", tmp_path / "assignments" / "mha")
    shutil.copytree(ROOT / "reference", tmp_path / "reference")
    toml = tmp_path / "assignments" / "mha" / "mistakes.toml"
    text = toml.read_text()
    toml.write_text(text.replace('id = "sqrt-dfeat"\n', 'id = "sqrt-dfeat"\ncredit = 0.5\n', 1))
    report = grade_submission(SUBMISSIONS / "mha" / "bug_sqrt_dfeat.py", GradeConfig(root=tmp_path))
    lost = [c for c in report.cases if c.status != "passed"]
    assert lost and all(c.status == "failed" and c.score == c.max_score / 2 for c in lost)
    assert report.score == 14 + 7 and report.causes[0].points_lost == 7
    assert "partial credit: 50% of each case it explains" in report.causes[0].title
    assert "partial credit for a recognised mistake: 1.5 of 3" in report.cases[7].details
    assert "1.5/3" in render_rich_text(report, width=80)


def test_a_flood_of_a_message_makes_a_one_line_title():
    results = (_result("mha-match", cause=_error(3, message="very long " * 10_000)),)
    _, [cause] = group_causes(results, CASES, {})
    assert len(cause.title) <= 300 and cause.title.endswith("…") and "\n" not in cause.title
