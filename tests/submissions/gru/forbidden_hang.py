# Hands the work to torch.nn.GRUCell, and its top-level code never ends: nothing runs, but the
# forbidden call is in the source, so the student is told about it anyway.
import torch
import torch.nn as nn


def wait_for_data():
    while True:
        pass


class GRUCell(nn.Module):
    ready = wait_for_data()

    def __init__(self, xdim=28, hdim=256):
        super().__init__()
        self.cell = nn.GRUCell(xdim, hdim)

    def forward(self, x, h=None):
        return self.cell(x, h)
