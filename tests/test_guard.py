"""The run-time forbidden-call guard: every known evasion is caught, correct solutions never are."""
from __future__ import annotations

import base64
import tomllib

import pytest
import torch
import torch.nn.functional as F

from grader.execute.guard import MAX_USES, ForbiddenCallGuard
from conftest import ROOT


def _forbid(assignment: str, target: str) -> tuple[str, ...]:
    with open(ROOT / "assignments" / assignment / "cases.toml", "rb") as f:
        return tuple(tomllib.load(f)["targets"][target]["forbid"])


SDPA = _forbid("mha", "ScaledDotProductAttention")
MHA = _forbid("mha", "MultiHeadedAttention")
LSTM = _forbid("lstm", "LSTMCell")
GRU = _forbid("gru", "GRUCell")

HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def _inputs(forbid: tuple[str, ...]) -> tuple:
    g = torch.Generator().manual_seed(0)
    if forbid in (SDPA, MHA):
        shape = (2, 4, 5, 4) if forbid is SDPA else (2, 5, 16)
        return tuple(torch.randn(shape, generator=g, requires_grad=True) for _ in range(3))
    x = torch.randn(3, 6, generator=g, requires_grad=True)
    h = torch.randn(3, 8, generator=g, requires_grad=True)
    return (x, (h, torch.randn(3, 8, generator=g))) if forbid is LSTM else (x, h)


def _build(source: str) -> torch.nn.Module:
    """The student's notebook: exec'd in a fresh namespace; defines ``Model``."""
    namespace: dict = {}
    exec(compile(HEADER + source, "<student>", "exec"), namespace)
    return namespace["Model"]()


def _run(model: torch.nn.Module, inputs: tuple) -> list[torch.Tensor]:
    out = model(*inputs)
    outs = [t for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, torch.Tensor)]
    leaves = [t for t in _flat(inputs) if t.requires_grad] + [p for p in model.parameters()]
    loss = sum(o.sum() for o in outs if o.requires_grad)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True) if torch.is_tensor(loss) else ()
    return [o.detach() for o in outs] + [g for g in grads if g is not None]


def _flat(x):
    return [t for item in x for t in _flat(item)] if isinstance(x, (tuple, list)) else [x]


def _watched(forbid: tuple[str, ...], source: str) -> tuple[list[dict[str, str]], list[torch.Tensor]]:
    guard = ForbiddenCallGuard(forbid)  # resolved before the student's code runs
    torch.manual_seed(0)
    model = _build(source)
    with guard.watching():
        results = _run(model, _inputs(forbid))
    return guard.take(), results


@pytest.fixture(autouse=True)
def _restore_torch():
    """Some snippets monkeypatch torch, as a student might; undo it after each test."""
    saved = (F.scaled_dot_product_attention, torch._C._nn.scaled_dot_product_attention, torch.lstm_cell,
             dict(torch.nn.modules.module._global_forward_pre_hooks))
    yield
    F.scaled_dot_product_attention, torch._C._nn.scaled_dot_product_attention, torch.lstm_cell = saved[:3]
    torch.nn.modules.module._global_forward_pre_hooks.clear()
    torch.nn.modules.module._global_forward_pre_hooks.update(saved[3])
    assert torch._C._len_torch_function_stack() == 0


def _attention(expr: str, before: str = "") -> str:
    return f"""{before}
class Model(nn.Module):
    def forward(self, q, k, v):
{expr}
"""


def _cell(init: str, forward: str, args: str = "x, state") -> str:
    return f"""
class Model(nn.Module):
    def __init__(self):
        super().__init__()
        {init}
    def forward(self, {args}):
{forward}
"""


_B64 = base64.b64encode(b"out = torch.nn.functional.scaled_dot_product_attention(q, k, v)").decode()
_FULLWIDTH = "\uff53\uff43\uff41\uff4c\uff45\uff44_dot_product_attention"  # "ｓｃａｌｅｄ_dot_product_attention"
_SDPA_OP = ("torch.nn.functional.scaled_dot_product_attention", "aten::scaled_dot_product_attention")
_MHA_FWD = ("torch.nn.MultiheadAttention", "torch.nn.modules.activation.MultiheadAttention.forward")
_LSTM_OP = ("torch.lstm_cell", "aten::lstm_cell")
_LSTMCELL_FWD = ("torch.nn.LSTMCell", "torch.nn.modules.rnn.LSTMCell.forward")
_GRU_OP = ("torch.gru_cell", "aten::gru_cell")
_GRUCELL_FWD = ("torch.nn.GRUCell", "torch.nn.modules.rnn.GRUCell.forward")

