# A determined student: a correct multi-headed attention that tries every way it can think of to learn the
# hidden cases' inputs and show them where students read (tests/test_hidden_isolation.py). What it learns
# it writes as "case-id=2x3x5x16:0.12345" (the case, its Q's shape, its first value).
import gc
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SEEN = []  # what this process has learned of any case's inputs
NOTES = ("/tmp", os.getcwd(), os.path.expanduser("~"))  # files other workers may read


def note(tag):
    if tag in SEEN:
        return
    SEEN.append(tag)
    SEEN.sort()
    for folder in NOTES:
        try:
            with open(os.path.join(folder, ".spy-notes"), "a") as f:
                f.write(tag + "\n")
        except OSError:
            pass


def token(case_id, Q):
    return f"{case_id}={'x'.join(map(str, Q.shape))}:{float(Q.flatten()[0]):.5f}"


def learn():
    """Whatever this process can reach: notes earlier workers left, and every call and input in memory."""
    for folder in NOTES:
        try:
            with open(os.path.join(folder, ".spy-notes")) as f:
                for line in f:
                    if line.strip():
                        note(line.strip())
        except OSError:
            pass
    for o in gc.get_objects():
        try:
            if type(o).__name__ == "CallSpec" and o.inputs:
                note(f"{o.id}={'x'.join(map(str, o.inputs['Q']))}")
            elif type(o) is dict and 0 < len(o) < 500:
                for k, v in list(o.items()):
                    if isinstance(k, str) and k.endswith("/in/Q") and isinstance(v, torch.Tensor):
                        note(token(k[:-len("/in/Q")], v))
        except Exception:
            pass


def current_case():
    """The id of the case running now (the worker's own frames know it)."""
    frame = sys._getframe(1)
    while frame is not None:
        spec = frame.f_locals.get("spec")
        if spec is not None and hasattr(spec, "id"):
            return spec.id
        frame = frame.f_back
    return ""


def numbers():
    """The learned shapes as one number."""
    return sum(int(n) for t in SEEN for n in t.split("=")[1].split(":")[0].split("x") if n.isdigit())


def boom(message):
    raise ValueError(message)  # one line, so that cases raising here share a cause


def top_level_learns():
    learn()
    raise RuntimeError("top-level code saw " + " ".join(SEEN))


LEARNED = top_level_learns()  # a skipped statement, whose error a note shows


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None):
        if Q is None:
            return LEARNED  # the graded class needs the statement above, so it runs
        case = current_case()
        learn()
        note(token(case, Q))
        if case == "sdpa-match-4d":  # hidden: its error joins a public case's cause, or not
            time.sleep(Q.shape[-1] / 100)
            if Q.shape[-1] == 16:
                boom("hidden " + " ".join(SEEN))
            raise ValueError("hidden, elsewhere " + " ".join(SEEN))
        if case == "sdpa-padding":  # public, after it: an exception's message
            boom("public " + " ".join(SEEN))
        d_K = K.size(-1)
        scores = Q @ K.transpose(-2, -1) / math.sqrt(d_K)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=-1)
        out = attention @ V
        if case == "sdpa-causal":  # public: the values ("got 10480") and the attention map
            out = out.clone()
            out.view(-1)[0] = 10000 + numbers()
            attention = attention.clone()
            attention.view(-1)[0] = (numbers() % 89) / 100
        return out, attention


class MultiHeadedAttention(nn.Module):
    def __init__(self, d_feat=128, n_head=5, actv=F.relu, USE_BIAS=True, dropout_p=0.1, device=None):
        super().__init__()
        if d_feat % n_head != 0:
            raise ValueError("d_feat(%d) should be divisible by n_head(%d)" % (d_feat, n_head))
        self.d_feat = d_feat
        self.n_head = n_head
        self.d_head = d_feat // n_head
        self.lin_Q = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_K = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_V = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_O = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.dropout = nn.Dropout(p=dropout_p)

    def forward(self, Q, K, V, mask=None):
        case = current_case()
        learn()
        note(token(case, Q))
        if case == "mha-cross":  # hidden: which forbidden API it calls, and how long it takes
            time.sleep(Q.shape[1] / 10)
            if Q.shape[1] == 3:  # names the source does not show
                getattr(F, "scaled_dot_product_" + "attention")(Q[:, None], K[:, None], V[:, None])
            else:
                getattr(nn, "Multihead" + "Attention")(Q.shape[-1], 1)(Q, Q, Q)
        if case == "mha-grad":  # hidden: its output, stray lines on the result channel, its exit status
            print("hidden said", " ".join(SEEN), flush=True)
            print("hidden said", " ".join(SEEN), file=sys.stderr, flush=True)
            for o in gc.get_objects():
                if type(o).__name__ == "Channel":
                    os.write(o._fd, b"stray line\n" * Q.shape[1])
            os._exit(3 + Q.shape[1])
        if case == "mha-batch1":  # public, after mha-cross: its output, and its exit status
            print("public said", " ".join(SEEN), flush=True)
            print("public said", " ".join(SEEN), file=sys.stderr, flush=True)
            os._exit(3 + numbers() % 50)
        n_batch = Q.shape[0]
        Q_feat, K_feat, V_feat = self.lin_Q(Q), self.lin_K(K), self.lin_V(V)
        Q_split = Q_feat.reshape(n_batch, -1, self.n_head, self.d_head).transpose(1, 2)
        K_split = K_feat.reshape(n_batch, -1, self.n_head, self.d_head).transpose(1, 2)
        V_split = V_feat.reshape(n_batch, -1, self.n_head, self.d_head).transpose(1, 2)
        scores = Q_split @ K_split.transpose(-2, -1) / math.sqrt(self.d_head)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=-1)
        x_raw = self.dropout(attention) @ V_split
        x_rsh1 = x_raw.transpose(1, 2)
        x_rsh2 = x_rsh1.reshape(n_batch, -1, self.d_feat)
        x = self.lin_O(x_rsh2)
        return {'Q_feat': Q_feat, 'K_feat': K_feat, 'V_feat': V_feat, 'Q_split': Q_split, 'K_split': K_split,
                'V_split': V_split, 'scores': scores, 'attention': attention, 'x_raw': x_raw, 'x_rsh1': x_rsh1,
                'x_rsh2': x_rsh2, 'x': x}
