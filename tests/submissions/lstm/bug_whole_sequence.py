# Bug: the classifier gets the whole sequence, lin(rnn_out), [N, L, ydim] instead of [N, ydim]; LSTMCell correct.
import math

import torch
import torch.nn as nn

device = torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')


class RecurrentNeuralNetworkClass(nn.Module):
    def __init__(self, name='rnn', xdim=28, hdim=256, ydim=10, n_layer=3):
        super(RecurrentNeuralNetworkClass, self).__init__()
        self.name = name
        self.xdim = xdim
        self.hdim = hdim
        self.ydim = ydim
        self.n_layer = n_layer  # K

        self.rnn = nn.LSTM(
            input_size=self.xdim, hidden_size=self.hdim, num_layers=self.n_layer, batch_first=True)
        self.lin = nn.Linear(self.hdim, self.ydim)

    def forward(self, x):
        # Set initial hidden and cell states
        h0 = torch.zeros(self.n_layer, x.size(0), self.hdim).to(device)
        c0 = torch.zeros(self.n_layer, x.size(0), self.hdim).to(device)
        # RNN
        rnn_out, (hn, cn) = self.rnn(x, (h0, c0))
        # x:[N x L x Q] => rnn_out:[N x L x D]
        # Linear
        out = self.lin(rnn_out)
        return out


class LSTMCell(nn.Module):
    def __init__(self, xdim=28, hdim=256):
        super(LSTMCell, self).__init__()
        self.xdim = xdim
        self.hdim = hdim
        self.weight_ih = nn.Parameter(torch.empty(4 * hdim, xdim))
        self.weight_hh = nn.Parameter(torch.empty(4 * hdim, hdim))
        self.bias_ih = nn.Parameter(torch.empty(4 * hdim))
        self.bias_hh = nn.Parameter(torch.empty(4 * hdim))
        stdv = 1.0 / math.sqrt(hdim)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def forward(self, x, state=None):
        if state is None:
            h = torch.zeros(x.size(0), self.hdim, device=x.device)
            c = torch.zeros(x.size(0), self.hdim, device=x.device)
        else:
            h, c = state
        gates = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh
        i, f, g, o = gates.chunk(4, dim=1)
        i = torch.sigmoid(i)
        f = torch.sigmoid(f)
        g = torch.tanh(g)
        o = torch.sigmoid(o)
        c_next = f * c + i * g
        h_next = o * torch.tanh(c_next)
        return h_next, c_next


# check the shapes
M = RecurrentNeuralNetworkClass(name='rnn', xdim=28, hdim=256, ydim=10, n_layer=2).to(device)
x_torch = torch.rand(2, 20, 28).to(device)
print(M(x_torch).shape)
