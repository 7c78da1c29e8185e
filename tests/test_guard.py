"""The run-time forbidden-call guard: every known evasion is caught, correct solutions never are."""
from __future__ import annotations

import base64
import itertools
import re
import tomllib

import pytest
import torch
import torch.nn.functional as F

from grader.execute.guard import MAX_USES, PROFILER_STOPPED, ForbiddenCallGuard
from grader.spec.operators import FAMILIES
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
    torch.autograd._enable_record_function(True)
    assert torch._C._len_torch_function_stack() == 0
    assert not torch.autograd._profiler_enabled()  # the guard's operator log is off again


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


# --- operator families: every route to a forbidden kernel -------------------------
# A kernel of a forbidden family is caught however it is reached: called from Python (kernels the
# forbid list does not name), from TorchScript compiled from a string, inside a custom op's body,
# or from torch.compile'd code. Each route hides the call from a torch-function mode; the guard's
# operator log sees the kernel.

_KERNELS = {  # a function valid as Python, TorchScript and a custom op's body
    "sdpa": "def kernel(q: Tensor, k: Tensor, v: Tensor) -> Tensor:\n"
            "    return torch.nn.functional.scaled_dot_product_attention(q, k, v)\n",
    "sdpa-math": "def kernel(q: Tensor, k: Tensor, v: Tensor) -> Tensor:\n"
                 "    return torch._scaled_dot_product_attention_math(q, k, v)[0]\n",
    "sdpa-flash-cpu": "def kernel(q: Tensor, k: Tensor, v: Tensor) -> Tensor:\n"
                      "    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[0]\n",
    "native-mha": "def kernel(q: Tensor, k: Tensor, v: Tensor, w: Tensor, b: Tensor, wo: Tensor, bo: Tensor) -> Tensor:\n"
                  "    return torch._native_multi_head_attention(q, k, v, 16, 4, w, b, wo, bo)[0]\n",
    "lstm": "def kernel(x: Tensor, h: Tensor, c: Tensor, wi: Tensor, wh: Tensor, bi: Tensor, bh: Tensor) -> Tensor:\n"
            "    out, hn, cn = torch.lstm(x.unsqueeze(0), [h.unsqueeze(0), c.unsqueeze(0)], [wi, wh, bi, bh], True, 1,"
            " 0.0, False, False, False)\n"
            "    return hn[0]\n",
    "lstm-cell": "def kernel(x: Tensor, h: Tensor, c: Tensor, wi: Tensor, wh: Tensor, bi: Tensor, bh: Tensor) -> Tensor:\n"
                 "    return torch.lstm_cell(x, [h, c], wi, wh, bi, bh)[0]\n",
    "gru": "def kernel(x: Tensor, h: Tensor, wi: Tensor, wh: Tensor, bi: Tensor, bh: Tensor) -> Tensor:\n"
           "    out, hn = torch.gru(x.unsqueeze(0), h.unsqueeze(0), [wi, wh, bi, bh], True, 1, 0.0, False, False, False)\n"
           "    return hn[0]\n",
    "gru-cell": "def kernel(x: Tensor, h: Tensor, wi: Tensor, wh: Tensor, bi: Tensor, bh: Tensor) -> Tensor:\n"
                "    return torch.gru_cell(x, h, wi, wh, bi, bh)\n",
}
_CALLS = {  # the model around the kernel: (its parameters, forward's arguments, the kernel's arguments)
    "attention": ("", "q, k, v", "q, k, v"),
    "mha": ("self.w, self.b = nn.Parameter(torch.randn(48, 16)), nn.Parameter(torch.zeros(48))\n"
            "        self.wo, self.bo = nn.Parameter(torch.randn(16, 16)), nn.Parameter(torch.zeros(16))",
            "q, k, v", "q, k, v, self.w, self.b, self.wo, self.bo"),
    "lstm": ("self.wi, self.wh = nn.Parameter(torch.randn(32, 6)), nn.Parameter(torch.randn(32, 8))\n"
             "        self.bi, self.bh = nn.Parameter(torch.zeros(32)), nn.Parameter(torch.zeros(32))",
             "x, state", "x, state[0], state[1], self.wi, self.wh, self.bi, self.bh"),
    "gru": ("self.wi, self.wh = nn.Parameter(torch.randn(24, 6)), nn.Parameter(torch.randn(24, 8))\n"
            "        self.bi, self.bh = nn.Parameter(torch.zeros(24)), nn.Parameter(torch.zeros(24))",
            "x, h", "x, h, self.wi, self.wh, self.bi, self.bh"),
}
_OP_NUMBER = itertools.count()


