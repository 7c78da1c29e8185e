"""The reference solutions, checked against oracles that do not share their code.

The grader trusts `reference/` to produce the expected outputs of every case, so these tests
compare it with PyTorch's own implementations (F.scaled_dot_product_attention,
nn.MultiheadAttention, nn.LSTMCell, nn.LSTM) and with a small example worked by hand.
"""
import math
import types
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import course

REPO = Path(__file__).resolve().parents[1]
ATOL, RTOL = 1e-5, 1e-4


def _load(name):
    """The graded classes of reference/<name>.ipynb, executed here (the reference is trusted)."""
    from grader.course.assignments import get_assignment
    from grader.course.reference_outputs import reference_statements

    namespace = {"__name__": f"reference_{name}_under_test"}
    for st in reference_statements(get_assignment(course(REPO), name)):
        exec(compile("\n" * (st.lineno - 1) + st.source, f"<reference {name} {st.unit.label}>", "exec"), namespace)
    return types.SimpleNamespace(**namespace)


@pytest.fixture(scope="module")
def mha():
    return _load("mha")


@pytest.fixture(scope="module")
def lstm():
    return _load("lstm")


def close(actual, expected, atol=ATOL, rtol=RTOL):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def padding_keep(lengths, n_K):
    """[B, n_K] boolean, True where the key position is a real token (kept)."""
    return torch.arange(n_K)[None, :] < torch.as_tensor(lengths)[:, None]


def causal_keep(n_Q, n_K):
    """[n_Q, n_K] boolean, True where query i may look at key j (j <= i)."""
    return torch.ones(n_Q, n_K, dtype=torch.bool).tril()


# --------------------------------------------------------------------------------------
# Scaled dot-product attention
# --------------------------------------------------------------------------------------

SDPA_SHAPES = [
    pytest.param((3,), 4, 6, 8, 5, id="3d"),
    pytest.param((2, 3), 5, 7, 4, 9, id="4d"),
    pytest.param((1,), 1, 1, 3, 2, id="3d-single"),
]


def _qkv(lead, n_Q, n_K, d_K, d_V, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q = torch.randn(*lead, n_Q, d_K, generator=g)
    K = torch.randn(*lead, n_K, d_K, generator=g)
    V = torch.randn(*lead, n_K, d_V, generator=g)
    return Q, K, V


@pytest.mark.parametrize("lead,n_Q,n_K,d_K,d_V", SDPA_SHAPES)
def test_sdpa_matches_torch_without_mask(mha, lead, n_Q, n_K, d_K, d_V):
    Q, K, V = _qkv(lead, n_Q, n_K, d_K, d_V)
    out, attention = mha.ScaledDotProductAttention()(Q, K, V)
    assert out.shape == (*lead, n_Q, d_V)
    assert attention.shape == (*lead, n_Q, n_K)
    close(out, F.scaled_dot_product_attention(Q, K, V))
    manual = torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(d_K), dim=-1)
    close(attention, manual)
    close(attention.sum(-1), torch.ones(*lead, n_Q))


@pytest.mark.parametrize("lead,n_Q,n_K,d_K,d_V", SDPA_SHAPES[:2])
def test_sdpa_padding_mask(mha, lead, n_Q, n_K, d_K, d_V):
    Q, K, V = _qkv(lead, n_Q, n_K, d_K, d_V, seed=1)
    n_batch = lead[0]
    lengths = [max(1, n_K - 2 * b) for b in range(n_batch)]
    keep = padding_keep(lengths, n_K)                       # [B, n_K]
    mask = keep.view(n_batch, *([1] * len(lead)), n_K)      # [B, 1, (1,) n_K]
    out, attention = mha.ScaledDotProductAttention()(Q, K, V, mask)
    # torch's boolean attn_mask means True = may attend, the same sense as ours.
    close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask))
    scores = Q @ K.transpose(-2, -1) / math.sqrt(d_K)
    manual = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    close(attention, manual)
    assert attention.masked_select(~mask.expand_as(attention)).abs().max() < 1e-6
    close(attention.sum(-1), torch.ones(*lead, n_Q))


