# Correct LSTM: self.rnn(x) with no explicit zero state, rnn_out[:, -1]; LSTMCell computes each gate from sliced weight rows with F.linear.
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
        N, H = x.shape[0], self.hdim
        if state is None:
            h = torch.zeros(N, H).to(x)
            c = torch.zeros(N, H).to(x)
        else:
            h, c = state
        W_ii, W_if, W_ig, W_io = (self.weight_ih[k * H:(k + 1) * H] for k in range(4))
        W_hi, W_hf, W_hg, W_ho = (self.weight_hh[k * H:(k + 1) * H] for k in range(4))
        b_ii, b_if, b_ig, b_io = (self.bias_ih[k * H:(k + 1) * H] for k in range(4))
        b_hi, b_hf, b_hg, b_ho = (self.bias_hh[k * H:(k + 1) * H] for k in range(4))
        i = torch.sigmoid(F.linear(x, W_ii, b_ii) + F.linear(h, W_hi, b_hi))
        f = torch.sigmoid(F.linear(x, W_if, b_if) + F.linear(h, W_hf, b_hf))
        g = torch.tanh(F.linear(x, W_ig, b_ig) + F.linear(h, W_hg, b_hg))
        o = torch.sigmoid(F.linear(x, W_io, b_io) + F.linear(h, W_ho, b_ho))
        c_next = f * c + i * g
        h_next = o * torch.tanh(c_next)
        return h_next, c_next


if __name__ == '__main__':
    M = RecurrentNeuralNetworkClass(n_layer=2).to(device)
    print(M(torch.randn(2, 20, 28, device=device)).shape)
