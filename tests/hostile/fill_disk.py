# In case match-big, writes files of 8 MB into every folder it can (its working folder, $HOME,
# $TMPDIR, /tmp, /dev/shm) until writing fails or 4 GB are written: the submission's disk is capped,
# so the host never holds more than the limit, and nothing is left afterwards.
import os

import torch.nn as nn


def fill():
    chunk = b"x" * (8 << 20)
    written = 0
    for folder in {os.getcwd(), os.environ.get("HOME", "."), os.environ.get("TMPDIR", "/tmp"), "/tmp", "/dev/shm"}:
        for i in range(10_000):
            try:
                with open(os.path.join(folder, f"fill-{i}.bin"), "wb") as f:
                    f.write(chunk)
            except OSError:
                break
            written += len(chunk)
            if written >= 4 << 30:
                return


class Doubler(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        if x.shape[-1] == 8:
            fill()
        return 2 * self.lin(x)
