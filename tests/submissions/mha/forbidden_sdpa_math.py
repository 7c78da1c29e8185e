# ScaledDotProductAttention is SDPA's math kernel, which returns the attention weights too:
# numerically right; the static check knows the kernel belongs to the forbidden family.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None):
        shape = (*Q.shape[:-1], K.size(-2))
        bias = None if mask is None else torch.zeros(shape).masked_fill(mask == 0, -1e9)
        return torch._scaled_dot_product_attention_math(Q, K, V, attn_mask=bias)


class MultiHeadedAttention(nn.Module):
    def __init__(self, d_feat=128, n_head=5, actv=F.relu, USE_BIAS=True, dropout_p=0.1, device=None):
        super().__init__()
        if d_feat % n_head != 0:
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
        n_batch = Q.shape[0]
        Q_feat = self.lin_Q(Q)
        K_feat = self.lin_K(K)
        V_feat = self.lin_V(V)
        # split heads: [B, n, d_feat] -> [B, n, n_head, d_head] -> [B, n_head, n, d_head]
        Q_split = Q_feat.reshape(n_batch, -1, self.n_head, self.d_head).transpose(1, 2)
        K_split = K_feat.reshape(n_batch, -1, self.n_head, self.d_head).transpose(1, 2)
        V_split = V_feat.reshape(n_batch, -1, self.n_head, self.d_head).transpose(1, 2)
        scores = torch.einsum("bhqd,bhkd->bhqk", Q_split, K_split) / math.sqrt(self.d_head)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=-1)
        x_raw = torch.einsum("bhqk,bhkd->bhqd", self.dropout(attention), V_split)
        x_rsh1 = x_raw.transpose(1, 2)
        x_rsh2 = x_rsh1.reshape(n_batch, -1, self.d_feat)
        x = self.lin_O(x_rsh2)
        out = {'Q_feat': Q_feat, 'K_feat': K_feat, 'V_feat': V_feat,
               'Q_split': Q_split, 'K_split': K_split, 'V_split': V_split,
               'scores': scores, 'attention': attention,
               'x_raw': x_raw, 'x_rsh1': x_rsh1, 'x_rsh2': x_rsh2, 'x': x}
        return out
