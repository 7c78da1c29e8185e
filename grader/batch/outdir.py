"""A batch's out folder: held by one batch at a time, and only what a batch made is ever removed.

    hold(out)                   an exclusive flock on OUT/.grade-batch.lock, taken before anything
                                else under OUT is touched, held for the whole run, gone with the
                                process however it ends (SIGKILL included: the kernel drops it)
    extraction_folder(out)      OUT/extracted made ready for a zip: the one a batch made before (its
                                mark matches) is removed; anything else there is refused, never removed
    Copies(out)                 the bytes graded: each submission read once (no link followed, its
                                size bounded), hashed as read and written to a private folder in OUT;
                                that copy is what is graded and what the stored hash names

Why copies: the grading happens in other processes (``-j`` grading processes, or a Dask
cluster's workers that are sent the file's bytes), each reading a path when its turn comes. A
path in the SOURCE can change under a running batch (a folder the TA syncs, an export unzipped
again); a copy made from the very bytes that were hashed, in a folder only this run writes
(0700, under the lock), cannot. So a stored result always names the bytes it graded, whatever
engine graded them; every engine is told the student's path to show (``workers.Task.shown``:
the local grading processes and a Dask cluster's workers alike).
"""
from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from grader.errors import UsageError

#: The lock file in a batch's out folder (kept: removing it would let two batches each lock a file of that name).
LOCK_FILE = ".grade-batch.lock"
#: Where a zip is extracted, and the file that marks the extraction folder a batch made (its device and inode).
EXTRACTED, EXTRACTED_MARK = "extracted", ".grade-batch-extracted"
#: The prefix of a run's private folder of copies (removed at the end of the run; a killed run's by the next).
COPIES_PREFIX = ".grade-batch-copies-"


class Held:
    """The out folder's lock, held until ``release`` (or the process's end)."""

    def __init__(self, fd: int | None, path: Path):
        self.fd, self.path = fd, path

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> "Held":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold(out: Path) -> Held:
    """Take ``out``'s lock (``out`` is made when missing); ``UsageError`` naming the batch that holds it.

    The lock file says which process holds it since when (``pid N since …``), for the message a
    second batch prints; that text is only ever shown, never trusted.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    try:
        import fcntl
    except ImportError:  # not POSIX: one batch per folder is the caller's promise
        return Held(None, path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as e:
        raise UsageError(f"cannot lock {out} for this batch ({path.name}: {e.strerror or e}); "
                         "choose another --out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _holder(fd)
        os.close(fd)
        raise UsageError(f"another grade batch is using {out}{f' ({holder})' if holder else ''}; wait for it to "
                         "finish, or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} since {datetime.datetime.now().isoformat(sep=' ', timespec='seconds')}\n"
              .encode(), 0)
    return Held(fd, path)


def _holder(fd: int) -> str:
    """What the lock file says of its holder (``pid N since …``), or "" when it says nothing readable."""
    try:
        text = os.pread(fd, 200, 0).decode("ascii", "replace")
    except OSError:
        return ""
    line = text.splitlines()[0] if text.strip() else ""
    return line if line.startswith("pid ") and line.isprintable() else ""


def extraction_folder(out: Path) -> Path:
    """``OUT/extracted``, empty and marked as this batch's, for a zip to be extracted into.

    An ``extracted`` that a batch made before (the mark beside it names its device and inode, and it
    is still 0700 as made: a folder someone made since in its place, even on a reused inode, is not)
    is removed; an empty folder is used as it is; anything else there (a folder of files a batch did
    not make, a file, a link) is a ``UsageError``: it is never removed. Call it holding ``hold``.
    """
    target, mark = out / EXTRACTED, out / EXTRACTED_MARK
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and _mark(mark) == (st.st_dev, st.st_ino):
            shutil.rmtree(target)
        elif not (stat.S_ISDIR(st.st_mode) and not any(os.scandir(target))):
            raise UsageError(f"{target} is in the way: a zip is extracted there, and this one was not made by "
                             "grade batch (it is never removed for you); move it away, or choose another --out")
    target.mkdir(mode=0o700, exist_ok=True)
    os.chmod(target, 0o700)  # an empty folder used as it is: made like ours (a folder, checked above)
    st = os.lstat(target)
    fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{st.st_dev} {st.st_ino}\n")
    return target


def _mark(path: Path) -> tuple[int, int] | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            dev, ino = f.read(100).split()
        return int(dev), int(ino)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Copy:
    """One submission's bytes as this run read them: ``path`` (the private copy) and their sha256."""

    path: Path
    sha: str


class Copies:
    """A run's private folder of copies in ``out`` (0700), removed by ``remove`` (and a killed run's by the
    next run's ``Copies``: only folders of this prefix, which only a batch makes, holding the lock)."""

    def __init__(self, out: Path, limit: int):
        for old in out.glob(COPIES_PREFIX + "*"):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
        self.folder = Path(tempfile.mkdtemp(prefix=COPIES_PREFIX, dir=out))
        self.limit, self.count = limit, 0

    def take(self, path: Path) -> Copy | str:
        """Read ``path`` once (a regular file, no link followed, at most ``limit`` bytes), hash it and
        write the copy (same file name, in a folder of its own); or why it could not be read then.
        Only reading the student's file can fail that way; writing the copy failing is the grader's
        own trouble (an ``OSError`` raised)."""
        self.count += 1
        target = self.folder / str(self.count) / path.name
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            return f"could not be read when the batch came to it ({e.strerror or type(e).__name__}): not graded"
        h, size = hashlib.sha256(), 0
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                return "was no longer a regular file when the batch came to it: not graded"
            target.parent.mkdir(mode=0o700)
            with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as dst:
                while size <= self.limit:
                    try:
                        block = src.read(1 << 20)
                    except OSError as e:
                        shutil.rmtree(target.parent)
                        return f"could not be read to its end ({e.strerror or type(e).__name__}): not graded"
                    if not block:
                        break
                    size += len(block)
                    h.update(block)
                    dst.write(block)
        if size > self.limit:
            shutil.rmtree(target.parent)
            most = f"{self.limit >> 20} MB" if self.limit >= 1 << 20 else f"{self.limit} bytes"
            return f"grew past the {most} a submission may have while the batch read it: not graded"
        return Copy(target, h.hexdigest())

    def drop(self, copy: Copy) -> None:
        """Remove one copy that will not be graded (its result is already stored)."""
        shutil.rmtree(copy.path.parent, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
