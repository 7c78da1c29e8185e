"""Slicing: only the statements graded names need run; a SyntaxError spoils only its cell."""
from __future__ import annotations

from grader.plan.plan import missing_cause
from grader.model.messages import cause_reason, missing_explanation
from grader.plan.slicing import parse_units, slice_for
from grader.plan.submission import SourceUnit


def _units(*cells):
    return [SourceUnit(i, f"cell {i}", src) for i, src in enumerate(cells, start=1)]


def _lines(sl):
    return [(s.unit.label, s.lineno) for s in sl.statements]


def test_keeps_imports_constants_and_helpers_and_drops_the_rest():
    parsed = parse_units(_units(
        "import torch\nimport torch.nn as nn\nimport matplotlib.pyplot as plt",
        "device = torch.device('cpu')\nmnist = download()",
        "class A(nn.Module):\n    def forward(self, x):\n        return helper(x).to(device)\n"
        "def helper(y):\n    return y",
        "for epoch in range(10**9):\n    pass\nplt.plot([1])",
    ))
    sl = slice_for(parsed, ["A"])
    assert _lines(sl) == [("cell 1", 1), ("cell 1", 2), ("cell 2", 1), ("cell 3", 1), ("cell 3", 4)]
    assert not sl.missing


def test_last_definition_wins():
    parsed = parse_units(_units("class A:\n    v = 1", "x = 2", "class A:\n    v = 3"))
    sl = slice_for(parsed, ["A"])
    assert _lines(sl) == [("cell 3", 1)]


def test_eager_uses_resolve_to_the_definition_before_them():
    parsed = parse_units(_units("k = 1", "class A:\n    v = k", "k = 2"))
    assert _lines(slice_for(parsed, ["A"])) == [("cell 1", 1), ("cell 2", 1)]


def test_loops_never_count_as_definitions():
    parsed = parse_units(_units("for scale in range(3):\n    pass", "class A:\n    def f(self):\n        return scale"))
    assert _lines(slice_for(parsed, ["A"])) == [("cell 2", 1)]


def test_a_syntax_error_spoils_only_its_cell():
    parsed = parse_units(_units("import torch", "class A:\n    x = # FILL IN HERE", "class B:\n    pass"))
    sl = slice_for(parsed, ["A", "B"])
    assert "B" in sl.definitions and sl.missing == ("A",)
    cause = missing_cause(parsed, "A")
    assert cause.kind == "not_implemented" and (cause.unit.label, cause.unit.line) == ("cell 2", 2)
    assert cause_reason(cause, None) == "not implemented yet (cell 2, line 2 is a blank)"
    assert "`x = # FILL IN HERE`" in missing_explanation(cause)


def test_a_missing_class_is_named():
    parsed = parse_units(_units("x = 1"))
    assert slice_for(parsed, ["LSTMCell"]).missing == ("LSTMCell",)
    assert cause_reason(missing_cause(parsed, "LSTMCell"), None) == "LSTMCell is not defined"


def test_broken_later_redefinition_is_noted():
    parsed = parse_units(_units("class A:\n    pass", "class A:\n    x = ("))
    sl = slice_for(parsed, ["A"])
    assert _lines(sl) == [("cell 1", 1)]
    assert sl.redefinitions["A"].unit.label == "cell 2"


def test_class_names():
    parsed = parse_units(_units("class A:\n    pass\ndef f(): pass", "class B:\n  x = ("))
    assert parsed.class_names() == {"A", "B"}


def test_messages_quote_at_most_200_characters_of_a_long_line():
    parsed = parse_units(_units("x = (" + "1, " * 5000))
    message = parsed.syntax_errors[0].describe()
    assert message.startswith("SyntaxError in cell 1, line 1: `x = (1, 1, ") and "...`" in message
    assert message.endswith("; fix this line so the cell runs") and len(message) < 400


def test_a_statement_shares_its_line_with_its_own_source_only():
    parsed = parse_units(_units("import torch; k = 1\nclass A:\n    v = k"))
    assert [(s.lineno, s.source) for s in slice_for(parsed, ["A"]).statements] == [
        (1, "k = 1"), (2, "class A:\n    v = k")]
