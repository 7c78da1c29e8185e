"""Every mistake in a case file is the instructor's: exit 2, naming the file, the case and the key.

Each test copies the shipped `mha` assignment and the reference into a temporary course, makes one
mistake in the case file (or the reference), and loads it (mistakes found when the file is read)
or grades a correct submission with it (mistakes found when the reference first runs).
"""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import ROOT, run_grade
from grader.errors import CaseFileError
from grader.spec.case_file import load_assignment

FILLED = str(ROOT / "tests" / "submissions" / "mha" / "filled.ipynb")


def _course(tmp_path):
    shutil.copytree(ROOT / "assignments" / "mha", tmp_path / "assignments" / "mha")
    shutil.copytree(ROOT / "reference", tmp_path / "reference")
    return tmp_path


def _edit(course, anchor: str, old: str, new: str) -> None:
    """Replace the first ``old`` after ``anchor`` (a case's ``id = ...`` line, or a table's header)."""
    path = course / "assignments" / "mha" / "cases.toml"
    text = path.read_text(encoding="utf-8")
    start = text.index(anchor)
    at = text.index(old, start)
    path.write_text(text[:at] + new + text[at + len(old):], encoding="utf-8")


def _case(cid: str) -> str:
    return f'id = "{cid}"\n'


HEAD = "[assignment]\n"
MHA = "[targets.MultiHeadedAttention]\n"

