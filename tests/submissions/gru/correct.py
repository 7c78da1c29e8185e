# A correct GRU cell written differently: one slice per gate, F.linear.
import torch
import torch.nn as nn
import torch.nn.functional as F


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
        H = self.hdim
        part = lambda w, b, v, k: F.linear(v, w[k * H:(k + 1) * H], b[k * H:(k + 1) * H])
        r = torch.sigmoid(part(self.weight_ih, self.bias_ih, x, 0) + part(self.weight_hh, self.bias_hh, h, 0))
        z = torch.sigmoid(part(self.weight_ih, self.bias_ih, x, 1) + part(self.weight_hh, self.bias_hh, h, 1))
        n = torch.tanh(part(self.weight_ih, self.bias_ih, x, 2) + r * part(self.weight_hh, self.bias_hh, h, 2))
        return (1 - z) * n + z * h
