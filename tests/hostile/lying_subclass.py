# Wrong answer returned as a tensor subclass whose comparisons and conversions all lie.
import numpy as np
import torch
import torch.nn as nn


class Liar(torch.Tensor):
    def __eq__(self, other):
        return torch.ones(self.shape, dtype=torch.bool)

    def allclose(self, *args, **kwargs):
        return True

    def numpy(self, *args, **kwargs):
        return np.zeros(tuple(self.shape), dtype=np.float32)

    def __array__(self, *args, **kwargs):
        return np.zeros(tuple(self.shape), dtype=np.float32)

    def tolist(self):
        return [0.0]


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return (3 * self.lin(x)).as_subclass(Liar)
