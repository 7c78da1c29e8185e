# Correct MHA that calls a ScaledDotProductAttention instance internally; notebook-style super(); top-level endless training loop and matplotlib import.
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import matplotlib.pyplot as plt

print("PyTorch version:[%s]." % (torch.__version__))


class ScaledDotProductAttention(nn.Module):
    def forward(self, Q, K, V, mask=None, dropout=None, return_scores=False):
        d_K = K.size()[-1]  # key dimension (d_head when called from MHA)
        scores = Q.matmul(K.transpose(-2, -1)) / np.sqrt(d_K)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        attention = F.softmax(scores, dim=-1)
        weights = dropout(attention) if dropout is not None else attention
        out = weights.matmul(V)
        if return_scores:
            return out, attention, scores
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
        self.SDPA = ScaledDotProductAttention()

    def forward(self, Q, K, V, mask=None):
        n_batch = Q.shape[0]
        Q_feat = self.lin_Q(Q)
        K_feat = self.lin_K(K)
        V_feat = self.lin_V(V)
        Q_split = Q_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        K_split = K_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        V_split = V_feat.view(n_batch, -1, self.n_head, self.d_head).permute(0, 2, 1, 3)
        # reuse the single-head attention on every head at once
        x_raw, attention, scores = self.SDPA(Q_split, K_split, V_split, mask=mask,
                                             dropout=self.dropout, return_scores=True)
        x_rsh1 = x_raw.permute(0, 2, 1, 3).contiguous()
        x_rsh2 = x_rsh1.view(n_batch, -1, self.d_feat)
        x = self.lin_O(x_rsh2)
        out = {'Q_feat': Q_feat, 'K_feat': K_feat, 'V_feat': V_feat,
               'Q_split': Q_split, 'K_split': K_split, 'V_split': V_split,
               'scores': scores, 'attention': attention,
               'x_raw': x_raw, 'x_rsh1': x_rsh1, 'x_rsh2': x_rsh2, 'x': x}
        return out


# Self-attention "training" as in the notebook
n_batch, n_src, d_feat, n_head = 64, 32, 128, 4
src = torch.rand(n_batch, n_src, d_feat)
MHA = MultiHeadedAttention(d_feat=d_feat, n_head=n_head, actv=F.relu, USE_BIAS=True, dropout_p=0.1)
optm = torch.optim.Adam(MHA.parameters(), lr=1e-3)
losses = []
for epoch in range(10**9):
    pass
plt.plot(losses)
plt.show()
