"""The batch's results store (SQLite) and its gradebooks: resume, keys, kills, exact CSV text."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from grader.batch import gradebook as gb
from grader.batch import store as st
from grader.batch import entries as en
from grader.batch.entries import status_of
from grader.batch.store import Store, StoreError
from grader.errors import UsageError
from grader.model.outcomes import (CaseTimeout, Cause, Crashed, ErrorInfo, NotRun, Raised, Stopped, SubmissionTimeout,
                                   WrongAnswer)
from grader.model.result import CaseResult, Report

ROOT = Path(__file__).resolve().parents[1]
KEY = "mha:cases=abc:ref=def:grader=1"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_STOPS = {"case_timeout": CaseTimeout(3.0), "submission_timeout": SubmissionTimeout(60.0), "crashed": Crashed("SIGSEGV")}


def _stop(kind: str, scope: str = "case") -> Cause:
    return Stopped(_STOPS[kind], scope)


def report(*cases: CaseResult, problem: str | None = None, declared: float | None = None) -> Report:
    return Report("s.ipynb", "mha", tuple(cases), problem, declared_max_score=declared)


PASS_A = CaseResult("a", "SDPA: shapes", "SDPA", "passed", 1, 1)
PASS_B = CaseResult("b", "MHA: values", "MHA", "passed", 3, 3)
FAIL_B = CaseResult("b", "MHA: values", "MHA", "failed", 1.5, 3, "scores not scaled", cause=WrongAnswer())
TIMEOUT_B = CaseResult("b", "MHA: values", "MHA", "error", 0, 3, "timed out", cause=_stop("case_timeout"))
CRASH_B = CaseResult("b", "MHA: values", "MHA", "error", 0, 3, "crashed", cause=_stop("crashed"))
EXC_B = CaseResult("b", "MHA: values", "MHA", "error", 0, 3, "boom",
                   cause=Raised(ErrorInfo("RuntimeError"), "forward"))


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path) as s:
        yield s


# -- status ------------------------------------------------------------------------------------

@pytest.mark.parametrize("rep, expected", [
    (report(PASS_A, FAIL_B), "graded"),
    (report(PASS_A, EXC_B), "graded"),          # the student's exception is a verdict
    (report(), "graded"),
    (report(problem="not a notebook", declared=4), "unreadable"),
    (report(PASS_A, TIMEOUT_B), "timeout"),
    (report(dataclasses.replace(PASS_A, status="error", score=0, cause=_stop("submission_timeout", "top-level"))),
     "timeout"),
    (report(PASS_A, dataclasses.replace(FAIL_B, status="error", score=0, cause=NotRun("time"))),
     "timeout"),
    (report(PASS_A, CRASH_B), "error"),
    (report(PASS_A, dataclasses.replace(FAIL_B, status="error", score=0,
                                        cause=NotRun("restarts", 3))), "error"),
    (report(TIMEOUT_B, CRASH_B), "timeout"),    # the first that applies wins
])
def test_status_of(rep, expected):
    assert status_of(rep) == expected
    assert status_of(Report.from_dict(rep.to_dict())) == expected


# -- record, reopen, resume --------------------------------------------------------------------

def test_record_reopen_and_resume(tmp_path):
    rep = report(PASS_A, FAIL_B)
    with Store.open(tmp_path) as s:
        stored = s.record("1001", "Ada Lovelace", sha("a"), KEY, rep, seconds=1.5)
        assert stored.status == "graded" and stored.score == 2.5 and stored.max_score == 4
        assert s.done("1001", sha("a"), KEY)
        assert not s.done("1002", sha("a"), KEY)
    assert (tmp_path / st.STORE_NAME).exists()
    with Store.open(tmp_path / st.STORE_NAME) as s:
        assert s.done("1001", sha("a"), KEY)
        [row] = s.results(KEY)
        assert (row.student_id, row.name, row.file_sha, row.status, row.seconds) == \
            ("1001", "Ada Lovelace", sha("a"), "graded", 1.5)
        assert row.report.to_dict() == rep.to_dict()
        assert s.check() == ["ok"]
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == st.SCHEMA_VERSION


def test_what_was_handed_in_is_kept_bounded_and_noted_again_for_a_file_done(store):
    others = tuple(f"old{i}.ipynb" for i in range(st.MAX_OTHERS + 5))
    handed = st.Handed("doe_late_1_2_mha-2.ipynb\nx", late=True, resubmission=2, others=others)
    stored = store.record("1001", "Ada", sha("a"), KEY, report(PASS_A), seconds=1.0)
    assert stored.handed == st.Handed()  # record() keeps nothing of it; put() does
    entry = en.prepare(report(PASS_A), None, "")
    stored = store.put("1001", "Ada", sha("a"), KEY, entry, 1.0, handed)
    [row] = store.results(KEY)
    assert row.handed == stored.handed
    assert row.handed.file == "doe_late_1_2_mha-2.ipynb x" and row.handed.late and row.handed.resubmission == 2
    assert row.handed.others == others[:st.MAX_OTHERS] and row.handed.others_count == len(others)
    # the same file, renamed on time and alone, in a later export: the batch skips it as done and notes it
    store.note_handed(KEY, [("1001", sha("a"), st.Handed("doe_1_2_mha.ipynb"))])
    [row] = store.results(KEY)
    assert row.handed == st.Handed("doe_1_2_mha.ipynb") and row.report.to_dict() == report(PASS_A).to_dict()


def test_a_store_of_version_1_is_brought_up_to_date_with_its_results_kept(tmp_path):
    path = tmp_path / st.STORE_NAME
    conn = sqlite3.connect(path)
    v1 = st._SCHEMA.split("late        INTEGER")[0] + "UNIQUE (student_id, file_sha, grading_key));"
    conn.executescript(v1 + "CREATE INDEX results_latest ON results (grading_key, student_id, id);")
    conn.execute("INSERT INTO results (student_id, name, file_sha, grading_key, status, score, max_score, seconds,"
                 " report, trimmed, message, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                 ("1001", "Ada", sha("a"), KEY, "graded", 1, 1, 1.0, json.dumps(report(PASS_A).to_dict()), 0, "", 0))
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="older grader; run `grade batch` with this --out once"):
        Store.open(path, readonly=True)
    with Store.open(path) as s:
        assert s.done("1001", sha("a"), KEY)
        [row] = s.results(KEY)
        assert row.score == 1 and row.handed == st.Handed()
        s.put("1002", "Bob", sha("b"), KEY, en.prepare(report(PASS_A), None, ""), 1.0, st.Handed("b.ipynb", True))
    with Store.open(path, readonly=True) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == st.SCHEMA_VERSION
        assert [(r.student_id, r.handed.late) for r in s.results(KEY)] == [("1001", False), ("1002", True)]


def test_changed_file_or_key_is_not_done(store):
    store.record("1001", "Ada", sha("v1"), KEY, report(PASS_A))
    assert store.done("1001", sha("v1"), KEY)
    assert not store.done("1001", sha("v2"), KEY)            # the student changed the file
    assert not store.done("1001", sha("v1"), KEY + "+new-ref")  # the case file or reference changed
    store.record("1001", "Ada", sha("v2"), KEY, report(PASS_A, PASS_B))
    assert store.done("1001", sha("v2"), KEY)
    assert not store.done("1001", sha("v1"), KEY)            # an older file is not the grade any more
    [row] = store.results(KEY)
    assert row.file_sha == sha("v2") and row.score == 4
    store.record("1001", "Ada", sha("v1"), KEY, report(PASS_A))  # back to the first file: latest wins
    [row] = store.results(KEY)
    assert row.file_sha == sha("v1") and row.score == 1
    assert store.count() == 2


def test_results_are_latest_per_student_for_the_key_by_student_id(store):
    for sid in ("b", "a", "c"):
        store.record(sid, sid.upper(), sha(sid), KEY, report(PASS_A))
    store.record("a", "A", sha("a"), "other-key", report(PASS_A, PASS_B))
    assert [r.student_id for r in store.results(KEY)] == ["a", "b", "c"]
    assert [r.score for r in store.results("other-key")] == [4]
    store.record("b", "B", sha("b"), KEY, report(FAIL_B))     # regraded: replaces, not added
    assert [r.score for r in store.results(KEY)] == [1, 1.5, 1]
    assert store.count() == 4


def test_internal_errors_are_listed_and_never_done(store):
    store.record("1001", "Ada", sha("a"), KEY, None, status="internal", message="worker failed to start")
    assert not store.done("1001", sha("a"), KEY)
    [err] = store.errors()
    assert (err.student_id, err.status, err.report, err.score, err.message) == \
        ("1001", "internal", None, None, "worker failed to start")
    assert store.errors(KEY) == [err] and store.errors("other") == []
    assert [r.status for r in store.results(KEY)] == ["internal"]
    store.record("1001", "Ada", sha("a"), KEY, report(PASS_A))  # the next run regrades it
    assert store.done("1001", sha("a"), KEY) and store.errors() == []
    with pytest.raises(ValueError):
        store.record("1002", "Bob", sha("b"), KEY, None)        # no report, no status
    with pytest.raises(ValueError):
        store.record("1002", "Bob", sha("b"), KEY, None, status="graded")
    with pytest.raises(ValueError):
        store.record("1002", "Bob", sha("b"), KEY, report(PASS_A), status="fine")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.record("1002", "Bob", "not-a-hash", KEY, report(PASS_A))


def test_forget(store):
    for sid in ("1", "2", "3"):
        store.record(sid, "", sha(sid), KEY, report(PASS_A))
    store.record("1", "", sha("1"), "k2", report(PASS_A))
    assert store.forget(student_id="2") == 1
    assert not store.done("2", sha("2"), KEY) and store.done("1", sha("1"), KEY)
    assert store.forget(student_id="1", grading_key="k2") == 1
    assert store.done("1", sha("1"), KEY)
    assert store.forget() == 2
    assert store.results(KEY) == [] and store.count() == 0


def test_a_large_report_is_trimmed_and_keeps_its_scores(store, monkeypatch):
    monkeypatch.setattr(en, "MAX_REPORT_BYTES", 20_000)
    big = dataclasses.replace(FAIL_B, details="x" * 50_000, figures=({"name": "attention", "v": [0.5] * 5000},))
    stored = store.record("1", "", sha("1"), KEY, report(PASS_A, big))
    assert stored.trimmed and stored.status == "graded" and stored.score == 2.5
    assert "trimmed" in stored.message
    [row] = store.results(KEY)
    assert row.trimmed and row.report.score == 2.5 and row.report.cases[1].figures == ()
    assert len(row.report.cases[1].details) <= en.TRIMMED_TEXT
    monkeypatch.setattr(en, "MAX_REPORT_BYTES", 50)            # not even the bare verdicts fit
    stored = store.record("2", "", sha("2"), KEY, report(PASS_A, big))
    assert stored.status == "internal" and stored.report is None and "not stored" in stored.message
    assert not store.done("2", sha("2"), KEY)


def test_one_writer_at_a_time_and_readers_alongside(tmp_path):
    with Store.open(tmp_path) as s:
        s.record("1", "", sha("1"), KEY, report(PASS_A))
        with pytest.raises(StoreError, match="another batch"):
            Store.open(tmp_path)
        with Store.open(tmp_path, readonly=True) as r:
            assert [x.student_id for x in r.results(KEY)] == ["1"]
    with Store.open(tmp_path) as s:                             # the lock went with the first
        assert s.done("1", sha("1"), KEY)


def test_other_files_and_versions_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="not a results store"):
        Store.open(other)
    newer = tmp_path / "newer.sqlite"
    Store.open(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version={st.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer grader"):
        Store.open(newer)


def _foreign(path: Path, kind: str) -> None:
    if kind == "random bytes":
        path.write_bytes(random.Random(7).randbytes(8192))
    elif kind == "a link":
        (path.parent / "elsewhere.sqlite").write_bytes(b"")
        path.symlink_to(path.parent / "elsewhere.sqlite")
    else:
        conn = sqlite3.connect(path)
        if kind.endswith("in WAL mode"):
            conn.execute("PRAGMA journal_mode=WAL")
        table = "results" if kind.startswith("a table") else "t"
        conn.execute(f"CREATE TABLE {table} (id, student_id)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 2)")
        conn.commit()
        conn.close()


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.lstat().st_mtime_ns, b"" if p.is_symlink() else p.read_bytes()) for p in folder.iterdir()}


@pytest.mark.parametrize("kind", ["random bytes", "another program's SQLite", "another program's SQLite in WAL mode",
                                  "a table named results of other columns", "a link"])
def test_a_file_that_is_not_a_store_is_refused_before_a_byte_is_written(tmp_path, kind):
    path = tmp_path / st.STORE_NAME
    _foreign(path, kind)
    before = _files(tmp_path)
    with pytest.raises(st.StoreRefused, match="is not a results store of grade batch .*nothing in it was changed") as e:
        Store.open(tmp_path)
    assert isinstance(e.value, UsageError)  # exit 2: the person chooses another --out
    after = _files(tmp_path)
    assert after == {**before, "grades.sqlite.lock": after["grades.sqlite.lock"]}  # only our lock beside it
    with pytest.raises(st.StoreRefused):  # and it stays refused
        Store.open(tmp_path)


def test_refusals_are_usage_errors_and_an_empty_or_half_made_store_is_ours(tmp_path):
    with Store.open(tmp_path):
        with pytest.raises(UsageError, match="another batch is writing"):
            Store.open(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / st.STORE_NAME).write_bytes(b"")
    sqlite3.connect(empty / "x.sqlite").execute("PRAGMA journal_mode=WAL").fetchone()  # tables not written yet
    with Store.open(empty) as s, Store.open(empty / "x.sqlite") as t:
        assert s.count() == t.count() == 0


# -- SIGKILL at a random moment ------------------------------------------------------------------

N_KILL = 1000
_CHILD = textwrap.dedent("""
    import hashlib, sys
    from grader.batch.store import Store
    from grader.model.result import CaseResult, Report
    path, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Store.open(path) as s:
        for i in range(n):
            sid = f"s{i:04d}"
            file_sha = hashlib.sha256(sid.encode()).hexdigest()
            if s.done(sid, file_sha, key):
                continue
            cases = tuple(CaseResult(f"c{j}", f"case {j}", "T", "passed" if (i + j) % 3 else "failed",
                                     float((i + j) % 3 != 0), 1.0, details="d" * 300) for j in range(8))
            s.record(sid, f"Student {i}", file_sha, key, Report(sid + ".ipynb", "mha", cases), seconds=i / 10)
            print(sid, flush=True)
