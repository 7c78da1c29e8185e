"""cases.toml: the shipped files load; every typo is an error naming file, case and key."""
from __future__ import annotations

import pytest

from conftest import ROOT, course
from grader.course.assignments import assignment_names, get_assignment, infer_assignment
from grader.spec.case_file import load_assignment
from grader.errors import CaseFileError, UsageError

HEAD = """
[assignment]
name = "demo"
reference = "demo.py"

[targets.Net]
args = ["x"]
returns = "y"
"""


def _load(tmp_path, cases: str):
    folder = tmp_path / "assignments" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cases.toml").write_text(HEAD + cases)
    return load_assignment(folder, tmp_path)


def test_shipped_assignments_load():
    assert {"mha", "lstm"} <= set(assignment_names(ROOT))
    for name in ("mha", "lstm"):
        a = get_assignment(course(), name)
        assert a.cases and a.max_score > 0 and a.reference.is_file()


def test_a_valid_case(tmp_path):
    a = _load(tmp_path, '[[cases]]\nid = "c"\ntarget = "Net"\ninputs = { x = [2, 3] }\nchecks = ["shape"]\npoints = 1\n')
    assert a.cases[0].inputs == {"x": [2, 3]} and a.max_score == 1


@pytest.mark.parametrize("case, where, words", [
    ('id = "c"\ntarget = "Net"\ninputs = { x = [2] }\nchecks = ["shape"]\npoints = 1\ntolerance = 1',
     "case 'c'", "unknown key 'tolerance'"),
    ('id = "c"\ntarget = "Nett"\ninputs = { x = [2] }\nchecks = ["shape"]\npoints = 1', "case 'c'", "target 'Nett'"),
    ('id = "c"\ntarget = "Net"\ninputs = { x = [2] }\nchecks = ["shapes"]\npoints = 1', "case 'c'", "unknown check"),
    ('id = "c"\ntarget = "Net"\ninputs = { x = [2, -1] }\nchecks = ["shape"]\npoints = 1', "case 'c'", "not a shape"),
    ('id = "c"\ntarget = "Net"\ninputs = { z = [2] }\nchecks = ["shape"]\npoints = 1', "case 'c'", "not an argument"),
    ('id = "c"\ntarget = "Net"\nchecks = ["match"]\npoints = 1', "case 'c'", "need inputs"),
    ('id = "c"\ntarget = "Net"\ninputs = { x = [2] }\nchecks = ["mask"]\npoints = 1', "case 'c'", "needs a mask"),
    ('id = "c"\ntarget = "Net"\ninputs = { x = [2] }\nchecks = ["shape"]', "case 'c'", "points"),
    ('id = "a/b"\ntarget = "Net"\ninputs = { x = [2] }\nchecks = ["shape"]\npoints = 1', "case 'a/b'", "'/'"),
    ('id = "c"\ntarget = "Net"\ninputs = { x = [2, 3] }\nmask = "causal"\nchecks = ["shape"]\npoints = 1',
     "case 'c', mask", "no keys to mask"),
    ('id = "c"\ntarget = "Net"\ninputs = { x = [2, 3] }\ncall = "unroll"\nchecks = ["shape"]\npoints = 1',
     "case 'c'", "inputs: call = \"unroll\""),
    ('id = "c"\ntarget = "Net"\ninit = { "d feat" = 1 }\ninputs = { x = [2] }\nchecks = ["shape"]\npoints = 1',
     "case 'c'", "init: 'd feat'"),
    ('id = "c"\ntarget = "Net"\ninputs = { x = [2] }\nchecks = ["shape"]\npoints = 1\nseed = 1.5', "case 'c'", "seed"),
    ('id = "c"\ntarget = "Net"\ninputs = { x = [2] }\nchecks = ["shape"]\npoints = -1', "case 'c'", "points"),
])
def test_case_errors_name_file_case_and_key(tmp_path, case, where, words):
    with pytest.raises(CaseFileError) as info:
        _load(tmp_path, "[[cases]]\n" + case + "\n")
    message = str(info.value)
    assert "cases.toml" in message and where in message and words in message


def test_invalid_toml(tmp_path):
    with pytest.raises(CaseFileError, match="not valid TOML"):
        _load(tmp_path, "[[cases]\n")


def test_unknown_assignment_lists_known_ones():
    with pytest.raises(UsageError, match="known assignments: gru, lstm, mha"):
        get_assignment(course(), "rnn")


def test_inference():
    assert infer_assignment(course(), {"MultiHeadedAttention"}).name == "mha"
    assert infer_assignment(course(), {"LSTMCell", "Foo"}).name == "lstm"
    with pytest.raises(UsageError, match="pass --assignment"):
        infer_assignment(course(), {"Foo"})
    with pytest.raises(UsageError, match="ambiguous"):
        infer_assignment(course(), {"LSTMCell", "MultiHeadedAttention"})
