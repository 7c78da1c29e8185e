"""Verdicts from captured observations: pure numpy, no worker involved."""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.execute.observation import Observation
from grader.judge.checks import first_largest
from grader.judge.judge import evaluate_case
from grader.judge.compose import case_result
from grader.model.outcomes import ErrorInfo, NotImplementedYet, NotRun, UnitError
from grader.spec.cases import Case, Target

ATT = Target("Att", ("Q", "K", "V"), ("out", "attention"), attention="attention", final="out",
             key_args=("K", "V"), flow=("attention", "out"))


def _case(checks, **kw):
    return Case(id="c", name="Att: c", target="Att", checks=tuple(checks), points=2.0, **kw)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _ok(tensors=None):
    return Observation("c", "ok", params={"w": (2, 3)}, duration=0.1, tensors=dict(tensors or {}))


def _eval(case, target, ref, stu, unavailable=NotRun("time")):
    """Judge one case from plain tensor dicts (None: the student produced no observation), and word it."""
    return case_result(evaluate_case(case, target, _ok(ref), stu if not isinstance(stu, dict) else _ok(stu),
                                     unavailable))


def test_pass_and_points():
    ref = {"out/out": np.ones((2, 3), np.float32), "out/attention": np.full((2, 2), 0.5, np.float32)}
    r = _eval(_case(["shape", "match"]), ATT, ref, dict(ref))
    assert (r.status, r.score, r.max_score, r.reason) == ("passed", 2.0, 2.0, "")


def test_shape_message_names_tensor_and_dims():
    ref = {"out/out": np.zeros((2, 4, 5), np.float32), "out/attention": np.zeros((2, 4, 6), np.float32)}
    stu = {"out/out": np.zeros((2, 5, 4), np.float32)}
    r = _eval(_case(["shape"]), ATT, ref, stu)
    assert r.status == "failed" and r.score == 0
    assert r.reason == "`attention` is missing from the outputs"
    assert "`out` has shape [2, 5, 4], expected [2, 4, 5] (dims 1, 2 differ)" in r.details.splitlines()


def test_first_divergence_in_flow_order_and_scale_explained():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 3, 3))
    ref = {"out/attention": _softmax(scores).astype(np.float32), "out/out": rng.normal(size=(2, 3, 4)).astype(np.float32)}
    stu = {"out/attention": (ref["out/attention"] * 2).astype(np.float32), "out/out": ref["out/out"] * 2}
    case = _case(["match"], inputs={"Q": [2, 3, 4], "K": [2, 3, 4], "V": [2, 3, 4]})
    r = _eval(case, ATT, ref, stu)
    assert r.reason == "`attention` is 2× the expected values"
    assert "`attention` differs from the reference: max abs diff" in r.details
    assert "`out` differ too, which may follow from the first difference above" in r.details


def test_sqrt_d_feat_is_recognised():
    rng = np.random.default_rng(1)
    exp = rng.normal(size=(1, 4, 3, 3)).astype(np.float32)
    mha = Target("MHA", ("Q", "K", "V"), "dict", keys=("scores",))
    case = Case(id="m", name="m", target="MHA", checks=("match",), points=1, init={"d_feat": 20, "n_head": 4})
    got = (exp * math.sqrt(5 / 20)).astype(np.float32)
    r = _eval(case, mha, {"out/scores": exp}, {"out/scores": got})
    assert "dividing by √d_feat instead of √d_head" in r.reason


def test_mask_fill_values_are_equivalent():
    exp = np.array([[0.5, -1e9]], np.float32)
    got = np.array([[0.5, -np.inf]], np.float32)
    t = Target("T", ("x",), "scores")
    r = _eval(Case("c", "c", "T", ("match",), 1), t, {"out/scores": exp}, {"out/scores": got})
    assert r.status == "passed"


