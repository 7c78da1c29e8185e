# In case match-big, forks four children that each hold 450 MB (each under the per-process
# limit, together over the submission's): the whole submission's memory is capped, so the case
# ends as an error and no child survives.
import os
import time

import torch.nn as nn


def hog():
    for _ in range(4):
        if os.fork() == 0:
            block = bytearray(450 * 2**20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(600)
            os._exit(0)
    time.sleep(600)


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        if x.shape[-1] == 8:
            hog()
        return 2 * self.lin(x)
