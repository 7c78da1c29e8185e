# Correct LSTM in the course notebook's style (rnn_out[:,-1 :] then .view, .to(device)); LSTMCell with chunk; top-level MNIST download (torchvision) and endless training loop.
import numpy as np
import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.optim as optim
import torchvision.datasets as dsets
import torchvision.transforms as transforms
print("PyTorch version:[%s]." % (torch.__version__))
device = torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')
print("device:[%s]." % (device))

# Dataset
mnist_train = dsets.MNIST(root='./data/', train=True, transform=transforms.ToTensor(), download=True)
mnist_test = dsets.MNIST(root='./data/', train=False, transform=transforms.ToTensor(), download=True)
print("mnist_train:\n", mnist_train, "\n")
print("mnist_test:\n", mnist_test, "\n")
print("Done.")

BATCH_SIZE = 256
train_iter = torch.utils.data.DataLoader(mnist_train, batch_size=BATCH_SIZE, shuffle=True, num_workers=1)
test_iter = torch.utils.data.DataLoader(mnist_test, batch_size=BATCH_SIZE, shuffle=True, num_workers=1)
print("Done.")


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
        out = self.lin(rnn_out[:, -1 :]).view([-1, self.ydim])
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
        for p in self.parameters():
            nn.init.uniform_(p, -hdim ** -0.5, hdim ** -0.5)

    def forward(self, x, state=None):
        if state is None:
            h = x.new_zeros(x.size(0), self.hdim)
            c = x.new_zeros(x.size(0), self.hdim)
        else:
            h, c = state
        gates = torch.mm(x, self.weight_ih.t()) + self.bias_ih + torch.mm(h, self.weight_hh.t()) + self.bias_hh
        in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, 1)
        in_gate = torch.sigmoid(in_gate)
        forget_gate = torch.sigmoid(forget_gate)
        cell_gate = torch.tanh(cell_gate)
        out_gate = torch.sigmoid(out_gate)
        c_next = (forget_gate * c) + (in_gate * cell_gate)
        h_next = out_gate * torch.tanh(c_next)
        return h_next, c_next


M = RecurrentNeuralNetworkClass(name='rnn', xdim=28, hdim=256, ydim=10, n_layer=2).to(device)
loss = nn.CrossEntropyLoss()
optm = optim.Adam(M.parameters(), lr=1e-3)
print("Done.")

np.set_printoptions(precision=3)
torch.set_printoptions(precision=3)
x_numpy = np.random.rand(2, 20, 28)  # [N x L x Q]
x_torch = torch.from_numpy(x_numpy).float().to(device)
rnn_out, (hn, cn) = M.rnn(x_torch)  # forward path
print("rnn_out:", rnn_out.shape)
print("Hidden State hn:", hn.shape)
print("Cell States cn:", cn.shape)


def func_eval(model, data_iter, device):
    with torch.no_grad():
        n_total, n_correct = 0, 0
        model.eval()  # evaluate (affects DropOut and BN)
        for batch_in, batch_out in data_iter:
            y_trgt = batch_out.to(device)
            model_pred = model.forward(batch_in.view(-1, 28, 28).to(device))
            _, y_pred = torch.max(model_pred.data, 1)
            n_correct += (y_pred == y_trgt).sum().item()
            n_total += batch_in.size(0)
        val_accr = (n_correct / n_total)
        model.train()  # back to train mode
    return val_accr


print("Start training.")
M.train()
EPOCHS, print_every = 10**9, 1
for epoch in range(EPOCHS):
    loss_val_sum = 0
    for batch_in, batch_out in train_iter:
        y_pred = M.forward(batch_in.view(-1, 28, 28).to(device))
        loss_out = loss(y_pred, batch_out.to(device))
        optm.zero_grad()
        loss_out.backward()
        optm.step()
        loss_val_sum += loss_out
    loss_val_avg = loss_val_sum / len(train_iter)
    if ((epoch % print_every) == 0) or (epoch == (EPOCHS - 1)):
        train_accr = func_eval(M, train_iter, device)
        test_accr = func_eval(M, test_iter, device)
        print("epoch:[%d] loss:[%.3f] train_accr:[%.3f] test_accr:[%.3f]." %
              (epoch, loss_val_avg, train_accr, test_accr))
print("Done")

plt.plot([0, 1], [0, 1])
plt.show()
