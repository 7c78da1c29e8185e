# Allocates memory until it runs out, in the d=8 case: a MemoryError there, nothing else harmed.
import torch.nn as nn


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        if x.shape[-1] == 8:
            hog = []
            while True:
                hog.append(bytearray(100 * 2**20))
        return 2 * self.lin(x)
