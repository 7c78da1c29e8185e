"""grader.execute.zygote's clean-up, on the host: what it removes, what it keeps, how long it may take."""
from __future__ import annotations

import os
import time

from grader.execute.zygote import _count_left, _empty, mounts_kept

MOUNTINFO = """\
22 1 0:20 / / rw - tmpfs tmpfs rw
30 22 0:30 / /tmp rw,nosuid - tmpfs tmpfs rw,size=262144k
31 30 8:1 /ci/venv /tmp/ci/venv ro,nosuid - ext4 /dev/sda1 ro
32 30 8:1 /my\\040env /tmp/my\\040env ro - ext4 /dev/sda1 ro
33 22 8:1 /root/.pyenv /root/.pyenv ro - ext4 /dev/sda1 ro
"""


def test_the_mounts_under_tmp_and_the_folders_on_the_way_are_kept():
    assert mounts_kept(MOUNTINFO) == {"/tmp/ci", "/tmp/ci/venv", "/tmp/my env"}
    assert mounts_kept("") == frozenset()


def test_everything_but_the_kept_folders_goes_and_what_is_left_is_counted(tmp_path):
    scratch = str(tmp_path)
    (tmp_path / "ci" / "venv").mkdir(parents=True)  # stands for a mount point (kept)
    (tmp_path / "ci" / "venv" / "torch.py").write_text("")
    (tmp_path / "ci" / "planted.py").write_text("")  # written beside the mount by a child
    (tmp_path / "deep" / "a" / "b").mkdir(parents=True)
    (tmp_path / "deep" / "a" / "b" / "f").write_text("x")
    (tmp_path / "top").write_text("x")
    os.symlink("/etc/passwd", tmp_path / "link")
    keep = frozenset({f"{scratch}/ci", f"{scratch}/ci/venv"})
    # ci/planted.py, deep, top, link, and ci/venv/torch.py: on the host ci/venv is no mount point, so
    # it is emptied like any folder (inside a sandbox a mount point is never entered)
    assert _count_left(scratch, keep) == 5
    _empty(scratch, keep, time.monotonic() + 5)
    assert sorted(os.listdir(tmp_path)) == ["ci"] and os.listdir(tmp_path / "ci") == ["venv"]
    assert _count_left(scratch, keep) == 0
    assert os.path.exists("/etc/passwd")


def test_the_removal_stops_at_its_deadline_and_what_it_left_is_counted(tmp_path):
    for i in range(50):
        (tmp_path / f"d{i}").mkdir()
        (tmp_path / f"d{i}" / "f").write_text("x")
    _empty(str(tmp_path), frozenset(), time.monotonic() - 1)  # already past
    assert _count_left(str(tmp_path), frozenset()) > 0
