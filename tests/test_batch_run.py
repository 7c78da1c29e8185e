"""grade batch: a class graded into one store, resumed after SIGKILL to exactly the same gradebook."""
from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import browser
from conftest import ROOT, SUBMISSIONS, run_grade
from grader.batch.store import Store, StoreError

CLASS = {  # student id -> submission: correct, two known mistakes, the untouched template, a crash
    "alice": SUBMISSIONS / "mha" / "filled.ipynb",
    "bob": SUBMISSIONS / "mha" / "bug_sqrt_dfeat.py",
    "carol": ROOT / "assignments" / "mha" / "mha.ipynb",
    "dave": SUBMISSIONS / "mha" / "bug_softmax_dim1.py",
    "erin": SUBMISSIONS / "mha" / "bug_hardcoded_dk.py",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    for student, path in CLASS.items():
        shutil.copy(path, folder / f"{student}{path.suffix}")
    (folder / "README.txt").write_text("not a submission")
    return folder


@pytest.fixture(scope="module")
def uninterrupted(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), "-j", "2", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return out, p


def test_a_class_graded_into_a_gradebook_and_feedback(uninterrupted):
    out, p = uninterrupted
    rows = (out / "gradebook.csv").read_text().splitlines()
    assert rows[0].startswith("student_id,name,score,max_score,status,late,resubmission,file,files_not_graded,"
                              "sdpa-shape-3d,")
    scores = {r.split(",")[0]: r.split(",")[2] for r in rows[1:]}
    assert scores == {"alice": "28", "bob": "14", "carol": "0", "dave": "7", "erin": "27"}
    assert "5 submissions (folder layout), 5 graded now" in p.stdout and "README.txt" in p.stdout
    feedback = sorted(f.name for f in (out / "feedback").iterdir())
    assert len(feedback) == 20 and all(f.split("-")[0] in CLASS for f in feedback)
    erin = next((out / "feedback").glob("erin-*.txt")).read_text()
    assert "1 hidden case fails" in erin and "0.58649" not in erin  # students' feedback: the student view
    # each student's own file, the causes under its cells, for the student as well
    erin = next((out / "feedback").glob("erin-*.notebook.html")).read_text()
    assert 'id="cell-' in erin and "MultiHeadedAttention" in erin and "0.58649" not in erin and "<script" not in erin
    assert (out / "canvas_import.csv").is_file() and (out / "gradebook_points.csv").is_file()
    page = (out / "class.html").read_text()
    assert "<script" not in page and "scores divided by √d_feat" in page  # the class at a glance
    # a recognised mistake by its declared name, the table's heading not repeated in each row
    mistakes = page[page.index("<h2>Recognised mistakes</h2>"):page.index("<h2>Other causes")]
    assert "<td>scores divided by √d_feat instead of √d_head</td>" in mistakes and "Known mistake" not in mistakes
    assert "Pass rate per case" in p.stdout and "e.g. bob" in p.stdout
    summary = (out / "class.txt").read_text()  # what the workers did, as it happened, where the TA reads it
    assert "\nThis run: 5 graded\n" in summary and summary in p.stdout
    assert re.search(r"^workers: 2 warm slots, 2 zygotes started \(torch imported once in each\), [5-9] workers "
                     r"forked from them( for 5 submissions)?$", summary, re.M), summary
    flags = (out / "similarity.csv").read_text().splitlines()
    assert flags[0] == "student_a,student_b,similarity_a,similarity_b"
    assert "carol" not in "".join(flags)  # the untouched template is like no one (template code left out)
    [pair] = flags[1:]  # bob's notebook is alice's with one line changed: the pair on the class page too
    a, b, share_a, share_b = pair.split(",")
    share_a, share_b = f"{float(share_a):.0%}", f"{float(share_b):.0%}"
    assert (a, b) == ("alice", "bob")
    similar = page[page.index("<h2>Similar code (1 pair)</h2>"):]
    assert re.search(rf"<tr><td><a href='feedback/alice-[0-9a-f]{{8}}\.html'>alice</a></td><td class='num'>{share_a}"
                     rf"</td><td><a href='feedback/bob-[0-9a-f]{{8}}\.html'>bob</a></td><td class='num'>{share_b}</td>"
                     "</tr>", similar)
    assert f"\nSimilar code (1 pair; each one's share of code found in the other's)\n  alice ({share_a}) and bob " \
           f"({share_b})\n" in summary


def test_a_rerun_grades_nothing_again_and_a_changed_file_only_that_one(source, uninterrupted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(uninterrupted[0], out)
    [page] = (out / "feedback").glob("erin-*.notebook.html")  # as a run stopped before erin's feedback leaves it
    drawn, kept = page.read_text(), next((out / "feedback").glob("dave-*.notebook.html"))
    page.unlink()
    kept.write_text("drawn by the run that graded dave")
    again = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out))
    assert again.returncode == 0 and "0 graded now, 5 already in the store" in again.stdout
    assert "This run" not in (out / "class.txt").read_text() and "workers:" not in again.stdout
    assert page.read_text() == drawn  # drawn again from the bytes graded; a page there is not drawn again
    assert kept.read_text() == "drawn by the run that graded dave" and not list(out.glob(".grade-batch-copies-*"))
    changed = tmp_path / "class"
    shutil.copytree(source, changed)
    shutil.copy(SUBMISSIONS / "mha" / "filled.ipynb", changed / "carol.ipynb")  # carol resubmits, filled
    p = run_grade("batch", str(changed), "--assignment", "mha", "--out", str(out))
    assert p.returncode == 0 and "1 graded now, 4 already in the store" in p.stdout
    assert "carol,,28,28,graded" in (out / "gradebook.csv").read_text()
    one = run_grade("batch", str(changed), "--assignment", "mha", "--out", str(out), "--student", "bob", "--cold")
    assert "1 graded now, 0 already" in one.stdout
    assert "workers: a cold one per submission (torch imported for each): --cold was asked for" in one.stdout


