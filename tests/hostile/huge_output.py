# In case match-big, returns 108 MB of output: more than a case may send back. That case is an
# error that says so (not a broken channel, not the grader's fault); the others are honest.
import torch
import torch.nn as nn


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        if x.shape[-1] == 8:
            return torch.zeros(3000, 3000, 3)
        return 2 * self.lin(x)
