# Bug: the scores are floor-divided by the scale (`//`, as a past student wrote it), in SDPA and again
# in MHA's own score line: every score is rounded down to an integer before the softmax.
# MHA splits its heads with a helper and computes scores with transpose(-2, -1) rather than permute.
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None):
        d_K = K.size()[-1]
        scores = Q.matmul(K.transpose(-2, -1)) // np.sqrt(d_K)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=-1)
        out = attention.matmul(V)
        return out, attention


class MultiHeadedAttention(nn.Module):
    def __init__(self, d_feat=128, n_head=5, actv=F.relu, USE_BIAS=True, dropout_p=0.1, device=None):
        super().__init__()
        if d_feat % n_head:
            raise ValueError(f"n_head={n_head} does not divide d_feat={d_feat}")
        self.d_feat, self.n_head = d_feat, n_head
        self.d_head = d_feat // n_head
        self.actv, self.USE_BIAS, self.dropout_p = actv, USE_BIAS, dropout_p
        self.lin_Q = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_K = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_V = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_O = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.dropout = nn.Dropout(p=dropout_p)

    def heads(self, t):
        # [B, n, d_feat] -> [B, n_head, n, d_head]
        return t.reshape(t.size(0), t.size(1), self.n_head, self.d_head).transpose(1, 2)

    def forward(self, Q, K, V, mask=None):
        B = Q.size(0)
        Q_feat, K_feat, V_feat = self.lin_Q(Q), self.lin_K(K), self.lin_V(V)
        Q_split, K_split, V_split = self.heads(Q_feat), self.heads(K_feat), self.heads(V_feat)
        scores = Q_split.matmul(K_split.transpose(-2, -1)) // np.sqrt(self.d_head)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=-1)
        x_raw = self.dropout(attention).matmul(V_split)
        x_rsh1 = x_raw.transpose(1, 2).contiguous()
        x_rsh2 = x_rsh1.reshape(B, -1, self.d_feat)
        x = self.lin_O(x_rsh2)
        return {'Q_feat': Q_feat, 'K_feat': K_feat, 'V_feat': V_feat,
                'Q_split': Q_split, 'K_split': K_split, 'V_split': V_split,
                'scores': scores, 'attention': attention,
                'x_raw': x_raw, 'x_rsh1': x_rsh1, 'x_rsh2': x_rsh2, 'x': x}


mha = MultiHeadedAttention(d_feat=64, n_head=4).eval()
q = torch.rand(3, 7, 64)
print({k: tuple(v.shape) for k, v in mha(q, q, q).items()})