# (anchor, old, new, where the message says it is, the key it names)
AT_LOAD = {
    "seed-string": (_case("mha-match"), "seed = 10", 'seed = "abc"', "case 'mha-match'", "seed"),
    "seed-bool": (_case("mha-match"), "seed = 10", "seed = true", "case 'mha-match'", "seed"),
    "seed-negative": (_case("mha-match"), "seed = 10", "seed = -1", "case 'mha-match'", "seed"),
    "init-list": (_case("mha-batch1"), "init = { d_feat = 12, n_head = 3 }", "init = [64, 4]",
                  "case 'mha-batch1'", "init"),
    "init-date": (_case("mha-batch1"), "init = { d_feat = 12, n_head = 3 }", "init = { d_feat = 1979-05-27 }",
                  "case 'mha-batch1'", "init"),
    "init-inf": (_case("mha-batch1"), "init = { d_feat = 12, n_head = 3 }", "init = { d_feat = inf }",
                 "case 'mha-batch1'", "init"),
    "points-string": (_case("mha-batch1"), "points = 1", 'points = "1"', "case 'mha-batch1'", "points"),
    "points-nan": (_case("mha-batch1"), "points = 1", "points = nan", "case 'mha-batch1'", "points"),
    "points-bool": (_case("mha-batch1"), "points = 1", "points = true", "case 'mha-batch1'", "points"),
    "rtol-negative": (_case("mha-match"), _case("mha-match"), _case("mha-match") + "rtol = -1e-3\n",
                      "case 'mha-match'", "rtol"),
    "atol-string": (_case("mha-match"), _case("mha-match"), _case("mha-match") + 'atol = "1e-5"\n',
                    "case 'mha-match'", "atol"),
    "assignment-rtol": (HEAD, "rtol = 1e-4", 'rtol = "abc"', "[assignment]", "rtol"),
    "assignment-timeout": (HEAD, "rtol = 1e-4", 'rtol = 1e-4\ntimeout = "10"', "[assignment]", "timeout"),
    "assignment-title": (HEAD, 'title = "Multi-headed attention"', "title = 3", "[assignment]", "title"),
    "compare-string": (_case("mha-match"), "seed = 10", 'seed = 10\ncompare = "x"', "case 'mha-match'", "compare"),
    "compare-unknown": (_case("mha-match"), "seed = 10", 'seed = 10\ncompare = ["x_rw"]', "case 'mha-match'",
                        "compare"),
    "compare-without-match": (_case("mha-shapes"), "points = 2", 'points = 2\ncompare = ["x"]',
                              "case 'mha-shapes'", "compare"),
    "checks-string": (_case("mha-match"), 'checks = ["shape", "match"]', 'checks = "match"', "case 'mha-match'",
                      "checks"),
    "checks-twice": (_case("mha-match"), 'checks = ["shape", "match"]', 'checks = ["match", "match"]',
                     "case 'mha-match'", "checks"),
    "call-number": (_case("mha-match"), "seed = 10", "seed = 10\ncall = 1", "case 'mha-match'", "call"),
    "visibility-bool": (_case("mha-match"), "seed = 10", "seed = 10\nvisibility = true", "case 'mha-match'",
                        "visibility"),
    "hint-number": (_case("mha-match"), "seed = 10", "seed = 10\nhint = 3", "case 'mha-match'", "hint"),
    "hint-on-number": (_case("mha-grad"), 'hint_on = ["unused"]', "hint_on = [1]", "case 'mha-grad'", "hint_on"),
    "name-number": (_case("mha-match"), 'name = "MultiHeadedAttention: every', 'name = 5\nhint = "every',
                    "case 'mha-match'", "name"),
    "dtypes-string": (_case("mha-match"), "seed = 10", 'seed = 10\ndtypes = "float64"', "case 'mha-match'",
                      "dtypes"),
    "dtypes-unknown-input": (_case("mha-match"), "seed = 10", 'seed = 10\ndtypes = { X = "float64" }',
                             "case 'mha-match'", "dtypes"),
    "dtypes-bad-value": (_case("mha-match"), "seed = 10", 'seed = 10\ndtypes = { Q = "int8" }', "case 'mha-match'",
                         "dtypes"),
    "raises-number": (_case("mha-indivisible"), 'raises = "ValueError"', "raises = 3", "case 'mha-indivisible'",
                      "raises"),
    "raises-without-check": (_case("mha-indivisible"), 'checks = ["raises"]', 'checks = ["params"]',
                             "case 'mha-indivisible'", "raises"),
    "raises-with-match": (_case("mha-indivisible"), 'checks = ["raises"]', 'checks = ["raises", "match"]',
                          "case 'mha-indivisible'", "raises"),
    "inputs-skip-one": (_case("sdpa-shape-3d"), "inputs = { Q = [2, 4, 8], K = [2, 6, 8], V = [2, 6, 5] }",
                        "inputs = { Q = [2, 4, 8], V = [2, 6, 5] }", "case 'sdpa-shape-3d'", "inputs"),
    "inputs-list": (_case("sdpa-shape-3d"), "inputs = { Q = [2, 4, 8], K = [2, 6, 8], V = [2, 6, 5] }",
                    "inputs = [2, 4, 8]", "case 'sdpa-shape-3d'", "inputs"),
    "lengths-not-ints": (_case("mha-padding"), "lengths = [6, 2]", 'lengths = [6, "2"]', "case 'mha-padding'",
                         "lengths"),
    "lengths-not-batch": (_case("mha-padding"), "lengths = [6, 2]", "lengths = [6, 2, 3]", "case 'mha-padding'",
                          "lengths"),
    "lengths-longer-than-keys": (_case("mha-padding"), "lengths = [6, 2]", "lengths = [9, 3]",
                                 "case 'mha-padding'", "lengths"),
    "lengths-mask-nothing": (_case("mha-padding"), "lengths = [6, 2]", "lengths = [6, 6]", "case 'mha-padding'",
                             "mask_invariance"),
    "padding-with-values": (_case("mha-padding"), "lengths = [6, 2]", "lengths = [6, 2], values = [[1]]",
                            "case 'mha-padding'", "values"),
    "custom-not-broadcast": (_case("sdpa-causal"), 'mask = "causal"', 'mask = { kind = "custom", values = [[1, 0, 1]] }',
                             "case 'sdpa-causal'", "values"),
    "custom-ragged": (_case("sdpa-causal"), 'mask = "causal"', 'mask = { kind = "custom", values = [[1, 0], [1]] }',
                      "case 'sdpa-causal'", "values"),
    "mask-kind": (_case("sdpa-causal"), 'mask = "causal"', 'mask = "casual"', "case 'sdpa-causal'", "kind"),
    "target-mask-rank": (MHA, "mask_rank = 4", 'mask_rank = "4"', "[targets.MultiHeadedAttention]", "mask_rank"),
    "target-keys-string": (MHA, 'keys = ["Q_feat", "K_feat", "V_feat", "Q_split", "K_split", "V_split",\n'
                           '        "scores", "attention", "x_raw", "x_rsh1", "x_rsh2", "x"]',
                           'keys = "Q_feat"', "[targets.MultiHeadedAttention]", "keys"),
    "target-keys-twice": (MHA, '"Q_feat", "K_feat"', '"Q_feat", "Q_feat"', "[targets.MultiHeadedAttention]", "keys"),
    "target-key-args": (MHA, 'key_args = ["K", "V"]', 'key_args = ["K", "W"]', "[targets.MultiHeadedAttention]",
                        "key_args"),
    "target-args-twice": (MHA, 'args = ["Q", "K", "V"]', 'args = ["Q", "K", "K"]', "[targets.MultiHeadedAttention]",
                          "args"),
    "target-loss": (MHA, 'loss = ["x"]', 'loss = ["y"]', "[targets.MultiHeadedAttention]", "loss"),
    "target-final": (MHA, 'final = "x"', "final = 1", "[targets.MultiHeadedAttention]", "final"),
}


@pytest.mark.parametrize("mistake", sorted(AT_LOAD))
def test_found_when_the_case_file_is_loaded(tmp_path, mistake):
    anchor, old, new, where, key = AT_LOAD[mistake]
    course = _course(tmp_path)
    _edit(course, anchor, old, new)
    with pytest.raises(CaseFileError) as info:
        load_assignment(course / "assignments" / "mha", course)
    message = str(info.value)
    assert "cases.toml" in message and where in message and key in message, message


