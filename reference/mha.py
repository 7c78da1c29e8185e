"""Reference solution: scaled dot-product attention and multi-headed attention.

Hidden from students. The grader executes this file in its own process to produce
the expected outputs of every case; tests prove it against independent oracles.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ScaledDotProductAttention(nn.Module):
    """softmax(Q Kᵀ / √d_K) V, with an optional mask (0 = masked)."""

    def forward(self, Q, K, V, mask=None):
        d_K = K.size(-1)
        scores = Q.matmul(K.transpose(-2, -1)) / math.sqrt(d_K)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=-1)
        out = attention.matmul(V)
        return out, attention


class MultiHeadedAttention(nn.Module):
    """Multi-headed attention that returns every intermediate in a dict."""

    def __init__(self, d_feat=128, n_head=5, actv=F.relu, USE_BIAS=True, dropout_p=0.1, device=None):
        super().__init__()
        if d_feat % n_head != 0:
            raise ValueError(f"d_feat ({d_feat}) must be divisible by n_head ({n_head})")
        self.d_feat = d_feat
        self.n_head = n_head
        self.d_head = d_feat // n_head
        self.actv = actv
        self.USE_BIAS = USE_BIAS
        self.dropout_p = dropout_p
        self.lin_Q = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_K = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_V = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_O = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.dropout = nn.Dropout(p=dropout_p)

    def forward(self, Q, K, V, mask=None):
        n_batch = Q.shape[0]
        Q_feat = self.lin_Q(Q)
        K_feat = self.lin_K(K)
        V_feat = self.lin_V(V)
        # [B, n, d_feat] -> [B, n_head, n, d_head]
        Q_split = Q_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        K_split = K_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        V_split = V_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        scores = torch.matmul(Q_split, K_split.transpose(-2, -1)) / math.sqrt(self.d_head)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = torch.softmax(scores, dim=-1)
        x_raw = torch.matmul(self.dropout(attention), V_split)
        x_rsh1 = x_raw.permute(0, 2, 1, 3).contiguous()
        x_rsh2 = x_rsh1.view(n_batch, -1, self.d_feat)
        x = self.lin_O(x_rsh2)
        return {
            "Q_feat": Q_feat, "K_feat": K_feat, "V_feat": V_feat,
            "Q_split": Q_split, "K_split": K_split, "V_split": V_split,
            "scores": scores, "attention": attention,
            "x_raw": x_raw, "x_rsh1": x_rsh1, "x_rsh2": x_rsh2, "x": x,
        }