def _routed(route: str, kernel: str, call: str) -> str:
    """The student's source: ``kernel`` reached through ``route`` from a model's forward."""
    init, args, passed = _CALLS[call]
    text = _KERNELS[kernel]
    before = "from typing import List, Optional\nTensor = torch.Tensor\n"
    if route == "direct":
        before += text
    elif route == "torchscript":  # compiled from a string: no Python function the mode could see
        before += f"kernel = torch.jit.CompilationUnit({text!r}).kernel\n"
    elif route == "custom_op":  # the op's body runs inside the dispatcher, where the mode is off
        before += f"@torch.library.custom_op('grader_test::op{next(_OP_NUMBER)}', mutates_args=())\n" + text
    elif route == "compiled":
        before += text + "kernel = torch.compile(kernel)\n"
    return before + _cell(init or "pass", f"        return kernel({passed})", args)


#: name -> (the target's forbid list, route, kernel, the model around it, the entry that forbids it, the family's API)
ROUTES = {
    "sdpa-math-direct": (SDPA, "direct", "sdpa-math", "attention", SDPA[0], "torch.nn.functional.scaled_dot_product_attention"),
    "sdpa-flash-cpu-direct": (SDPA, "direct", "sdpa-flash-cpu", "attention", SDPA[0],
                              "torch.nn.functional.scaled_dot_product_attention"),
    "sdpa-torchscript": (SDPA, "torchscript", "sdpa", "attention", SDPA[0], "torch.nn.functional.scaled_dot_product_attention"),
    "sdpa-math-torchscript": (SDPA, "torchscript", "sdpa-math", "attention", SDPA[0],
                              "torch.nn.functional.scaled_dot_product_attention"),
    "sdpa-custom-op": (SDPA, "custom_op", "sdpa", "attention", SDPA[0], "torch.nn.functional.scaled_dot_product_attention"),
    "sdpa-flash-cpu-custom-op": (MHA, "custom_op", "sdpa-flash-cpu", "attention", "torch.nn.functional.scaled_dot_product_attention",
                                 "torch.nn.functional.scaled_dot_product_attention"),
    "sdpa-math-compiled": (SDPA, "compiled", "sdpa-math", "attention", SDPA[0],
                           "torch.nn.functional.scaled_dot_product_attention"),
    "native-mha-direct": (MHA, "direct", "native-mha", "mha", "torch.nn.MultiheadAttention", "torch.nn.MultiheadAttention"),
    "native-mha-torchscript": (SDPA, "torchscript", "native-mha", "mha", "torch.nn.MultiheadAttention",
                               "torch.nn.MultiheadAttention"),
    "lstm-direct": (LSTM, "direct", "lstm", "lstm", "torch.nn.LSTM", "torch.lstm"),
    "lstm-torchscript": (LSTM, "torchscript", "lstm", "lstm", "torch.nn.LSTM", "torch.lstm"),
    "lstm-cell-torchscript": (LSTM, "torchscript", "lstm-cell", "lstm", "torch.nn.LSTMCell", "torch.lstm_cell"),
    "lstm-custom-op": (LSTM, "custom_op", "lstm", "lstm", "torch.nn.LSTM", "torch.lstm"),
    "lstm-cell-custom-op": (LSTM, "custom_op", "lstm-cell", "lstm", "torch.nn.LSTMCell", "torch.lstm_cell"),
    "lstm-compiled": (LSTM, "compiled", "lstm", "lstm", "torch.nn.LSTM", "torch.lstm"),
    "gru-direct": (GRU, "direct", "gru", "gru", "torch.nn.GRU", "torch.gru"),
    "gru-torchscript": (GRU, "torchscript", "gru", "gru", "torch.nn.GRU", "torch.gru"),
    "gru-cell-torchscript": (GRU, "torchscript", "gru-cell", "gru", "torch.nn.GRUCell", "torch.gru_cell"),
    "gru-custom-op": (GRU, "custom_op", "gru", "gru", "torch.nn.GRU", "torch.gru"),
    "gru-compiled": (GRU, "compiled", "gru", "gru", "torch.nn.GRU", "torch.gru"),
    "lstm-in-the-gru-exercise": (GRU, "torchscript", "lstm", "lstm", "torch.nn.modules.rnn", "torch.lstm"),
}