EVASIONS = {
    "getattr-concatenated": (SDPA, _attention('        return getattr(F, "scaled_dot_product_" + "attention")(q, k, v)'),
                             _SDPA_OP),
    "ops-aten-sdpa": (SDPA, _attention("        return torch.ops.aten.scaled_dot_product_attention(q, k, v)"), _SDPA_OP),
    "ops-aten-sdpa-overload": (SDPA, _attention("        return torch.ops.aten.scaled_dot_product_attention.default(q, k, v)"),
                               _SDPA_OP),
    "nn-modules-mha": (MHA, _cell("self.a = torch.nn.modules.MultiheadAttention(16, 4, batch_first=True)",
                                  "        return self.a(q, k, v)", "q, k, v"), _MHA_FWD),
    "import-in-forward": (SDPA, _attention("        from torch.nn.functional import scaled_dot_product_attention as s\n"
                                           "        return s(q, k, v)"), _SDPA_OP),
    "importlib": (SDPA, _attention('        import importlib\n'
                                   '        return importlib.import_module("torch.nn.functional")'
                                   '.scaled_dot_product_attention(q, k, v)'), _SDPA_OP),
    "dunder-import": (SDPA, _attention('        return __import__("torch").nn.functional.scaled_dot_product_attention(q, k, v)'),
                      _SDPA_OP),
    "vars": (SDPA, _attention('        return vars(F)["scaled_dot_product_attention"](q, k, v)'), _SDPA_OP),
    "sys-modules": (SDPA, _attention('        import sys\n'
                                     '        return sys.modules["torch.nn.functional"].scaled_dot_product_attention(q, k, v)'),
                    _SDPA_OP),
    "exec-base64": (SDPA, _attention(f'        import base64\n        ns = dict(torch=torch, q=q, k=k, v=v)\n'
                                     f'        exec(base64.b64decode("{_B64}"), ns)\n        return ns["out"]'), _SDPA_OP),
    "torch-C-nn": (SDPA, _attention("        return torch._C._nn.scaled_dot_product_attention(q, k, v)"), _SDPA_OP),
    "fullwidth-getattr": (SDPA, _attention(f'        import unicodedata\n'
                                           f'        return getattr(F, unicodedata.normalize("NFKC", "{_FULLWIDTH}"))(q, k, v)'),
                          _SDPA_OP),
    "fullwidth-attribute": (SDPA, _attention(f"        return F.{_FULLWIDTH}(q, k, v)"), _SDPA_OP),
    "wrapper-rebound-in-F": (SDPA, _attention("        return F.scaled_dot_product_attention(q, k, v)",
                                              "_orig = F.scaled_dot_product_attention\n"
                                              "F.scaled_dot_product_attention = lambda *a: _orig(*a)"), _SDPA_OP),
    "wrapper-rebound-in-C": (SDPA, _attention("        return _orig(q, k, v)",
                                              "_orig = torch._C._nn.scaled_dot_product_attention\n"
                                              "torch._C._nn.scaled_dot_product_attention = lambda *a: _orig(*a)"),
                             _SDPA_OP),
    "mha-in-forward-sdpa-target": (SDPA, _attention("        m = nn.MultiheadAttention(4, 2, batch_first=True)\n"
                                                    "        return m(q[0], k[0], v[0])"), _MHA_FWD),
    "mha-need-weights": (MHA, _cell("self.a = nn.MultiheadAttention(16, 4, batch_first=True)",
                                    "        return self.a(q, k, v, need_weights=True)", "q, k, v"), _MHA_FWD),
    "mha-forward-called-directly": (MHA, _cell("self.a = nn.MultiheadAttention(16, 4, batch_first=True)",
                                               "        return self.a.forward(q, k, v)", "q, k, v"), _MHA_FWD),
    "multi-head-attention-forward": (MHA, _cell(
        "self.a = nn.MultiheadAttention(16, 4)",
        "        a = self.a\n        q, k, v = (t.transpose(0, 1) for t in (q, k, v))\n"
        "        return F.multi_head_attention_forward(q, k, v, 16, 4, a.in_proj_weight, a.in_proj_bias, None, None,"
        " False, 0.0, a.out_proj.weight, a.out_proj.bias)", "q, k, v"),
        ("torch.nn.functional.multi_head_attention_forward", "torch.nn.functional.multi_head_attention_forward")),
    "ops-aten-lstm-cell": (LSTM, _cell("self.w = nn.Linear(1, 1)",
                                       "        return torch.ops.aten.lstm_cell(x, state, torch.ones(32, 6), torch.ones(32, 8))"),
                           _LSTM_OP),
    "jit-get-operation": (LSTM, _cell("self.w = nn.Linear(1, 1)",
                                      '        op, _ = torch._C._jit_get_operation("aten::lstm_cell")\n'
                                      "        return op(x, list(state), torch.ones(32, 6), torch.ones(32, 8))"), _LSTM_OP),
    "type-built-subclass": (LSTM, "Cell = type('X', (nn.LSTMCell,), {})\n" + _cell("self.c = Cell(6, 8)",
                                                                                    "        return self.c(x, state)"),
                            _LSTMCELL_FWD),
    "lstmcell-in-forward": (LSTM, _cell("pass", "        return nn.LSTMCell(6, 8)(x, state)"), _LSTMCELL_FWD),
    "lstmcell-submodule": (LSTM, _cell("self.c = nn.LSTMCell(6, 8)", "        return self.c(x, state)"), _LSTMCELL_FWD),
    "lstmcell-hooks-cleared": (LSTM, _cell("self.c = nn.LSTMCell(6, 8)",
                                           "        torch.nn.modules.module._global_forward_pre_hooks.clear()\n"
                                           "        return self.c.forward(x, state)"), _LSTMCELL_FWD),
    "lstm-in-forward": (LSTM, _cell("pass", "        out, (h, c) = nn.LSTM(6, 8)(x[None], (state[0][None], state[1][None]))\n"
                                            "        return h[0], c[0]"),
                        ("torch.nn.LSTM", "torch.nn.modules.rnn.LSTM.forward")),
    "torch-lstm-cell": (LSTM, _cell("self.c = nn.LSTMCell(6, 8)",
                                    "        c = self.c\n"
                                    "        return torch.lstm_cell(x, state, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)"),
                        _LSTM_OP),
    "torch-VF-lstm-cell": (LSTM, _cell("self.w = nn.Parameter(torch.ones(32, 6))",
                                       "        return torch._VF.lstm_cell(x, state, self.w, torch.ones(32, 8))"), _LSTM_OP),
    "torch-lstm-cell-rebound": (LSTM, "_orig = torch.lstm_cell\ntorch.lstm_cell = lambda *a: _orig(*a)\n"
                                + _cell("pass", "        return torch.lstm_cell(x, state, torch.ones(32, 6), torch.ones(32, 8))"),
                                _LSTM_OP),
    "grucell-in-forward": (GRU, _cell("pass", "        return nn.GRUCell(6, 8)(x, h)", "x, h"), _GRUCELL_FWD),
    "grucell-submodule": (GRU, _cell("self.c = nn.GRUCell(6, 8)", "        return self.c(x, h)", "x, h"), _GRUCELL_FWD),
    "torch-gru-cell": (GRU, _cell("pass", "        return torch.gru_cell(x, h, torch.ones(24, 6), torch.ones(24, 8))", "x, h"),
                       _GRU_OP),
    "gru-subclass-own-forward": (GRU, "class Cell(nn.GRUCell):\n    def forward(self, x, h):\n        return x.sum() + h\n"
                                 + _cell("self.c = Cell(6, 8)", "        return self.c(x, h)", "x, h"),
                                 ("torch.nn.GRUCell", "Cell.forward")),
}


