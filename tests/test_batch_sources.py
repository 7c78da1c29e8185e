"""grader.batch.sources and the modules it stands on (layouts, gradescope_meta, unzip, walk): every layout,
identity, the choice among a student's files, safe zips."""
from __future__ import annotations

import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from grader.batch.gradescope_meta import parse_gradescope_metadata
from grader.batch.sources import Collected, collect
from grader.batch.unzip import extract_zip
from grader.batch.walk import SourceLimits
from grader.errors import UsageError


def write(path: Path, text: str = "x = 1", mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def by_id(found: Collected) -> dict:
    return {s.student_id: s for s in found.submissions}


def reasons(found: Collected) -> dict[str, str]:
    return {(s.member or s.path.name): s.reason for s in found.skipped}


# --- plain folders ----------------------------------------------------------------------------

def test_a_file_per_student(tmp_path):
    write(tmp_path / "alice.ipynb", "{}")
    write(tmp_path / "bob.py")
    write(tmp_path / "notes.txt")
    found = collect(tmp_path)
    assert found.layout == "folder"
    assert [s.student_id for s in found.submissions] == ["alice", "bob"]
    assert by_id(found)["bob"].path == tmp_path / "bob.py"
    assert by_id(found)["alice"].name is None and not by_id(found)["alice"].late
    assert reasons(found)["notes.txt"] == "not a .ipynb or .py file"


def test_a_folder_per_student_prefers_notebooks_and_lists_the_rest(tmp_path):
    write(tmp_path / "alice" / "mha.ipynb", "{}", mtime=1_000)
    write(tmp_path / "alice" / "helpers.py", mtime=2_000)
    write(tmp_path / "alice" / "sub" / "old.ipynb", "{}", mtime=500)
    write(tmp_path / "bob" / "a.py", mtime=1_000)
    write(tmp_path / "bob" / "b.py", mtime=3_000)
    found = collect(tmp_path)
    alice, bob = by_id(found)["alice"], by_id(found)["bob"]
    assert alice.path.name == "mha.ipynb"  # .ipynb first, then the newest
    assert [p.name for p in alice.others] == ["old.ipynb", "helpers.py"]
    assert bob.path.name == "b.py" and [p.name for p in bob.others] == ["a.py"]
    # every file not graded is counted among the skipped, saying which one was graded and why that one
    r = reasons(found)
    assert r["helpers.py"] == "a .py file, and a .ipynb one comes first; mha.ipynb was graded instead"
    assert r["old.ipynb"] == "older (modified earlier) than mha.ipynb, which was graded instead"
    assert r["a.py"] == "older (modified earlier) than b.py, which was graded instead"
    assert {s.student_id for s in found.skipped} == {"alice", "bob"}


def test_a_file_that_fits_the_assignment_wins(tmp_path):
    write(tmp_path / "alice" / "lstm.ipynb", "{}", mtime=3_000)
    write(tmp_path / "alice" / "mha.ipynb", "{}", mtime=1_000)
    found = collect(tmp_path, fits=lambda p: p.stem == "mha")
    assert by_id(found)["alice"].path.name == "mha.ipynb"
    assert reasons(found)["lstm.ipynb"] == "does not fit the assignment; mha.ipynb was graded instead"


def test_non_submissions_are_skipped_with_reasons(tmp_path):
    write(tmp_path / "alice" / "mha.ipynb", "{}")
    write(tmp_path / "alice" / "empty.py", "")
    write(tmp_path / "alice" / ".DS_Store")
    write(tmp_path / "alice" / ".ipynb_checkpoints" / "mha-checkpoint.ipynb", "{}")
    write(tmp_path / "__MACOSX" / "alice" / "._mha.ipynb")
    write(tmp_path / "Thumbs.db")
    write(tmp_path / "carol.ipynb", "")
    write(tmp_path / "dave" / "report.pdf")
    (tmp_path / "erin").mkdir()
    (tmp_path / "alice" / "link.py").symlink_to(tmp_path / "carol.ipynb")
    found = collect(tmp_path)
    assert [s.student_id for s in found.submissions] == ["alice"]
    r = reasons(found)
    assert r["empty.py"] == "empty" and r["carol.ipynb"] == "empty"
    assert r[".DS_Store"] == r[".ipynb_checkpoints"] == r["__MACOSX"] == r["Thumbs.db"] == "hidden or system file"
    assert r["report.pdf"] == "not a .ipynb or .py file"
    assert r["erin"] == "holds no files"
    assert r["link.py"] == "a symbolic link (not followed)"
    owners = {s.path.name: s.student_id for s in found.skipped}
    assert owners["empty.py"] == "alice" and owners["report.pdf"] == "dave" and owners["__MACOSX"] is None


def test_a_file_that_cannot_be_opened_is_skipped(tmp_path, monkeypatch):
    write(tmp_path / "alice.py")
    write(tmp_path / "bob.py")
    real_open = os.open

    def refusing(path, *args, **kwargs):
        if Path(path).name == "alice.py":
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    found = collect(tmp_path)
    assert [s.student_id for s in found.submissions] == ["bob"]
    assert reasons(found)["alice.py"] == "unreadable (PermissionError)"


def test_one_student_folder_is_not_mistaken_for_a_wrapper(tmp_path):
    write(tmp_path / "alice" / "mha.ipynb", "{}")
    write(tmp_path / "alice" / ".DS_Store")
    found = collect(tmp_path)
    assert [(s.student_id, s.path.name) for s in found.submissions] == [("alice", "mha.ipynb")]
    assert [s.path.name for s in found.skipped] == [".DS_Store"]  # reported once


def test_depth_and_count_are_bounded(tmp_path):
    deep = tmp_path / "alice"
    for i in range(5):
        deep = deep / f"d{i}"
    write(deep / "x.py")
    write(tmp_path / "alice" / "top.py")
    found = collect(tmp_path, limits=SourceLimits(max_depth=3))
    assert by_id(found)["alice"].others == ()
    assert any("nested more than 3" in s.reason for s in found.skipped)
    for i in range(12):
        write(tmp_path / "many" / f"s{i}.py")
    with pytest.raises(UsageError, match="more than 10 files"):
        collect(tmp_path / "many", limits=SourceLimits(max_files=10))


def test_a_folder_entry_is_its_own_student_and_two_with_one_name_are_a_conflict(tmp_path):
    write(tmp_path / "bob" / "mha.ipynb", "bob's work")
    write(tmp_path / "bob.ipynb", "someone else's")                     # a second entry naming itself bob
    mallory = write(tmp_path / "mallory" / "bob.ipynb", "blank")        # what is inside never says who
    write(tmp_path / "ada.py")
    found = collect(tmp_path)
    assert sorted(by_id(found)) == ["ada", "mallory"] and by_id(found)["mallory"].path == mallory
    assert [(c.student_id, sorted(p.name for p in c.paths)) for c in found.conflicts] == [
        ("bob", ["bob", "bob.ipynb"])]


def test_one_students_huge_folder_is_reported_and_the_class_graded(tmp_path):
    crowd = tmp_path / "mallory" / "venv"
    crowd.mkdir(parents=True)
    for i in range(20_001):                                              # the default limits, as in issue 19
        (crowd / f"f{i}.py").touch()
    write(tmp_path / "mallory" / "mha.ipynb")
    write(tmp_path / "ada" / "mha.ipynb")
    write(tmp_path / "bob.py")
    found = collect(tmp_path)
    assert sorted(by_id(found)) == ["ada", "bob"]
    why = next(s for s in found.skipped if s.student_id == "mallory")
    assert why.path == tmp_path / "mallory" and why.reason.startswith("holds more than 2000 files and folders")
    assert len(found.skipped) == 1                                     # one line for her, not 20,001


def test_a_students_budget_counts_every_entry_and_each_student_has_their_own(tmp_path):
    for i in range(6):
        write(tmp_path / "ada" / f"d{i}" / "x.py")                      # 13 entries: 6 folders, 6 files, ada/
        write(tmp_path / "bob" / f".hidden{i}")                         # 7: hidden ones count too
    write(tmp_path / "bob" / "mha.py")
    found = collect(tmp_path, limits=SourceLimits(max_student_files=12))
    assert sorted(by_id(found)) == ["bob"]
    assert [s.student_id for s in found.skipped if "more than 12" in s.reason] == ["ada"]
    assert sorted(by_id(collect(tmp_path, limits=SourceLimits(max_student_files=13)))) == ["ada", "bob"]


def test_ordering_is_deterministic(tmp_path):
    for name in ["zed", "amy", "Bob", "carl"]:
        write(tmp_path / f"{name}.py")
    first = collect(tmp_path)
    assert [s.student_id for s in first.submissions] == ["Bob", "amy", "carl", "zed"]
    assert collect(tmp_path) == first


# --- Canvas ----------------------------------------------------------------------------------

def test_canvas_names_late_flags_and_resubmissions(tmp_path):
    write(tmp_path / "smithjohn_12345_67890_mha.ipynb", "{}", mtime=5_000)
    write(tmp_path / "smithjohn_12345_67891_mha-1.ipynb", "{}", mtime=1_000)
    write(tmp_path / "smithjohn_12345_67892_mha-2.ipynb", "{}", mtime=1_000)
    write(tmp_path / "doejane_late_222_333_mha.ipynb", "{}")
    write(tmp_path / "doejane_late_222_334_notes.txt")
    write(tmp_path / "README.txt")
    found = collect(tmp_path)
    assert found.layout == "canvas"
    john, jane = by_id(found)["12345"], by_id(found)["222"]
    assert john.name == "smithjohn" and not john.late
    assert john.path.name == "smithjohn_12345_67892_mha-2.ipynb"
    assert [p.name for p in john.others] == ["smithjohn_12345_67891_mha-1.ipynb", "smithjohn_12345_67890_mha.ipynb"]
    assert john.resubmission == 2 and jane.resubmission == 0
    assert jane.late and jane.name == "doejane"
    r = reasons(found)
    assert r["smithjohn_12345_67891_mha-1.ipynb"] == ("an older upload (resubmission 1); smithjohn_12345_67892_mha-2"
                                                     ".ipynb, resubmission 2, was graded instead")
    assert r["smithjohn_12345_67890_mha.ipynb"].startswith("an older upload (the first upload); ")
    assert r["README.txt"] == "does not follow Canvas's naming"
    assert r["doejane_late_222_334_notes.txt"] == "not a .ipynb or .py file"
    assert next(s for s in found.skipped if s.path.name.endswith("notes.txt")).student_id == "222"


def test_canvas_a_file_or_a_name_cannot_claim_another_student(tmp_path):
    bob = write(tmp_path / "smithbob_2001_777_mha.ipynb")
    # Mallory (3003) uploads a file named like Bob's; Canvas puts its own fields before it
    upload = write(tmp_path / "mallory_3003_555_smithbob_2001_777_mha.ipynb")
    # and Eve (5005) names herself "eve_2001": Canvas keeps a "_<digits>" that ends a name
    named = write(tmp_path / "eve_2001_5005_556_mha.ipynb")
    write(tmp_path / "byronada_4004_888_01_mha.ipynb")  # a file named "01_mha.ipynb": ids never begin with 0
    found = collect(tmp_path)
    subs = by_id(found)
    assert sorted(subs) == ["2001", "3003", "4004", "5005"] and not found.conflicts
    assert subs["2001"].path == bob and subs["2001"].others == () and subs["2001"].name == "smithbob"
    assert subs["3003"].path == upload and subs["5005"].path == named and subs["5005"].name == "eve_2001"
    bob.unlink()  # Bob handed nothing in: Eve's name reads two ways, and is not guessed
    found = collect(tmp_path)
    assert sorted(by_id(found)) == ["3003", "4004"]
    assert reasons(found)[named.name].startswith("its name reads as more than one student's (ids 2001, 5005)")


def test_an_identity_pattern_reading_one_id_from_two_people_is_a_conflict(tmp_path):
    write(tmp_path / "lovelaceada_1_10_hw3-s1234567.ipynb")
    write(tmp_path / "mallory_3003_555_hw3-s1234567.ipynb")           # Mallory uses Ada's student number
    write(tmp_path / "byronada_4004_888_hw3-s7654321.ipynb")
    write(tmp_path / "byronada_4004_889_notes-s7654321.py")            # one person's two files: no conflict
    write(tmp_path / "eve_5005_556_s1111111-s2222222.ipynb")           # two ids in one name: not guessed
    found = collect(tmp_path, identity=r"s(?P<id>\d{7})")
    assert [s.student_id for s in found.submissions] == ["7654321"]
    assert [c.student_id for c in found.conflicts] == ["1234567"]
    why = reasons(found)["eve_5005_556_s1111111-s2222222.ipynb"]
    assert "finds more than one id in its name (1111111, 2222222)" in why


# --- Moodle ----------------------------------------------------------------------------------

def test_moodle_folders(tmp_path):
    write(tmp_path / "Jane Doe_101_assignsubmission_file_" / "mha.ipynb", "{}")
    write(tmp_path / "Jane Doe_101_assignsubmission_onlinetext_" / "onlinetext.html")
    write(tmp_path / "Li Wei_102_assignsubmission_file_" / "attention.py")
    write(tmp_path / "stray.py")
    found = collect(tmp_path)
    assert found.layout == "moodle"
    assert [(s.student_id, s.name, s.path.name) for s in found.submissions] == [
        ("101", "Jane Doe", "mha.ipynb"), ("102", "Li Wei", "attention.py")]
    r = reasons(found)
    assert r["onlinetext.html"] == "not a .ipynb or .py file" and r["stray.py"] == "does not follow Moodle's naming"


@pytest.mark.parametrize("as_folders", [True, False], ids=["folders", "files"])
def test_moodle_a_display_name_cannot_claim_another_student(tmp_path, as_folders):
    # Mallory (3003) names herself "Mallory_2001_assignsubmission_file_"; Moodle appends her own fields.
    bob = "Bob Smith_2001_assignsubmission_file_"
    mallory = "Mallory_2001_assignsubmission_file__3003_assignsubmission_file_"
    paths = {sid: write(tmp_path / prefix / "mha.ipynb" if as_folders else tmp_path / (prefix + "mha.ipynb"), sid)
             for sid, prefix in (("2001", bob), ("3003", mallory))}
    write(tmp_path / "Ada Byron_4004_assignsubmission_file_" / "mha.ipynb" if as_folders
          else tmp_path / "Ada Byron_4004_assignsubmission_file_mha.ipynb")
    found = collect(tmp_path)
    assert found.layout == "moodle" and not found.conflicts
    subs = by_id(found)
    assert sorted(subs) == ["2001", "3003", "4004"]
    assert subs["2001"].path == paths["2001"] and subs["2001"].name == "Bob Smith" and subs["2001"].others == ()
    assert subs["3003"].path == paths["3003"]
    paths["2001"].unlink()  # Bob handed nothing in: Mallory's file still never becomes his
    if as_folders:
        paths["2001"].parent.rmdir()
    found = collect(tmp_path)
    assert "2001" not in by_id(found) and not found.conflicts
    if as_folders:   # a folder's name ends in Moodle's own fields: read from the right, it is hers
        assert by_id(found)["3003"].path == paths["3003"]
    else:            # a file's name has her free text on both sides: it reads two ways, and is not guessed
        assert "3003" not in by_id(found)
        why = reasons(found)[paths["3003"].name]
        assert why.startswith("its name reads as more than one student's (ids 2001, 3003)")


def test_moodle_a_file_name_cannot_claim_another_student(tmp_path):
    write(tmp_path / "Bob Smith_2001_assignsubmission_file_mha.ipynb")
    hers = write(tmp_path / "Mallory_3003_assignsubmission_file_x_2001_assignsubmission_file_mha.ipynb")
    found = collect(tmp_path)
    assert by_id(found)["3003"].path == hers and by_id(found)["2001"].others == () and not found.conflicts


def test_moodle_one_id_under_two_names_is_a_conflict(tmp_path):
    write(tmp_path / "Bob Smith_2001_assignsubmission_file_" / "mha.ipynb")
    write(tmp_path / "Eve_2001_assignsubmission_file_" / "mha.ipynb")
    write(tmp_path / "Ada Byron_4004_assignsubmission_file_" / "mha.ipynb")
    found = collect(tmp_path)
    assert [s.student_id for s in found.submissions] == ["4004"]
    assert [c.student_id for c in found.conflicts] == ["2001"] and len(found.conflicts[0].paths) == 2


# --- Gradescope ------------------------------------------------------------------------------

METADATA = """\
---
submission_111:
  :submitters:
  - :name: Ada Lovelace
    :sid: '2001'
    :email: ada@example.edu
  - :name: "Charles Babbage"
    :sid: 2002
    :email: cb@example.edu
  :created_at: 2024-03-01 10:00:00.000000000 -08:00
  :results:
    :output: |
      :submitters:
      - :name: Not A Student
  :score: 8.0
submission_222:
  :submitters:
  - :name: O'Neil Smith   # a comment
    :email: oneil@example.edu
"""


def test_gradescope_export_with_metadata_in_a_wrapper_folder(tmp_path):
    export = tmp_path / "assignment_99_export"
    write(export / "submission_metadata.yml", METADATA)
    write(export / "submission_111" / "mha.ipynb", "{}")
    write(export / "submission_222" / "mha.py")
    write(export / "submission_333" / "mha.py")
    found = collect(tmp_path)
    assert found.layout == "gradescope" and found.root == export
    assert "stepped into assignment_99_export/" in found.notes
    subs = by_id(found)
    assert subs["2001"].name == "Ada Lovelace" and subs["2001"].email == "ada@example.edu"
    assert subs["2001"].group == ("2002",)
    assert subs["oneil@example.edu"].name == "O'Neil Smith"
    assert subs["submission_333"].name is None  # not in the metadata: the folder is the id
    assert not any(s.path.name == "submission_metadata.yml" for s in found.skipped)


def test_gradescope_a_students_own_metadata_never_decides_who_she_is(tmp_path):
    # Mallory (3003) hands in her own submission_metadata.yml naming Bob (2001), and a blank notebook.
    write(tmp_path / "submission_metadata.yml", "submission_1:\n  :submitters:\n  - :name: Bob\n    :sid: '2001'\n"
                                                "submission_2:\n  :submitters:\n  - :name: Mallory\n"
                                                "    :sid: '3003'\n")
    write(tmp_path / "submission_1" / "mha.ipynb", "bob's work")
    forged = write(tmp_path / "submission_2" / "submission_metadata.yml",
                   ":submitters:\n- :name: Bob\n  :sid: '2001'\n")
    write(tmp_path / "submission_2" / "mha.ipynb", "blank")
    found = collect(tmp_path)
    subs = by_id(found)
    assert sorted(subs) == ["2001", "3003"] and not found.conflicts
    assert subs["2001"].path == tmp_path / "submission_1" / "mha.ipynb" and subs["2001"].others == ()
    assert subs["3003"].path == tmp_path / "submission_2" / "mha.ipynb" and subs["3003"].name == "Mallory"
    assert "the student's own submission_metadata.yml: not read" in reasons(found)["submission_metadata.yml"]
    assert next(s for s in found.skipped if s.path == forged).student_id == "3003"
    (tmp_path / "submission_metadata.yml").unlink()  # without the export's metadata: the folders' names
    assert sorted(by_id(collect(tmp_path))) == ["submission_1", "submission_2"]


def test_gradescope_two_submissions_with_one_first_submitter_are_a_conflict(tmp_path):
    write(tmp_path / "submission_metadata.yml", "".join(
        f"submission_{n}:\n  :submitters:\n  - :name: {who}\n    :sid: '{sid}'\n"
        for n, who, sid in ((1, "Bob", 2001), (2, "Bob", 2001), (3, "Ada", 4004))))
    for n in (1, 2, 3):
        write(tmp_path / f"submission_{n}" / "mha.ipynb", "{}")
    found = collect(tmp_path)
    assert [s.student_id for s in found.submissions] == ["4004"]
    assert [(c.student_id, [p.name for p in c.paths]) for c in found.conflicts] == [
        ("2001", ["submission_1", "submission_2"])]
    assert "2 entries claim this student (submission_1, submission_2): none is graded" in found.conflicts[0].reason


def test_the_metadata_parser_is_bounded_and_plain(tmp_path):
    assert parse_gradescope_metadata("submission_1:\n  :submitters: []\n") == {"submission_1": []}
    assert parse_gradescope_metadata("!!python/object:os.system\n") == {}
    big = write(tmp_path / "submission_metadata.yml", METADATA * 50)
    write(tmp_path / "submission_111" / "a.py")
    found = collect(tmp_path, limits=SourceLimits(max_metadata_bytes=100))
    assert found.submissions[0].student_id == "submission_111"
    assert any(s.path == big and "not read" in s.reason for s in found.skipped)


# --- identity override -----------------------------------------------------------------------

def test_identity_regex_override(tmp_path):
    write(tmp_path / "hw3-s1234567-Ada_Lovelace.ipynb", "{}")
    write(tmp_path / "hw3-s7654321.py")
    write(tmp_path / "whatever.py")
    found = collect(tmp_path, identity=r"s(?P<id>\d{7})(?:-(?P<name>[A-Za-z_]+))?")
    assert [(s.student_id, s.name) for s in found.submissions] == [("1234567", "Ada_Lovelace"), ("7654321", None)]
    assert reasons(found)["whatever.py"] == "its name does not match the identity pattern"


def test_identity_override_keeps_canvas_facts(tmp_path):
    write(tmp_path / "smithjohn_late_12345_67890_mha.ipynb", "{}")
    write(tmp_path / "doejane_222_333_mha.ipynb", "{}")
    found = collect(tmp_path, identity=r"\A(?P<id>[a-z]+)_")
    john = by_id(found)["smithjohn"]
    assert john.late and john.name == "smithjohn"


@pytest.mark.parametrize("pattern, message", [(r"(?P<name>\w+)", "named group for the student's id"),
                                              (r"(?P<id>\d+", "not a valid regular expression")])
def test_bad_identity_patterns_are_usage_errors(tmp_path, pattern, message):
    write(tmp_path / "a.py")
    with pytest.raises(UsageError, match=message):
        collect(tmp_path, identity=pattern)


# --- usage errors ----------------------------------------------------------------------------

def test_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file or folder"):
        collect(tmp_path / "missing")
    with pytest.raises(UsageError, match="unknown layout 'blackboard'"):
        collect(tmp_path, layout="blackboard")
    with pytest.raises(UsageError, match="holds no files"):
        collect(tmp_path)
    write(tmp_path / "notes.txt")
    with pytest.raises(UsageError, match="neither a folder nor a zip"):
        collect(tmp_path / "notes.txt")
    write(tmp_path / "alice.py")
    with pytest.raises(UsageError, match="does not look like a Moodle export"):
        collect(tmp_path, layout="moodle")
    forced = collect(tmp_path, layout="folder")
    assert [s.student_id for s in forced.submissions] == ["alice"]


# --- zips ------------------------------------------------------------------------------------

def make_zip(path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_a_canvas_zip(tmp_path):
    archive = make_zip(tmp_path / "export.zip", {
        "smithjohn_12345_67890_mha.ipynb": b"{}",
        "doejane_late_222_333_mha.py": b"x = 1",
        "__MACOSX/._smithjohn_12345_67890_mha.ipynb": b"junk",
        "__MACOSX/._doejane_late_222_333_mha.py": b"junk",
    })
    out = tmp_path / "out"
    found = collect(archive, extract_to=out)
    assert found.layout == "canvas" and found.root == out
    assert [(s.student_id, s.late) for s in found.submissions] == [("12345", False), ("222", True)]
    assert [s.member for s in found.skipped] == ["__MACOSX"]
    assert not (out / "__MACOSX").exists()
    with pytest.raises(UsageError, match="give a folder to extract it into"):
        collect(archive)
    with pytest.raises(UsageError, match="must be an empty folder"):
        collect(archive, extract_to=out)


def test_a_zip_cannot_write_outside_its_folder(tmp_path):
    archive = make_zip(tmp_path / "evil.zip", {
        "../evil.py": b"x = 1",
        "alice/../../evil2.py": b"x = 1",
        "/tmp/abs.py": b"x = 1",
        "C:\\Windows\\win.py": b"x = 1",
        "bob\\mha.py": b"x = 1",
        "carol/ok.py": b"x = 1",
    }, symlinks={"dave/link.py": "/etc/passwd", "erin": "/"})
    out = tmp_path / "box" / "out"
    skipped = extract_zip(archive, out)
    why = {s.member: s.reason for s in skipped}
    assert "outside the folder" in why["../evil.py"] and "outside the folder" in why["alice/../../evil2.py"]
    assert "absolute" in why["/tmp/abs.py"] and "absolute" in why["C:\\Windows\\win.py"]
    assert why["dave/link.py"] == why["erin"] == "a symbolic link (not extracted)"
    assert all(s.path == archive for s in skipped)
    assert not (tmp_path / "box" / "evil.py").exists() and not (tmp_path / "evil2.py").exists()
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.py")) == ["bob/mha.py", "carol/ok.py"]
    found = collect(archive, extract_to=tmp_path / "again")
    assert [s.student_id for s in found.submissions] == ["bob", "carol"]


def test_a_bomb_like_zip_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"alice.py": b"0" * 5_000, "bob.py": b"x = 1"})
    skipped = extract_zip(archive, tmp_path / "a", SourceLimits(max_file_bytes=1_000))
    assert [s.member for s in skipped] == ["alice.py"] and "declares" in skipped[0].reason
    assert not (tmp_path / "a" / "alice.py").exists() and (tmp_path / "a" / "bob.py").exists()
    with pytest.raises(UsageError, match="zip bomb"):
        extract_zip(archive, tmp_path / "b", SourceLimits(max_total_bytes=2_000))
    with pytest.raises(UsageError, match="more than the 1 a batch reads"):
        extract_zip(archive, tmp_path / "c", SourceLimits(max_files=1))


