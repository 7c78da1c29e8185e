#!/usr/bin/env python
"""Two peer autograders, otter-grader and nbgrader, grading the same MHA notebooks as ``grade``.

Both peers are installed in a virtual environment of this benchmark's own
(``benchmarks/out/peers-venv``, made once with ``--system-site-packages`` so that the installed
torch and this repository's ``grader`` are used as they are; pip gets a constraints file that pins
torch and numpy to the installed versions, so it can never fetch another torch). Nothing is
installed into the system Python.

What they check, "the same cases": every case of ``assignments/mha/cases.toml`` (18 cases, 28
points; both classes of the notebook), each one test worth the case's points, hidden cases as
hidden tests. The reference's inputs, masks, parameters, loss weights and expected outputs are
exported once from the grader's reference cache (``grader.course.reference_outputs.expected_outputs``) into
``peer_cases.pt``; a small support module, ``peer_checks.py`` (its text is ``PEER_CHECKS`` below),
does what the worker and the judge do for a case: build the student's class with the case's
``init`` (seeded), ``eval()``, load the reference's state dict (strict), call forward on the
reference's inputs, then check every output's shape, every value with the case's rtol/atol, the
masked attention weights and row sums, that a masked key changes no output row, the parameters'
gradients of the seeded loss, the expected ``ValueError``; the two policy cases look for the
forbidden APIs in the class's code (names used in its methods) and at run time (a
``TorchFunctionMode`` that records calls to them, and any ``nn.MultiheadAttention`` submodule).
Both peers ship these two files next to the notebook and each test calls
``peer_checks.check(<the notebook's globals>, CASE_ID)``: a test passes when that raises nothing.

- otter-grader: one exception-based test file per case (``tests/<case>.py``), packed with
  ``otter generate`` into ``autograder.zip`` (the two files as support files); each notebook is
  graded by ``otter run -a autograder.zip`` (no Docker; ``otter grade`` needs it). The score is
  the sum of the tests' scores in its ``results.json`` over their maximum.
- nbgrader: a course folder whose source notebook is the course template
  (``tests/submissions/mha/course_template_2021.ipynb``) with one locked autograder test cell per
  case appended (hidden cases inside ``### BEGIN/END HIDDEN TESTS``), released with ``nbgrader
  generate_assignment``; each student's submission is their notebook with the released test
  cells appended (the cells a student downloads with the release), in
  ``submitted/<student>/mha/mha.ipynb``; ``nbgrader autograde mha --student <id>`` grades one
  student; the score is the submission's score over its maximum in the gradebook database.

Timing: each peer's command, per notebook, one at a time, from its start to its end (wall time
of the subprocess: starting the tool, a kernel, executing the whole notebook, the tests,
writing results). Building the autograder zip or the release is done once before and is not
counted (``setup_s`` of ``PeerRun``). Every subprocess has a time limit; a peer that cannot be
installed or run raises ``RuntimeError`` saying why. The notebooks must not be hostile: the peers
run them unsandboxed, as themselves.

    python benchmarks/peers.py [NOTEBOOK ...] [--sample 6] [--jobs 2] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out"
#: The peers' virtual environment, reused across runs (benchmarks/out/ is git-ignored).
VENV = OUT / "peers-venv"
TEMPLATE = REPO / "tests" / "submissions" / "mha" / "course_template_2021.ipynb"
ASSIGNMENT = "mha"
#: What pip installs in the venv (one pip command each, so that one failing leaves the other usable).
SPECS = {"otter": "otter-grader==7.0.0", "nbgrader": "nbgrader==0.9.6"}
#: Packages of the system Python that pip must leave as they are (their installed versions are pinned).
PINNED = ("torch", "numpy")
#: Seconds any one peer command may take (one notebook), and pip.
TIMEOUT = 300.0
PIP_TIMEOUT = 900.0
FIXTURE = "peer_cases.pt"
HELPER = "peer_checks.py"
#: Written in the venv once both peers are installed: what was installed, against which torch.
MARKER = "peers.json"


# --------------------------------------------------------------------------- the checks the peers run

PEER_CHECKS = r'''"""The checks of one case of assignments/mha/cases.toml, for a peer autograder's tests.