def _route_inputs(call: str) -> tuple:
    if call == "mha":  # [n, B, d_feat]
        g = torch.Generator().manual_seed(0)
        return tuple(torch.randn(5, 2, 16, generator=g) for _ in range(3))
    return _inputs({"attention": SDPA, "lstm": LSTM, "gru": GRU}[call])


@pytest.mark.parametrize("name", ROUTES)
def test_forbidden_kernel_is_caught_through_every_route(name):
    forbid, route, kernel, call, entry, api = ROUTES[name]
    guard = ForbiddenCallGuard(forbid)
    model = _build(_routed(route, kernel, call))
    error = None
    with guard.watching(), torch.no_grad():
        try:
            model(*_route_inputs(call))
        except Exception as e:  # torch.compile may not work here (no C++ compiler): then the case errors
            error = e
    uses = guard.take()
    family = next(f for f in FAMILIES if f.api == api)
    ours = [u for u in uses if any(family.matches(op) for op in re.findall(r"\w+::\w+", u["called"]))]
    if route == "compiled" and not ours:
        assert error is not None, uses  # never a clean run that escapes the check
        return
    assert error is None
    assert len(ours) == 1, uses  # each family once per case, however many of its kernels ran
    assert ours[0]["forbidden"] == entry
    assert ours[0]["called"].startswith(api + " (aten::") or ours[0]["called"].startswith("aten::"), ours


def test_compiled_hand_written_attention_is_not_flagged():
    """Inductor would fuse this into SDPA's kernel; under the guard it stays what the student wrote."""
    source = _attention("        return attend(q, k, v)",
                        "attend = torch.compile(lambda q, k, v: torch.softmax(q @ k.transpose(-1, -2) / 2, -1) @ v)")
    guard = ForbiddenCallGuard(SDPA)
    model = _build(source)
    q, k, v = (t.detach() for t in _inputs(SDPA))
    with guard.watching():
        try:
            out = model(q, k, v)
        except Exception:  # torch.compile may not work here (no C++ compiler)
            out = None
    assert guard.take() == []
    if out is not None:
        assert torch.allclose(out, torch.softmax(q @ k.transpose(-1, -2) / 2, -1) @ v, atol=1e-6)


def test_each_family_is_reported_once_per_case():
    guard = ForbiddenCallGuard(SDPA)
    q = torch.randn(2, 3, 4, requires_grad=True)
    with guard.watching():
        F.scaled_dot_product_attention(q, q, q).sum().backward()  # the mode sees the call, the log its kernels
        torch._scaled_dot_product_attention_math(q, q, q)
    assert guard.take() == [{"forbidden": SDPA[0], "called": "aten::scaled_dot_product_attention"}]
    with guard.watching():
        torch._scaled_dot_product_attention_math(q, q, q)[0].sum().backward()
    assert guard.take() == [{"forbidden": SDPA[0],
                             "called": "torch.nn.functional.scaled_dot_product_attention (aten::_scaled_dot_product_attention_math)"}]


def test_every_family_names_operators_this_torch_has():
    """A pattern that matches nothing is a typo, or torch renamed the kernel: the family would leak."""
    registered = set(torch._C._dispatch_get_all_op_names())
    for family in FAMILIES:
        for pattern in family.operators:
            single = type(family)(family.api, (pattern,), family.names)
            assert any(single.matches(op) for op in registered), f"{family.api}: {pattern} matches no operator"


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
    lstm_guard, gru_guard = ForbiddenCallGuard(["torch.lstm_cell"]), ForbiddenCallGuard(["torch.gru_cell"])
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


