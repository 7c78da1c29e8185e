"""Forbidden calls are found through imports, aliases, attribute chains and getattr."""
from __future__ import annotations

import pytest

from grader.plan.policy import forbidden_uses
from grader.plan.slicing import parse_units, slice_for
from grader.plan.submission import SourceUnit

FORBID = ("torch.nn.LSTMCell", "torch.lstm_cell", "torch._VF")
HEAD = "import torch\nimport torch.nn as nn\n"


def _uses(body: str) -> list[str]:
    parsed = parse_units([SourceUnit(2, "cell 2", HEAD + body)])
    return forbidden_uses(slice_for(parsed, ["Cell"]).statements, FORBID)


@pytest.mark.parametrize("body", [
    "class Cell(nn.Module):\n    def f(self):\n        return nn.LSTMCell(2, 3)\n",
    "class Cell(nn.Module):\n    def f(self):\n        return torch.nn.LSTMCell(2, 3)\n",
    "from torch.nn import LSTMCell as L\nclass Cell(nn.Module):\n    def f(self):\n        return L(2, 3)\n",
    "Ready = nn.LSTMCell\nclass Cell(nn.Module):\n    def f(self):\n        return Ready(2, 3)\n",
    "class Cell(nn.Module):\n    def f(self, x):\n        return getattr(torch, 'lstm_cell')(x)\n",
    "class Cell(nn.Module):\n    def f(self, x):\n        return torch._VF.lstm_cell(x)\n",
    "def helper(x):\n    return torch.lstm_cell(x)\nclass Cell(nn.Module):\n    def f(self, x):\n        return helper(x)\n",
])
def test_forbidden_use_is_found_with_cell_and_line(body):
    found = _uses(body)
    assert found and found[0]["label"] == "cell 2" and found[0]["line"] > 2
    assert found[0]["forbidden"] in FORBID and found[0]["used"].startswith(found[0]["forbidden"])


def test_allowed_code_is_not_flagged():
    assert _uses("class Cell(nn.Module):\n    def f(self, x):\n        return torch.sigmoid(nn.Parameter(x))\n") == []


def test_forbidden_use_outside_what_the_class_needs_is_ignored():
    assert _uses("demo = nn.LSTMCell(2, 3)\nclass Cell(nn.Module):\n    pass\n") == []
