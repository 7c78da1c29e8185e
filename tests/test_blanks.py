"""Blanks of the template in code that parses, and the "did you mean" of a renamed class.

A blank is "not implemented yet" whatever its syntax: `torch.zeros(` / `# FILL IN HERE` / `)` is
valid Python, yet nothing was written. A student who wrote the code and kept the comment is
not penalised.
"""
from __future__ import annotations

import pytest
from conftest import course
from test_plan_bounds import GROWTH, LINEAR, _growth

from grader.course.assignments import get_assignment
from grader.plan.plan import blank_cause, make_plan, missing_cause
from grader.plan.slicing import find_blanks, parse_units
from grader.plan.submission import SourceUnit
from grader.model.messages import cause_reason, missing_explanation, note_text
from grader.model.outcomes import MissingClass, Suggestion

HEAD = "import torch\nimport torch.nn as nn\n"


def _units(*cells):
    return [SourceUnit(i, f"cell {i}", src) for i, src in enumerate(cells, start=1)]


def _cls(body: str, name: str = "A") -> str:
    """``class name(nn.Module)`` with ``def forward(self, x)`` holding ``body`` (indented 8)."""
    lines = "\n".join("        " + line if line else "" for line in body.split("\n"))
    return f"class {name}(nn.Module):\n    def forward(self, x):\n{lines}\n"


UNFILLED = {
    "only a comment in the call": "h0 = torch.zeros(\n    # FILL IN HERE\n)\nreturn h0",
    "a comment in the call, then a method": "h0 = torch.zeros(\n    # FILL IN HERE\n).to(x.device)\nreturn h0",
    "on the call's line": "return torch.zeros(  # FILL IN HERE\n)",
    "comments only, two of them": "return torch.zeros(\n    # shape [K, N, D]\n    # FILL IN HERE\n)",
    "an empty inner call": "return torch.cat([x, torch.tanh(\n    # FILL IN HERE\n)])",
    "followed by pass": "# FILL IN HERE\npass",
    "followed by ...": "# FILL IN HERE\n\n...",
    "followed by raise NotImplementedError": "# FILL IN HERE\nraise NotImplementedError('write forward')",
    "after pass on its line": "pass  # FILL IN HERE",
    "a body that is a docstring and the marker": "'''The logits.'''\n# FILL IN HERE",
}

FILLED = {
    "code in the same call": "h0 = torch.zeros(\n    # FILL IN HERE\n    3, x.size(0), 4)\nreturn h0",
    "code before the comment in the call": "return torch.zeros(x.size(0),  # FILL IN HERE\n)",
    "the comment after code on its line": "return x * 2  # FILL IN HERE",
    "code after the comment": "# FILL IN HERE\nreturn x * 2",
    "code after the comment, then pass": "# FILL IN HERE\ny = x * 2\npass\nreturn y",
    "the marker in a string": "return torch.zeros(3, 'FILL IN HERE')",
    "a docstring, the comment, then code": "'''The logits.'''\n# FILL IN HERE\nreturn x",
    "the marker in lower case": "return torch.zeros(\n    # fill in here\n)",
}


@pytest.mark.parametrize("body", UNFILLED.values(), ids=UNFILLED.keys())
def test_an_unfilled_blank_is_not_implemented(body):
    parsed = parse_units(_units(HEAD, _cls(body)))
    assert not parsed.syntax_errors
    cause = blank_cause(parsed, "A")
    assert cause is not None and cause.kind == "not_implemented"
    marker_line = 3 + body.split("\n").index(next(line for line in body.split("\n") if "FILL IN" in line))
    assert (cause.target, cause.unit.label, cause.unit.line) == ("A", "cell 2", marker_line)
    assert cause_reason(cause, None) == f"not implemented yet (cell 2, line {marker_line} is a blank)"
    assert "FILL IN HERE" in cause.unit.code and "replace `# FILL IN HERE`" in missing_explanation(cause)


@pytest.mark.parametrize("body", FILLED.values(), ids=FILLED.keys())
def test_a_marker_kept_beside_written_code_is_filled(body):
    parsed = parse_units(_units(HEAD, _cls(body)))
    assert not parsed.syntax_errors
    assert blank_cause(parsed, "A") is None


def test_the_code_shown_is_the_call_on_one_line():
    blanks = find_blanks("h0 = torch.zeros(\n    # FILL IN HERE\n).to(device)\n")
    assert [(anchor, b.lineno, b.code) for anchor, b in blanks] == [
        (2, 2, "h0 = torch.zeros( # FILL IN HERE ).to(device)")]
    long = find_blanks("x = f(\n" + "    # note\n" * 50 + "    # FILL IN HERE\n)\n")
    assert [b.code for _, b in long] == ["x = f( ... # FILL IN HERE )"]