def test_mask_checks_catch_leaks_and_bad_rows():
    mask = np.array([[[1, 1, 0]]], bool)  # [B=1, 1, n_K=3]
    good = np.array([[[0.3, 0.7, 0.0], [0.5, 0.5, 0.0]]], np.float32)
    ref = {"in/mask": mask, "out/attention": good, "out/out": np.zeros((1, 2, 4), np.float32)}
    case = _case(["mask"], mask={"kind": "padding", "lengths": [2]})
    leaky = np.array([[[0.3, 0.5, 0.2], [0.5, 0.5, 0.0]]], np.float32)
    r = _eval(case, ATT, ref, {"out/attention": leaky})
    assert r.reason.startswith("masked positions get attention: `attention` [0, 0, 2] = 0.2")
    wrong_dim = np.array([[[0.4, 0.4, 0.0], [0.6, 0.6, 0.0]]], np.float32)
    r = _eval(case, ATT, ref, {"out/attention": wrong_dim})
    assert "must sum to 1" in r.reason and "dim=-1" in r.reason
    assert _eval(case, ATT, ref, {"out/attention": good}).status == "passed"


def test_mask_invariance():
    mask = np.tril(np.ones((3, 3), bool))[None]  # causal [1, 3, 3]: rows 0, 1 can't see key 2
    att = np.zeros((1, 3, 3), np.float32)
    base = np.zeros((1, 3, 4), np.float32)
    ref = {"in/mask": mask, "out/attention": att, "out/out": base}
    case = _case(["mask_invariance"], mask={"kind": "causal"})
    fine = base.copy()
    fine[0, 2] += 1  # the last row may change
    assert _eval(case, ATT, ref, {"out/out": base, "pout/out": fine}).status == "passed"
    leak = base.copy()
    leak[0, 1] += 1
    r = _eval(case, ATT, ref, {"out/out": base, "pout/out": leak})
    assert r.reason.startswith("`out` changed at row [0, 1] when only a masked key/value was changed")


def test_missing_gradient_is_named():
    ref = {"grad/w": np.ones((2, 3), np.float32), "grad/b": np.ones(3, np.float32)}
    r = _eval(_case(["grad"]), ATT, ref, {"grad/w": np.ones((2, 3), np.float32)})
    assert r.reason == "parameter `b` received no gradient (is it used in forward?)"


def test_student_exception_is_an_error_with_cell_and_line():
    err = ErrorInfo("RuntimeError", ("RuntimeError", "Exception"), "shape mismatch",
                    "cell 7, line 3, in forward\n    y = x @ w", "cell 7", 3, "y = x @ w", "forward")
    stu = Observation("c", "error", "forward", err)
    r = _eval(_case(["shape"], hint="Check the shapes."), ATT, {}, stu)
    assert r.status == "error" and r.score == 0
    assert r.reason == "RuntimeError in cell 7, line 3 (forward): `y = x @ w` — shape mismatch"
    assert r.hint == "Check the shapes." and "Hint" not in r.details  # an error in forward: shapes, maybe
    assert _eval(_case(["match"], hint="Scale by √d."), ATT, {}, stu).hint == ""  # not about values
    assert r.cause.kind == "exception" and r.cause.phase == "forward"


def test_raises():
    case = Case("c", "c", "Att", ("raises",), 1, init={"d_feat": 20, "n_head": 3}, raises="ValueError")
    err = ErrorInfo("MyError", ("MyError", "ValueError", "Exception"), "no", "")
    assert _eval(case, ATT, {}, Observation("c", "error", "build", err)).status == "passed"
    r = _eval(case, ATT, {}, {})
    assert (r.status, r.reason) == ("failed", "Att(d_feat=20, n_head=3) did not raise ValueError")


def test_unavailable_is_an_error():
    cause = NotImplementedYet("Att", UnitError("blank", "cell 4", 12, "x = # FILL IN HERE"))
    r = _eval(_case(["match"]), ATT, {}, None, cause)
    assert (r.status, r.reason) == ("error", "not implemented yet (cell 4, line 12 is a blank)")
    assert r.details == "Att: not implemented yet: cell 4, line 12 is still a blank (`x = # FILL IN HERE`); " \
                        "replace `# FILL IN HERE` with your code"
    assert r.cause.kind == "not_implemented"


# --- every check is total: whatever tensors arrive, a verdict (never an exception), and non-finite
# values never pass.

