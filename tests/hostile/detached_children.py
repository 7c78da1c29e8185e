# Starts a daemon (double fork, new session), a detached Popen, and a double-forked child in a new
# session that clears its environment (no token left to find it by): none may outlive grading.
import os
import subprocess

import torch.nn as nn

SLEEPER = ["/bin/sh", "-c", "sleep 600; exit 0", "MARKER"]  # $0 is MARKER: the test finds leftovers by it


def spawn():
    subprocess.Popen(SLEEPER, start_new_session=True)
    for env in (dict(os.environ), {}):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execve(SLEEPER[0], SLEEPER, env)
            os._exit(0)
    return True


class Doubler(nn.Module):
    spawned = spawn()

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