@pytest.mark.parametrize("lead,n_Q,n_K,d_K,d_V", SDPA_SHAPES[:2])
def test_sdpa_causal_mask(mha, lead, n_Q, n_K, d_K, d_V):
    Q, K, V = _qkv(lead, n_Q, n_K, d_K, d_V, seed=2)
    keep = causal_keep(n_Q, n_K)
    out, attention = mha.ScaledDotProductAttention()(Q, K, V, keep.int())  # 0/1 ints also work
    close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=keep))
    assert attention.masked_select(~keep.expand_as(attention)).abs().max() < 1e-6
    close(attention.sum(-1), torch.ones(*lead, n_Q))
    # The first query sees only the first key.
    close(attention[..., 0, 0], torch.ones(lead))
    close(out[..., 0, :], V[..., 0, :])


def test_sdpa_worked_by_hand(mha):
    # d_K = 2, so the scores are Q Kᵀ / √2.
    Q = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    K = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    V = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    # Query 0: Q0·K0 = 2, Q0·K1 = 0  -> scores [2/√2, 0] = [√2, 0].
    #   softmax([√2, 0]) = [σ(√2), 1 - σ(√2)], with e^√2 = 4.1132504,
    #   σ(√2) = 4.1132504 / 5.1132504 = 0.8044297, 1 - σ(√2) = 0.1955703.
    #   out0 = 0.8044297·[1, 2] + 0.1955703·[3, 4] = [1.3911406, 2.3911406].
    # Query 1 is all zeros -> scores [0, 0] -> weights [0.5, 0.5] -> out1 = [2, 3].
    expected_attention = torch.tensor([[[0.8044297, 0.1955703], [0.5, 0.5]]])
    expected_out = torch.tensor([[[1.3911406, 2.3911406], [2.0, 3.0]]])
    out, attention = mha.ScaledDotProductAttention()(Q, K, V)
    close(attention, expected_attention)
    close(out, expected_out)

    # Masking key 1 for both queries leaves weight 1 on key 0, so both outputs are V0 = [1, 2].
    out, attention = mha.ScaledDotProductAttention()(Q, K, V, torch.tensor([[1, 0]]))
    close(attention, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]))
    close(out, torch.tensor([[[1.0, 2.0], [1.0, 2.0]]]))


# --------------------------------------------------------------------------------------
# Multi-headed attention
# --------------------------------------------------------------------------------------

def _mha_pair(mha, d_feat, n_head, seed=0):
    """The reference MHA and an nn.MultiheadAttention carrying the same weights, both in eval."""
    torch.manual_seed(seed)
    ours = mha.MultiHeadedAttention(d_feat=d_feat, n_head=n_head, dropout_p=0.3).eval()
    theirs = nn.MultiheadAttention(d_feat, n_head, dropout=0.3, bias=True, batch_first=True).eval()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(
            torch.cat([ours.lin_Q.weight, ours.lin_K.weight, ours.lin_V.weight], dim=0))
        theirs.in_proj_bias.copy_(torch.cat([ours.lin_Q.bias, ours.lin_K.bias, ours.lin_V.bias]))
        theirs.out_proj.weight.copy_(ours.lin_O.weight)
        theirs.out_proj.bias.copy_(ours.lin_O.bias)
    return ours, theirs


def _mha_inputs(n_batch, n_Q, n_K, d_feat, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n_batch, n_Q, d_feat, generator=g),
            torch.randn(n_batch, n_K, d_feat, generator=g),
            torch.randn(n_batch, n_K, d_feat, generator=g))


@pytest.mark.parametrize("n_batch,n_Q,n_K,d_feat,n_head", [
    (2, 5, 7, 12, 3), (3, 4, 4, 20, 5), (1, 1, 3, 8, 1), (2, 6, 2, 16, 4)])