MHA_LIKE = Target("M", ("Q", "K", "V"), "dict", keys=("scores", "attention", "x"), attention="attention",
                  final="x", key_args=("K", "V"), flow=("scores", "attention", "x"))
GOOD = {
    "in/mask": np.array([[[[1, 1, 0]]]], bool),  # [B=1, 1, 1, n_K=3]
    "out/scores": np.zeros((1, 2, 2, 3), np.float32),
    "out/attention": np.tile(np.array([0.5, 0.5, 0.0], np.float32), (1, 2, 2, 1)),
    "out/x": np.ones((1, 2, 4), np.float32),
    "grad/lin.weight": np.ones((4, 4), np.float32),
}


def _odd_values():
    """Student outputs of every awkward kind: wrong ranks and sizes, empty, 0-d, ints, bools, NaN, inf, huge."""
    yield np.zeros((), np.float32)
    yield np.zeros((0,), np.float32)
    yield np.zeros((1, 2, 2, 3, 1), np.float32)
    yield np.zeros((7,), np.int64)
    yield np.ones((1, 2, 2, 3), bool)
    yield np.full((1, 2, 2, 3), np.nan, np.float32)
    yield np.full((1, 2, 4), np.inf, np.float64)
    yield np.full((1, 2, 2, 3), -np.inf, np.float16)
    yield np.full((1, 2, 4), 1e308, np.float64)
    yield np.full((4, 4), np.nan, np.float32)


@pytest.mark.parametrize("check", ["shape", "match", "mask", "mask_invariance", "grad", "params", "param_count"])
def test_every_check_gives_a_verdict_on_any_tensor(check):
    case = Case("c", "c", "M", (check,), 1, mask={"kind": "padding", "lengths": [2]}, init={"d_feat": 4, "n_head": 2},
                inputs={"Q": [1, 2, 4], "K": [1, 3, 4], "V": [1, 3, 4]})
    ref = Observation("c", "ok", params={"lin.weight": (4, 4)}, tensors=GOOD)
    for value in _odd_values():
        for name in ("out/scores", "out/attention", "out/x", "pout/x", "grad/lin.weight"):
            stu = dict(GOOD, **{"pout/x": GOOD["out/x"]})
            stu[name] = value
            result = evaluate_case(case, MHA_LIKE, ref, Observation("c", "ok", params={"lin.weight": (4, 4)},
                                                                    tensors=stu), NotRun())
            assert result.status in ("passed", "failed")
            if check != "params" and check != "param_count" and not np.isfinite(value.astype(np.float64)).all() \
                    and value.size and _checked_by(check, name):
                assert result.status == "failed", (check, name, value.dtype, value.shape)


def _checked_by(check: str, name: str) -> bool:
    return {"shape": (), "match": ("out/scores", "out/attention", "out/x"), "mask": ("out/attention",),
            "mask_invariance": ("out/x", "pout/x"), "grad": ("grad/lin.weight",)}[check].__contains__(name)


def test_nan_attention_fails_the_mask_check():
    case = _case(["mask"], mask={"kind": "padding", "lengths": [2]})
    ref = {"in/mask": np.array([[[1, 1, 0]]], bool), "out/attention": np.array([[[0.5, 0.5, 0.0]]], np.float32)}
    r = _eval(case, ATT, ref, {"out/attention": np.array([[[0.5, 0.5, np.nan]]], np.float32)})
    assert r.status == "failed" and "NaN or inf" in r.reason


def test_the_largest_is_the_first_of_those_that_tie_whatever_their_last_bits():
    """Where values tie (uniform weights, one masked fill), a problem points at the first of them, also when
    another CPU's last bits make a later one larger: the report reads the same on every machine."""
    assert first_largest(np.array([0.1, 0.2, 0.2 * (1 + 3e-7), 0.2])) == 1
    assert first_largest(np.array([0.3, 0.1, 0.2999])) == 0 and first_largest(np.array([0.1, 0.3])) == 1
    assert first_largest(np.array([0.1, np.inf, np.inf])) == 1
