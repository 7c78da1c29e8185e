# Starts a daemon (double fork, new session) and a detached Popen: none may outlive grading.
import os
import subprocess
import sys

import torch.nn as nn


def spawn():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "MARKER"], start_new_session=True)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "MARKER"])
        os._exit(0)
    return True


class Doubler(nn.Module):
    spawned = spawn()

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
