# At top level, makes 3,000 nested folders in its working folder (paths far beyond PATH_MAX), a
# folder that nobody may enter with files inside, and a symlink to /etc: cleanup must remove all of
# it, follow no link, and never fail.
import os

import torch.nn as nn


def dig():
    start = os.getcwd()
    os.symlink("/etc", "etc-link")
    os.mkdir("locked")
    open("locked/file", "w").close()
    os.chmod("locked", 0)
    for _ in range(3000):
        os.mkdir("d")
        os.chdir("d")
    open("deep-file", "w").close()
    os.chdir(start)
    return True


class Doubler(nn.Module):
    dug = dig()  # a class attribute: runs while the class is defined

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
