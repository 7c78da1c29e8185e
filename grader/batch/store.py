"""A batch's results, kept in SQLite under the batch's out folder as each submission finishes.

One file, ``DIR/grades.sqlite``, written by one process (the batch's parent); workers never touch
it. A result is keyed by content hashes: the student's id, the sha256 of the submission file and
the *grading key* (a string the caller derives from what decides a grade: the case file, the
reference, the grader's version). A re-run asks ``done`` before grading a submission, so a changed
file or grading key is graded again and nothing else is.

Each ``record`` is one transaction: after it returns, the result survives the process being killed
(SIGKILL included) at any later moment; before it returns, a kill leaves no trace of it. The
report is stored whole as JSON (``Report.to_dict``) and read back with ``Report.from_dict``.

Schema (version ``SCHEMA_VERSION``, kept in SQLite's ``PRAGMA user_version``)::

    results(id INTEGER PRIMARY KEY AUTOINCREMENT,   -- order of recording: the latest wins
            student_id, name, file_sha, grading_key,
            status,          -- one of STATUSES (see ``status_of``)
            score, max_score, seconds,
            report,          -- Report.to_dict() as JSON; NULL when there is none (internal)
            trimmed,         -- 1 when the report was cut down to fit MAX_REPORT_BYTES
            message,         -- why there is no report / why it was trimmed / the internal error
            recorded_at,     -- Unix time, for people; nothing orders by it
            late,            -- 1 when the LMS marked the upload late (see ``Handed``)
            resubmission,    -- which upload was graded: 0 the first, N the LMS's -N resubmission
            file_name,       -- the file graded, as the source names it
            others,          -- JSON list of the student's files not graded (at most MAX_OTHERS names)
            others_count)    -- how many files of theirs were not graded
    UNIQUE(student_id, file_sha, grading_key)

A store of version 1 (before the last five columns) is brought up to date when a batch opens it to
write (its results kept, each with no late flag and no file named); read-only, it is refused.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import time
from dataclasses import dataclass
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from grader.errors import GraderError, UsageError
from grader.model.result import Report
from grader.batch.entries import STATUSES, Entry, Status, prepare
from grader.model.text import safe_text

#: The store's file name inside a batch's out folder.
STORE_NAME = "grades.sqlite"
#: Bumped whenever the tables change; a store of a newer version is refused, never guessed at (an older
#: one in ``_UPGRADES`` is brought up to date).
SCHEMA_VERSION = 2
#: Older versions a batch brings up to date in place (each: the statements that do it).
_UPGRADES = {1: ("ALTER TABLE results ADD COLUMN late INTEGER NOT NULL DEFAULT 0",
                 "ALTER TABLE results ADD COLUMN resubmission INTEGER NOT NULL DEFAULT 0",
                 "ALTER TABLE results ADD COLUMN file_name TEXT NOT NULL DEFAULT ''",
                 "ALTER TABLE results ADD COLUMN others TEXT NOT NULL DEFAULT '[]'",
                 "ALTER TABLE results ADD COLUMN others_count INTEGER NOT NULL DEFAULT 0")}
#: The most names of a student's files not graded kept with a result (``others_count`` counts them all).
MAX_OTHERS = 20
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")

_SCHEMA = f"""
CREATE TABLE results (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    student_id  TEXT    NOT NULL CHECK (length(student_id) > 0),
    name        TEXT    NOT NULL,
    file_sha    TEXT    NOT NULL,
    grading_key TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    score       REAL,
    max_score   REAL,
    seconds     REAL    NOT NULL,
    report      TEXT,
    trimmed     INTEGER NOT NULL DEFAULT 0,
    message     TEXT    NOT NULL DEFAULT '',
    recorded_at REAL    NOT NULL,
    late        INTEGER NOT NULL DEFAULT 0,
    resubmission INTEGER NOT NULL DEFAULT 0,
    file_name   TEXT    NOT NULL DEFAULT '',
    others      TEXT    NOT NULL DEFAULT '[]',
    others_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (student_id, file_sha, grading_key)
);
CREATE INDEX results_latest ON results (grading_key, student_id, id);
"""


class StoreError(GraderError):
    """The store cannot be used: another batch writes it, it is of another version, or it is damaged."""


class StoreRefused(StoreError, UsageError):
    """The file at the store's path is not one this batch may write, and nothing of it was changed:
    another batch holds it, it is not a results store (random bytes, another program's SQLite file,
    a link), or a store of another version. The person chooses another ``--out`` (exit 2)."""


@dataclass(frozen=True)
class Handed:
    """What the student handed in, kept beside their result: the file graded (``file``, as the source
    names it), whether the LMS marked it ``late``, which upload it was (``resubmission``: 0 for the
    first, N for the LMS's ``-N``), and their files that were not graded (``others``: at most
    ``MAX_OTHERS`` names; ``others_count``: how many there were)."""

    file: str = ""
    late: bool = False
    resubmission: int = 0
    others: tuple[str, ...] = ()
    others_count: int = 0

    @classmethod
    def of(cls, file: str, late: bool = False, resubmission: int = 0, others: tuple[str, ...] = ()) -> Handed:
        """The record kept of these facts (``kept``)."""
        return cls(file, late, resubmission, tuple(others)).kept()

    def kept(self) -> Handed:
        """As the store keeps it: texts made safe and single-line, at most ``MAX_OTHERS`` names of others
        (``others_count`` still counts them all, so keeping a kept record changes nothing)."""
        return Handed(safe_text(self.file, one_line=True), bool(self.late), max(0, int(self.resubmission)),
                      tuple(safe_text(o, one_line=True) for o in self.others[:MAX_OTHERS]),
                      max(self.others_count, len(self.others)))


@dataclass(frozen=True)
class StoredResult:
    """One stored result, as ``Store.results`` and ``Store.errors`` return it."""

    student_id: str
    name: str
    file_sha: str
    grading_key: str
    status: Status
    #: None for an internal error (there is no grade)
    score: float | None
    max_score: float | None
    seconds: float
    #: None for an internal error, or a report too large even to trim
    report: Report | None
    #: True when the report was cut down to fit ``MAX_REPORT_BYTES`` (its scores are whole)
    trimmed: bool = False
    message: str = ""
    recorded_at: float = 0.0
    #: the file graded, late or not, which upload, the files not graded
    handed: Handed = Handed()


class Store:
    """A batch's results. Use ``Store.open(path)``, as a context manager, from one process only.

    ``open`` takes an exclusive lock on ``<path>.lock`` (``flock``, released by the kernel when the
    process ends, however it ends), so a second batch writing the same folder is told so at once
    instead of interleaving with the first. ``readonly=True`` opens without the lock, to read
    results while a batch runs.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, lock_fd: int | None) -> None:
        self._conn = conn
        self.path = path
        self._lock_fd = lock_fd

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], readonly: bool = False) -> Store:
        """Open (creating it, and its folder, when missing) the store at ``path``.

        A folder is taken to be a batch's out folder: the store is ``STORE_NAME`` inside it.
        Raises ``StoreRefused`` (a usage error; the file is left exactly as it was) when another
        process holds the store for writing, or when the file is not a store of this version (its
        header and tables are read, read-only, before anything is written); ``StoreError`` when
        SQLite cannot keep it in WAL mode.
        """
        p = Path(path)
        if p.is_dir():
            p = p / STORE_NAME
        if readonly:
            if not p.exists():
                raise StoreError(f"{p}: no results store here (has a batch been run with this --out?)")
            conn = _connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
            return cls(conn, p, None)._checked_version()
        p.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(p.with_name(p.name + ".lock"))
        try:
            _vet(p)  # read-only: a file that is not ours is refused before a byte of it is written
            conn = _connect(str(p))
            # WAL: a commit appends to the write-ahead log and readers never block the writer. A
            # crash of the process at any moment (SIGKILL included) leaves every committed
            # transaction in the log and every uncommitted one ignored on the next open.
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{p}: SQLite cannot keep this file in WAL mode (got {mode!r}); "
                                 "put --out on a local file system")
            # FULL, not NORMAL: NORMAL already keeps every commit through a SIGKILL (the log is in
            # the OS's page cache once the commit returns), but may lose the last commits on a
            # power cut or an OS crash. FULL adds one fsync of the log per commit, which is one
            # per submission, a few milliseconds beside the grading itself, and makes a result
            # that was reported done survive the machine dying too.
            conn.execute("PRAGMA synchronous=FULL")
            store = cls(conn, p, lock_fd)
            store._create_or_check()
            return store
        except BaseException:
            _unlock(lock_fd)
            raise

    def close(self) -> None:
        """Close the database and release the writer's lock (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            _unlock(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:  # noqa: PYI034 (Self needs Python 3.11; 3.10 is supported)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _create_or_check(self) -> None:
        with self._transaction():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if tables:
                    raise StoreRefused(_not_ours(self.path, "another program's SQLite file"))
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version in _UPGRADES:
                for statement in _UPGRADES[version]:
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise StoreRefused(_version_message(self.path, version))

    def _checked_version(self) -> Store:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and not self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            self.close()  # created a moment ago by a batch that has not written its tables yet
            raise StoreError(f"{self.path}: no results store here yet (a batch may be creating it); try again")
        if version != SCHEMA_VERSION:
            self.close()
            raise StoreError(_version_message(self.path, version))
        return self

    # -- writing -------------------------------------------------------------------------------

    def record(self, student_id: str, name: str, file_sha: str, grading_key: str, report: Report | None,
               status: Status | None = None, seconds: float = 0.0, message: str = "") -> StoredResult:
        """Store one submission's result, in one transaction; the latest result of a student wins.

        ``status`` defaults to ``status_of(report)``; pass ``"internal"`` (with ``report=None`` and
        the error in ``message``) when the grader itself failed: such a result is listed by
        ``errors`` and never counts as ``done``. A result for the same student, file and key
        replaces the old one. A report whose JSON exceeds ``MAX_REPORT_BYTES`` is trimmed (long
        texts cut, figures dropped; scores untouched) and flagged ``trimmed``; one still too large
        after that is not stored: the result becomes ``internal``, saying why. The same as
        ``put(..., prepare(report, status, message), seconds)``.
        """
        return self.put(student_id, name, file_sha, grading_key, prepare(report, status, message), seconds)

    def put(self, student_id: str, name: str, file_sha: str, grading_key: str, entry: "Entry",
            seconds: float = 0.0, handed: Handed = Handed()) -> StoredResult:
        """Store a result made ready by ``prepare`` (perhaps in another process), in one transaction,
        with what the student handed in (``handed``)."""
        _check_key(student_id, file_sha, grading_key)
        if not isinstance(entry, Entry) or entry.status not in STATUSES:
            raise ValueError("put() takes an Entry made by prepare()")
        handed = handed.kept()
        row = (student_id, safe_text(name, one_line=True), file_sha, grading_key, entry.status, entry.score,
               entry.max_score, float(seconds), entry.text, int(entry.trimmed), safe_text(entry.message), time.time(),
               *_handed_columns(handed))
        with self._transaction():
            # delete then insert, so the new row gets the highest id: the student's latest result
            self._conn.execute("DELETE FROM results WHERE student_id=? AND file_sha=? AND grading_key=?",
                               (student_id, file_sha, grading_key))
            self._conn.execute(f"INSERT INTO results ({_COLUMNS}) VALUES ({','.join('?' * len(row))})", row)
        return StoredResult(student_id, row[1], file_sha, grading_key, entry.status, entry.score, entry.max_score,
                            float(seconds), entry.report, entry.trimmed, row[10], row[11], handed)

    def note_handed(self, grading_key: str, handed: Iterable[tuple[str, str, Handed]]) -> None:
        """Keep what each student handed in beside a result already stored for this very file, in one
        transaction: (student id, file sha256, ``Handed``) each. For a batch that skips a file as done:
        its name, late flag or the student's other files may have changed since."""
        rows = []
        for student_id, file_sha, h in handed:
            _check_key(student_id, file_sha, grading_key)
            rows.append((*_handed_columns(h.kept()),
                         student_id, file_sha, grading_key))
        if not rows:
            return
        with self._transaction():
            self._conn.executemany("UPDATE results SET late=?, resubmission=?, file_name=?, others=?, others_count=?"
                                   " WHERE student_id=? AND file_sha=? AND grading_key=?", rows)

    def forget(self, student_id: str | None = None, grading_key: str | None = None) -> int:
        """Remove stored results (all, one student's, one key's, or one student's for one key).

        For ``--regrade`` (everything) and ``--student ID``; returns how many rows went.
        """
        where, args = _where(student_id=student_id, grading_key=grading_key)
        with self._transaction():
            return self._conn.execute(f"DELETE FROM results{where}", args).rowcount

    # -- reading -------------------------------------------------------------------------------

    def done(self, student_id: str, file_sha: str, grading_key: str) -> bool:
        """True when this student's latest result for ``grading_key`` is for this very file and is
        a grade (any status but ``internal``): the batch may skip it.

        "Latest" matters when a student's file changes back: a result for an older file, with a
        newer one recorded since, is not the student's grade any more, so it is not done.
        """
        latest = self._conn.execute(
            "SELECT file_sha, status FROM results WHERE student_id=? AND grading_key=? ORDER BY id DESC LIMIT 1",
            (student_id, grading_key)).fetchone()
        return latest is not None and latest[0] == file_sha and latest[1] != "internal"

    def results(self, grading_key: str) -> list[StoredResult]:
        """Each student's latest result for ``grading_key`` (internal errors included), by student id."""
        return [_row(r) for r in self._conn.execute(
            f"SELECT {_COLUMNS} FROM results AS r WHERE grading_key=? AND id = (SELECT max(id) FROM results"
            " WHERE student_id=r.student_id AND grading_key=r.grading_key) ORDER BY student_id", (grading_key,))]

    def errors(self, grading_key: str | None = None) -> list[StoredResult]:
        """The submissions on which the grader itself failed (status ``internal``), by student id:
        each student's latest result, for ``grading_key`` or for every key. The next run regrades
        them."""
        key_filter = "" if grading_key is None else " AND grading_key=?"
        args = () if grading_key is None else (grading_key,)
        return [_row(r) for r in self._conn.execute(
            f"SELECT {_COLUMNS} FROM results AS r WHERE status='internal'{key_filter} AND id = (SELECT max(id)"
            " FROM results WHERE student_id=r.student_id AND grading_key=r.grading_key)"
            " ORDER BY student_id, grading_key", args)]

    def count(self) -> int:
        """How many results are stored (every student, file and key)."""
        return self._conn.execute("SELECT count(*) FROM results").fetchone()[0]

    def last_id(self) -> int:
        """The id of the latest result recorded (0 when none): ``recorded_since`` counts from it."""
        return self._conn.execute("SELECT coalesce(max(id), 0) FROM results").fetchone()[0]

    def recorded_since(self, last_id: int) -> int:
        """How many of the results stored now were recorded after the one with id ``last_id``."""
        return self._conn.execute("SELECT count(*) FROM results WHERE id > ?", (last_id,)).fetchone()[0]

    def check(self) -> list[str]:
        """SQLite's ``integrity_check``: ``["ok"]`` for a sound file, else what is wrong."""
        return [r[0] for r in self._conn.execute("PRAGMA integrity_check")]

    # -- helpers -------------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return _Transaction(self._conn)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