def test_sigkill_at_any_moment_then_the_same_command_gives_the_same_gradebook(source, uninterrupted, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "grader", "batch", str(source), "--assignment", "mha", "--out", str(out),
               "-j", "1"]
    env = {**os.environ, "COLUMNS": "160"}
    for wait_for in (1, 3):  # killed after one result, then after three more were possible
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "grades.sqlite").exists():
                try:
                    with Store.open(out / "grades.sqlite", readonly=True) as store:
                        if store.count() >= wait_for:
                            break
                except StoreError:  # the batch created the file a moment ago and is writing its tables
                    pass
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    with Store.open(out / "grades.sqlite", readonly=True) as store:
        assert store.check() == ["ok"] and 1 <= store.count() < len(CLASS)
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), timeout=600)
    assert p.returncode == 0, p.stderr
    assert (out / "gradebook.csv").read_text() == (uninterrupted[0] / "gradebook.csv").read_text()
    assert (out / "canvas_import.csv").read_text() == (uninterrupted[0] / "canvas_import.csv").read_text()


def test_a_zip_of_the_class_is_the_same_class(source, uninterrupted, tmp_path):
    archive = shutil.make_archive(str(tmp_path / "export"), "zip", source)
    out = tmp_path / "out"
    shutil.copytree(uninterrupted[0], out)  # the same files, so nothing is graded again
    for _ in range(2):
        p = run_grade("batch", archive, "--assignment", "mha", "--out", str(out))
        assert p.returncode == 0 and "0 graded now, 5 already in the store" in p.stdout, p.stdout + p.stderr
    assert (out / "gradebook.csv").read_text() == (uninterrupted[0] / "gradebook.csv").read_text()


def test_usage_mistakes_exit_2(source, tmp_path):
    p = run_grade("batch", str(source), "--assignment", "nope", "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "unknown assignment 'nope'" in p.stderr
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(tmp_path / "o"), "--id-regex", "x+")
    assert p.returncode == 2 and "id" in p.stderr


# -- issue 19: one out folder, one batch; only the bytes hashed are graded; identity; caps ---------

SCORES = {"alice": "28", "bob": "14", "carol": "0", "dave": "7", "erin": "27"}


def scores_of(out) -> dict[str, str]:
    return {r.split(",")[0]: r.split(",")[2] for r in (out / "gradebook.csv").read_text().splitlines()[1:]}


