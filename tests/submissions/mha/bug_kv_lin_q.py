# Bug: K and V are both projected with lin_Q (a copy-paste slip, as a past student made it);
# lin_K and lin_V are defined but never used. SDPA is correct; MHA reuses it on all heads at once.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None):
        scores = torch.matmul(Q, K.transpose(-1, -2)) / math.sqrt(K.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = torch.softmax(scores, dim=-1)
        return torch.matmul(attention, V), attention


class MultiHeadedAttention(nn.Module):
    def __init__(self, d_feat=128, n_head=5, actv=F.relu, USE_BIAS=True, dropout_p=0.1, device=None):
        super(MultiHeadedAttention, self).__init__()
        if (d_feat % n_head) != 0:
            raise ValueError("d_feat(%d) should be divisible by n_head(%d)" % (d_feat, n_head))
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
        n_batch = Q.size(0)
        Q_feat = self.lin_Q(Q)
        K_feat = self.lin_Q(K)
        V_feat = self.lin_Q(V)
        split = [t.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3) for t in (Q_feat, K_feat, V_feat)]
        Q_split, K_split, V_split = split
        scores = torch.matmul(Q_split, K_split.transpose(-1, -2)) / math.sqrt(self.d_head)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = torch.softmax(scores, dim=-1)
        x_raw = torch.matmul(self.dropout(attention), V_split)
        x_rsh1 = x_raw.permute(0, 2, 1, 3).contiguous()
        x_rsh2 = x_rsh1.view(n_batch, -1, self.d_feat)
        x = self.lin_O(x_rsh2)
        return dict(Q_feat=Q_feat, K_feat=K_feat, V_feat=V_feat, Q_split=Q_split, K_split=K_split,
                    V_split=V_split, scores=scores, attention=attention, x_raw=x_raw, x_rsh1=x_rsh1,
                    x_rsh2=x_rsh2, x=x)