# --- switching the check off ------------------------------------------------------

SWITCHED = "switching off the grader's check"
_TS_SDPA = ('_TS = torch.jit.CompilationUnit("def f(q: Tensor, k: Tensor, v: Tensor) -> Tensor:\\n'
            '    return torch.nn.functional.scaled_dot_product_attention(q, k, v)\\n")\n')


@pytest.mark.parametrize("switch, called", [
    ("torch.autograd._enable_record_function(False)", "the autograd profiler's controls"),
    ("torch._C._autograd._disable_profiler_legacy()", "the autograd profiler's controls"),
    ("torch._C._pop_torch_function_stack()", "torch's function-mode controls"),
])
def test_switching_the_check_off_is_recorded(switch, called):
    guard = ForbiddenCallGuard(SDPA)
    model = _build(_attention(f"        {switch}\n        return _TS.f(q, k, v)", _TS_SDPA))
    with guard.watching():
        model(*_inputs(SDPA))
    assert {"forbidden": SWITCHED, "called": called} in guard.take()
    torch.autograd._enable_record_function(True)
    with guard.watching():  # the next case is watched as before
        model.forward.__globals__["_TS"].f(*_inputs(SDPA))
    assert [u["forbidden"] for u in guard.take()] == [SDPA[0]]


def test_a_profiler_left_running_by_the_code_switches_the_check_off_and_that_is_recorded():
    """Top-level code that starts its own profiler and leaves it running keeps ours from logging: that
    is recorded as switching the check off (the policy case fails), and theirs is never stopped by us
    (stopping torch's Kineto profiler from under its owner can hang)."""
    guard = ForbiddenCallGuard(SDPA)
    model = _build(_attention("        return _TS.f(q, k, v)", _TS_SDPA))
    theirs = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    theirs.__enter__()  # top-level code started it and never stopped it
    try:
        with guard.watching():
            model(*_inputs(SDPA))
        assert [u["forbidden"] for u in guard.take()] == [PROFILER_STOPPED[0]]
    finally:
        theirs.__exit__(None, None, None)


def test_a_legacy_log_left_running_by_the_code_is_replaced():
    guard = ForbiddenCallGuard(SDPA)
    model = _build(_attention("        return _TS.f(q, k, v)", _TS_SDPA))
    torch._C._autograd._enable_profiler_legacy(torch._C._profiler.ProfilerConfig(
        torch._C._profiler.ProfilerState.CPU, False, False, False, False, False,
        torch._C._profiler._ExperimentalConfig()))  # the legacy log the guard uses, left running
    with guard.watching():
        model(*_inputs(SDPA))
    assert [u["forbidden"] for u in guard.take()] == [SDPA[0]]


def test_the_log_is_read_as_it_grows(monkeypatch):
    import grader.execute.guard as guard_module

    reads = []
    monkeypatch.setattr(guard_module, "DRAIN_EVERY", 5)
    monkeypatch.setattr(guard_module, "_log_off", lambda off=guard_module._log_off: reads.append(1) or off())
    guard = ForbiddenCallGuard(LSTM)
    cell = _build(HAND_LSTM_LINEAR)
    x, state = _inputs(LSTM)
    with guard.watching():
        for _ in range(10):
            state = cell(x, state)
        sum(s.sum() for s in state).backward()
    assert guard.take() == [] and len(reads) > 10
    with guard.watching():
        for _ in range(10):
            state = cell(x, state)
        torch.jit.CompilationUnit("def f(x: Tensor, h: Tensor) -> Tensor:\n"
                                  "    return torch.lstm_cell(x, [h, h], torch.ones(32, 6), torch.ones(32, 8))[0]\n").f(x, state[0])
        for _ in range(10):
            state = cell(x, state)
    assert guard.take() == [{"forbidden": "torch.nn.LSTMCell", "called": "torch.lstm_cell (aten::lstm_cell)"}]
