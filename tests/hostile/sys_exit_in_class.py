# Raises SystemExit while the class is being defined: the class never exists, score 0, clean.
import sys

import torch.nn as nn


class Doubler(nn.Module):
    sys.exit(1)
