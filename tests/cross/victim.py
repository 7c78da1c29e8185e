# An honest submission with one bug (match-big: tripled instead of doubled for d=8): a forged,
# altered or killed run would change its 3/4.
import random
import statistics

import torch.nn as nn


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.factor = 3 if d == 8 else 2

    def forward(self, x):
        return self.factor * self.lin(x)