def test_mha_matches_nn_multiheadattention(mha, n_batch, n_Q, n_K, d_feat, n_head):
    ours, theirs = _mha_pair(mha, d_feat, n_head)
    Q, K, V = _mha_inputs(n_batch, n_Q, n_K, d_feat)
    with torch.no_grad():
        result = ours(Q, K, V)
        x, weights = theirs(Q, K, V, need_weights=True, average_attn_weights=True)
        _, per_head = theirs(Q, K, V, need_weights=True, average_attn_weights=False)
    close(result["x"], x)
    close(result["attention"].mean(dim=1), weights)
    close(result["attention"], per_head)


def test_mha_dict_shapes(mha):
    n_batch, n_Q, n_K, d_feat, n_head = 2, 5, 7, 12, 3
    d_head = d_feat // n_head
    ours = mha.MultiHeadedAttention(d_feat=d_feat, n_head=n_head).eval()
    assert (ours.d_feat, ours.n_head, ours.d_head) == (d_feat, n_head, d_head)
    for name in ("lin_Q", "lin_K", "lin_V", "lin_O"):
        lin = getattr(ours, name)
        assert isinstance(lin, nn.Linear)
        assert (lin.in_features, lin.out_features) == (d_feat, d_feat)
    assert isinstance(ours.dropout, nn.Dropout)
    result = ours(*_mha_inputs(n_batch, n_Q, n_K, d_feat))
    expected = {
        "Q_feat": (n_batch, n_Q, d_feat), "K_feat": (n_batch, n_K, d_feat),
        "V_feat": (n_batch, n_K, d_feat),
        "Q_split": (n_batch, n_head, n_Q, d_head), "K_split": (n_batch, n_head, n_K, d_head),
        "V_split": (n_batch, n_head, n_K, d_head),
        "scores": (n_batch, n_head, n_Q, n_K), "attention": (n_batch, n_head, n_Q, n_K),
        "x_raw": (n_batch, n_head, n_Q, d_head), "x_rsh1": (n_batch, n_Q, n_head, d_head),
        "x_rsh2": (n_batch, n_Q, d_feat), "x": (n_batch, n_Q, d_feat),
    }
    assert set(result) == set(expected)
    for key, shape in expected.items():
        assert tuple(result[key].shape) == shape, key


def test_mha_intermediates_follow_the_paper(mha):
    """Each head uses its own slice of the projected features, scores are / √d_head."""
    n_batch, n_Q, n_K, d_feat, n_head = 2, 3, 4, 12, 3
    d_head = d_feat // n_head
    ours = mha.MultiHeadedAttention(d_feat=d_feat, n_head=n_head).eval()
    Q, K, V = _mha_inputs(n_batch, n_Q, n_K, d_feat, seed=3)
    with torch.no_grad():
        r = ours(Q, K, V)
        close(r["Q_feat"], ours.lin_Q(Q))
        close(r["K_feat"], ours.lin_K(K))
        close(r["V_feat"], ours.lin_V(V))
    for h in range(n_head):
        cols = slice(h * d_head, (h + 1) * d_head)
        close(r["Q_split"][:, h], r["Q_feat"][..., cols])
        close(r["K_split"][:, h], r["K_feat"][..., cols])
        close(r["V_split"][:, h], r["V_feat"][..., cols])
        close(r["x_rsh1"][:, :, h], r["x_raw"][:, h])
        close(r["x_rsh2"][..., cols], r["x_raw"][:, h])
    close(r["scores"], r["Q_split"] @ r["K_split"].transpose(-2, -1) / math.sqrt(d_head))
    close(r["attention"], torch.softmax(r["scores"], dim=-1))
    close(r["x_raw"], r["attention"] @ r["V_split"])


@pytest.mark.parametrize("d_feat,n_head", [(10, 3), (128, 5), (7, 2)])
def test_mha_rejects_indivisible_d_feat(mha, d_feat, n_head):
    with pytest.raises(ValueError):
        mha.MultiHeadedAttention(d_feat=d_feat, n_head=n_head)


