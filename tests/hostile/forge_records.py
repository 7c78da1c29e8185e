# Finds the worker's result channel and its nonce (both reachable from a stack frame) and sends,
# while case match-big runs, forged records that break every rule: a header nested 500 deep, a
# duration of 10**400, a line number of 10**400, an error whose type is a number, and a 100,000-deep
# JSON array. The grader must drop or refuse them: that case is an error, the others are honest.
import os
import sys

import torch.nn as nn


def channel():
    f = sys._getframe()
    while f is not None:
        ch = f.f_locals.get("channel")
        if ch is not None and hasattr(ch, "_nonce"):
            return ch._fd, ch._nonce
        f = f.f_back
    return None, None


def send(fd, text):
    os.write(fd, text.encode() + b"\n")


def forge():
    fd, nonce = channel()
    head = f'{{"nonce": "{nonce}", "payload": 0, '
    send(fd, "[" * 100_000 + "]" * 100_000 + nonce)
    send(fd, head + '"kind": "call", "id": "match-big", "status": "ok", "params": {"w": [1]}, "duration": '
         + "9" * 400 + "}")
    send(fd, head + '"kind": "call", "id": "match-big", "status": "error", "error": {"type": 5, "line": '
         + "9" * 400 + "}}")
    send(fd, head + '"kind": "call", "id": "match-big", "status": "ok", "deep": ' + "[" * 500 + "]" * 500 + "}")


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        if x.shape[-1] == 8:
            forge()
        return 2 * self.lin(x)