def test_one_students_huge_folder_in_a_zip_is_not_extracted_and_the_class_is(tmp_path):
    members = {f"assignment_9_export/submission_{n}/mha.ipynb": b"{}" for n in (1, 2)}
    members.update({f"assignment_9_export/submission_3/venv/f{i}.py": b"" for i in range(20_001)})
    members["assignment_9_export/submission_4/big.py"] = b"0" * 3_000
    archive = make_zip(tmp_path / "export.zip", members)
    limits = SourceLimits(max_student_bytes=2_000)
    found = collect(archive, extract_to=tmp_path / "out", limits=limits)
    assert [s.student_id for s in found.submissions] == ["submission_1", "submission_2"]
    why = {s.member: s.reason for s in found.skipped}
    assert why["assignment_9_export/submission_3"].startswith("a folder of 20001 files and folders, more than the 2000")
    assert why["assignment_9_export/submission_4"].startswith("a folder declaring 2.9 KB, more than the 2 KB")
    assert not (tmp_path / "out" / "assignment_9_export" / "submission_3").exists()
    with pytest.raises(UsageError, match="holds 2 entries, more than the 1 a batch"):  # the rest has its bound
        extract_zip(archive, tmp_path / "again", SourceLimits(max_files=1, max_student_bytes=2_000))