def test_mha_padding_mask(mha):
    n_batch, n_Q, n_K, d_feat, n_head = 3, 4, 6, 12, 3
    ours, theirs = _mha_pair(mha, d_feat, n_head, seed=1)
    Q, K, V = _mha_inputs(n_batch, n_Q, n_K, d_feat, seed=1)
    keep = padding_keep([6, 3, 1], n_K)                      # [B, n_K], True = real token
    with torch.no_grad():
        r = ours(Q, K, V, mask=keep.view(n_batch, 1, 1, n_K).int())
        # nn.MultiheadAttention's key_padding_mask means True = ignore: the opposite sense.
        x, weights = theirs(Q, K, V, key_padding_mask=~keep, average_attn_weights=True)
    close(r["x"], x)
    close(r["attention"].mean(dim=1), weights)
    dropped = (~keep).view(n_batch, 1, 1, n_K).expand_as(r["attention"])
    assert r["attention"].masked_select(dropped).abs().max() < 1e-6
    close(r["attention"].sum(-1), torch.ones(n_batch, n_head, n_Q))


def test_mha_causal_mask(mha):
    n_batch, n, d_feat, n_head = 2, 5, 16, 4
    ours, theirs = _mha_pair(mha, d_feat, n_head, seed=2)
    Q, K, V = _mha_inputs(n_batch, n, n, d_feat, seed=2)
    keep = causal_keep(n, n)
    with torch.no_grad():
        r = ours(Q, K, V, mask=keep.view(1, 1, n, n))
        # attn_mask as a boolean also means True = not allowed.
        x, weights = theirs(Q, K, V, attn_mask=~keep, average_attn_weights=True)
    close(r["x"], x)
    close(r["attention"].mean(dim=1), weights)
    assert r["attention"].masked_select(~keep.expand_as(r["attention"])).abs().max() < 1e-6


def test_mha_dropout_acts_after_the_recorded_attention(mha):
    torch.manual_seed(0)
    ours = mha.MultiHeadedAttention(d_feat=8, n_head=2, dropout_p=0.5).train()
    r = ours(*_mha_inputs(2, 6, 6, 8))
    close(r["attention"].sum(-1), torch.ones(2, 2, 6))      # recorded before dropout
    assert not torch.allclose(r["x_raw"], r["attention"] @ r["V_split"])
    ours.eval()
    r = ours(*_mha_inputs(2, 6, 6, 8))
    close(r["x_raw"], r["attention"] @ r["V_split"])


# --------------------------------------------------------------------------------------
# LSTM cell
# --------------------------------------------------------------------------------------

def _cell_pair(lstm, xdim, hdim, seed=0):
    torch.manual_seed(seed)
    ours = lstm.LSTMCell(xdim=xdim, hdim=hdim)
    theirs = nn.LSTMCell(xdim, hdim)
    theirs.load_state_dict(ours.state_dict())               # same names and shapes, or this fails
    return ours, theirs


def test_lstm_cell_parameters_match_nn_lstmcell(lstm):
    ours = lstm.LSTMCell(xdim=5, hdim=7)
    theirs = nn.LSTMCell(5, 7)
    shapes = lambda m: {k: tuple(p.shape) for k, p in m.named_parameters()}
    assert shapes(ours) == shapes(theirs)
    assert shapes(ours) == {"weight_ih": (28, 5), "weight_hh": (28, 7),
                            "bias_ih": (28,), "bias_hh": (28,)}
    bound = 1 / math.sqrt(7)
    for p in ours.parameters():
        assert p.abs().max() <= bound


@pytest.mark.parametrize("N,xdim,hdim", [(4, 5, 7), (1, 3, 2), (6, 28, 16)])
def test_lstm_cell_matches_nn_lstmcell(lstm, N, xdim, hdim):
    ours, theirs = _cell_pair(lstm, xdim, hdim)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, xdim, generator=g)
    h = torch.randn(N, hdim, generator=g)
    c = torch.randn(N, hdim, generator=g)
    with torch.no_grad():
        for got, want in zip(ours(x), theirs(x)):
            assert got.shape == (N, hdim)
            close(got, want)
        for got, want in zip(ours(x, (h, c)), theirs(x, (h, c))):
            close(got, want)


