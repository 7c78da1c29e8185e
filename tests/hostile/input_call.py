# Waits for keyboard input in forward: input() gets end-of-file at once, each case is an error.
import torch.nn as nn


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        input("press enter to continue")
        return 2 * self.lin(x)
