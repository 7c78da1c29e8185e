"""Known mistakes beyond exact variant matching: the signature detectors, the `equals_other` fact,
and what mistakes.toml may declare (signature, credit). Pure numpy: no worker involved."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import ROOT
from grader.errors import CaseFileError
from grader.execute.observation import Observation
from grader.judge.compose import case_result
from grader.judge.checks import check_match
from grader.judge.diagnose import DETECTORS, diagnose, integer_scores, softmax_dim
from grader.judge.judge import evaluate_case
from grader.model.messages import problem_text
from grader.model.outcomes import Downstream, EqualsOther, ErrorInfo, NotRun
from grader.spec.cases import Case, Target
from grader.spec.mistakes import SIGNATURES, Mistake, load_mistakes

SDPA = Target("Att", ("Q", "K", "V"), ("out", "attention"), attention="attention", final="out",
              key_args=("K", "V"), flow=("attention", "out"))
MHA = Target("MHA", ("Q", "K", "V"), "dict", keys=("scores", "attention", "x_rsh2", "x"), attention="attention",
             final="x")
CASE = Case(id="c", name="Att: c", target="Att", checks=("match",), points=2.0)
RNG = np.random.default_rng(7)


def _softmax(x, axis=-1):
    with np.errstate(all="ignore"):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def _obs(tensors, status="ok", **kw):
    return Observation("c", status, tensors=dict(tensors), **kw)


def _att(a):
    return {"out/attention": np.asarray(a, np.float32)}


def _causal(scores, fill=-1e9):
    n_q, n_k = scores.shape[-2:]
    keep = np.tril(np.ones((n_q, n_k), bool))
    return np.where(keep, scores, fill)


# --------------------------------------------------------------------------- softmax_dim


@pytest.mark.parametrize("shape,dim", [((2, 3, 5, 6), 1), ((2, 3, 5, 6), 0), ((2, 3, 5, 6), -2),
                                       ((2, 4, 6), 0), ((2, 4, 6), 1), ((1, 4, 5, 5), 0)])
def test_softmax_dim_names_a_softmax_over_any_other_dim(shape, dim):
    scores = RNG.normal(size=shape)
    ref, stu = _att(_softmax(scores)), _att(_softmax(scores, dim))
    assert softmax_dim(CASE, "attention", ref, stu)


def test_softmax_dim_with_masks_and_fully_masked_rows():
    scores = RNG.normal(size=(2, 3, 5, 5))
    masked = _causal(scores)
    masked[1, :, 2, :] = -1e9  # a fully masked row: uniform weights in the reference
    ref = _att(_softmax(masked))
    assert softmax_dim(CASE, "attention", ref, _att(_softmax(masked, -2)))
    assert softmax_dim(CASE, "attention", ref, _att(_softmax(masked, 1)))
    # -inf fills: a fully masked column is NaN under softmax(dim=-2); the other slices still show it
    inf = _causal(scores, -np.inf)
    assert softmax_dim(CASE, "attention", ref, _att(_softmax(inf, -2)))


def test_softmax_dim_is_not_named_for_other_wrong_weights():
    scores = RNG.normal(size=(2, 3, 5, 6))
    ref = _att(_softmax(scores))
    assert not softmax_dim(CASE, "attention", ref, _att(_softmax(2 * scores)))      # rows still sum to 1
    after = _softmax(scores) * (np.arange(6) < 4)                                     # masked after softmax
    assert not softmax_dim(CASE, "attention", ref, _att(after))
    assert not softmax_dim(CASE, "attention", ref, _att(np.zeros((2, 3, 5, 6))))
    assert not softmax_dim(CASE, "attention", ref, _att(_softmax(scores, 1)[:, :, :4]))  # another shape
    assert not softmax_dim(CASE, "attention", ref, {})                                   # no attention
    assert not softmax_dim(CASE, None, ref, _att(_softmax(scores, 1)))                   # target has none


def test_softmax_dim_ignores_nan_rows_of_a_nan_mask_fill():
    scores = RNG.normal(size=(2, 3, 5, 6))
    padding = np.arange(6)[None, None, None, :] < np.array([6, 3])[:, None, None, None]
    ref = _att(_softmax(np.where(padding, scores, -1e9)))
    stu = _att(_softmax(np.where(padding, scores, np.nan)))  # batch 1 all NaN, batch 0 right
    assert np.isnan(stu["out/attention"]).any()
    assert not softmax_dim(CASE, "attention", ref, stu)
    all_nan = _att(np.full((2, 3, 5, 6), np.nan))
    assert not softmax_dim(CASE, "attention", ref, all_nan)
    causal_nan = _att(_softmax(_causal(scores, np.nan)))  # every row but the last is NaN
    assert not softmax_dim(CASE, "attention", _att(_softmax(_causal(scores))), causal_nan)


def test_softmax_dim_needs_a_reference_that_is_an_attention():
    scores = RNG.normal(size=(2, 3, 4))
    assert not softmax_dim(CASE, "attention", _att(_softmax(scores, 0)), _att(_softmax(scores, 1)))


# --------------------------------------------------------------------------- integer_scores


def test_integer_scores_from_the_scores_output():
    s = RNG.normal(size=(2, 3, 5, 5)) * 3
    ref = {"out/scores": _causal(s).astype(np.float32), **_att(_softmax(_causal(s)))}
    q = _causal(np.floor(s))
    stu = {"out/scores": q.astype(np.float32), **_att(_softmax(q))}
    assert integer_scores(CASE, "attention", ref, stu)
    assert integer_scores(CASE, "attention", ref, {"out/scores": stu["out/scores"]})  # scores alone
    assert not integer_scores(CASE, "attention", ref, {"out/scores": (s * 2).astype(np.float32)})
    assert not integer_scores(CASE, "attention", ref, {"out/scores": np.zeros_like(s, np.float32)})  # constant
    nan = stu["out/scores"].copy()
    nan[0, 0, 0, 0] = np.nan
    assert integer_scores(CASE, "attention", ref, {"out/scores": nan})  # a NaN is left out, not counted
    assert not integer_scores(CASE, "attention", {"out/scores": stu["out/scores"]}, stu)  # reference integer too


def test_integer_scores_from_attention_alone():
    s = RNG.normal(size=(2, 4, 6)) * 2
    ref = _att(_softmax(s))
    assert integer_scores(CASE, "attention", ref, _att(_softmax(np.floor(s))))
    assert integer_scores(CASE, "attention", ref, _att(_softmax(np.trunc(s))))  # an int cast
    masked = _causal(np.floor(s))
    masked[1, 0, :] = -1e9  # a fully masked row: uniform, log-ratios 0
    assert integer_scores(CASE, "attention", _att(_softmax(_causal(s))), _att(_softmax(masked)))
    assert not integer_scores(CASE, "attention", ref, _att(_softmax(s / 3)))
    assert not integer_scores(CASE, "attention", ref, _att(np.full((2, 4, 6), 1 / 6)))  # uniform: no ratios
    assert not integer_scores(CASE, "attention", ref, _att(np.full((2, 4, 6), np.nan)))
    assert not integer_scores(CASE, "attention", ref, _att(-_softmax(np.floor(s))))  # not weights
    assert not integer_scores(CASE, None, ref, _att(_softmax(np.floor(s))))


# --------------------------------------------------------------------------- diagnose


def _mistake(mid, signature=None):
    return Mistake(mid, mid, "", (("a", "b", 1),), signature)


def test_diagnose_names_a_signature_without_a_matching_variant():
    s = RNG.normal(size=(2, 3, 5, 6))
    ref, stu = _obs(_att(_softmax(s))), _obs(_att(_softmax(s, 1)))
    variants = {"softmax-dim": {"c": _obs(_att(_softmax(s, -2)))}}  # dim=-2: not what this student wrote
    mistakes = [_mistake("softmax-dim", "softmax_dim"), _mistake("floor", "integer_scores"), _mistake("plain")]
    assert [m.id for m in diagnose(CASE, ref, stu, variants, mistakes, SDPA)] == ["softmax-dim"]
    assert [m.id for m in diagnose(CASE, ref, stu, variants, mistakes)] == ["softmax-dim"]  # `attention` by default
    assert diagnose(CASE, ref, stu, variants, [_mistake("softmax-dim")], SDPA) == []  # no signature: no name
    err = _obs({}, "error", phase="forward", error=ErrorInfo("RuntimeError", ("RuntimeError",), "boom", ""))
    assert diagnose(CASE, ref, err, variants, mistakes, SDPA) == []


def test_diagnose_does_not_name_an_error_the_reference_raises_too():
    err = ErrorInfo("ValueError", ("ValueError", "Exception"), "indivisible", "")
    raised = _obs({}, "error", phase="build", error=err)
    mistakes = [_mistake("m")]
    assert diagnose(CASE, raised, raised, {"m": {"c": raised}}, mistakes) == []
    ok = _obs(_att(np.full((2, 2), 0.5)))
    assert [m.id for m in diagnose(CASE, ok, raised, {"m": {"c": raised}}, mistakes)] == ["m"]


def test_every_signature_has_a_detector():
    assert set(SIGNATURES) == set(DETECTORS)


# --------------------------------------------------------------------------- equals_other


def _mha_ref():
    x_rsh2 = RNG.normal(size=(2, 3, 8)).astype(np.float32)
    s = RNG.normal(size=(2, 2, 3, 3)).astype(np.float32)
    return {"out/scores": s, "out/attention": _softmax(s), "out/x_rsh2": x_rsh2,
            "out/x": (x_rsh2 @ RNG.normal(size=(8, 8))).astype(np.float32)}


def test_equals_other_names_the_reference_output_it_equals():
    ref = _mha_ref()
    stu = {**ref, "out/x": ref["out/x_rsh2"].copy()}  # lin_O skipped
    problems = check_match(CASE, MHA, _obs(ref), _obs(stu))
    kinds = [p.kind for p in problems]
    assert kinds.index("equals_other") == kinds.index("value_differs") + 1
    eq = problems[kinds.index("equals_other")]
    assert eq == EqualsOther("x", "x_rsh2")
    assert problem_text(eq) == "`x` equals the reference's `x_rsh2`: is a step missing after it?"
    r = case_result(evaluate_case(CASE, MHA, _obs(ref), _obs(stu), NotRun("time")))
    assert r.reason.startswith("`x` differs from the reference")
    assert "`x` equals the reference's `x_rsh2`: is a step missing after it?" in r.details.splitlines()


def test_equals_other_only_for_a_real_match():
    ref = _mha_ref()
    for got in (ref["out/x_rsh2"] + 1.0, np.full_like(ref["out/x"], np.nan), ref["out/x_rsh2"][:, :2],
                np.full_like(ref["out/x"], np.inf)):
        problems = check_match(CASE, MHA, _obs(ref), _obs({**ref, "out/x": got}))
        assert "equals_other" not in [p.kind for p in problems]
    const = {**ref, "out/x_rsh2": np.zeros_like(ref["out/x_rsh2"])}  # a constant says nothing
    problems = check_match(CASE, MHA, _obs(const), _obs({**const, "out/x": np.zeros_like(ref["out/x"])}))
    assert "equals_other" not in [p.kind for p in problems]
    assert "value_differs" in [p.kind for p in problems]
    assert check_match(CASE, MHA, _obs(ref), _obs(dict(ref))) == []


def test_equals_other_is_not_added_for_downstream_outputs():
    ref = _mha_ref()
    stu = {**ref, "out/scores": ref["out/scores"] * 2, "out/x": ref["out/x_rsh2"].copy()}
    problems = check_match(CASE, MHA, _obs(ref), _obs(stu))
    assert "equals_other" not in [p.kind for p in problems]
    assert Downstream(["x"]) in problems


# --------------------------------------------------------------------------- mistakes.toml


def _load(tmp_path, body):
    (tmp_path / "mistakes.toml").write_text(body, encoding="utf-8")
    return load_mistakes(tmp_path)


EDIT = 'edits = [{ find = "a", replace = "b" }]\n'


def test_credit_and_signature_are_read(tmp_path):
    m, = _load(tmp_path, f'[[mistakes]]\nid = "m"\ncredit = 0.5\nsignature = "softmax_dim"\n{EDIT}')
    assert (m.credit, m.signature) == (0.5, "softmax_dim")
    m, = _load(tmp_path, f'[[mistakes]]\nid = "m"\ncredit = 1\n{EDIT}')
    assert m.credit == 1.0 and isinstance(m.credit, float)
    m, = _load(tmp_path, f'[[mistakes]]\nid = "m"\n{EDIT}')
    assert (m.credit, m.signature) == (0.0, None)


@pytest.mark.parametrize("value", ["1.5", "-0.1", '"half"', "true", "nan", "inf", "[0.5]"])
def test_a_bad_credit_names_the_file_the_mistake_and_the_key(tmp_path, value):
    with pytest.raises(CaseFileError) as e:
        _load(tmp_path, f'[[mistakes]]\nid = "lazy"\ncredit = {value}\n{EDIT}')
    text = str(e.value)
    assert str(tmp_path / "mistakes.toml") in text and "'lazy'" in text and "credit" in text


@pytest.mark.parametrize("value", ['"softmax"', "1", '""'])
def test_an_unknown_signature_is_refused(tmp_path, value):
    with pytest.raises(CaseFileError) as e:
        _load(tmp_path, f'[[mistakes]]\nid = "m"\nsignature = {value}\n{EDIT}')
    text = str(e.value)
    assert "mistakes.toml" in text and "'m'" in text and "signature" in text and "softmax_dim" in text


def test_the_shipped_mistakes_declare_their_signatures():
    mha = {m.id: m for m in load_mistakes(ROOT / "assignments" / "mha")}
    assert mha["softmax-dim"].signature == "softmax_dim"
    assert mha["floor-division"].signature == "integer_scores"
    assert all(0.0 <= m.credit <= 1.0 for m in mha.values())