_COLUMNS = ("student_id, name, file_sha, grading_key, status, score, max_score, seconds, report, trimmed, message,"
            " recorded_at, late, resubmission, file_name, others, others_count")


def _handed_columns(h: Handed) -> tuple[int, int, str, str, int]:
    return int(h.late), h.resubmission, h.file, json.dumps(list(h.others), ensure_ascii=False), h.others_count


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    try:
        # isolation_level=None: no implicit transactions; each write states its own (_Transaction)
        conn = sqlite3.connect(target, uri=uri, isolation_level=None, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn
    except sqlite3.Error as e:
        raise StoreError(f"{target}: cannot open the results store: {e}") from None


def _row(r: tuple[Any, ...]) -> StoredResult:
    student_id, name, file_sha, key, status, score, max_score, seconds, text, trimmed, message, at = r[:12]
    late, resubmission, file_name, others, others_count = r[12:]
    report = _decoded(text, student_id) if text is not None else None
    try:
        names = json.loads(others)
    except ValueError:
        names = []
    names = tuple(str(n) for n in names[:MAX_OTHERS]) if isinstance(names, list) else ()
    handed = Handed(file_name, bool(late), int(resubmission), names, max(int(others_count), len(names)))
    return StoredResult(student_id, name, file_sha, key, status, score, max_score, seconds, report,
                        bool(trimmed), message, at, handed)


def _decoded(text: str, student_id: str) -> Report:
    try:
        return Report.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError) as e:
        raise StoreError(f"the stored report of {student_id} cannot be read back ({e}); "
                         "run the batch with --student to regrade it") from None


