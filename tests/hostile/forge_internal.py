# At top level, before the worker reports its statements, sends an "internal" record (the
# grader's own failure, if it were true) stamped with the real nonce: a submission cannot make the
# grader claim a fault of its own. Every case is the submission's error; nothing is exit 3.
import os
import sys

import torch.nn as nn


def forge():
    f = sys._getframe()
    while f is not None:
        ch = f.f_locals.get("channel")
        if ch is not None and hasattr(ch, "_nonce"):
            os.write(ch._fd, ('{"nonce": "%s", "kind": "internal", "payload": 0, "traceback": "grader bug"}\n'
                              % ch._nonce).encode())
            return True
        f = f.f_back
    return False


class Doubler(nn.Module):
    forged = forge()  # a class attribute: runs while the class is defined

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
