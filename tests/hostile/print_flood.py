# Prints tens of MB to stdout and stderr in every call: output is capped, grading unaffected.
import sys

import torch.nn as nn


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        for _ in range(600):  # about 14 MB per call, 58 MB in all
            print("flood " * 2000)
            print("flood " * 2000, file=sys.stderr)
        return 2 * self.lin(x)