@pytest.mark.parametrize("name", EVASIONS)
def test_evasion_is_caught(name):
    forbid, source, (forbidden, called) = EVASIONS[name]
    uses, _ = _watched(forbid, source)
    assert {"forbidden": forbidden, "called": called} in uses, uses


# --- correct solutions ----------------------------------------------------------

HAND_MHA = """
class Model(nn.Module):
    def __init__(self, d_feat=16, n_head=4):
        super().__init__()
        self.n_head, self.d_head = n_head, d_feat // n_head
        self.lin_Q, self.lin_K, self.lin_V = nn.Linear(d_feat, d_feat), nn.Linear(d_feat, d_feat), nn.Linear(d_feat, d_feat)
        self.lin_O = nn.Linear(d_feat, d_feat)
        self.dropout = nn.Dropout(0.1)
    def forward(self, Q, K, V):
        B, n, d = Q.shape
        split = lambda t: t.view(B, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        Qs, Ks, Vs = split(self.lin_Q(Q)), split(self.lin_K(K)), split(self.lin_V(V))
        scores = torch.matmul(Qs, Ks.transpose(-2, -1)) / (self.d_head ** 0.5)
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, -1e9)
        attention = self.dropout(torch.softmax(scores, dim=-1))
        x = torch.matmul(attention, Vs).permute(0, 2, 1, 3).contiguous().view(B, -1, d)
        return self.lin_O(x), attention
"""

