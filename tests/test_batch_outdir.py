"""grader.batch.outdir: one batch per out folder, only what a batch made is removed, the bytes graded are hashed."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from grader.batch import outdir
from grader.errors import UsageError

_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from grader.batch import outdir
    outdir.hold(Path(sys.argv[1]))
    print("held", flush=True)
    time.sleep(120)
""")


def test_one_batch_per_out_folder_and_the_lock_dies_with_its_holder(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match=rf"another grade batch is using {out} \(pid {holder.pid} since "
                                             r"\d{4}-.*\); wait for it to finish, or choose another --out"):
            outdir.hold(out)
    finally:
        holder.send_signal(signal.SIGKILL)  # however it ends, the kernel drops its flock
        holder.wait(timeout=30)
    with outdir.hold(out) as held:
        assert (out / outdir.LOCK_FILE).read_text().startswith(f"pid {os.getpid()} since ")
    held.release()  # idempotent


def test_only_an_extracted_folder_a_batch_made_is_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    theirs = out / "extracted" / "keep.txt"
    theirs.parent.mkdir()
    theirs.write_text("the TA's")
    with pytest.raises(UsageError, match="is in the way: .* was not made by grade batch"):
        outdir.extraction_folder(out)
    assert theirs.read_text() == "the TA's"
    theirs.unlink()                                   # an empty folder holds nothing to lose: used as it is
    made = outdir.extraction_folder(out)
    (made / "a.py").write_text("x = 1")
    again = outdir.extraction_folder(out)             # the one a batch made: removed and made afresh
    assert again == made and list(again.iterdir()) == []
    (again / "b.py").write_text("x = 1")
    os.chmod(again, 0o755)                            # not as a batch made it (someone's, on a reused inode)
    with pytest.raises(UsageError, match="is in the way"):
        outdir.extraction_folder(out)
    os.chmod(again, 0o700)
    os.rename(again, out / "moved")                   # an "extracted" that is not the one marked
    (out / "extracted").mkdir()
    (out / "extracted" / "c.py").write_text("x = 1")
    with pytest.raises(UsageError, match="is in the way"):
        outdir.extraction_folder(out)
    target = tmp_path / "precious"
    target.mkdir()
    (target / "d.py").write_text("x = 1")
    (out / "extracted" / "c.py").unlink()
    (out / "extracted").rmdir()
    (out / "extracted").symlink_to(target)            # a link there is never followed nor removed
    with pytest.raises(UsageError, match="is in the way"):
        outdir.extraction_folder(out)
    assert (target / "d.py").exists() and (out / "moved" / "b.py").exists()


def test_a_copy_is_the_bytes_hashed_whatever_happens_to_the_file_after(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    leftover = out / (outdir.COPIES_PREFIX + "killed")  # a killed run's copies: removed by the next run
    leftover.mkdir()
    student = tmp_path / "alice.ipynb"
    student.write_bytes(b'{"cells": []}')
    copies = outdir.Copies(out, limit=1_000)
    assert not leftover.exists() and oct(copies.folder.stat().st_mode & 0o777) == "0o700"
    copy = copies.take(student)
    student.write_bytes(b"another section's notebook")  # changed after it was read
    assert copy.path.name == "alice.ipynb" and copy.path.read_bytes() == b'{"cells": []}'
    assert copy.sha == hashlib.sha256(b'{"cells": []}').hexdigest()
    big = tmp_path / "big.py"
    big.write_bytes(b"0" * 1_001)
    assert copies.take(big).startswith("grew past")
    link = tmp_path / "link.py"
    link.symlink_to(student)
    assert "could not be read" in copies.take(link) and "not graded" in copies.take(tmp_path / "gone.py")
    copies.drop(copy)
    assert not copy.path.exists()
    copies.remove()
    assert not copies.folder.exists()
