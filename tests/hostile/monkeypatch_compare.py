# Wrong answer (not doubled), with every comparison in torch and numpy patched to say "equal".
import numpy as np
import torch
import torch.nn as nn


def lie(*args, **kwargs):
    return True


torch.allclose = lie
torch.equal = lie
torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)
np.allclose = lie
np.array_equal = lie
np.testing.assert_allclose = lambda *args, **kwargs: None
PATCHED = True


class Doubler(nn.Module):
    patched = PATCHED

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return self.lin(x)
