# Correct MHA, but the class is named MultiHeadAttention (no "ed"): the grader cannot find MultiHeadedAttention and suggests the rename.
import torch
import torch.nn as nn
import torch.nn.functional as F


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None):
        scores = Q.matmul(K.transpose(-2, -1)) / K.size(-1) ** 0.5
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=-1)
        return attention.matmul(V), attention


class MultiHeadAttention(nn.Module):
    def __init__(self, d_feat=128, n_head=5, actv=F.relu, USE_BIAS=True, dropout_p=0.1, device=None):
        super().__init__()
        if d_feat % n_head:
            raise ValueError("d_feat(%d) should be divisible by n_head(%d)" % (d_feat, n_head))
        self.d_feat, self.n_head, self.d_head = d_feat, n_head, d_feat // n_head
        self.actv, self.USE_BIAS, self.dropout_p = actv, USE_BIAS, dropout_p
        self.lin_Q = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_K = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_V = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.lin_O = nn.Linear(d_feat, d_feat, USE_BIAS)
        self.dropout = nn.Dropout(p=dropout_p)

    def _split(self, t):
        return t.view(t.size(0), -1, self.n_head, self.d_head).permute(0, 2, 1, 3)

    def forward(self, Q, K, V, mask=None):
        Q_feat, K_feat, V_feat = self.lin_Q(Q), self.lin_K(K), self.lin_V(V)
        Q_split, K_split, V_split = self._split(Q_feat), self._split(K_feat), self._split(V_feat)
        scores = Q_split.matmul(K_split.transpose(-2, -1)) / self.d_head ** 0.5
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = torch.softmax(scores, dim=-1)
        x_raw = self.dropout(attention).matmul(V_split)
        x_rsh1 = x_raw.permute(0, 2, 1, 3).contiguous()
        x_rsh2 = x_rsh1.view(Q.size(0), -1, self.d_feat)
        x = self.lin_O(x_rsh2)
        return {'Q_feat': Q_feat, 'K_feat': K_feat, 'V_feat': V_feat,
                'Q_split': Q_split, 'K_split': K_split, 'V_split': V_split,
                'scores': scores, 'attention': attention,
                'x_raw': x_raw, 'x_rsh1': x_rsh1, 'x_rsh2': x_rsh2, 'x': x}
