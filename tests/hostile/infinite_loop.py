# Loops forever in one case (d=8): that case times out, the others still pass.
import torch.nn as nn


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        while x.shape[-1] == 8:
            pass
        return 2 * self.lin(x)