def test_the_first_blank_of_the_class_is_told():
    parsed = parse_units(_units(HEAD, "class A(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                                      "        self.rnn = nn.LSTM(\n            # FILL IN HERE\n        )\n"
                                      "    def forward(self, x):\n        return torch.zeros(\n"
                                      "            # FILL IN HERE\n        )\n"))
    assert blank_cause(parsed, "A").unit.line == 5


def test_a_helper_that_holds_a_blank_makes_the_class_that_needs_it_not_implemented():
    parsed = parse_units(_units(
        HEAD,
        "def zero_state(x, hdim):\n    return torch.zeros(\n        # FILL IN HERE\n    )",
        "class A(nn.Module):\n    def forward(self, x):\n        return zero_state(x, 4)",
        "class B(nn.Module):\n    def forward(self, x):\n        return x",
    ))
    cause = blank_cause(parsed, "A")
    assert cause.kind == "not_implemented"
    assert (cause.unit.label, cause.unit.line, cause.needed) == ("cell 2", 3, ("zero_state",))
    assert cause_reason(cause, None) == "not implemented yet (cell 2, line 3 is a blank in `zero_state`)"
    assert "in `zero_state`, which A needs" in missing_explanation(cause)
    assert blank_cause(parsed, "B") is None


def test_blanks_outside_what_a_graded_class_needs_do_not_matter():
    parsed = parse_units(_units(
        HEAD,
        _cls("return x * 2"),
        "class Bonus(nn.Module):\n    def forward(self, x):\n        return torch.relu(\n            # FILL IN HERE\n"
        "        )",
        "for epoch in range(3):\n    # FILL IN HERE\n    pass",
        "def plot(history):\n    # FILL IN HERE\n    pass",
    ))
    assert blank_cause(parsed, "A") is None


def test_the_plan_does_not_run_a_class_that_holds_a_blank():
    lstm = get_assignment(course(), "lstm")
    filled = ("class LSTMCell(nn.Module):\n    def __init__(self, xdim=28, hdim=256):\n        super().__init__()\n"
              "    def forward(self, x, state=None):\n        return x, x")
    blank = ("state = torch.zeros(\n    # FILL IN HERE\n)\n\n"
             "class RecurrentNeuralNetworkClass(nn.Module):\n    def forward(self, x):\n        return state")
    plan = make_plan(parse_units(_units(HEAD, blank, filled)), lstm, {c.id for c in lstm.cases})
    cause = plan.missing["RecurrentNeuralNetworkClass"]
    assert cause.kind == "not_implemented" and (cause.unit.label, cause.unit.line) == ("cell 2", 2)
    assert "LSTMCell" not in plan.missing
    assert {c.target for c in plan.to_run} == {"LSTMCell"}
    assert all("FILL IN" not in s.source for s in plan.sliced.statements)  # nor the statement only it needs
    notes = [note_text(n) for n in plan.notes if n.kind == "missing_target"]
    assert notes == [("RecurrentNeuralNetworkClass: not implemented yet: cell 2, line 2 is still a blank "
                     "(`state = torch.zeros( # FILL IN HERE )`), in `state`, which RecurrentNeuralNetworkClass "
                     "needs; replace `# FILL IN HERE` with your code")]


def test_finding_blanks_is_linear():
    def source(n):
        return "\n".join(f"x{i} = torch.zeros(\n    # FILL IN HERE\n)\ny{i} = f(  # FILL IN HERE\n    {i})"
                         for i in range(n))
    small, large = source(500), source(500 * GROWTH)
    assert len(find_blanks(large)) == 500 * GROWTH
    assert _growth(find_blanks, small, large) < LINEAR


# ------------------------------------------------------------------ did you mean

MHA_BODY = ("    def __init__(self, d_feat=128, n_head=5):\n        super().__init__()\n"
            "    def forward(self, Q, K, V, mask=None):\n        return {}\n")
SDPA = "class ScaledDotProductAttention(nn.Module):\n    def forward(self, Q, K, V, mask=None):\n        return Q, K\n"


def _suggestion(*cells, target="MultiHeadedAttention"):
    mha = get_assignment(course(), "mha")
    cause = missing_cause(parse_units(_units(HEAD, *cells)), target, mha.targets)
    assert cause.kind == "missing_target"
    return cause


@pytest.mark.parametrize("name", ["MultiHeadAttention", "multi_headed_attention", "MultiheadedAttention"])
def test_a_class_of_a_close_name_is_suggested(name):
    cause = _suggestion(SDPA, f"class {name}(nn.Module):\n" + MHA_BODY)
    assert cause.suggestion == Suggestion(name, "cell 3", 1)
    assert cause_reason(cause, None) == (f"MultiHeadedAttention is not defined; did you mean `{name}` "
                                         "(cell 3, line 1)?")
    assert missing_explanation(cause) == (
        f"MultiHeadedAttention is not defined; did you mean `{name}` (cell 3, line 1)? "
        "Rename the class to MultiHeadedAttention, the name the assignment grades.")
    assert "did you mean" in note_text(MissingClass(cause))


def test_a_class_whose_forward_takes_the_targets_arguments_is_suggested():
    cause = _suggestion(SDPA, "x = 1\nclass Attn(nn.Module):\n" + MHA_BODY)
    assert cause.suggestion == Suggestion("Attn", "cell 3", 2)


def test_no_suggestion_when_nothing_is_close_or_the_signature_is_ambiguous():
    assert _suggestion(SDPA, "class Encoder(nn.Module):\n    def forward(self, src):\n"
                                "        return src\n").suggestion is None
    two = "class Attn(nn.Module):\n" + MHA_BODY + "class Heads(nn.Module):\n" + MHA_BODY
    assert _suggestion(SDPA, two).suggestion is None
    # ScaledDotProductAttention has the same forward, but it is graded itself: never suggested
    assert _suggestion(SDPA).suggestion is None
    assert cause_reason(_suggestion(SDPA), None) == "MultiHeadedAttention is not defined"