def _check_key(student_id: str, file_sha: str, grading_key: str) -> None:
    if not isinstance(student_id, str) or not student_id:
        raise ValueError("a result needs a student id")
    if not isinstance(file_sha, str) or not _SHA256.match(file_sha):
        raise ValueError(f"file_sha must be a sha256 in lowercase hex, not {file_sha!r}")
    if not isinstance(grading_key, str) or not grading_key:
        raise ValueError("a result needs a grading key")


def _where(**columns: str | None) -> tuple[str, tuple[str, ...]]:
    given = {k: v for k, v in columns.items() if v is not None}
    if not given:
        return "", ()
    return " WHERE " + " AND ".join(f"{k}=?" for k in given), tuple(given.values())


def _version_message(path: Path, version: int) -> str:
    if version in _UPGRADES:
        return (f"{path}: results store of version {version}, written by an older grader; run `grade batch` with "
                "this --out once to bring it up to date (its results are kept)")
    if version > SCHEMA_VERSION:
        return (f"{path}: results store of version {version}, written by a newer grader (this one reads "
                f"version {SCHEMA_VERSION}); use that grader, or another --out")
    return (f"{path}: results store of version {version}, which this grader cannot read (it reads version "
            f"{SCHEMA_VERSION}); use another --out, or delete the file to grade everything again")


