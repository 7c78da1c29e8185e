# Bug: softmax over dim=1 (as a past student wrote it), in SDPA and in MHA. On 3-D inputs dim 1 is
# the queries (dim -2); on 4-D inputs, and in every MHA case, it is the heads.
import math

import torch.nn as nn
import torch.nn.functional as F


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None):
        d_K = K.size(-1)
        scores = Q @ K.transpose(-2, -1) / math.sqrt(d_K)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=1)
        out = attention @ V
        return out, attention


class MultiHeadedAttention(nn.Module):
    def __init__(self, d_feat=128, n_head=5, actv=F.relu, USE_BIAS=True, dropout_p=0.1, device=None):
        super().__init__()
        if d_feat % n_head != 0:
            raise ValueError("d_feat must be a multiple of n_head")
        self.d_feat = d_feat
        self.n_head = n_head
        self.d_head = d_feat // n_head
        self.actv = actv
        self.USE_BIAS = USE_BIAS
        self.dropout_p = dropout_p
        self.lin_Q = nn.Linear(d_feat, d_feat, bias=USE_BIAS)
        self.lin_K = nn.Linear(d_feat, d_feat, bias=USE_BIAS)
        self.lin_V = nn.Linear(d_feat, d_feat, bias=USE_BIAS)
        self.lin_O = nn.Linear(d_feat, d_feat, bias=USE_BIAS)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, Q, K, V, mask=None):
        B = Q.shape[0]
        Q_feat, K_feat, V_feat = self.lin_Q(Q), self.lin_K(K), self.lin_V(V)
        Q_split = Q_feat.reshape(B, -1, self.n_head, self.d_head).transpose(1, 2)
        K_split = K_feat.reshape(B, -1, self.n_head, self.d_head).transpose(1, 2)
        V_split = V_feat.reshape(B, -1, self.n_head, self.d_head).transpose(1, 2)
        scores = Q_split @ K_split.transpose(-2, -1) / math.sqrt(self.d_head)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=1)
        x_raw = self.dropout(attention) @ V_split
        x_rsh1 = x_raw.transpose(1, 2).contiguous()
        x_rsh2 = x_rsh1.reshape(B, -1, self.d_feat)
        x = self.lin_O(x_rsh2)
        return {'Q_feat': Q_feat, 'K_feat': K_feat, 'V_feat': V_feat,
                'Q_split': Q_split, 'K_split': K_split, 'V_split': V_split,
                'scores': scores, 'attention': attention,
                'x_raw': x_raw, 'x_rsh1': x_rsh1, 'x_rsh2': x_rsh2, 'x': x}