def listing(folder) -> dict[str, tuple[int, int, bytes]]:
    """Every path under ``folder`` with its mtime, size and bytes (nothing of it changed when equal)."""
    return {str(p.relative_to(folder)): (p.lstat().st_mtime_ns, p.lstat().st_size,
                                         p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
            for p in sorted(folder.rglob("*"))}


def test_a_second_batch_into_an_out_in_use_is_refused_before_it_touches_anything(source, tmp_path):
    from grader.batch import outdir

    out = tmp_path / "out"
    archive = shutil.make_archive(str(tmp_path / "section2"), "zip", source)
    with outdir.hold(out):                                  # a batch (this process) is using out
        (out / "grades.sqlite").write_bytes(b"")            # its store, being created
        before = listing(out)
        p = run_grade("batch", archive, "--assignment", "mha", "--out", str(out))
        assert p.returncode == 2, p.stdout + p.stderr
        assert re.search(rf"another grade batch is using {re.escape(str(out))} \(pid {os.getpid()} since "
                         r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\); wait for it to finish, or choose another --out", p.stderr)
        assert "internal error" not in p.stderr and listing(out) == before  # no extracted/, nothing written
    p = run_grade("batch", archive, "--assignment", "mha", "--out", str(out), "--student", "carol")
    assert p.returncode == 0, p.stdout + p.stderr            # the lock went with its holder


def test_what_is_graded_is_the_bytes_whose_hash_is_stored(source, uninterrupted, tmp_path):
    """A file changed while the batch runs (another section's export unzipped over it, a sync) is graded
    as it was when hashed, never stored under the hash of other bytes; the next run grades the change."""
    import hashlib

    from grader.batch.run import STORE_FILE, BatchOptions, run_batch
    from grader.config import GradeConfig

    folder = tmp_path / "class"
    shutil.copytree(source, folder)
    original = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.suffix != ".txt"}
    swaps = {"bob.py": "bug_softmax_dim1.py", "dave.py": "bug_sqrt_dfeat.py", "erin.py": "bug_softmax_dim1.py"}

    def overwrite_the_rest(student_id, stored, done, total):
        if done == 1:  # the first result: every other file changes under the batch
            for name, other in swaps.items():
                shutil.copy(SUBMISSIONS / "mha" / other, folder / name)

    out = tmp_path / "out"
    result = run_batch(folder, "mha", out, GradeConfig(root=ROOT), BatchOptions(jobs=1, warm=False), overwrite_the_rest)
    assert result.graded == tuple(sorted(CLASS)) and not result.internal
    assert scores_of(out) == SCORES
    from grader.batch.run import grading_key
    from grader.course.assignments import get_assignment
    from grader.course.resolve import resolve_course

    with Store.open(out / STORE_FILE, readonly=True) as store:
        key = grading_key(get_assignment(resolve_course(ROOT), "mha"))
        assert {r.student_id: r.file_sha for r in store.results(key)} == original
    assert not list(out.glob(".grade-batch-copies-*"))      # the run's private copies are gone
    page = next((out / "feedback").glob("dave-????????.html")).read_text()
    assert "Feedback on dave.py" in page and str(folder) not in page and "grade-batch-copies" not in page  # their file
    page = next((out / "feedback").glob("dave-*.notebook.html")).read_text()  # the copy's cells, under their name
    assert "Feedback: dave.py" in page and str(folder) not in page and "grade-batch-copies" not in page
    again = run_grade("batch", str(folder), "--assignment", "mha", "--out", str(out), "--cold")
    assert again.returncode == 0 and "3 graded now, 2 already in the store" in again.stdout
    assert scores_of(out) == {**SCORES, "bob": "7", "dave": "14", "erin": "7"}