#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"
#: The columns of a results store's table, in order.
_RESULT_COLUMNS_V1 = ("id", "student_id", "name", "file_sha", "grading_key", "status", "score", "max_score",
                      "seconds", "report", "trimmed", "message", "recorded_at")
#: ... of each version a batch opens (its own, and those it brings up to date)
_RESULT_COLUMNS = {1: _RESULT_COLUMNS_V1,
                   2: _RESULT_COLUMNS_V1 + ("late", "resubmission", "file_name", "others", "others_count")}


def _vet(path: Path) -> None:
    """Refuse (``StoreRefused``) a file at ``path`` that is not a results store of this grader's version,
    reading it only: its header, then SQLite opened read-only. No file, an empty one, or an SQLite file
    without tables (a batch killed while creating its store) is accepted: it becomes the store."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise StoreRefused(_not_ours(path, "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"))
    if st.st_size == 0:
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise StoreRefused(_not_ours(path, f"a file that cannot be read ({e.strerror or type(e).__name__})")) from None
    if header != SQLITE_HEADER:
        raise StoreRefused(_not_ours(path, "not an SQLite file"))
    # immutable: SQLite reads the main file alone and makes no -wal or -shm beside it (read-only
    # still would, for a file in WAL mode). Only when that shows nothing and a write-ahead log
    # already lies beside it (a batch killed before its first checkpoint) is the log read too.
    version, tables, columns = _schema(path, "mode=ro&immutable=1")
    wal = Path(f"{path}-wal")
    if version == 0 and not tables and wal.is_file() and not wal.is_symlink() and wal.stat().st_size:
        version, tables, columns = _schema(path, "mode=ro")
    if version == 0 and not tables:
        return
    if version == 0 or (version in _RESULT_COLUMNS and columns != _RESULT_COLUMNS[version]):
        raise StoreRefused(_not_ours(path, "another program's SQLite file"))
    if version not in _RESULT_COLUMNS:
        raise StoreRefused(_version_message(path, version))


def _schema(path: Path, params: str) -> tuple[int, set[str], tuple[str, ...]]:
    """An SQLite file's user_version, table names and the results table's columns, read-only."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{params}", uri=True, isolation_level=None, timeout=30)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = tuple(r[1] for r in conn.execute("PRAGMA table_info(results)"))
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreRefused(_not_ours(path, f"an SQLite file that cannot be read ({e})")) from None
    return version, tables, columns


def _not_ours(path: Path, what: str) -> str:
    return (f"{path} is not a results store of grade batch ({what}); nothing in it was changed. Choose another "
            "--out, or move the file away")


def _lock(path: Path) -> int | None:
    """An exclusive, non-blocking ``flock`` on ``path`` (None where there is no ``fcntl``)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: one writer is the caller's promise
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        raise StoreRefused(f"{path}: cannot be opened to lock the results store ({e.strerror or e}); "
                           "use another --out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreRefused(f"{path.with_suffix('')}: another batch is writing this results store; wait for it "
                           "to finish, or use another --out") from None
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock
