# LSTMCell is one step of torch.lstm (the kernel behind nn.LSTM) over a sequence of length 1:
# numerically right; torch.lstm is not in the forbid list by name, but it belongs to nn.LSTM's
# family of operators, which is.
import torch
import torch.nn as nn
import torch.nn.functional as F

device = torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')


class RecurrentNeuralNetworkClass(nn.Module):
    def __init__(self, name='rnn', xdim=28, hdim=256, ydim=10, n_layer=3):
        super(RecurrentNeuralNetworkClass, self).__init__()
        self.name = name
        self.xdim = xdim
        self.hdim = hdim
        self.ydim = ydim
        self.n_layer = n_layer
        self.rnn = nn.LSTM(input_size=self.xdim, hidden_size=self.hdim,
                           num_layers=self.n_layer, batch_first=True)
        self.lin = nn.Linear(self.hdim, self.ydim)

    def forward(self, x):
        # nn.LSTM starts from zero states when none are given
        rnn_out, _ = self.rnn(x)
        return self.lin(rnn_out[:, -1])


class LSTMCell(nn.Module):
    def __init__(self, xdim=28, hdim=256):
        super(LSTMCell, self).__init__()
        self.xdim = xdim
        self.hdim = hdim
        self.weight_ih = nn.Parameter(torch.randn(4 * hdim, xdim) * 0.05)
        self.weight_hh = nn.Parameter(torch.randn(4 * hdim, hdim) * 0.05)
        self.bias_ih = nn.Parameter(torch.zeros(4 * hdim))
        self.bias_hh = nn.Parameter(torch.zeros(4 * hdim))

    def forward(self, x, state=None):
        if state is None:
            state = (x.new_zeros(x.size(0), self.hdim), x.new_zeros(x.size(0), self.hdim))
        h, c = state
        weights = [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        _, h_next, c_next = torch.lstm(x[None], (h[None], c[None]), weights, True, 1, 0.0, self.training, False, False)
        return h_next[0], c_next[0]