def test_lstm_cell_unroll_matches_nn_lstm(lstm):
    N, L, xdim, hdim = 3, 6, 4, 5
    torch.manual_seed(2)
    cell = lstm.LSTMCell(xdim=xdim, hdim=hdim)
    seq = nn.LSTM(xdim, hdim, num_layers=1, batch_first=True)
    seq.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    x = torch.randn(N, L, xdim)
    with torch.no_grad():
        out, (h_n, c_n) = seq(x)
        state = None
        for t in range(L):
            state = cell(x[:, t], state)
            close(state[0], out[:, t])
    close(state[0], h_n[0])
    close(state[1], c_n[0])


def test_lstm_cell_gradients_match_nn_lstmcell(lstm):
    N, xdim, hdim = 3, 4, 6
    ours, theirs = _cell_pair(lstm, xdim, hdim, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(N, xdim, generator=g)
    h = torch.randn(N, hdim, generator=g)
    c = torch.randn(N, hdim, generator=g)
    w_h = torch.randn(N, hdim, generator=g)
    w_c = torch.randn(N, hdim, generator=g)

    def grads(cell):
        inputs = [t.clone().requires_grad_(True) for t in (x, h, c)]
        cell.zero_grad()
        h_next, c_next = cell(inputs[0], (inputs[1], inputs[2]))
        loss = (h_next * w_h).sum() + (c_next * w_c).sum() + (h_next ** 2).mean()
        loss.backward()
        return ([p.grad.clone() for _, p in sorted(cell.named_parameters())]
                + [t.grad for t in inputs])

    for got, want in zip(grads(ours), grads(theirs), strict=True):
        close(got, want)


# --------------------------------------------------------------------------------------
# Recurrent classifier
# --------------------------------------------------------------------------------------

def _rnn_param_count(xdim, hdim, ydim, n_layer):
    first = 4 * hdim * (xdim + hdim) + 8 * hdim
    others = (n_layer - 1) * (4 * hdim * (hdim + hdim) + 8 * hdim)
    return first + others + hdim * ydim + ydim


@pytest.mark.parametrize("N,L,xdim,hdim,ydim,n_layer", [
    (4, 6, 5, 8, 3, 2), (1, 5, 5, 8, 3, 3), (3, 1, 5, 8, 3, 1), (1, 1, 4, 6, 2, 2),
    (2, 28, 28, 256, 10, 3)])
def test_rnn_classifier_matches_hand_built_lstm(lstm, N, L, xdim, hdim, ydim, n_layer):
    torch.manual_seed(5)
    model = lstm.RecurrentNeuralNetworkClass(
        name="rnn", xdim=xdim, hdim=hdim, ydim=ydim, n_layer=n_layer).eval()
    assert isinstance(model.rnn, nn.LSTM) and model.rnn.batch_first
    rnn = nn.LSTM(input_size=xdim, hidden_size=hdim, num_layers=n_layer, batch_first=True)
    lin = nn.Linear(hdim, ydim)
    rnn.load_state_dict(model.rnn.state_dict())
    lin.load_state_dict(model.lin.state_dict())
    x = torch.randn(N, L, xdim)
    with torch.no_grad():
        logits = model(x)
        out, (h_n, _) = rnn(x)                              # zero initial states by default
        close(out[:, -1], h_n[-1])                          # last step of the top layer
        expected = lin(out[:, -1])
    assert logits.shape == (N, ydim)
    close(logits, expected)


@pytest.mark.parametrize("xdim,hdim,ydim,n_layer", [(28, 256, 10, 3), (5, 8, 3, 1), (3, 4, 2, 2)])
def test_rnn_classifier_parameter_count(lstm, xdim, hdim, ydim, n_layer):
    model = lstm.RecurrentNeuralNetworkClass(xdim=xdim, hdim=hdim, ydim=ydim, n_layer=n_layer)
    assert sum(p.numel() for p in model.parameters()) == _rnn_param_count(xdim, hdim, ydim, n_layer)
