# Fills what a slot's runs could share, then returns normally: its disk (/tmp up to the limit, in
# many files and deep folders it makes unreadable), its processes (sleepers up to the limit, each
# in a new session), System V IPC objects (shared memory, semaphores, message queues) and POSIX
# ones (message queues, shared memory).
import ctypes
import os
import time

import torch.nn as nn


def fill():
    chunk = b"x" * (4 << 20)
    for folder in ("/tmp", "/tmp/work"):
        for i in range(1000):
            try:
                with open(os.path.join(folder, f"fill-{i}.bin"), "wb") as f:
                    f.write(chunk)
            except OSError:
                break
    path = "/tmp/deep"
    try:
        for i in range(50):
            path = os.path.join(path, "d")
            os.makedirs(path, exist_ok=True)
        os.chmod("/tmp/deep", 0)
    except OSError:
        pass
    try:
        libc = ctypes.CDLL(None)
        for _ in range(4):
            libc.shmget(0, 1 << 20, 0o1666)  # IPC_PRIVATE, IPC_CREAT | 0666
            libc.semget(0, 1, 0o1666)
            libc.msgget(0, 0o1666)
    except OSError:
        pass
    try:  # POSIX message queues, by well-known names and many private ones, with a message in each
        rt = ctypes.CDLL("librt.so.1")  # not ctypes.util.find_library: it needs room in /tmp, full by now
        for name in [b"/grader-cross-q", b"/q", b"/queue"] + [f"/fill-{i}".encode() for i in range(50)]:
            fd = rt.mq_open(name, os.O_CREAT | os.O_RDWR, 0o666, None)
            if fd >= 0:
                rt.mq_send(fd, b"left by an earlier run", 22, 0)
    except Exception:  # noqa: BLE001 - whatever fails, the rest of the filling goes on
        pass
    try:  # POSIX shared memory (/dev/shm is read-only in the sandbox: this is expected to fail)
        from multiprocessing import shared_memory
        shared_memory.SharedMemory(create=True, size=4096, name="grader-cross-shm")
    except Exception:  # noqa: BLE001
        pass
    for _ in range(200):
        try:
            if os.fork() == 0:
                os.setsid()
                time.sleep(600)
                os._exit(0)
        except OSError:
            break
    return True


class Doubler(nn.Module):
    filled = fill()

    def __init__(self, d=4):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return 2 * self.lin(x)