def test_a_zip_that_lies_about_a_size_leaves_nothing(tmp_path):
    archive = make_zip(tmp_path / "liar.zip", {"alice.py": b"x = 1\n" * 1_000, "bob.py": b"x = 1"})
    data = bytearray(archive.read_bytes())
    at = data.index(b"PK\x01\x02")  # alice's central directory entry: declare 10 bytes, not 6000
    struct.pack_into("<I", data, at + 24, 10)
    archive.write_bytes(bytes(data))
    skipped = extract_zip(archive, tmp_path / "out")
    assert [s.member for s in skipped] == ["alice.py"] and "damaged" in skipped[0].reason
    assert not (tmp_path / "out" / "alice.py").exists() and (tmp_path / "out" / "bob.py").exists()


def test_zip_names_are_decoded_safely(tmp_path):
    archive = tmp_path / "names.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("José.py", b"x = 1")  # UTF-8, flagged
        raw = zipfile.ZipInfo("placeholder")
        zf.writestr(raw, b"x = 1")
        ctl = zipfile.ZipInfo("bad\x1b[31m.py")
        zf.writestr(ctl, b"x = 1")
    data = bytearray(archive.read_bytes())
    # An unflagged UTF-8 name, as macOS and many tools write it: same length as "placeholder".
    name = "Zoë_ab".encode()
    name += b"x" * (len(b"placeholder") - len(name) - 3) + b".py"
    data = data.replace(b"placeholder", name)
    archive.write_bytes(bytes(data))
    found = collect(archive, extract_to=tmp_path / "out")
    ids = [s.student_id for s in found.submissions]
    assert "José" in ids and any(i.startswith("Zoë_ab") for i in ids)
    assert {s.reason for s in found.skipped} == {"its name holds control characters"}


def test_a_damaged_zip_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(UsageError):
        collect(bad, extract_to=tmp_path / "out")
