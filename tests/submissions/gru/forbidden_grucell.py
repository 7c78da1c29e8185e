# Hands the work to torch.nn.GRUCell: right numbers, but the policy check fails.
import torch
import torch.nn as nn


class GRUCell(nn.Module):
    def __init__(self, xdim=28, hdim=256):
        super().__init__()
        self.cell = nn.GRUCell(xdim, hdim)
        self.weight_ih, self.weight_hh = self.cell.weight_ih, self.cell.weight_hh
        self.bias_ih, self.bias_hh = self.cell.bias_ih, self.cell.bias_hh
        del self.cell.weight_ih, self.cell.weight_hh, self.cell.bias_ih, self.cell.bias_hh

    def forward(self, x, h=None):
        return torch.gru_cell(x, h if h is not None else x.new_zeros(x.size(0), self.weight_hh.size(1)),
                              self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