Written by benchmarks/peers.py next to ``peer_cases.pt`` (the reference's inputs, parameters and
outputs, exported from the grader's reference cache). ``check(env, case_id)`` raises
AssertionError (or the student's own exception) when the case fails; returns None when it passes.
"""
import functools
import inspect
import io
import os
import tokenize

import numpy as np
import torch

MASK_FILL_FLOOR = -1e8     # scores at or below this are a mask fill (-1e9, -inf): equal
MASKED_WEIGHT_TOL = 1e-6   # masked attention weights must be this close to 0
ROW_SUM_TOL = 1e-4         # and each row of attention weights must sum to 1 within this


@functools.lru_cache(maxsize=1)
def cases():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_cases.pt")
    return torch.load(path, weights_only=True)


def check(env, case_id):
    case = cases()[case_id]
    cls = _target(env, case)
    checks = case["checks"]
    if "policy" in checks:
        return _policy(env, cls, case)
    if case["raises"]:
        torch.manual_seed(case["seed"])
        try:
            cls(**case["init"])
        except Exception as e:
            bases = [c.__name__ for c in type(e).__mro__]
            assert case["raises"] in bases, f"raised {type(e).__name__}, expected {case['raises']}"
            return
        raise AssertionError(f"{case['target']}(**{case['init']}) did not raise {case['raises']}")
    module, outs = _run(cls, case, grad="grad" in checks)
    rtol, atol = case["rtol"], case["atol"]
    expected = case["expected"]
    if "shape" in checks:
        for name, exp in expected.items():
            assert name in outs, f"{name} is missing from what forward returns"
            got = _plain(outs[name], name)
            assert tuple(got.shape) == tuple(exp.shape), \
                f"{name} has shape {list(got.shape)}, expected {list(exp.shape)}"
    if "match" in checks:
        for name in case["compare"] or list(expected):
            if name in expected:
                assert name in outs, f"{name} is missing from what forward returns"
                _close(name, expected[name], _plain(outs[name], name), rtol, atol)
    if "mask" in checks:
        _mask(case, outs)
    if "mask_invariance" in checks:
        _mask_invariance(cls, module, case, outs)
    if "grad" in checks:
        _grad(module, case, outs)


def _target(env, case):
    cls = env.get(case["target"])
    assert cls is not None, f"{case['target']} is not defined"
    assert isinstance(cls, type) and issubclass(cls, torch.nn.Module), \
        f"{case['target']} must be a class derived from nn.Module"
    return cls


def _run(cls, case, grad=False):
    """Build (seeded), eval(), load the reference's parameters, forward on the reference's inputs."""
    torch.manual_seed(case["seed"])
    module = cls(**case["init"])
    module.eval()
    module.load_state_dict(case["params"], strict=True)
    torch.manual_seed(case["seed"] + 1)
    with torch.set_grad_enabled(grad):
        outs = _invoke(module, case, case["inputs"], case["mask"])
    return module, outs


def _invoke(module, case, inputs, mask):
    args = []
    for name in case["args"]:
        if name not in inputs:
            break
        args.append(inputs[name].clone())
    kwargs = {"mask": mask.clone()} if mask is not None else {}
    result = module(*args, **kwargs)
    returns = case["returns"]
    if returns == "dict":
        assert isinstance(result, dict), f"forward must return a dict, got {type(result).__name__}"
        return {k: result[k] for k in case["keys"] if k in result}
    if isinstance(returns, str):
        return {returns: result}
    assert isinstance(result, (tuple, list)) and len(result) == len(returns), \
        f"forward must return a tuple ({', '.join(returns)})"
    return dict(zip(returns, result))


def _plain(value, name):
    assert isinstance(value, torch.Tensor), f"{name} should be a tensor, got {type(value).__name__}"
    t = value.detach().cpu()
    assert not t.is_complex(), f"{name} should be a real tensor"
    return t.double().numpy()


def _close(name, exp, got, rtol, atol):
    e = exp.double().numpy()
    assert e.shape == got.shape, f"{name} has shape {list(got.shape)}, expected {list(e.shape)}"
    with np.errstate(all="ignore"):
        bad = ~np.isclose(got, e, rtol=rtol, atol=atol, equal_nan=False)
        bad &= ~((e <= MASK_FILL_FLOOR) & (got <= MASK_FILL_FLOOR))
        if bad.any():
            diff = np.where(np.isfinite(got), np.abs(got - e), np.inf)
            raise AssertionError(f"{name}: {int(bad.sum())} of {bad.size} values differ from the reference "
                                 f"(largest difference {float(diff[bad].max()):.3g})")


def _mask(case, outs):
    name, exp = case["attention"], case["expected"].get(case["attention"])
    if exp is None or case["mask"] is None:
        return
    assert name in outs, f"{name} is missing from what forward returns"
    att = _plain(outs[name], name)
    assert att.shape == tuple(exp.shape), f"{name} has shape {list(att.shape)}, expected {list(exp.shape)}"
    assert np.isfinite(att).all(), f"{name} has non-finite values"
    masked = np.broadcast_to(case["mask"].numpy(), att.shape) == 0
    leaked = np.where(masked, np.abs(att), 0.0)
    assert not leaked.size or leaked.max() <= MASKED_WEIGHT_TOL, f"{name} gives weight to masked positions"
    sums = att.sum(axis=-1)
    assert not sums.size or np.abs(sums - 1.0).max() <= ROW_SUM_TOL, f"the rows of {name} do not sum to 1"


def _mask_invariance(cls, module, case, outs):
    """Changing the last key changes no output row whose query cannot see that key."""
    name, att = case["final"], case["expected"].get(case["attention"])
    exp = case["expected"].get(name)
    if exp is None or att is None or case["mask"] is None:
        return
    torch.manual_seed(case["seed"] + 1)
    with torch.no_grad():
        pouts = _invoke(module, case, case["pinputs"], case["pmask"])
    assert name in outs and name in pouts, f"{name} is missing from what forward returns"
    base, pert = _plain(outs[name], name), _plain(pouts[name], name)
    for got in (base, pert):
        assert got.shape == tuple(exp.shape), f"{name} has shape {list(got.shape)}, expected {list(exp.shape)}"
        assert np.isfinite(got).all(), f"{name} has non-finite values"
    rows = np.broadcast_to(case["mask"].numpy(), tuple(att.shape))[..., -1] == 0
    while rows.ndim > base.ndim - 1:
        rows = rows.all(axis=1)
    if rows.shape != base.shape[:-1]:
        return
    changed = np.abs(base - pert).max(axis=-1) > case["atol"] + case["rtol"]
    assert not (changed & rows).any(), f"{name} changes where the query cannot see the changed key"


def _grad(module, case, outs):
    loss = 0.0
    for name in case["loss"] or list(outs):
        assert name in outs, f"{name} is missing from what forward returns"
        w = case["gradw"][name]
        assert isinstance(outs[name], torch.Tensor) and tuple(outs[name].shape) == tuple(w.shape), \
            f"cannot check gradients: {name} has the wrong shape"
        loss = loss + (outs[name] * w).sum()
    assert isinstance(loss, torch.Tensor) and loss.requires_grad, "the outputs do not depend on any parameter"
    loss.backward()
    params = dict(module.named_parameters())
    for k, exp in case["grad"].items():
        p = params.get(k)
        assert p is not None and p.grad is not None, f"no gradient reaches {k}"
        _close(f"the gradient of {k}", exp, _plain(p.grad, k), case["rtol"], case["atol"])


class _Watch(torch.overrides.TorchFunctionMode):
    """Records the torch functions called whose name contains a forbidden name."""

    def __init__(self, names):
        super().__init__()
        self.names, self.seen = names, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        called = getattr(func, "__name__", "")
        if any(n in called for n in self.names):
            self.seen.append(called)
        return func(*args, **(kwargs or {}))


def _policy(env, cls, case):
    """No forbidden API in the class's methods (names used in their code) nor called at run time."""
    names = {n.rsplit(".", 1)[-1] for n in case["forbid"]}
    for attr in vars(cls).values():
        fn = getattr(attr, "__func__", attr)
        if not inspect.isfunction(fn):
            continue
        try:
            source = inspect.getsource(fn)
            used = {t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.NAME}
        except (OSError, TypeError, SyntaxError, tokenize.TokenError):
            continue
        found = sorted(used & names)
        assert not found, f"{cls.__name__}.{fn.__name__} uses {', '.join(found)}"
    run = cases()[case["policy_run"]]
    watch = _Watch(names)
    with watch:
        module, _ = _run(cls, run)
    assert not watch.seen, f"{cls.__name__} calls {', '.join(sorted(set(watch.seen)))}"
    subs = sorted({type(m).__name__ for m in module.modules() if type(m).__name__ in names})
    assert not subs, f"{cls.__name__} uses {', '.join(subs)}"
'''


# --------------------------------------------------------------------------- results


@dataclass
class PeerRun:
    """One peer on some notebooks: per notebook (seconds, score fraction), and what came around it."""

    peer: str
    rows: list[tuple[float, float]]
    #: per notebook, case id -> points earned (from the peer's own results)
    cases: list[dict[str, float]] = field(default_factory=list)
    #: seconds spent once before the notebooks (the autograder zip; the course and its release)
    setup_s: float = 0.0
    #: wall seconds of all the notebooks' commands together (less than their sum when jobs > 1)
    wall_s: float = 0.0
    jobs: int = 1


# --------------------------------------------------------------------------- subprocesses


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (kernels start sessions of their own: a process group is not enough)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    for pid in [proc.pid, *_descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def _run(argv: list[str], cwd: Path, env: dict[str, str], what: str, timeout: float = TIMEOUT
         ) -> tuple[float, subprocess.CompletedProcess]:
    """(wall seconds, the finished process); RuntimeError when it runs past ``timeout``."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        raise RuntimeError(f"{what} ran past {timeout:.0f} s and was stopped") from None
    except BaseException:  # Ctrl-C: leave no kernel behind
        _kill_tree(proc)
        raise
    wall = time.perf_counter() - start
    return wall, subprocess.CompletedProcess(argv, proc.returncode, out, "")


def _tail(text: str, n: int = 2500) -> str:
    text = text.strip()
    return text if len(text) <= n else "…" + text[-n:]


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _env(workdir: Path) -> dict[str, str]:
    """The peers' environment: the venv's commands first; temporary files and kernel files under ``workdir``."""
    tmp = workdir / "tmp"
    (tmp / "jupyter-runtime").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(VENV), TMPDIR=str(tmp),
               JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"), PYTHONNOUSERSITE="1")
    return env


# --------------------------------------------------------------------------- the venv


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One process at a time builds the venv (a second one waits, then reuses it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _installed_versions(python: Path, names: list[str]) -> dict[str, str | None]:
    """Distribution versions as ``python`` sees them (without importing them)."""
    script = ("import importlib.metadata as m, json, sys\nout = {}\nfor n in sys.argv[1:]:\n    try:\n"
              "        out[n] = m.version(n)\n    except m.PackageNotFoundError:\n        out[n] = None\n"
              "print(json.dumps(out))")
    proc = subprocess.run([str(python), "-c", script, *names], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{python} does not run: {_tail(proc.stderr)}")
    return json.loads(proc.stdout)


def _torch_location(python: Path) -> str:
    script = "import importlib.metadata as m; print(m.distribution('torch').locate_file(''))"
    proc = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def setup(workdir: Path) -> dict:
    """Build (or reuse) the peers' venv; the versions installed: {"otter": "7.0.0", "nbgrader": "0.9.6"}.

    The venv is ``benchmarks/out/peers-venv`` (shared by every workdir; pip's log of a build goes
    to ``workdir/peers-setup.log``). A peer that pip could not install maps to None, and its
    ``*_run`` raises RuntimeError with pip's reason; when neither can be installed, or the venv
    cannot be made, or it would not use the system's torch, this raises RuntimeError.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with _locked(OUT / "peers-venv.lock"):
        wanted = _wanted()
        marker = VENV / MARKER
        if marker.is_file() and _venv_python().exists():
            try:
                saved = json.loads(marker.read_text())
            except ValueError:
                saved = {}
            if saved.get("wanted") == wanted:
                versions = _installed_versions(_venv_python(), ["otter-grader", "nbgrader", *PINNED])
                if all(versions[p] == v for p, v in wanted["pinned"].items()) and \
                        versions["otter-grader"] == saved["otter"] and versions["nbgrader"] == saved["nbgrader"]:
                    return {"otter": saved["otter"], "nbgrader": saved["nbgrader"]}
        return _build_venv(workdir, wanted)


def _wanted() -> dict[str, Any]:
    """What the venv must hold: the peers' specs, and the system's versions of the pinned packages."""
    system = _installed_versions(Path(sys.executable), list(PINNED))
    missing = [p for p, v in system.items() if v is None]
    if missing:
        raise RuntimeError(f"{sys.executable} has no {', '.join(missing)}: the peers' venv takes torch from the "
                           "system Python (--system-site-packages); run this with the Python that has torch")
    return {"specs": SPECS, "pinned": system}


def _build_venv(workdir: Path, wanted: dict[str, Any]) -> dict:
    log = workdir / "peers-setup.log"
    if VENV.exists():
        shutil.rmtree(VENV)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PIP_USER")}
    made = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], capture_output=True,
                          text=True, timeout=300, env=env)
    if made.returncode != 0:
        raise RuntimeError(f"could not make the peers' venv {VENV}: {_tail(made.stderr)}")
    python = str(_venv_python())
    constraints = VENV / "constraints.txt"
    constraints.write_text("".join(f"{p}=={v}\n" for p, v in wanted["pinned"].items()))
    pip = [python, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    with open(log, "a") as f:
        # the venv's own old setuptools would hide the system's (torch requires a recent one)
        subprocess.run([*pip, "uninstall", "-y", "setuptools"], stdout=f, stderr=subprocess.STDOUT, timeout=300,
                       env=env)
    errors: dict[str, str] = {}
    for peer, spec in SPECS.items():
        try:
            with open(log, "a") as f:
                f.write(f"\n$ pip install -c {constraints} {spec}\n")
                f.flush()
                proc = subprocess.run([*pip, "install", "-c", str(constraints), spec], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, timeout=PIP_TIMEOUT, env=env)
                f.write(proc.stdout)
            if proc.returncode != 0:
                lines = [ln for ln in proc.stdout.splitlines() if "is ignored: it is neither" not in ln]
                errors[peer] = f"pip install {spec} failed (exit {proc.returncode}): {_tail(chr(10).join(lines), 1500)}"
        except subprocess.TimeoutExpired:
            errors[peer] = f"pip install {spec} ran past {PIP_TIMEOUT:.0f} s"
    versions = _installed_versions(_venv_python(), ["otter-grader", "nbgrader", *PINNED])
    changed = {p: versions[p] for p, v in wanted["pinned"].items() if versions[p] != v}
    where = _torch_location(_venv_python())
    if changed or where.startswith(str(VENV)):
        raise RuntimeError(f"pip changed the system's packages inside the peers' venv ({changed or where}); "
                           f"refusing to use it (log: {log})")
    result = {"otter": versions["otter-grader"], "nbgrader": versions["nbgrader"]}
    for peer, key in (("otter", "otter-grader"), ("nbgrader", "nbgrader")):
        if result[peer] is None and peer not in errors:
            errors[peer] = f"{key} is not importable after pip install"
    if all(v is None for v in result.values()):
        raise RuntimeError("could not install the peers in their venv: " + "; ".join(errors.values()))
    # reused as it is until the specs or the system's torch change (a peer pip could not install stays
    # missing, with pip's reason: delete the venv to try again)
    (VENV / MARKER).write_text(json.dumps({"wanted": wanted, **result, "errors": errors}, indent=1))
    return result


def _require(peer: str, workdir: Path) -> str:
    """The peer's version, installing it first if needed; RuntimeError saying why it is not there."""
    version = setup(workdir).get(peer)
    if version is None:
        why = json.loads((VENV / MARKER).read_text()).get("errors", {}).get(peer, "")
        raise RuntimeError(f"{peer} is not installed in the peers' venv {VENV}: {why or 'unknown reason'}")
    return version


# --------------------------------------------------------------------------- the cases, exported once


def export_cases(workdir: Path) -> Path:
    """``workdir/peer_cases.pt`` (the reference's data of every case), ``peer_cases.json`` (each case's
    id, points, visibility) and ``peer_checks.py``.

    Made once per workdir, in a subprocess of the venv's Python (the caller need not import torch).
    The reference's outputs come from the grader's cache (``GRADER_CACHE`` if set), computed there
    first if it is empty.
    """
    workdir = Path(workdir)
    fixture, table = workdir / FIXTURE, workdir / "peer_cases.json"
    (workdir / HELPER).write_text(PEER_CHECKS)
    if not (fixture.is_file() and table.is_file()):
        tmp = workdir / f".export-{os.getpid()}"
        tmp.mkdir(exist_ok=True)
        _, proc = _run([str(_venv_python()), str(Path(__file__).resolve()), "--export-cases", str(tmp)], REPO,
                       _env(workdir), "exporting the reference's cases")
        if proc.returncode != 0 or not (tmp / FIXTURE).is_file():
            raise RuntimeError(f"could not export the reference's cases: {_tail(proc.stdout)}")
        os.replace(tmp / FIXTURE, fixture)
        os.replace(tmp / table.name, table)
        tmp.rmdir()
    return fixture


def _export_cases(folder: Path) -> None:
    """Write every case's data (inputs, mask, parameters, expected outputs, ...) as one torch file,
    and the cases' ids, points and visibility as JSON, into ``folder``."""
    import torch

    from grader.config import GradeConfig
    from grader.course.assignments import get_assignment
    from grader.course.resolve import resolve_course
    from grader.course.reference_outputs import expected_outputs

    assignment = get_assignment(resolve_course(None), ASSIGNMENT)
    ref = expected_outputs(assignment, GradeConfig())
    out: dict[str, Any] = {}
    for case in assignment.cases:
        if case.call != "forward":
            raise RuntimeError(f"case {case.id} calls {case.call!r}: the peers' checks call forward only")
        target = assignment.targets[case.target]
        obs = ref.observations.get(case.id)
        tensors = {k: torch.from_numpy(v.copy()) for k, v in obs.tensors.items()} if obs is not None else {}

        def group(prefix: str) -> dict[str, Any]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        inputs, pinputs = group("in/"), group("pin/")
        runs = [c for c in assignment.cases if c.target == case.target and "match" in c.checks and not c.hidden
                and not c.mask and c.inputs]
        out[case.id] = {
            "name": case.name, "target": case.target, "checks": list(case.checks), "points": float(case.points),
            "hidden": bool(case.hidden), "seed": int(case.seed), "init": dict(case.init),
            "raises": case.raises or "", "rtol": float(case.rtol), "atol": float(case.atol),
            "compare": list(case.compare), "args": list(target.args),
            "returns": target.returns if isinstance(target.returns, str) else list(target.returns),
            "keys": list(target.keys), "attention": target.attention or "", "final": target.final or "",
            "loss": list(target.loss), "forbid": list(target.forbid),
            "inputs": inputs, "mask": inputs.pop("mask", None), "pinputs": pinputs, "pmask": pinputs.pop("mask", None),
            "params": group("params/"), "expected": group("out/"), "gradw": group("gradw/"), "grad": group("grad/"),
            "policy_run": runs[0].id if runs else "",
        }
        if "policy" in case.checks and not runs:
            raise RuntimeError(f"policy case {case.id}: no public match case of {case.target} to run it with")
    torch.save(out, folder / FIXTURE)
    table = [{"id": k, "points": v["points"], "hidden": v["hidden"]} for k, v in out.items()]
    (folder / "peer_cases.json").write_text(json.dumps(table, indent=1))


def _case_table(workdir: Path) -> list[dict[str, Any]]:
    """id, points and visibility of every case, in the case file's order."""
    export_cases(workdir)
    return json.loads((Path(workdir) / "peer_cases.json").read_text())


# --------------------------------------------------------------------------- otter-grader


def _otter_test(case: dict[str, Any]) -> str:
    """An exception-based otter test file for one case (one test case worth the case's points)."""
    func = "test_" + "".join(ch if ch.isalnum() else "_" for ch in case["id"])
    return (f'from otter.test_files import test_case\n\nOK_FORMAT = False\n\nname = {case["id"]!r}\n'
            f'points = {case["points"]!r}\n\n\n@test_case(points={case["points"]!r}, hidden={case["hidden"]!r})\n'
            f'def {func}(env):\n    import peer_checks\n    peer_checks.check(env, {case["id"]!r})\n')


def otter_autograder(workdir: Path) -> Path:
    """``workdir/otter/autograder.zip``, made with ``otter generate`` from one test file per case (once)."""
    _require("otter", workdir)
    workdir = Path(workdir)
    fixture = export_cases(workdir)
    build = workdir / "otter" / "build"
    zip_path = workdir / "otter" / "autograder.zip"
    if zip_path.is_file():
        return zip_path
    if build.exists():
        shutil.rmtree(build)
    (build / "tests").mkdir(parents=True)
    for case in _case_table(workdir):
        (build / "tests" / f"{case['id']}.py").write_text(_otter_test(case))
    shutil.copy(fixture, build / FIXTURE)
    shutil.copy(workdir / HELPER, build / HELPER)
    # otter_config.json: grade as on Gradescope by default; only the logo and the summary table are dropped
    (build / "otter_config.json").write_text(json.dumps({"logo": False, "print_summary": False}))
    _, proc = _run([str(VENV / "bin" / "otter"), "generate", "-t", "tests", "-o", str(zip_path),
                    "-c", "otter_config.json", "--no-requirements", "--no-environment", FIXTURE, HELPER],
                   build, _env(workdir), "otter generate")
    if proc.returncode != 0 or not zip_path.is_file():
        raise RuntimeError(f"otter generate failed (exit {proc.returncode}): {_tail(proc.stdout)}")
    return zip_path


def _otter_one(index: int, path: Path, zip_path: Path, workdir: Path) -> tuple[float, float, dict[str, float]]:
    """``otter run`` on one notebook: (seconds, score fraction, points per case)."""
    out = workdir / "otter" / "runs" / f"{index:04d}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # otter run copies the notebook into a submission folder of its own (under TMPDIR) and grades it there
    wall, proc = _run([str(VENV / "bin" / "otter"), "run", "-a", str(zip_path), "-o", str(out), "--no-logo",
                       str(path)], out, _env(workdir), f"otter run {path}")
    results = out / "results.json"
    if not results.is_file():
        raise RuntimeError(f"otter run wrote no results for {path} (exit {proc.returncode}): {_tail(proc.stdout)}")
    data = json.loads(results.read_text())
    scored = [t for t in data.get("tests", []) if "max_score" in t]
    per_case = {t["name"]: float(t.get("score") or 0.0) for t in scored}
    possible = sum(float(t["max_score"]) for t in scored)
    if not scored:  # the autograder failed (its error is in the tests' output): nothing earned
        sys.stderr.write(f"otter run {path}: no test results: {_tail(json.dumps(data.get('tests')), 600)}\n")
    return wall, (sum(per_case.values()) / possible if possible else 0.0), per_case


def otter_grade(paths: list[Path], workdir: Path, jobs: int = 1) -> PeerRun:
    """``otter run`` on each notebook (``jobs`` at a time), with everything measured."""
    workdir = Path(workdir)
    start = time.perf_counter()
    zip_path = otter_autograder(workdir)
    setup_s = time.perf_counter() - start
    paths = [Path(p).resolve() for p in paths]
    start = time.perf_counter()
    if jobs <= 1:
        done = [_otter_one(i, p, zip_path, workdir) for i, p in enumerate(paths)]
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(lambda ip: _otter_one(ip[0], ip[1], zip_path, workdir), enumerate(paths)))
    wall = time.perf_counter() - start
    return PeerRun("otter", [(s, f) for s, f, _ in done], [c for _, _, c in done], setup_s, wall, jobs)


def otter_run(paths: list[Path], workdir: Path, jobs: int = 1) -> list[tuple[float, float]]:
    """Per notebook: (seconds of its ``otter run`` command, score fraction 0..1); one at a time unless ``jobs`` > 1.

    With ``jobs`` > 1 the commands overlap: each row is still its own command's wall time; for
    throughput, use ``otter_grade(...).wall_s``.
    """
    return otter_grade(paths, workdir, jobs).rows


# --------------------------------------------------------------------------- nbgrader


def _test_cell(case: dict[str, Any]) -> dict[str, Any]:
    """A locked autograder test cell of nbgrader's (one per case, worth its points)."""
    code = f'import peer_checks\npeer_checks.check(globals(), {case["id"]!r})'
    if case["hidden"]:
        code = f"### BEGIN HIDDEN TESTS\n{code}\n### END HIDDEN TESTS"
    source = f'# {case["id"]} ({case["points"]:g} points)\n{code}'
    return {"cell_type": "code", "execution_count": None, "outputs": [], "source": source,
            "metadata": {"deletable": False, "editable": False,
                         "nbgrader": {"grade": True, "grade_id": case["id"], "locked": True,
                                      "points": case["points"], "schema_version": 3, "solution": False,
                                      "task": False}}}


def nbgrader_course(workdir: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A fresh course folder ``workdir/nbgrader`` with the assignment released; (its root, the released test cells)."""
    import nbformat

    _require("nbgrader", workdir)
    workdir = Path(workdir)
    fixture = export_cases(workdir)
    root = workdir / "nbgrader"
    if root.exists():
        shutil.rmtree(root)
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(f"c = get_config()\nc.CourseDirectory.root = {str(root)!r}\n")
    nb = nbformat.read(TEMPLATE, as_version=4)
    nb.cells += [nbformat.from_dict(_test_cell(c)) for c in _case_table(workdir)]
    _write_notebook(nb, source / f"{ASSIGNMENT}.ipynb")
    shutil.copy(fixture, source / FIXTURE)
    shutil.copy(workdir / HELPER, source / HELPER)
    _, proc = _run([str(VENV / "bin" / "nbgrader"), "generate_assignment", ASSIGNMENT], root, _env(workdir),
                   "nbgrader generate_assignment")
    released = root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    if proc.returncode != 0 or not released.is_file():
        raise RuntimeError(f"nbgrader generate_assignment failed (exit {proc.returncode}): {_tail(proc.stdout)}")
    release = nbformat.read(released, as_version=4)
    tests = [c for c in release.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    return root, tests


def _submit(path: Path, tests: list[dict[str, Any]], dest: Path) -> None:
    """The student's notebook as submitted through nbgrader: their cells, then the release's test cells."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells += [nbformat.from_dict(json.loads(json.dumps(c))) for c in tests]
    dest.parent.mkdir(parents=True, exist_ok=True)
    _write_notebook(nb, dest)


def _write_notebook(nb: Any, path: Path) -> None:
    """Write as it is (the template is nbformat 4.4: its cells have no ids, which is fine, not worth a warning)."""
    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nbformat.write(nb, path)


def nbgrader_grade(paths: list[Path], workdir: Path) -> PeerRun:
    """``nbgrader autograde`` one student at a time, with everything measured."""
    workdir = Path(workdir)
    start = time.perf_counter()
    root, tests = nbgrader_course(workdir)
    setup_s = time.perf_counter() - start
    students = [f"s{i:04d}" for i in range(1, len(paths) + 1)]
    for sid, path in zip(students, paths):
        _submit(Path(path), tests, root / "submitted" / sid / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    seconds = []
    start = time.perf_counter()
    for sid, path in zip(students, paths):
        wall, proc = _run([str(VENV / "bin" / "nbgrader"), "autograde", ASSIGNMENT, "--student", sid], root,
                          _env(workdir), f"nbgrader autograde ({path})")
        if proc.returncode != 0:
            raise RuntimeError(f"nbgrader autograde failed on {path} (exit {proc.returncode}): {_tail(proc.stdout)}")
        seconds.append(wall)
    wall_all = time.perf_counter() - start
    scores = _gradebook_scores(root, students, workdir)
    rows = [(s, scores[sid][0]) for s, sid in zip(seconds, students)]
    return PeerRun("nbgrader", rows, [scores[sid][1] for sid in students], setup_s, wall_all, 1)


def _gradebook_scores(root: Path, students: list[str], workdir: Path) -> dict[str, tuple[float, dict[str, float]]]:
    """Student -> (score fraction, points per test cell), read from the course's gradebook database."""
    script = ("import json, sys\nfrom nbgrader.api import Gradebook\nout = {}\n"
              "with Gradebook('sqlite:///' + sys.argv[1]) as gb:\n    for sid in sys.argv[3:]:\n"
              "        s = gb.find_submission(sys.argv[2], sid)\n"
              "        cells = {g.name: g.score for nb in s.notebooks for g in nb.grades}\n"
              "        out[sid] = [s.score, s.max_score, cells]\nprint(json.dumps(out))\n")
    _, proc = _run([str(_venv_python()), "-c", script, str(root / "gradebook.db"), ASSIGNMENT, *students], root,
                   _env(workdir), "reading nbgrader's gradebook")
    if proc.returncode != 0:
        raise RuntimeError(f"could not read nbgrader's gradebook: {_tail(proc.stdout)}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {sid: (score / possible if possible else 0.0, {k: float(v or 0.0) for k, v in cells.items()})
            for sid, (score, possible, cells) in data.items()}


def nbgrader_run(paths: list[Path], workdir: Path) -> list[tuple[float, float]]:
    """Per notebook: (seconds of its ``nbgrader autograde --student`` command, score fraction 0..1), serially."""
    return nbgrader_grade(paths, workdir).rows


# --------------------------------------------------------------------------- standalone


def _ours(paths: list[Path], workdir: Path) -> list[tuple[float, float, dict[str, float]]]:
    """``grade NOTEBOOK --format json`` on each: (seconds, score fraction, points per case)."""
    rows = []
    for p in paths:
        wall, proc = _run([sys.executable, "-m", "grader", str(p), "--format", "json", "-a", ASSIGNMENT], REPO,
                          {**os.environ, "TMPDIR": str(workdir / "tmp")}, f"grade {p}")
        try:
            data = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            raise RuntimeError(f"grade {p} gave no JSON (exit {proc.returncode}): {_tail(proc.stdout)}") from None
        per_case = {c["case_id"]: float(c["score"]) for c in data["cases"]}
        rows.append((wall, data["score"] / data["max_score"] if data["max_score"] else 0.0, per_case))
    return rows


def _sample(folder: Path, n: int) -> list[tuple[Path, str]]:
    """``n`` non-hostile notebooks of bench_batch's class: the kinds in turn (correct, bug, template,
    forbidden), each distinct submission before any repeat."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_batch import make_class

    made = make_class(folder, max(40, 2 * n))
    plain = [(file, kind) for file, kind in made if not kind.startswith("hostile")]
    first: list[tuple[str, str]] = []  # each distinct source once, in the class's order
    for fk in plain:
        if all(fk[1] != kind for _, kind in first):
            first.append(fk)
    picked: list[tuple[Path, str]] = []
    for group in (first, [fk for fk in plain if fk not in first]):
        by_kind: dict[str, list[tuple[str, str]]] = {}
        for file, kind in group:
            by_kind.setdefault(kind.split(":")[0], []).append((file, kind))
        order = [k for k in ("correct", "bug", "template", "forbidden") if k in by_kind]
        while len(picked) < n and any(by_kind[k] for k in order):
            for k in order:
                if by_kind[k] and len(picked) < n:
                    file, kind = by_kind[k].pop(0)
                    picked.append((folder / file, kind))
    return picked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="MHA notebooks (default: a sample of bench_batch's class)")
    parser.add_argument("--sample", type=int, default=6, help="notebooks to make when none are given [6]")
    parser.add_argument("--jobs", type=int, default=1, help="also run otter N at a time, for throughput [1: no]")
    parser.add_argument("--workdir", type=Path, help="where the peers' files go [a temporary folder, removed]")
    parser.add_argument("--no-ours", action="store_true", help="do not run `grade` for the expected scores")
    parser.add_argument("--export-cases", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.export_cases:
        _export_cases(args.export_cases)
        return 0
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="peers-")))
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        if args.notebooks:
            picked = [(p.resolve(), "") for p in args.notebooks]
        else:
            folder = workdir / "class"
            if folder.exists():
                shutil.rmtree(folder)
            picked = _sample(folder, args.sample)
        paths = [p for p, _ in picked]
        if not paths:
            parser.error("no notebooks to grade")
        start = time.perf_counter()
        versions = setup(workdir)
        print(f"setup: {time.perf_counter() - start:.1f} s; otter-grader {versions['otter']}, "
              f"nbgrader {versions['nbgrader']} in {VENV}", flush=True)
        ours = None if args.no_ours else _ours(paths, workdir)
        runs: list[PeerRun] = []
        failed: dict[str, str] = {}
        for name, fn in (("otter", lambda: otter_grade(paths, workdir)),
                         ("nbgrader", lambda: nbgrader_grade(paths, workdir))):
            try:
                runs.append(fn())
            except RuntimeError as e:
                failed[name] = str(e)
                print(f"{name}: {e}", file=sys.stderr, flush=True)
        extra = None
        if args.jobs > 1 and "otter" not in failed:
            extra = otter_grade(paths, workdir, args.jobs)
        _report(picked, ours, runs, extra)
        return 1 if failed else 0


def _report(picked: list[tuple[Path, str]], ours: list[tuple[float, float, dict[str, float]]] | None,
            runs: list[PeerRun], extra: PeerRun | None) -> None:
    heads = ["notebook", "kind"] + (["grade s", "grade score"] if ours else []) + \
        [h for r in runs for h in (f"{r.peer} s", f"{r.peer} score")]
    lines = []
    for i, (path, kind) in enumerate(picked):
        row = [path.name, kind]
        if ours:
            row += [f"{ours[i][0]:.2f}", f"{ours[i][1]:.3f}"]
        for r in runs:
            s, f = r.rows[i]
            row += [f"{s:.2f}", f"{f:.3f}" + ("" if not ours or abs(f - ours[i][1]) < 1e-9 else " ≠")]
        lines.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(heads, *lines)]
    for row in [heads, *lines]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    n = len(picked)
    print()
    if ours:
        print(f"grade (ours, one `grade` per notebook): {sum(r[0] for r in ours) / n:.2f} s per notebook "
              f"(median {statistics.median(r[0] for r in ours):.2f})")
    for r in runs:
        seconds = [s for s, _ in r.rows]
        print(f"{r.peer}: {sum(seconds) / n:.2f} s per notebook (median {statistics.median(seconds):.2f}, min "
              f"{min(seconds):.2f}, max {max(seconds):.2f}), serial; made once before: {r.setup_s:.1f} s")
    if extra is not None:
        print(f"otter, {extra.jobs} at a time: {extra.wall_s:.2f} s for {n} notebooks = {extra.wall_s / n:.2f} s per "
              f"notebook ({n / extra.wall_s * 60:.1f} per minute)")
    if ours:
        for r in runs:
            for i, (path, _) in enumerate(picked):
                diff = {c: (ours[i][2].get(c), r.cases[i].get(c)) for c in ours[i][2]
                        if abs((ours[i][2].get(c) or 0.0) - (r.cases[i].get(c) or 0.0)) > 1e-9}
                if diff:
                    print(f"{r.peer} disagrees with grade on {path.name}: "
                          + ", ".join(f"{c} (grade {a:g}, {r.peer} {b if b is None else format(b, 'g')})"
                                      for c, (a, b) in diff.items()))


if __name__ == "__main__":
    sys.exit(main())