HAND_SDPA = """
class Model(nn.Module):
    def forward(self, Q, K, V):
        scores = Q @ K.transpose(-1, -2) / Q.shape[-1] ** 0.5
        attention = F.softmax(scores, dim=-1)
        return attention @ V, attention
"""

HAND_LSTM_LINEAR = """
class Model(nn.Module):
    def __init__(self, xdim=6, hdim=8):
        super().__init__()
        self.ih, self.hh = nn.Linear(xdim, 4 * hdim), nn.Linear(hdim, 4 * hdim)
    def forward(self, x, state):
        h, c = state
        i, f, g, o = (self.ih(x) + self.hh(h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
"""

HAND_LSTM_MATMUL = """
class Model(nn.Module):
    def __init__(self, xdim=6, hdim=8):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.randn(4 * hdim, xdim) * 0.1)
        self.weight_hh = nn.Parameter(torch.randn(4 * hdim, hdim) * 0.1)
        self.bias_ih, self.bias_hh = nn.Parameter(torch.zeros(4 * hdim)), nn.Parameter(torch.zeros(4 * hdim))
    def forward(self, x, state):
        h, c = state
        gates = x @ self.weight_ih.T + self.bias_ih + torch.matmul(h, self.weight_hh.t()) + self.bias_hh
        i, f, g, o = gates.chunk(4, 1)
        i, f, o = i.sigmoid(), torch._VF.sigmoid(f), torch.sigmoid(o)
        c = f * c + i * torch._VF.tanh(g)
        return o * c.tanh(), c
"""

HAND_GRU = """
class Model(nn.Module):
    def __init__(self, xdim=6, hdim=8):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.randn(3 * hdim, xdim) * 0.1)
        self.weight_hh = nn.Parameter(torch.randn(3 * hdim, hdim) * 0.1)
        self.bias_ih, self.bias_hh = nn.Parameter(torch.zeros(3 * hdim)), nn.Parameter(torch.zeros(3 * hdim))
    def forward(self, x, h):
        ri, zi, ni = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, 1)
        rh, zh, nh = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, 1)
        r, z = torch.sigmoid(ri + rh), torch.sigmoid(zi + zh)
        n = torch.tanh(ni + r * nh)
        return (1 - z) * n + z * h
"""

CORRECT = {"mha": (MHA, HAND_MHA), "sdpa": (SDPA, HAND_SDPA), "lstm-linear": (LSTM, HAND_LSTM_LINEAR),
           "lstm-matmul": (LSTM, HAND_LSTM_MATMUL), "gru": (GRU, HAND_GRU)}


@pytest.mark.parametrize("name", CORRECT)
def test_correct_solution_is_not_flagged_and_unchanged(name):
    forbid, source = CORRECT[name]
    uses, watched = _watched(forbid, source)
    assert uses == []
    torch.manual_seed(0)
    model = _build(source)
    plain = _run(model, _inputs(forbid))
    assert len(plain) == len(watched) > 1
    assert all(torch.equal(a, b) for a, b in zip(plain, watched))


def test_lstm_unroll_not_flagged():
    guard = ForbiddenCallGuard(LSTM)
    cell = _build(HAND_LSTM_LINEAR)
    x, state = _inputs(LSTM)
    with guard.watching():
        for _ in range(7):
            state = cell(x, state)
        sum(s.sum() for s in state).backward()
    assert guard.take() == []