def test_ctrl_c_just_after_a_result_is_stored_counts_it(source, uninterrupted, tmp_path):
    """The signal can come between the store's commit and anything the caller counts: the words after
    Ctrl-C are read from the store once the grading stopped, so they match what the next run finds."""
    from grader.batch.run import BatchOptions, Interrupted, run_batch
    from grader.config import GradeConfig

    out = tmp_path / "out"
    shutil.copytree(uninterrupted[0], out)
    with Store.open(out / "grades.sqlite") as store:
        store.forget(student_id="bob")
        store.forget(student_id="dave")

    def ctrl_c(student_id, stored, done, total):
        raise KeyboardInterrupt  # the first result is committed; nothing after it has run

    with pytest.raises(Interrupted) as stop:
        run_batch(source, "mha", out, GradeConfig(root=ROOT), BatchOptions(jobs=1, warm=False), ctrl_c)
    assert (stop.value.graded_now, stop.value.in_store, stop.value.total) == (1, 4, 5)
    again = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), "--cold")
    assert again.returncode == 0 and "1 graded now, 4 already in the store" in again.stdout, again.stdout


def test_a_folder_batch_never_removes_an_extracted_folder_it_did_not_make(source, uninterrupted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(uninterrupted[0], out)
    mine = out / "extracted" / "my notes.txt"
    mine.parent.mkdir()
    mine.write_text("the TA's own")
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out))
    assert p.returncode == 0 and mine.read_text() == "the TA's own"
    archive = shutil.make_archive(str(tmp_path / "export"), "zip", source)
    p = run_grade("batch", archive, "--assignment", "mha", "--out", str(out))
    assert p.returncode == 2 and f"{out / 'extracted'} is in the way" in p.stderr and mine.read_text() == "the TA's own"
    mine.unlink()
    mine.parent.rmdir()
    for _ in range(2):  # the folder a batch made is its own to extract afresh
        p = run_grade("batch", archive, "--assignment", "mha", "--out", str(out))
        assert p.returncode == 0 and "0 graded now, 5 already in the store" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("kind", ["random bytes", "another program's SQLite", "another program's SQLite in WAL mode"])
def test_a_grades_sqlite_that_is_not_ours_is_refused_untouched(source, tmp_path, kind):
    import sqlite3

    out = tmp_path / "out"
    out.mkdir()
    foreign = out / "grades.sqlite"
    if kind == "random bytes":
        foreign.write_bytes(os.urandom(8192))
    else:
        conn = sqlite3.connect(foreign)
        if kind.endswith("WAL mode"):
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE invoices (n INTEGER, total REAL)")
        conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
        conn.commit()
        conn.close()
    before = listing(out)
    p = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out))
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"{foreign} is not a results store of grade batch" in p.stderr and "nothing in it was changed" in p.stderr
    after = listing(out)
    assert after["grades.sqlite"] == before["grades.sqlite"]
    assert not {"grades.sqlite-wal", "grades.sqlite-shm", "feedback", "gradebook.csv"} & set(after)


