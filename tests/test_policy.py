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
    assert found and found[0].label == "cell 2" and found[0].line > 2
    assert found[0].forbidden in FORBID and found[0].used.startswith(found[0].forbidden)


def test_allowed_code_is_not_flagged():
    assert _uses("class Cell(nn.Module):\n    def f(self, x):\n        return torch.sigmoid(nn.Parameter(x))\n") == []


def test_forbidden_use_outside_what_the_class_needs_is_ignored():
    assert _uses("demo = nn.LSTMCell(2, 3)\nclass Cell(nn.Module):\n    pass\n") == []


# --- operator families: a kernel of a forbidden API, named in the source ------------

def _forbid(assignment: str, target: str) -> tuple[str, ...]:
    import tomllib

    from conftest import ROOT
    with open(ROOT / "assignments" / assignment / "cases.toml", "rb") as f:
        return tuple(tomllib.load(f)["targets"][target]["forbid"])


def _uses_with(forbid: tuple[str, ...], body: str) -> list[dict]:
    head = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
    parsed = parse_units([SourceUnit(2, "cell 2", head + f"class Cell(nn.Module):\n    def f(self, x):\n        {body}\n")])
    return forbidden_uses(slice_for(parsed, ["Cell"]).statements, forbid)


@pytest.mark.parametrize("assignment, target, body, used, entry", [
    ("mha", "ScaledDotProductAttention", "return torch._scaled_dot_product_attention_math(x, x, x)",
     "torch._scaled_dot_product_attention_math", "torch.nn.functional.scaled_dot_product_attention"),
    ("mha", "ScaledDotProductAttention", "return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default(x, x, x)",
     "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default", "torch.nn.functional.scaled_dot_product_attention"),
    ("mha", "ScaledDotProductAttention", "return torch._C._VariableFunctions._native_multi_head_attention(x)",
     "torch._C._VariableFunctions._native_multi_head_attention", "torch.nn.MultiheadAttention"),
    ("mha", "MultiHeadedAttention", "return torch.ops.aten._efficient_attention_forward(x)",
     "torch.ops.aten._efficient_attention_forward", "torch.nn.functional.scaled_dot_product_attention"),
    ("lstm", "LSTMCell", "return torch.lstm(x)", "torch.lstm", "torch.nn.LSTM"),
    ("lstm", "LSTMCell", "return torch.ops.aten.lstm.input(x)", "torch.ops.aten.lstm.input", "torch.nn.LSTM"),
    ("lstm", "LSTMCell", "return torch._thnn_fused_lstm_cell(x)", "torch._thnn_fused_lstm_cell", "torch.nn.LSTMCell"),
    ("lstm", "LSTMCell", "return torch.gru_cell(x)", "torch.gru_cell", "torch.nn.modules.rnn"),
    ("gru", "GRUCell", "return torch.gru(x)", "torch.gru", "torch.nn.GRU"),
    ("gru", "GRUCell", "return torch.ops.aten.rnn_tanh_cell(x)", "torch.ops.aten.rnn_tanh_cell", "torch.nn.modules.rnn"),
])
def test_a_kernel_of_a_forbidden_family_is_found(assignment, target, body, used, entry):
    found = _uses_with(_forbid(assignment, target), body)
    assert [(u.used, u.forbidden) for u in found] == [(used, entry)]


@pytest.mark.parametrize("body", [
    "return torch.softmax(x @ x.transpose(-1, -2), -1) @ x",
    "return torch.ops.aten.mm(x, x) + torch.ops.aten._softmax.default(x, -1, False)",
    "return F.softmax(torch.einsum('bqd,bkd->bqk', x, x).masked_fill(x == 0, -1e9), dim=-1)",
    "return torch.sigmoid(x) * torch.tanh(x) + F.linear(x, x).chunk(4, 1)[0]",
    "return torch.baddbmm(x, x, x).addmm(x, x)",
])
def test_hand_written_code_is_not_a_kernel(body):
    for assignment, target in (("mha", "ScaledDotProductAttention"), ("mha", "MultiHeadedAttention"),
                               ("lstm", "LSTMCell"), ("gru", "GRUCell")):
        assert _uses_with(_forbid(assignment, target), body) == []
