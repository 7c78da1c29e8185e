# Bug: masked positions filled with 0 instead of -1e9, masked_fill(mask == 0, 0), in both SDPA and MHA.
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None):
        d_K = K.size()[-1]  # key dimension
        scores = Q.matmul(K.transpose(-2, -1)) / np.sqrt(d_K)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, 0)
        attention = F.softmax(scores, dim=-1)
        out = attention.matmul(V)
        return out, attention


class MultiHeadedAttention(nn.Module):
    def __init__(self, d_feat=128, n_head=5, actv=F.relu, USE_BIAS=True, dropout_p=0.1, device=None):
        super(MultiHeadedAttention, self).__init__()
        if (d_feat % n_head) != 0:
            raise ValueError("d_feat(%d) should be divisible by b_head(%d)" % (d_feat, n_head))
        self.d_feat = d_feat
        self.n_head = n_head
        self.d_head = self.d_feat // self.n_head
        self.actv = actv
        self.USE_BIAS = USE_BIAS
        self.dropout_p = dropout_p  # prob. of zeroed

        self.lin_Q = nn.Linear(self.d_feat, self.d_feat, self.USE_BIAS)
        self.lin_K = nn.Linear(self.d_feat, self.d_feat, self.USE_BIAS)
        self.lin_V = nn.Linear(self.d_feat, self.d_feat, self.USE_BIAS)
        self.lin_O = nn.Linear(self.d_feat, self.d_feat, self.USE_BIAS)

        self.dropout = nn.Dropout(p=self.dropout_p)

    def forward(self, Q, K, V, mask=None):
        n_batch = Q.shape[0]
        Q_feat = self.lin_Q(Q)
        K_feat = self.lin_K(K)
        V_feat = self.lin_V(V)
        # Q_feat: [n_batch, n_Q, d_feat]
        # Multi-head split of Q, K, and V (d_feat = n_head*d_head)
        Q_split = Q_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        K_split = K_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        V_split = V_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        # Q_split: [n_batch, n_head, n_Q, d_head]
        scores = torch.matmul(Q_split, K_split.permute(0, 1, 3, 2)) / np.sqrt(self.d_head)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, 0)
        attention = torch.softmax(scores, dim=-1)
        x_raw = torch.matmul(self.dropout(attention), V_split)  # dropout is NOT mentioned in the paper
        x_rsh1 = x_raw.permute(0, 2, 1, 3).contiguous()
        x_rsh2 = x_rsh1.view(n_batch, -1, self.d_feat)
        x = self.lin_O(x_rsh2)
        out = {'Q_feat': Q_feat, 'K_feat': K_feat, 'V_feat': V_feat,
               'Q_split': Q_split, 'K_split': K_split, 'V_split': V_split,
               'scores': scores, 'attention': attention,
               'x_raw': x_raw, 'x_rsh1': x_rsh1, 'x_rsh2': x_rsh2, 'x': x}
        return out


# Self-attention layer
n_batch = 128
n_src = 32
d_feat = 200
n_head = 5
src = torch.rand(n_batch, n_src, d_feat)
self_attention = MultiHeadedAttention(d_feat=d_feat, n_head=n_head, actv=F.relu, USE_BIAS=True, dropout_p=0.1)
out = self_attention.forward(src, src, src, mask=None)
print("Q_feat:  %s" % (out['Q_feat'].shape,))
print("x:       %s" % (out['x'].shape,))
