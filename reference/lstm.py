"""Reference solution: the LSTM sequence classifier and an LSTM cell from the gate equations.

Hidden from students. The grader executes this file in its own process to produce
the expected outputs of every case; tests prove it against torch.nn.LSTM / LSTMCell.
"""
import math

import torch
import torch.nn as nn

device = torch.device("cpu")


class RecurrentNeuralNetworkClass(nn.Module):
    """A stacked LSTM over [N, L, xdim] whose last time step feeds a linear classifier."""

    def __init__(self, name="rnn", xdim=28, hdim=256, ydim=10, n_layer=3):
        super().__init__()
        self.name = name
        self.xdim = xdim
        self.hdim = hdim
        self.ydim = ydim
        self.n_layer = n_layer
        self.rnn = nn.LSTM(input_size=xdim, hidden_size=hdim, num_layers=n_layer, batch_first=True)
        self.lin = nn.Linear(hdim, ydim)

    def forward(self, x):
        h0 = torch.zeros(self.n_layer, x.size(0), self.hdim).to(device)
        c0 = torch.zeros(self.n_layer, x.size(0), self.hdim).to(device)
        rnn_out, (hn, cn) = self.rnn(x, (h0, c0))
        return self.lin(rnn_out[:, -1, :])


class LSTMCell(nn.Module):
    """One LSTM step; parameters laid out as torch.nn.LSTMCell (gates i, f, g, o)."""

    def __init__(self, xdim=28, hdim=256):
        super().__init__()
        self.xdim = xdim
        self.hdim = hdim
        self.weight_ih = nn.Parameter(torch.empty(4 * hdim, xdim))
        self.weight_hh = nn.Parameter(torch.empty(4 * hdim, hdim))
        self.bias_ih = nn.Parameter(torch.empty(4 * hdim))
        self.bias_hh = nn.Parameter(torch.empty(4 * hdim))
        bound = 1.0 / math.sqrt(hdim)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x, state=None):
        if state is None:
            h = x.new_zeros(x.size(0), self.hdim)
            c = x.new_zeros(x.size(0), self.hdim)
        else:
            h, c = state
        gates = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_next = f * c + i * g
        h_next = o * torch.tanh(c_next)
        return h_next, c_next