def test_target_without_forbid_list_may_use_nn_lstm():
    classifier = torch.nn.LSTM(6, 8, batch_first=True)
    guard = ForbiddenCallGuard(())
    with guard.watching():
        classifier(torch.randn(3, 5, 6))[0].sum().backward()
    assert guard.take() == []


def test_only_the_watched_targets_forbid_list_counts():
    lstm_guard, gru_guard = ForbiddenCallGuard(LSTM), ForbiddenCallGuard(GRU)
    x, h = torch.randn(3, 6), torch.randn(3, 8)
    with gru_guard.watching():
        torch.lstm_cell(x, (h, h), torch.ones(32, 6), torch.ones(32, 8))
    with lstm_guard.watching():
        torch.gru_cell(x, h, torch.ones(24, 6), torch.ones(24, 8))
    assert gru_guard.take() == [] and lstm_guard.take() == []


# --- the guard's own behaviour --------------------------------------------------

def test_forbidden_code_seen_through_a_python_torch_function():
    """Softmax.forward calls only F.softmax (a Python function dispatched via handle_torch_function)."""
    guard = ForbiddenCallGuard(["torch.nn.Softmax"])
    softmax = torch.nn.Softmax(dim=0)
    with guard.watching():
        torch.nn.modules.module._global_forward_pre_hooks.clear()
        softmax.forward(torch.randn(3))
    assert guard.take() == [{"forbidden": "torch.nn.Softmax", "called": "torch.nn.modules.activation.Softmax.forward"}]


def test_unresolvable_entries_are_skipped():
    guard = ForbiddenCallGuard(["torch.nn.NoSuchThing", "no_such_package.x", "torch._VF", "", "torch.lstm_cell"])
    x, h = torch.randn(3, 6), torch.randn(3, 8)
    with guard.watching():
        torch._VF.tanh(x), torch.tanh(x)
        torch.lstm_cell(x, (h, h), torch.ones(32, 6), torch.ones(32, 8))
    assert guard.take() == [{"forbidden": "torch.lstm_cell", "called": "aten::lstm_cell"}]


def test_nothing_is_recorded_outside_watching_and_take_resets():
    guard = ForbiddenCallGuard(LSTM)
    x = torch.randn(3, 6)
    cell = torch.nn.LSTMCell(6, 8)
    cell(x)
    assert guard.take() == []
    with guard.watching():
        cell(x), cell(x)
    first = guard.take()
    assert first == [{"forbidden": "torch.nn.LSTMCell", "called": "torch.nn.modules.rnn.LSTMCell.forward"},
                     {"forbidden": "torch.lstm_cell", "called": "aten::lstm_cell"}]
    assert guard.take() == []
    cell(x)
    assert guard.take() == []


def test_at_most_max_uses(monkeypatch):
    import grader.execute.guard as guard_module

    names = [f"torch.nn.functional.{n}" for n in ("relu", "gelu", "silu", "elu", "selu", "softplus")]
    monkeypatch.setattr(guard_module, "MAX_USES", 3)
    guard = ForbiddenCallGuard(names)
    x = torch.randn(3)
    with guard.watching():
        for name in names:
            getattr(F, name.rsplit(".", 1)[1])(x)
    assert [u["forbidden"] for u in guard.take()] == names[:3]
    assert MAX_USES == 20


def test_nested_watching_and_student_modes():
    from torch.overrides import TorchFunctionMode

    class StudentMode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    guard = ForbiddenCallGuard(SDPA)
    q = torch.randn(2, 3, 4)
    with guard.watching():
        with StudentMode(), guard.watching():
            F.scaled_dot_product_attention(q, q, q)
        StudentMode().__enter__()  # pushed and never popped
    assert torch._C._len_torch_function_stack() == 0
    with StudentMode():
        with guard.watching():
            torch.ops.aten.scaled_dot_product_attention(q, q, q)
        assert torch._C._len_torch_function_stack() == 1
    assert guard.take() == [{"forbidden": SDPA[0], "called": "aten::scaled_dot_product_attention"}]


def test_student_errors_pass_through_unchanged():
    guard = ForbiddenCallGuard(LSTM)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        with guard.watching():
            torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 5))
    with pytest.raises(ZeroDivisionError):
        with guard.watching():
            1 / 0
    assert torch._C._len_torch_function_stack() == 0
    assert guard.take() == []
