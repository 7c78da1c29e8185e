"""Similarity flags between students' graded code, the template's code left out.

Fingerprinting and comparison are copydetect's (``CodeFingerprint``, ``compare_files``),
run in this process on strings: no file is written, nothing leaves the machine. copydetect
is an optional dependency, imported only when flags are asked for; without it a
``UsageError`` says how to install it.

What is compared is each student's *graded code*: the statements the graded classes need
(``graded_code``), not their experiments, plots or prints. copydetect filters the code
first (every name becomes ``V``/``F``/``O``, strings ``S``, whitespace and comments
dropped), so renaming variables or reformatting does not hide a copy. Every k-gram of the
template's code (``template_code``: all of it, unsliced) is boilerplate, removed from each
student's fingerprints, so two students who only kept the skeleton are not alike.

``similarity_a`` is the share of student a's remaining (non-template) code that is also in
b's, ``similarity_b`` the reverse; a pair is flagged when either reaches the threshold.
Flags are for a person to look at, not proof: in a fill-in-the-blank assignment, two
students who fill the blanks the same obvious way share all their non-template code.

Determinism: copydetect hashes k-grams with Python's ``hash``, which changes from process
to process. With a winnowing window of 1 (copydetect's own default: noise threshold =
guarantee threshold = 25) every k-gram is kept, so which fingerprints two students share,
and hence every similarity, does not depend on the hash values: the same codes give the
same flags in every run. Students are fingerprinted once each, in sorted order.

Cost: fingerprinting is linear in each student's code; the comparison is pairwise,
n(n-1)/2 ``compare_files`` calls, O(n²). Measured on this 2-core machine, one core, for 300
synthetic students (about 3 KB of graded code each, tests/test_batch_similarity.py): about
0.6 s to import copydetect (it imports matplotlib), 3.5 s to fingerprint (11 ms a student,
pygments' lexer) and 10-15 s for the 44,850 comparisons (about 0.25 ms a pair); 14-21 s in
all. Twice the students, four times the comparisons: about a minute for 600.

A quirk of copydetect 0.5.0's boilerplate removal: a k-gram that occurs several times in a
student's own code may lose one occurrence even when it is not in the template. It only
lowers that student's token count a little, and alike for alike code.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from grader.errors import SubmissionUnreadable, UsageError

#: copydetect's noise threshold: the shortest match (in filtered characters) that counts.
NOISE_K = 25
#: winnowing window: 1 keeps every k-gram (see the module's note on determinism).
WINDOW = 1
#: the least shared filtered code (characters) that can make a flag: more than one seam's k-grams span.
MIN_SHARED = 2 * NOISE_K
#: the most characters of one student's code (or the template's) that are fingerprinted.
MAX_CODE_CHARS = 256 * 1024

_INSTALL = "similarity flags need copydetect: pip install copydetect"


@dataclass(frozen=True)
class Flag:
    """Two students whose graded code is alike (``student_a`` < ``student_b``)."""

    student_a: str
    student_b: str
    #: share of a's non-template code that is also in b's (0..1)
    similarity_a: float
    #: share of b's non-template code that is also in a's (0..1)
    similarity_b: float

    @property
    def similarity(self) -> float:
        return max(self.similarity_a, self.similarity_b)


def _copydetect():
    try:
        import copydetect
    except ImportError as e:
        raise UsageError(_INSTALL) from e
    return copydetect


def graded_code(path: Path, classes: list[str]) -> str:
    """The source of the statements the graded ``classes`` need, in the submission's order.

    A graded class whose cell does not parse counts with that cell's whole source. An
    unreadable submission has no graded code (""). At most ``MAX_CODE_CHARS`` characters.
    """
    from grader.plan.slicing import parse_units, slice_for
    from grader.plan.submission import read_submission

    try:
        submission = read_submission(Path(path))
    except SubmissionUnreadable:
        return ""
    parsed = parse_units(submission.units)
    chosen = slice_for(parsed, list(classes))
    pieces = [s.source for s in chosen.statements]
    seen: set[int] = set()
    for name in chosen.missing:
        err = parsed.defining_error(name)
        if err is not None and err.unit.index not in seen:
            seen.add(err.unit.index)
            pieces.append(err.unit.source)
    return "\n\n".join(pieces)[:MAX_CODE_CHARS]


def template_code(path: Path, classes: list[str] | None = None) -> str:
    """The course template's code to exclude: every code cell, unsliced, then its graded code.

    The template's own graded code (``graded_code(path, classes)``) is added because
    slicing puts statements next to each other that are cells apart in the template (the
    imports, then the first class): without it, the filtered text across such a seam would
    be new code that every student shares. Each part at most ``MAX_CODE_CHARS``.
    """
    from grader.plan.submission import read_submission

    whole = "\n\n".join(u.source for u in read_submission(Path(path)).units)[:MAX_CODE_CHARS]
    return whole + "\n\n" + graded_code(path, classes) if classes else whole


def _fingerprint(copydetect, code: str, boilerplate):
    return copydetect.CodeFingerprint("code.py", NOISE_K, WINDOW, boilerplate=boilerplate,
                                      language="python", fp=io.StringIO(code))


class _Positions:
    """A fingerprint as arrays: the hash at each fingerprinted position, and its distinct hashes sorted."""

    def __init__(self, hashes, positions, unique, k: int, coverage: int, has_code: bool):
        self.hashes, self.positions, self.unique = hashes, positions, unique
        self.k, self.coverage, self.has_code = k, coverage, has_code

    @classmethod
    def of(cls, fp) -> "_Positions":
        import numpy as np

        pairs = [(h, i) for h, idx in fp.hash_idx.items() for i in np.atleast_1d(idx)]
        hashes = np.array([h for h, _ in pairs], dtype=np.int64)
        positions = np.array([i for _, i in pairs], dtype=np.int64)
        return cls(hashes, positions, np.unique(hashes), fp.k, fp.token_coverage, len(fp.filtered_code) > 0)

    def shared_positions(self, other: "_Positions"):
        """The positions whose hash the other fingerprint has too."""
        import numpy as np

        if not len(other.unique) or not len(self.hashes):
            return self.positions[:0]
        at = np.minimum(np.searchsorted(other.unique, self.hashes), len(other.unique) - 1)
        return self.positions[other.unique[at] == self.hashes]


def overlap(a: _Positions, b: _Positions, copied_slices) -> tuple[int, float, float]:
    """What ``copydetect.compare_files`` computes for two fingerprints (overlapping tokens of the first,
    and each one's share of its tokens found in the other), with array lookups instead of its per-hash
    loop; ``copied_slices`` is copydetect's own ``get_copied_slices``. Equal to it (tests check)."""
    slices_a = copied_slices(a.shared_positions(b), a.k)
    if len(slices_a[0]) == 0:
        return 0, 0.0, 0.0
    slices_b = copied_slices(b.shared_positions(a), b.k)
    shared_a = int((slices_a[1] - slices_a[0]).sum())
    shared_b = int((slices_b[1] - slices_b[0]).sum())
    return (shared_a, shared_a / a.coverage if a.has_code else 0.0, shared_b / b.coverage if b.has_code else 0.0)


def similarity_flags(codes: dict[str, str], template: str, threshold: float = 0.8, *,
                     min_shared: int = MIN_SHARED) -> list[Flag]:
    """Every pair of students whose graded code is alike, the template's code excluded.

    ``codes`` maps a student's id to their graded code (``graded_code``); students whose
    code is empty, or all template, are skipped. A pair is flagged when either similarity
    is at least ``threshold`` and they share at least ``min_shared`` characters of filtered
    non-template code (so that a few common seams or one-line fills are not a flag). Sorted by similarity (the larger of the two, then the
    smaller) descending, then by the ids. Pairwise: O(n²) comparisons, each student
    fingerprinted once.
    """
    if not 0 < threshold <= 1:
        raise UsageError(f"the similarity threshold must be above 0 and at most 1, not {threshold}")
    copydetect = _copydetect()
    import numpy as np

    boilerplate = np.array([], dtype=np.int64)
    if template.strip():
        boilerplate = np.unique(np.array(sorted(
            _fingerprint(copydetect, template[:MAX_CODE_CHARS], None).hashes), dtype=np.int64))
    prints = []
    for student in sorted(codes):
        code = codes[student][:MAX_CODE_CHARS]
        if not code.strip():
            continue
        fp = _fingerprint(copydetect, code, boilerplate)
        if fp.hashes and fp.token_coverage > 0:
            prints.append((student, fp))
    from copydetect.utils import get_copied_slices as copied_slices

    flags = []
    arrays = [_Positions.of(fp) for _, fp in prints]
    for i, (a, fa) in enumerate(prints):
        for j in range(i + 1, len(prints)):
            b, fb = prints[j]
            if fa.hashes.isdisjoint(fb.hashes):
                continue
            shared, sim_a, sim_b = overlap(arrays[i], arrays[j], copied_slices)
            sim_a, sim_b = min(float(sim_a), 1.0), min(float(sim_b), 1.0)
            if shared >= min_shared and max(sim_a, sim_b) >= threshold:
                flags.append(Flag(a, b, sim_a, sim_b))
    flags.sort(key=lambda f: (-f.similarity, -min(f.similarity_a, f.similarity_b), f.student_a, f.student_b))
    return flags


def flags_for_files(paths: dict[str, str], classes: list[str], template: str | None) -> list[Flag]:
    """``similarity_flags`` for students' files (id -> path) and the template's path (None: no template);
    plain arguments, so that it can run in a process of its own."""
    codes = {student: graded_code(Path(path), classes) for student, path in paths.items()}
    return similarity_flags(codes, template_code(Path(template), classes) if template else "")
