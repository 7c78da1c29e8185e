"""Assignments and their cases: the model of ``assignments/<name>/cases.toml``.

The file is data an instructor edits (see docs/cases.md). ``Assignment`` holds an assignment's
graded classes (``Target``: how to call one, what it returns) and its ``Case``s (one graded test
each); the constants name what a case may ask for (``CHECKS``, ``EVIDENCE``, ``CALLS``,
``MASK_KINDS``, ``DTYPES``, ``VISIBILITIES``). ``grader.spec.case_file`` reads the file into it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The checks a case may ask for, and what each needs from the case.
CHECKS: dict[str, str] = {
    "shape": "every output is present with the reference's shape",
    "match": "outputs equal the reference's within tolerance",
    "mask": "masked attention weights are ~0 and every row sums to 1",
    "mask_invariance": "outputs don't change when masked keys/values are perturbed",
    "grad": "parameter gradients of a seeded loss equal the reference's",
    "raises": "constructing the module raises the declared exception",
    "params": "parameter names and shapes equal the template's",
    "param_count": "the number of parameters equals the reference's",
    "policy": "the class uses none of its target's forbidden APIs",
}
#: What a failing case can show (``grader.judge.hints`` reads it from the problems and the cause),
#: and so what a case's hint may be about (``hint_on``): a hint is shown only with its evidence.
EVIDENCE: dict[str, str] = {
    "shape": "an output is missing or has the wrong shape",
    "values": "an output's values differ from the reference's",
    "gradient": "a parameter's gradient differs from the reference's",
    "unused": "a parameter receives no gradient",
    "mask": "masked positions get weight, or change the output",
    "softmax": "attention rows do not sum to 1",
    "parameters": "parameter names, shapes or count differ",
    "raises": "the constructor does not raise as it should",
    "error": "the code raised an exception while running the inputs (forward or backward)",
    "shape_error": "the code raised an exception about sizes that do not fit (a shape mismatch)",
    "build_error": "the constructor raised, or the reference's parameters could not be loaded",
    "forbidden": "a forbidden API is used",
    "custom": "a check of the course's own found a problem",
}
#: The default ``hint_on`` of a case: the evidence its checks can produce.
CHECK_EVIDENCE: dict[str, tuple[str, ...]] = {
    "shape": ("shape", "shape_error"), "match": ("values",), "mask": ("mask", "softmax"), "mask_invariance": ("mask",),
    "grad": ("gradient", "unused"), "raises": ("raises",), "params": ("parameters",),
    "param_count": ("parameters",), "policy": ("forbidden",),
}
#: How a case calls its target (``call``), and the masks it may give (``mask``'s ``kind``).
CALLS = ("forward", "unroll")
MASK_KINDS = ("padding", "causal", "custom")
#: Keys a hidden case keeps in a released (student) case file.
RELEASED_HIDDEN_KEYS = ("id", "name", "target", "points", "visibility")
#: Who may see a case's data (``visibility``), and the dtypes its inputs may have (``dtypes``).
VISIBILITIES = ("public", "hidden")
DTYPES = ("float32", "float64", "float16")


@dataclass(frozen=True)
class Target:
    """How to call one graded class and name what it returns."""

    name: str
    args: tuple[str, ...]
    #: a tuple of names (forward returns a tuple), "dict" (a dict with ``keys``), or one name
    returns: tuple[str, ...] | str
    keys: tuple[str, ...] = ()
    attention: str | None = None
    key_args: tuple[str, ...] = ()
    mask_rank: int | None = None
    loss: tuple[str, ...] = ()
    #: the output that ``mask_invariance`` compares (the module's result)
    final: str | None = None
    #: outputs in data-flow order, so a report names the first that diverges (default: as returned)
    flow: tuple[str, ...] = ()
    #: APIs the class must not use (dotted names; a prefix forbids everything below it)
    forbid: tuple[str, ...] = ()

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the outputs in the order the reference returns them."""
        if self.returns == "dict":
            return self.keys
        if isinstance(self.returns, str):
            return (self.returns,)
        return self.returns


@dataclass(frozen=True)
class Case:
    """One graded test: build ``target`` with ``init``, feed seeded inputs, run ``checks``."""

    id: str
    name: str
    target: str
    checks: tuple[str, ...]
    points: float
    init: dict[str, Any] = field(default_factory=dict)
    #: input name -> shape (list of ints), or a tuple of shapes for a tuple input such as (h, c)
    inputs: dict[str, Any] = field(default_factory=dict)
    mask: dict[str, Any] | None = None
    seed: int = 0
    call: str = "forward"
    compare: tuple[str, ...] = ()
    rtol: float = 1e-4
    atol: float = 1e-5
    raises: str | None = None
    hint: str = ""
    #: the evidence (``EVIDENCE``) that shows the hint is about this failure (default: what the checks find)
    hint_on: tuple[str, ...] = ()
    visibility: str = "public"
    #: input name -> dtype name (default float32)
    dtypes: dict[str, str] = field(default_factory=dict)
    #: a hidden case in a released case file: listed with its points, never run locally
    placeholder: bool = False

    def __post_init__(self) -> None:
        if not self.hint_on:
            found = [e for c in self.checks for e in CHECK_EVIDENCE.get(c, ("custom",))]
            object.__setattr__(self, "hint_on", tuple(dict.fromkeys(found)))

    @property
    def hidden(self) -> bool:
        """True for cases whose data students never see."""
        return self.visibility == "hidden"


@dataclass(frozen=True)
class Assignment:
    """An assignment: its graded classes, reference file and cases."""

    name: str
    title: str
    folder: Path
    reference: Path
    targets: dict[str, Target]
    cases: tuple[Case, ...]
    timeout: float | None = None
    #: a student bundle's case file (made by ``grade release``): no reference, hidden cases as placeholders
    released: bool = False
    #: custom checks: name -> function, from the assignment folder's ``checks.py`` (trusted courses only)
    custom_checks: dict[str, Any] = field(default_factory=dict)
    #: False for a bundle found beside a submission: nothing of it is imported or run (``grader.course.resolve``)
    trusted: bool = True

    @property
    def classes(self) -> tuple[str, ...]:
        """The graded class names, in case order of first use."""
        return tuple(self.targets)

    @property
    def max_score(self) -> float:
        """Total points of all cases."""
        return sum(c.points for c in self.cases)

    @property
    def fixtures_file(self) -> Path:
        """The public cases' inputs, parameters and expected outputs (made by ``grade release``)."""
        return self.folder / "public.safetensors"

    @property
    def cases_file(self) -> Path:
        """The ``cases.toml`` this assignment was read from."""
        return self.folder / "cases.toml"