def test_one_students_20001_files_hold_up_no_one_else(source, uninterrupted, tmp_path):
    folder = tmp_path / "class"
    shutil.copytree(source, folder)
    crowd = folder / "mallory" / "venv"
    crowd.mkdir(parents=True)
    for i in range(20_001):
        (crowd / f"f{i}.py").touch()
    shutil.copy(SUBMISSIONS / "mha" / "filled.ipynb", folder / "mallory" / "mha.ipynb")
    out = tmp_path / "out"
    shutil.copytree(uninterrupted[0], out)
    p = run_grade("batch", str(folder), "--assignment", "mha", "--out", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "5 submissions (folder layout), 0 graded now, 5 already in the store" in p.stdout
    assert f"skipped {folder / 'mallory'}: holds more than 2000 files and folders" in p.stdout
    summary = (out / "class.txt").read_text()
    assert "\nNot graded (1 student: see why, put it right, run again)\n  mallory: mallory: holds more than 2000" \
        in summary
    assert "Not graded (1 student)" in (out / "class.html").read_text() and scores_of(out) == SCORES


def test_gradescope_a_students_own_metadata_cannot_take_anothers_row(tmp_path):
    """Issue 19: Mallory hands in a submission_metadata.yml naming Bob, and a blank notebook."""
    export = tmp_path / "export" / "assignment_7_export"
    (export / "submission_1").mkdir(parents=True)
    (export / "submission_2").mkdir()
    (export / "submission_metadata.yml").write_text(
        "submission_1:\n  :submitters:\n  - :name: Bob\n    :sid: '2001'\n"
        "submission_2:\n  :submitters:\n  - :name: Mallory\n    :sid: '3003'\n")
    shutil.copy(SUBMISSIONS / "mha" / "filled.ipynb", export / "submission_1" / "mha.ipynb")
    shutil.copy(ROOT / "assignments" / "mha" / "mha.ipynb", export / "submission_2" / "mha.ipynb")
    (export / "submission_2" / "submission_metadata.yml").write_text(":submitters:\n- :name: Bob\n  :sid: '2001'\n")
    out = tmp_path / "out"
    p = run_grade("batch", str(tmp_path / "export"), "--assignment", "mha", "--out", str(out), "--cold", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 submissions (gradescope layout)" in p.stdout and "the student's own submission_metadata.yml" in p.stdout
    rows = (out / "gradebook.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:3] for r in rows] == [["2001", "Bob", "28"], ["3003", "Mallory", "0"]]


def test_a_conflict_is_reported_where_the_ta_reads_and_graded_as_no_one(source, uninterrupted, tmp_path):
    folder = tmp_path / "class"
    shutil.copytree(source, folder)
    (folder / "alice").mkdir()                                # a second entry that says it is alice
    shutil.copy(ROOT / "assignments" / "mha" / "mha.ipynb", folder / "alice" / "mha.ipynb")
    out = tmp_path / "out"
    shutil.copytree(uninterrupted[0], out)
    p = run_grade("batch", str(folder), "--assignment", "mha", "--out", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "4 submissions (folder layout)" in p.stdout and "1 students claimed by more than one entry" in p.stdout
    assert "conflict over student alice: 2 entries claim this student (alice, alice.ipynb): none is graded" in p.stdout
    assert "\n  alice: 2 entries claim this student" in (out / "class.txt").read_text()
    assert "alice" not in scores_of(out) and "alice" in (out / "class.html").read_text()


@pytest.mark.parametrize("when, mode", [("after a result", "--cold"), ("after a result", "--regrade"),
                                        ("while starting", "--regrade"), ("while loading", "--regrade")])
def test_ctrl_c_in_a_terminal_says_what_was_saved_and_the_same_command_resumes(source, uninterrupted, tmp_path,
                                                                               when, mode):
    """Ctrl-C reaches every process of the terminal's foreground group: the batch says what it saved and
    that the same command resumes, with no traceback from any process, exits 130, leaves nothing running,
    and the same command then grades the rest into the same gradebook."""
    import sqlite3
    import uuid

    from test_hostile import tagged_processes

    def stored() -> int:
        try:
            with sqlite3.connect(f"{(out / 'grades.sqlite').as_uri()}?mode=ro", uri=True) as db:
                return db.execute("SELECT count(*) FROM results").fetchone()[0]
        except sqlite3.Error:
            return 0

    out, tag = tmp_path / "out", f"ctrlc{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "GRADER_RUN_TAG": tag, "COLUMNS": "160"}
    batch = subprocess.Popen([sys.executable, "-m", "grader", "batch", str(source), "--assignment", "mha", "--out",
                              str(out), "-j", "2", mode], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)  # a terminal's group
    try:
        deadline = time.monotonic() + 300
        if when == "while loading":  # the command still importing
            time.sleep(0.12)
        while when == "while starting" and not (out / "grades.sqlite").is_file() and batch.poll() is None:
            assert time.monotonic() < deadline  # the store open: its processes importing, zygotes starting
            time.sleep(0.02)
        if when == "while starting":
            time.sleep(0.2)
        while when == "after a result" and (not (out / "grades.sqlite").is_file() or stored() == 0) \
                and batch.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(batch.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        stdout, stderr = batch.communicate(timeout=120)
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
            batch.wait()
    # 130; or, when the signal comes as Python itself shuts down, the end by SIGINT that a shell shows as 130 too
    assert batch.returncode == 130 or (when == "while loading" and batch.returncode == -signal.SIGINT), stdout + stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr and "Aborted" not in stderr, stderr
    saved = stored()
    assert saved < len(CLASS) and (saved > 0 or when != "after a result"), saved
    said = (f"saved in {out / 'grades.sqlite'} ({saved} of {len(CLASS)} in the store); run the same command again "
            "to grade the rest" if saved else "grade: interrupted before this run graded a submission; run the same "
            "command again to grade them")
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert said in stderr or (when == "while loading" and stderr.strip() == "grade: interrupted"), stderr  # not begun
    time.sleep(0.3)
    assert tagged_processes(tag) == []
    again = run_grade("batch", str(source), "--assignment", "mha", "--out", str(out), "-j", "2", timeout=600)
    assert again.returncode == 0 and f"{len(CLASS) - saved} graded now, {saved} already in the store" in again.stdout
    assert (out / "gradebook.csv").read_text() == (uninterrupted[0] / "gradebook.csv").read_text()


def test_the_canvas_upload_file_as_canvas_names_things(source, uninterrupted, tmp_path):
    """--canvas-column and --roster: the column Canvas matches and the names it shows; an unreadable
    notebook's cell is left empty (a 0 would be recorded as the student's grade)."""
    out = tmp_path / "out"
    shutil.copytree(uninterrupted[0], out)
    folder = tmp_path / "class"
    shutil.copytree(source, folder)
    (folder / "frank.ipynb").write_text("{ not a notebook")
    roster = tmp_path / "canvas-export.csv"
    roster.write_text("Student,ID,SIS User ID,SIS Login ID,Section,Multi-headed attention (123456)\n"
                      "    Points Possible,,,,,28\nBob Builder,bob,B1,bob,S1,\nFrank Ocean,frank,F1,frank,S1,\n")
    p = run_grade("batch", str(folder), "--assignment", "mha", "--out", str(out), "--canvas-column",
                  "Multi-headed attention (123456)", "--roster", str(roster))
    assert p.returncode == 0 and "1 graded now, 5 already in the store" in p.stdout, p.stdout + p.stderr
    lines = (out / "canvas_import.csv").read_text().splitlines()
    assert lines[0] == "Student,ID,SIS User ID,SIS Login ID,Section,Multi-headed attention (123456)"
    assert any(re.fullmatch(r"Bob Builder,bob,,,,\d+(\.\d+)?", line) for line in lines), lines
    assert "Frank Ocean,frank,,,," in lines, lines  # unreadable: no grade uploaded
    bad = run_grade("batch", str(folder), "--assignment", "mha", "--out", str(out), "--roster", str(folder / "README.txt"))
    assert bad.returncode == 2 and "no Student and ID columns" in bad.stderr, bad.stderr


def test_the_class_page_lists_every_student_and_who_needs_attention(source, uninterrupted, tmp_path):
    """class.html answers "who needs me": a row per student (score, status, main cause, a link to their
    feedback page that exists), and the students to look at first (an unreadable notebook), checked in
    a real browser when there is one."""
    out = tmp_path / "out"
    shutil.copytree(uninterrupted[0], out)
    folder = tmp_path / "class"
    shutil.copytree(source, folder)
    (folder / "frank.ipynb").write_text("{ not a notebook")
    assert run_grade("batch", str(folder), "--assignment", "mha", "--out", str(out)).returncode == 0
    page = (out / "class.html").read_text()
    students = page[page.index("<h2>Students (6)</h2>"):]
    for sid in [*CLASS, "frank"]:
        link = re.search(rf"<td>{sid}</td>.*?<a href='(feedback/{sid}-[0-9a-f]{{8}}\.html)'>", students)
        assert link and (out / link.group(1)).is_file(), sid
    assert re.search(r"<tr class='trouble'><td>frank</td><td></td><td class='num'>0/28</td><td>unreadable</td>",
                     students)
    assert "Rates are of the students each case was graded for: 1 student of 6 had no case graded" in page
    assert "1 student of 6 had no case graded" in " ".join((out / "class.txt").read_text().split())
    attention = page[page.index("<h2>Needs attention (3 students)</h2>"):page.index("<h2>Similar code")]
    why = dict(re.findall(r"<tr><td>(\w+)</td><td>([^<]*)</td>", attention))
    assert set(why) == {"alice", "bob", "frank"} and why["frank"] == "the file could not be read: ask for it again"
    assert re.fullmatch(r"similar code: \d+% shared with bob", why["alice"]), why
    if browser.AVAILABLE:  # as a TA's browser shows it (the layout: tests/test_class_page_browser.py)
        with browser.browser() as b:
            shown = b.open(out / "class.html", ["table.students tbody tr", "table.attention tbody tr"], width=1024)
        rows = shown.boxes["table.students tbody tr"]
        assert len(rows) == 6 and all(r.text.startswith(s) and r.height > 0 for r, s in zip(rows, [*CLASS, "frank"]))
        assert len(shown.boxes["table.attention tbody tr"]) == 3 and shown.scripts == 0 and shown.fetched == ()
        assert shown.scroll_width <= shown.client_width


def test_late_work_and_resubmissions_reach_every_output(tmp_path):
    """A Canvas export: a late upload and a resubmission. The late flag, the file graded and the older
    upload not graded are in the store, gradebook.csv, class.txt, class.html and the skipped files; the
    same bytes handed in again on time are not graded again, and the late flag goes."""
    folder, out = tmp_path / "canvas", tmp_path / "out"
    folder.mkdir()
    shutil.copy(SUBMISSIONS / "mha" / "filled.ipynb", folder / "smithjohn_late_101_5001_mha.ipynb")
    shutil.copy(SUBMISSIONS / "mha" / "bug_sqrt_dfeat.py", folder / "doejane_102_5002_mha.py")
    shutil.copy(SUBMISSIONS / "mha" / "correct_einsum.py", folder / "doejane_102_5003_mha-1.py")
    p = run_grade("batch", str(folder), "--assignment", "mha", "--out", str(out), "-j", "2")
    assert p.returncode == 0 and "2 submissions (canvas layout), 2 graded now" in p.stdout, p.stdout + p.stderr
    assert "already in the store; 1 file skipped" in p.stdout, p.stdout
    assert ("skipped " + str(folder / "doejane_102_5002_mha.py") + ": an older upload (the first upload); "
            "doejane_102_5003_mha-1.py, resubmission 1, was graded instead") in p.stdout, p.stdout
    rows = {r[0]: r for r in csv.reader((out / "gradebook.csv").open())}
    head = rows["student_id"]
    jane, john = (dict(zip(head, rows[i])) for i in ("102", "101"))
    assert (john["late"], john["resubmission"], john["file"], john["files_not_graded"]) == \
        ("yes", "0", "smithjohn_late_101_5001_mha.ipynb", "")
    assert (jane["late"], jane["resubmission"], jane["file"], jane["files_not_graded"], jane["score"]) == \
        ("", "1", "doejane_102_5003_mha-1.py", "doejane_102_5002_mha.py", "28")
    with Store.open(out, readonly=True) as store:
        handed = {r.student_id: r.handed for r in store.results(store_key(store))}
    assert handed["101"].late and handed["102"].resubmission == 1 and handed["102"].others_count == 1
    text = " ".join((out / "class.txt").read_text().split())
    assert "Late: 1 student: 101" in text and "Resubmitted: 1 student, the latest upload graded: 102" in text, text
    assert "Files not graded: 1 (older uploads and other files: gradebook.csv, column files_not_graded)" in text
    page = (out / "class.html").read_text()
    students = page[page.index("<h2>Students (2)</h2>"):]
    assert re.search(r"<td>101</td>.*?<span class='late'>late</span>", students)
    assert re.search(r"<td>102</td>.*?doejane_102_5003_mha-1\.py.*?resubmission 1.*?1 other file not graded",
                     students)
    # the same bytes, handed in again on time: nothing graded, the late flag gone
    (folder / "smithjohn_late_101_5001_mha.ipynb").rename(folder / "smithjohn_101_5004_mha.ipynb")
    p = run_grade("batch", str(folder), "--assignment", "mha", "--out", str(out))
    assert p.returncode == 0 and "0 graded now, 2 already in the store" in p.stdout, p.stdout + p.stderr
    rows = {r[0]: dict(zip(head, r)) for r in csv.reader((out / "gradebook.csv").open())}
    assert (rows["101"]["late"], rows["101"]["file"]) == ("", "smithjohn_101_5004_mha.ipynb")
    assert "Late:" not in (out / "class.txt").read_text()


def store_key(store) -> str:
    return store._conn.execute("SELECT grading_key FROM results LIMIT 1").fetchone()[0]