def _grade(course, tmp_path):
    """Grade a correct submission with this course, with a cache of its own (the case file changed)."""
    return run_grade(FILLED, "--root", str(course), env={"GRADER_CACHE": str(tmp_path / "cache")})


# (anchor, old, new, what the message names: the place, the key and the reference's own words)
AT_FIRST_RUN = {
    "init-misspelled": (_case("mha-shapes"), "init = { d_feat = 20, n_head = 4 }", "init = { d_feet = 20, n_head = 4 }",
                        ["case 'mha-shapes'", "init", "'d_feet'", "TypeError", "unexpected keyword argument"]),
    "init-raises": (_case("mha-match"), "init = { d_feat = 20, n_head = 4 }", "init = { d_feat = 20, n_head = 3 }",
                    ["case 'mha-match'", "init", "ValueError", "n_head=3"]),
    "input-does-not-fit-d-feat": (_case("mha-match"), "inputs = { Q = [2, 5, 20], K = [2, 5, 20], V = [2, 5, 20] }",
                                  "inputs = { Q = [2, 5, 21], K = [2, 5, 21], V = [2, 5, 21] }",
                                  ["case 'mha-match'", "inputs", "Q [2, 5, 21]", "RuntimeError", "d_feat=20"]),
    "reference-does-not-raise": (_case("mha-indivisible"), "init = { d_feat = 20, n_head = 3 }",
                                 "init = { d_feat = 20, n_head = 4 }",
                                 ["case 'mha-indivisible'", "raises", "does not raise ValueError"]),
    "key-misspelled": (MHA, '"Q_feat", "K_feat"', '"Q_feet", "K_feat"',
                       ["[targets.MultiHeadedAttention]", "keys", "'Q_feet'", "Q_feat"]),
}


@pytest.mark.parametrize("mistake", sorted(AT_FIRST_RUN))
def test_found_when_the_reference_first_runs(tmp_path, mistake):
    anchor, old, new, words = AT_FIRST_RUN[mistake]
    course = _course(tmp_path / "course")
    _edit(course, anchor, old, new)
    load_assignment(course / "assignments" / "mha", course)  # nothing to see without running the reference
    p = _grade(course, tmp_path)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert "cases.toml" in p.stderr
    for word in words:
        assert word in p.stderr, (word, p.stderr)


@pytest.mark.parametrize("mistake", ["seed-string", "init-list", "lengths-longer-than-keys", "lengths-not-batch"])
def test_load_time_mistakes_exit_2_from_the_command_line(tmp_path, mistake):
    anchor, old, new, where, key = AT_LOAD[mistake]
    course = _course(tmp_path / "course")
    _edit(course, anchor, old, new)
    p = _grade(course, tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "cases.toml" in p.stderr and where in p.stderr and key in p.stderr


def test_a_target_the_reference_does_not_define(tmp_path):
    course = _course(tmp_path / "course")
    path = course / "assignments" / "mha" / "cases.toml"
    path.write_text(path.read_text().replace("MultiHeadedAttention", "MultiHeadAttention"))
    p = _grade(course, tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "[targets.MultiHeadAttention]" in p.stderr
    assert "reference/mha.ipynb defines no class MultiHeadAttention" in p.stderr
    assert "not defined in the submission" not in p.stderr


def _edit_reference(course, find: str, replace: str) -> None:
    path = course / "reference" / "mha.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if find in source:
            cell["source"] = source.replace(find, replace, 1)
            break
    else:
        raise AssertionError(f"{find!r} is not in the reference")
    path.write_text(json.dumps(nb), encoding="utf-8")


def test_a_reference_whose_own_code_fails(tmp_path):
    course = _course(tmp_path / "course")
    _edit_reference(course, "class MultiHeadedAttention(nn.Module):\n",
                    "SCALE = 1 / 0\nclass MultiHeadedAttention(nn.Module):\n    scale = SCALE\n")
    p = _grade(course, tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert "reference/mha.ipynb: cell" in p.stderr and "line 1" in p.stderr
    assert "ZeroDivisionError" in p.stderr


def test_a_reference_whose_class_does_not_parse(tmp_path):
    course = _course(tmp_path / "course")
    _edit_reference(course, "class MultiHeadedAttention(nn.Module):\n", "class MultiHeadedAttention(nn.Module):\n  )\n")
    p = _grade(course, tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "defines no class MultiHeadedAttention" in p.stderr and "does not parse" in p.stderr


def test_the_shipped_case_files_still_load():
    for name in ("mha", "lstm", "gru"):
        a = load_assignment(ROOT / "assignments" / name, ROOT)
        assert a.cases and a.max_score > 0
