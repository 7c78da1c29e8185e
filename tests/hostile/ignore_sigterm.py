# Ignores SIGTERM and loops in the cases with 5 rows: they are killed with SIGKILL.
import signal

import torch.nn as nn

signal.signal(signal.SIGTERM, signal.SIG_IGN)
HANDLER = signal.getsignal(signal.SIGTERM)


class Doubler(nn.Module):
    handler = HANDLER

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        while x.shape[0] == 5:
            pass
        return 2 * self.lin(x)
