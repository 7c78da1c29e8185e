# While its class is defined (top-level code), sends a forged "exec" record, stamped with the real
# nonce, whose errors are not what the protocol allows (a type that is a table, a line that is a
# string, 10**400 as a column): the grader refuses it as the submission's error, never exit 3.
import os
import sys

import torch.nn as nn


def forge():
    f = sys._getframe()
    while f is not None:
        ch = f.f_locals.get("channel")
        if ch is not None and hasattr(ch, "_nonce"):
            record = ('{"nonce": "%s", "kind": "exec", "payload": 0, "errors": [{"type": {"a": 1}, "line": "7", '
                      '"column": %s}]}\n' % (ch._nonce, "9" * 400))
            os.write(ch._fd, record.encode())
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
