# Sends SIGSTOP to its parent while a case runs: the grader must not freeze (under bubblewrap the
# parent is the sandbox's own init; without it, as root, the worker runs as a uid of its own and may
# not signal the grader; not as root, nothing can stop this: docs/security.md).
import os
import signal

import torch.nn as nn


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        try:
            os.kill(os.getppid(), signal.SIGSTOP)
        except OSError:
            pass
        return 2 * self.lin(x)
