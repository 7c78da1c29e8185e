# Correct MHA: -inf mask fill, torch.softmax, scores * d_head ** -0.5, np.sqrt in SDPA, F.dropout(attention, p, self.training).
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None):
        d_K = K.size()[-1]
        scores = Q.matmul(K.transpose(-2, -1)) / np.sqrt(d_K)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, float('-inf'))
        attention = torch.softmax(scores, dim=-1)
        out = attention.matmul(V)
        return out, attention


class MultiHeadedAttention(nn.Module):
    def __init__(self, d_feat=128, n_head=5, actv=F.relu, USE_BIAS=True, dropout_p=0.1, device=None):
        super().__init__()
        if (d_feat % n_head) != 0:
            raise ValueError(f"d_feat({d_feat}) should be divisible by n_head({n_head})")
        self.d_feat = d_feat
        self.n_head = n_head
        self.d_head = self.d_feat // self.n_head
        self.actv = actv
        self.USE_BIAS = USE_BIAS
        self.dropout_p = dropout_p
        self.lin_Q = nn.Linear(self.d_feat, self.d_feat, self.USE_BIAS)
        self.lin_K = nn.Linear(self.d_feat, self.d_feat, self.USE_BIAS)
        self.lin_V = nn.Linear(self.d_feat, self.d_feat, self.USE_BIAS)
        self.lin_O = nn.Linear(self.d_feat, self.d_feat, self.USE_BIAS)
        self.dropout = nn.Dropout(p=self.dropout_p)  # kept for the API; forward uses F.dropout

    def forward(self, Q, K, V, mask=None):
        n_batch = Q.shape[0]
        Q_feat = self.lin_Q(Q)
        K_feat = self.lin_K(K)
        V_feat = self.lin_V(V)
        Q_split = Q_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        K_split = K_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        V_split = V_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        scores = Q_split @ K_split.transpose(-2, -1) * self.d_head ** -0.5
        if mask is not None:
            scores = scores.masked_fill(mask == 0, float('-inf'))
        attention = torch.softmax(scores, dim=-1)
        x_raw = F.dropout(attention, self.dropout_p, self.training) @ V_split
        x_rsh1 = x_raw.permute(0, 2, 1, 3).contiguous()
        x_rsh2 = x_rsh1.view(n_batch, -1, self.d_feat)
        x = self.lin_O(x_rsh2)
        return dict(Q_feat=Q_feat, K_feat=K_feat, V_feat=V_feat,
                    Q_split=Q_split, K_split=K_split, V_split=V_split,
                    scores=scores, attention=attention,
                    x_raw=x_raw, x_rsh1=x_rsh1, x_rsh2=x_rsh2, x=x)


if __name__ == "__main__":
    sdpa = ScaledDotProductAttention()
    q = torch.randn(3, 4, 16)
    out, att = sdpa(q, q, q)
    print(out.shape, att.shape)