""")


def _expected_score(i: int) -> float:
    return float(sum((i + j) % 3 != 0 for j in range(8)))


def _child(path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(path), KEY, str(N_KILL)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)


def _check_complete(path: Path, committed: set[str]) -> set[str]:
    with Store.open(path) as s:
        assert s.check() == ["ok"]
        rows = s.results(KEY)
        ids = {r.student_id for r in rows}
        assert committed <= ids                      # nothing reported committed was lost
        for r in rows:                               # and every row is whole
            i = int(r.student_id[1:])
            assert r.status == "graded" and r.name == f"Student {i}" and r.seconds == i / 10
            assert r.report is not None and len(r.report.cases) == 8
            assert r.score == r.report.score == _expected_score(i)
            assert s.done(r.student_id, r.file_sha, KEY)
        assert s.count() == len(rows)
    return ids


def test_sigkill_at_a_random_moment_loses_and_corrupts_nothing(tmp_path):
    path = tmp_path / st.STORE_NAME
    rng = random.Random(os.getpid())
    committed: set[str] = set()
    before = killed = 0
    for attempt in range(6):
        child = _child(path)
        if attempt % 2:                              # any moment: starting, creating the store, writing
            time.sleep(rng.uniform(0.0, 0.4))
        else:                                        # while it writes
            first = child.stdout.readline().strip()
            if first:
                committed.add(first)
            time.sleep(rng.uniform(0.0, 0.1))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        killed += child.returncode == -signal.SIGKILL
        committed.update(line.strip() for line in out.splitlines() if line.strip())
        ids = _check_complete(path, committed)
        assert len(ids) >= before                    # each run resumed: nothing was undone
        before = len(ids)
    assert killed >= 3                               # most runs really were cut short
    child = _child(path)                             # the same command once more finishes the rest
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0
    assert set(out.split()).isdisjoint(committed)    # what was done was not done again
    assert _check_complete(path, committed) == {f"s{i:04d}" for i in range(N_KILL)}


# -- gradebooks ----------------------------------------------------------------------------------

COLUMNS = (gb.Column("a", "SDPA: shapes", 1), gb.Column("b", "MHA: values", 3),
           gb.Column("c", "MHA: grads", 2, "hidden"))


def _rows(tmp_path) -> list[st.StoredResult]:
    grads = CaseResult("c", "MHA: grads", "MHA", "passed", 2, 2, visibility="hidden")
    with Store.open(tmp_path) as s:
        s.record("1003", "=HYPERLINK(\"http://evil\",\"x\")", sha("3"), KEY, report(PASS_A, FAIL_B, grads))
        s.record("1001", "Lovelace, Ada", sha("1"), KEY, report(PASS_A, PASS_B, grads))
        s.record("-1002", "+Bob\x1b[31m", sha("2"), KEY, report(problem="not a notebook", declared=6))
        s.record("1004", "@Carol", sha("4"), KEY, report(PASS_A, TIMEOUT_B,
                                                          dataclasses.replace(grads, status="error", score=0)))
        s.record("1005", "Dan", sha("5"), KEY, None, status="internal", message="worker did not start")
        s.note_handed(KEY, [("1001", sha("1"), st.Handed("ada_late_1001_7_mha-2.ipynb", True, 2,
                                                         ("ada_late_1001_6_mha-1.ipynb", "=cmd.ipynb"))),
                            ("1003", sha("3"), st.Handed("=x.ipynb"))])
        return s.results(KEY)


def test_gradebook_csv_exact_text(tmp_path):
    rows = _rows(tmp_path)
    assert gb.gradebook_csv(rows, COLUMNS) == (
        "student_id,name,score,max_score,status,late,resubmission,file,files_not_graded,a,b,c\n"
        "'-1002,'+Bob\\x1b[31m,0,6,unreadable,,0,,,,,\n"
        "1001,\"Lovelace, Ada\",6,6,graded,yes,2,ada_late_1001_7_mha-2.ipynb,"
        "ada_late_1001_6_mha-1.ipynb; =cmd.ipynb,1,3,2\n"
        "1003,\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",4.5,6,graded,,0,'=x.ipynb,,1,1.5,2\n"
        "1004,'@Carol,1,6,timeout,,0,,,1,0,0\n"
        "1005,Dan,,,internal,,0,,,,,\n")
    assert gb.gradebook_csv(list(reversed(rows)), COLUMNS) == gb.gradebook_csv(rows, COLUMNS)


def test_points_and_columns(tmp_path):
    rows = _rows(tmp_path)
    assert gb.points_csv(COLUMNS) == ("case_id,name,visibility,max_score\n"
                                      "a,SDPA: shapes,public,1\n"
                                      "b,MHA: values,public,3\n"
                                      "c,MHA: grads,hidden,2\n")
    assert gb.columns_from_results(rows) == COLUMNS

    @dataclasses.dataclass
    class Case:  # the fields of grader.spec.cases.Case that the columns read
        id: str
        name: str
        points: float
        visibility: str = "public"

    assert gb.columns_from_cases([Case("a", "SDPA: shapes", 1), Case("b", "MHA: values", 3),
                                  Case("c", "MHA: grads", 2, "hidden")]) == COLUMNS


def test_canvas_import_csv(tmp_path):
    rows = _rows(tmp_path)
    assert gb.canvas_csv(rows, "Multi-headed attention", 4242) == (
        "Student,ID,SIS User ID,SIS Login ID,Section,Multi-headed attention (4242)\n"
        "'+Bob\\x1b[31m,'-1002,,,,\n"  # unreadable: the student must submit again, no 0 recorded
        "\"Lovelace, Ada\",1001,,,,6\n"
        "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",1003,,,,4.5\n"
        "'@Carol,1004,,,,1\n"
        "Dan,1005,,,,\n")
    text = gb.canvas_csv(rows[1:2], "MHA", id_column="SIS User ID")
    assert text == "Student,ID,SIS User ID,SIS Login ID,Section,MHA\n\"Lovelace, Ada\",,1001,,,6\n"
    with pytest.raises(ValueError):
        gb.canvas_csv(rows, "MHA", id_column="Section")


def test_canvas_import_names_the_column_and_the_students_as_canvas_does(tmp_path):
    """Canvas matches the column by name and id, and shows its own names: both from its gradebook export."""
    roster = tmp_path / "export.csv"
    roster.write_text("Student,ID,SIS User ID,SIS Login ID,Section,Multi-headed attention (123456)\n"
                      "    Points Possible,,,,,28\n"
                      "\"Lovelace, Ada (she/her)\",1001,A1,ada,Sec 1,\n"
                      "=cmd|' /C calc'!A0,1003,A3,x,Sec 1,\n"
                      "Nobody Graded,1999,A9,n,Sec 2,\n", encoding="utf-8")
    names = gb.CanvasNames("Multi-headed attention (123456)", gb.read_roster(roster))
    assert names.students == {"1001": "Lovelace, Ada (she/her)", "1003": "=cmd|' /C calc'!A0", "1999": "Nobody Graded"}
    text = gb.canvas_csv(_rows(tmp_path / "store"), "mha", names=names)
    assert text.splitlines()[0] == "Student,ID,SIS User ID,SIS Login ID,Section,Multi-headed attention (123456)"
    assert "\"Lovelace, Ada (she/her)\",1001,,,,6" in text.splitlines()
    assert "'=cmd|' /C calc'!A0,1003,,,,4.5" in text.splitlines()  # the roster's text is inert too
    assert "'@Carol,1004,,,,1" in text.splitlines()  # not in the roster: the name the file gave


@pytest.mark.parametrize("content", ["name,score\nAda,3\n", ""])
def test_a_roster_that_is_not_a_canvas_export_is_a_usage_error(tmp_path, content):
    from grader.errors import UsageError

    roster = tmp_path / "roster.csv"
    roster.write_text(content)
    with pytest.raises(UsageError, match="no Student and ID columns"):
        gb.read_roster(roster)
    with pytest.raises(UsageError, match="cannot read the roster"):
        gb.read_roster(tmp_path / "missing.csv")


def test_write_gradebooks(tmp_path):
    rows = _rows(tmp_path / "store")
    paths = gb.write_gradebooks(tmp_path / "out", rows, COLUMNS, "MHA", 7)
    assert [p.name for p in paths] == [gb.GRADEBOOK, gb.POINTS, gb.CANVAS]
    assert paths[0].read_text(encoding="utf-8") == gb.gradebook_csv(rows, COLUMNS)
    assert paths[2].read_text(encoding="utf-8").startswith("Student,ID,SIS User ID,SIS Login ID,Section,MHA (7)\n")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)


def test_a_store_being_created_reads_as_not_there_yet(tmp_path):
    import sqlite3

    path = tmp_path / "grades.sqlite"
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").fetchone()  # the file exists, no tables yet
    with pytest.raises(StoreError, match="no results store here yet"):
        Store.open(path, readonly=True)
