# Breaks Python's json module (json.dumps and JSONEncoder.encode raise) and os.write, at top level,
# so the worker's own records would fail if it used them late: it binds its own before any
# submitted code runs, so the honest work still counts.
import json
import os

import torch.nn as nn


def broken(*args, **kwargs):
    raise RuntimeError("json is broken")


def patch():
    json.dumps = broken
    json.JSONEncoder.encode = broken
    os.write = broken
    return True


class Doubler(nn.Module):
    patched = patch()  # a class attribute: runs while the class is defined

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
