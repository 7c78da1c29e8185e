# A correct solution but for one typo: nn.LSTM(..., num_layer=...) raises TypeError in the constructor.
# Correct LSTM: logits from self.lin(hn[-1]); LSTMCell with one fused matmul torch.cat([x, h], 1) @ torch.cat([W_ih, W_hh], 1).T.
import math

import torch
import torch.nn as nn

device = torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')


class RecurrentNeuralNetworkClass(nn.Module):
    def __init__(self, name='rnn', xdim=28, hdim=256, ydim=10, n_layer=3):
        super().__init__()
        self.name = name
        self.xdim = xdim
        self.hdim = hdim
        self.ydim = ydim
        self.n_layer = n_layer
        self.rnn = nn.LSTM(input_size=xdim, hidden_size=hdim, num_layer=n_layer, batch_first=True)
        self.lin = nn.Linear(hdim, ydim)

    def forward(self, x):
        h0 = torch.zeros(self.n_layer, x.size(0), self.hdim, device=device)
        c0 = torch.zeros(self.n_layer, x.size(0), self.hdim, device=device)
        rnn_out, (hn, cn) = self.rnn(x, (h0, c0))
        # hn: [n_layer, N, hdim]; the top layer's last hidden state is hn[-1]
        return self.lin(hn[-1])


class LSTMCell(nn.Module):
    def __init__(self, xdim=28, hdim=256):
        super().__init__()
        self.xdim = xdim
        self.hdim = hdim
        self.weight_ih = nn.Parameter(torch.Tensor(4 * hdim, xdim))
        self.weight_hh = nn.Parameter(torch.Tensor(4 * hdim, hdim))
        self.bias_ih = nn.Parameter(torch.Tensor(4 * hdim))
        self.bias_hh = nn.Parameter(torch.Tensor(4 * hdim))
        self.reset_parameters()

    def reset_parameters(self):
        std = 1.0 / math.sqrt(self.hdim)
        for w in self.parameters():
            w.data.uniform_(-std, std)

    def forward(self, x, state=None):
        if state is None:
            zeros = torch.zeros(x.size(0), self.hdim, dtype=x.dtype, device=x.device)
            state = (zeros, zeros)
        h, c = state
        W = torch.cat([self.weight_ih, self.weight_hh], 1)
        gates = torch.cat([x, h], 1) @ W.T + self.bias_ih + self.bias_hh
        H = self.hdim
        i = torch.sigmoid(gates[:, 0 * H:1 * H])
        f = torch.sigmoid(gates[:, 1 * H:2 * H])
        g = torch.tanh(gates[:, 2 * H:3 * H])
        o = torch.sigmoid(gates[:, 3 * H:4 * H])
        c_next = f * c + i * g
        h_next = o * torch.tanh(c_next)
        return h_next, c_next


x = torch.randn(4, 28)
cell = LSTMCell()
h, c = cell(x)
print(h.shape, c.shape)
