# The reset gate multiplies W_hn h but not its bias b_hn (a classic slip): values differ.
import torch
import torch.nn as nn


class GRUCell(nn.Module):
    def __init__(self, xdim=28, hdim=256):
        super().__init__()
        self.hdim = hdim
        self.weight_ih = nn.Parameter(torch.randn(3 * hdim, xdim))
        self.weight_hh = nn.Parameter(torch.randn(3 * hdim, hdim))
        self.bias_ih = nn.Parameter(torch.zeros(3 * hdim))
        self.bias_hh = nn.Parameter(torch.zeros(3 * hdim))

    def forward(self, x, h=None):
        if h is None:
            h = x.new_zeros(x.size(0), self.hdim)
        i_r, i_z, i_n = (x @ self.weight_ih.T + self.bias_ih).chunk(3, 1)
        w_r, w_z, w_n = self.weight_hh.chunk(3, 0)
        b_r, b_z, b_n = self.bias_hh.chunk(3, 0)
        r = torch.sigmoid(i_r + h @ w_r.T + b_r)
        z = torch.sigmoid(i_z + h @ w_z.T + b_z)
        n = torch.tanh(i_n + r * (h @ w_n.T) + b_n)
        return (1 - z) * n + z * h
