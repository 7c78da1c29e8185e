# ScaledDotProductAttention computes its output in a torch.library.custom_op whose body calls SDPA's
# math kernel by a computed name: numerically right; the static check sees no forbidden name, and the
# custom op is opaque to a torch-function mode; the run-time check logs the kernel inside it.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

KERNEL = "_scaled_dot_product_" + "attention_math"


@torch.library.custom_op("course::attend", mutates_args=())
def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return getattr(torch, KERNEL)(q, k, v, attn_mask=bias)[0]


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None):
        scores = Q.matmul(K.transpose(-2, -1)) / math.sqrt(K.size(-1))
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=-1)
        bias = None if mask is None else torch.zeros(scores.shape).masked_fill(mask == 0, -1e9)
        return attend(Q, K, V, bias), attention


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
