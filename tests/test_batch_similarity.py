"""grader.batch.similarity: copies flagged, the template excluded, styles apart, determinism, cost."""
from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.batch.similarity import Flag, graded_code, similarity_flags, template_code
from grader.errors import UsageError

ROOT = Path(__file__).parent.parent
MHA = ROOT / "tests" / "submissions" / "mha"
CLASSES = ["ScaledDotProductAttention", "MultiHeadedAttention"]
TEMPLATE = MHA / "course_template_2021.ipynb"


@pytest.fixture(scope="module")
def template() -> str:
    return template_code(TEMPLATE, CLASSES)


@pytest.fixture(scope="module")
def einsum() -> str:
    return graded_code(MHA / "correct_einsum.py", CLASSES)


@pytest.fixture(scope="module")
def filled() -> str:
    return graded_code(MHA / "filled.ipynb", CLASSES)


def test_graded_code_is_the_slice_only(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("import torch\nimport matplotlib\n\nclass A:\n    def f(self):\n        return torch.ones(1)\n\n"
                    "for i in range(3):\n    print(i)\nmatplotlib.use('Agg')\n")
    code = graded_code(path, ["A"])
    assert code == "import torch\n\nclass A:\n    def f(self):\n        return torch.ones(1)"
    assert graded_code(path, ["Missing"]) == ""


def test_graded_code_keeps_a_graded_class_whose_cell_does_not_parse(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("class A:\n    def f(self):\n        return (1 +\n")
    assert "class A:" in graded_code(path, ["A"])


def test_graded_code_of_a_notebook(filled):
    assert "class ScaledDotProductAttention" in filled and "class MultiHeadedAttention" in filled
    assert "import torch" in filled


def test_two_identical_solutions_are_flagged(template, einsum):
    flags = similarity_flags({"alice": einsum, "bob": einsum}, template)
    assert flags == [Flag("alice", "bob", 1.0, 1.0)]
    assert flags[0].similarity == 1.0


def test_a_copy_with_renamed_variables_is_flagged(template, einsum):
    renamed = rename(einsum, random.Random(1))
    assert renamed != einsum
    flags = similarity_flags({"alice": einsum, "bob": renamed}, template)
    assert len(flags) == 1 and flags[0].similarity >= 0.9


def test_a_solution_and_the_untouched_template_are_not_flagged(template, einsum):
    untouched = graded_code(TEMPLATE, CLASSES)
    assert untouched
    assert similarity_flags({"alice": einsum, "lazy": untouched}, template, threshold=0.05) == []
    assert similarity_flags({"lazy1": untouched, "lazy2": untouched}, template, threshold=0.05) == []


def test_the_template_is_excluded(einsum, template):
    """Without the template, a solution and the bare template look alike; with it, not."""
    untouched = graded_code(TEMPLATE, CLASSES)
    with_nothing = similarity_flags({"alice": einsum, "lazy": untouched}, "", threshold=0.3)
    assert with_nothing and with_nothing[0].similarity_b > 0.5
    assert similarity_flags({"alice": einsum, "lazy": untouched}, template, threshold=0.05) == []


def test_two_styles_are_below_the_threshold_and_below_a_copy(template, einsum, filled):
    assert similarity_flags({"einsum": einsum, "filled": filled}, template) == []
    styles = similarity_flags({"einsum": einsum, "filled": filled}, template, threshold=0.01)
    copies = similarity_flags({"einsum": einsum, "copy": einsum}, template, threshold=0.01)
    assert styles and copies[0].similarity > styles[0].similarity
    assert styles[0].similarity < 0.8


def test_empty_code_is_skipped(template, einsum):
    flags = similarity_flags({"alice": einsum, "bob": einsum, "empty": "", "blank": "  \n\n"}, template)
    assert [(f.student_a, f.student_b) for f in flags] == [("alice", "bob")]
    assert similarity_flags({}, template) == []
    assert similarity_flags({"a": "", "b": ""}, template) == []


def test_sorted_by_similarity_and_deterministic(template, einsum, filled):
    rng = random.Random(7)
    codes = {"c1": einsum, "c2": einsum, "half": einsum[: len(einsum) // 2], "f1": filled,
             "f2": rename(filled, rng), "einsum_renamed": rename(einsum, rng)}
    flags = similarity_flags(codes, template, threshold=0.5)
    assert flags == similarity_flags(dict(reversed(list(codes.items()))), template, threshold=0.5)
    keys = [(-f.similarity, -min(f.similarity_a, f.similarity_b), f.student_a, f.student_b) for f in flags]
    assert keys == sorted(keys)
    assert all(f.student_a < f.student_b for f in flags)
    assert ("c1", "c2") in [(f.student_a, f.student_b) for f in flags]
    assert ("f1", "f2") in [(f.student_a, f.student_b) for f in flags]


def test_the_same_flags_in_another_process(template, einsum, filled, tmp_path):
    """copydetect hashes with Python's hash(), seeded per process: the flags must not depend on it."""
    codes = {"a": einsum, "b": rename(einsum, random.Random(3)), "c": filled, "d": einsum[:1500]}
    here = similarity_flags(codes, template, threshold=0.3)
    for name, text in {**codes, "template": template}.items():
        (tmp_path / f"{name}.txt").write_text(text)
    script = (
        "import sys, pathlib\n"
        "from grader.batch.similarity import similarity_flags\n"
        "d = pathlib.Path(sys.argv[1])\n"
        "codes = {n: (d / f'{n}.txt').read_text() for n in 'abcd'}\n"
        "print(repr(similarity_flags(codes, (d / 'template.txt').read_text(), threshold=0.3)))\n")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                             check=True, env={"PYTHONHASHSEED": seed, "PATH": "", "PYTHONPATH": str(ROOT)},
                             cwd=ROOT)
        assert out.stdout.strip() == repr(here)


def test_bad_threshold(template):
    for bad in (0, -0.1, 1.5):
        with pytest.raises(UsageError, match="threshold"):
            similarity_flags({"a": "x = 1"}, template, threshold=bad)


def test_without_copydetect_a_clear_usage_error(monkeypatch, template):
    monkeypatch.setitem(sys.modules, "copydetect", None)  # import copydetect -> ImportError
    with pytest.raises(UsageError, match=r"similarity flags need copydetect: pip install copydetect"):
        similarity_flags({"a": "x = 1", "b": "x = 1"}, template)


def test_grader_batch_does_not_import_copydetect():
    code = ("import sys, grader.batch.similarity, grader.cli\n"
            "print('copydetect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "False"


_NAMES = re.compile(r"\b(scores|attention|out|d_K|Q_feat|K_feat|V_feat|Q_split|K_split|V_split|n_batch|x|y)\b")


def rename(code: str, rng: random.Random) -> str:
    """The same code with some local variables renamed (a cheater's disguise)."""
    fresh = {}

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in fresh:
            fresh[name] = f"{name}_{rng.randrange(10**6)}" if rng.random() < 0.7 else name
        return fresh[name]

    return _NAMES.sub(sub, code)


def test_a_class_of_renamed_variants_and_copies(template, einsum, filled, capsys):
    """A synthetic class: variants of five solutions with renamed variables, and a few exact copies.

    60 students here (1,770 pairs, a few seconds); with 295 variants + 5 copies (44,850 pairs) the same
    code took 14-21 s on one core of the 2-core machine."""
    rng = random.Random(2024)
    solutions = [einsum, filled] + [graded_code(MHA / n, CLASSES) for n in
                                    ("correct_inf_mask.py", "correct_sdpa_reuse.py", "bug_no_scaling.py")]
    codes = {}
    for i in range(55):
        base = solutions[i % len(solutions)]
        codes[f"s{i:03d}"] = rename(base, rng)
    for i in range(5):  # exact copies of five students
        codes[f"copy{i}"] = codes[f"s{i * 7:03d}"]
    assert len(codes) == 60
    start = time.perf_counter()
    flags = similarity_flags(codes, template)
    took = time.perf_counter() - start
    pairs = {(f.student_a, f.student_b) for f in flags}
    for i in range(5):
        assert (f"copy{i}", f"s{i * 7:03d}") in pairs
    exact = [f for f in flags if f.student_a.startswith("copy")
             and f.student_b == f"s{int(f.student_a[4:]) * 7:03d}"]
    assert all(f.similarity_a == f.similarity_b == 1.0 for f in exact)
    with capsys.disabled():
        print(f"\n60 students: {took:.2f} s, {len(flags)} flags, 1770 pairs")
    assert took < 60


def test_the_array_overlap_equals_copydetects_own_comparison(template):
    """``overlap`` replaces copydetect's per-hash loop; on every pair of the corpus it gives copydetect's numbers."""
    import copydetect
    import numpy as np
    from copydetect.utils import get_copied_slices

    from grader.batch.similarity import _fingerprint, _Positions, overlap

    boilerplate = np.unique(np.array(sorted(_fingerprint(copydetect, template, None).hashes), dtype=np.int64))
    prints = [_fingerprint(copydetect, graded_code(p, CLASSES), boilerplate)
              for p in sorted(MHA.glob("*.py")) + sorted(MHA.glob("*.ipynb"))]
    prints = [fp for fp in prints if fp.hashes and fp.token_coverage > 0]
    compared = 0
    for i, fa in enumerate(prints):
        for fb in prints[i + 1:]:
            shared, (sim_a, sim_b), _ = copydetect.compare_files(fa, fb)
            assert overlap(_Positions.of(fa), _Positions.of(fb), get_copied_slices) == \
                (int(shared), float(sim_a), float(sim_b))
            compared += shared > 0
    assert compared > 100  # most pairs share code: the comparison is not trivially zero
