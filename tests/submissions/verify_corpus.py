"""Check the corpus of student submissions in this folder against the hidden reference.

A plain script (not collected by pytest):

    python tests/submissions/verify_corpus.py

For every ``mha/*.py`` and ``lstm/*.py`` it loads the submission's classes, loads the
reference's state_dict into them, runs the same seeded inputs through both in eval mode
and prints which outputs match the reference. Each file's expected outcome is written
down in EXPECTED below; the script exits 1 when any file behaves otherwise.

Loading: the reference files are safe and run whole with ``runpy.run_path``. A student
file may hold an endless training loop, a plot or a dataset download at top level, so it
is parsed with ``ast`` and only its imports, class and function definitions and
assignments are executed, one statement at a time; an import that fails with ImportError
(matplotlib, torchvision) and an assignment that raises (for instance one that uses such
an import) are skipped and listed. Loops, ``if`` blocks and bare expressions never run.

Comparison: ``torch.allclose(atol=1e-5, rtol=1e-5)`` after checking shapes, with one
allowance: entries at or below -1e8 (a -1e9 fill, or -inf) count as "masked" and are equal
to each other, so a -inf mask fill matches the reference's -1e9 in ``scores``.
"""
from __future__ import annotations

import ast
import runpy
import signal
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent.parent / "reference"

ATOL = RTOL = 1e-5
MASKED = -1e8

_RUNNABLE = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef,
             ast.Assign, ast.AnnAssign)


# --------------------------------------------------------------------------- loading
def load_submission(path: Path) -> tuple[dict, list[str]]:
    """Exec the safe top-level statements of *path*; return its namespace and what was skipped."""
    tree = ast.parse(path.read_text(), filename=str(path))
    namespace: dict = {"__name__": "submission", "__file__": str(path)}
    skipped: list[str] = []
    for node in tree.body:
        where = f"line {node.lineno}"
        if not isinstance(node, _RUNNABLE):
            skipped.append(f"{where} {type(node).__name__}")
            continue
        code = compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec")
        try:
            exec(code, namespace)
        except ImportError as exc:
            skipped.append(f"{where} import ({exc.__class__.__name__}: {exc})")
        except Exception as exc:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                skipped.append(f"{where} assignment ({exc.__class__.__name__}: {exc})")
            else:
                raise
    return namespace, skipped


def _timeout(signum, frame):
    raise TimeoutError("loading the submission took too long")


# --------------------------------------------------------------------------- comparing
def same(a, b) -> bool:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return False
    if a.shape != b.shape:
        return False
    a, b = a.detach().float(), b.detach().float()
    masked_a, masked_b = a <= MASKED, b <= MASKED
    if not torch.equal(masked_a, masked_b):
        return False
    return torch.allclose(a[~masked_a], b[~masked_b], atol=ATOL, rtol=RTOL)


def compare(ref_out: dict, run_student) -> dict[str, str]:
    """Status per key: 'match', 'differ', 'shape', 'missing', or 'error: …' for every key."""
    try:
        with torch.no_grad():
            got = run_student()
    except Exception as exc:
        msg = f"error: {exc.__class__.__name__}: {str(exc).splitlines()[0][:90]}"
        return {key: msg for key in ref_out}
    status = {}
    for key, expected in ref_out.items():
        if key not in got:
            status[key] = "missing"
        elif isinstance(got[key], torch.Tensor) and got[key].shape != expected.shape:
            status[key] = "shape"
        else:
            status[key] = "match" if same(got[key], expected) else "differ"
    return status


# --------------------------------------------------------------------------- cases
def mha_cases(ref_ns: dict, ns: dict) -> dict[str, dict[str, str]]:
    d_feat, n_head, B = 32, 4, 2
    results = {}

    # constructor contract
    try:
        ns["MultiHeadedAttention"](d_feat=128, n_head=5)
        results["MHA  d_feat % n_head != 0"] = {"raises ValueError": "differ"}
    except ValueError:
        results["MHA  d_feat % n_head != 0"] = {"raises ValueError": "match"}
    except Exception as exc:
        results["MHA  d_feat % n_head != 0"] = {"raises ValueError": f"error: {exc!r}"}

    torch.manual_seed(0)
    ref = ref_ns["MultiHeadedAttention"](d_feat=d_feat, n_head=n_head).eval()
    stu = ns["MultiHeadedAttention"](d_feat=d_feat, n_head=n_head)
    stu.load_state_dict(ref.state_dict())
    stu.eval()

    g = torch.Generator().manual_seed(1)
    Q = torch.randn(B, 5, d_feat, generator=g)
    K = torch.randn(B, 7, d_feat, generator=g)
    V = torch.randn(B, 7, d_feat, generator=g)
    X = torch.randn(B, 6, d_feat, generator=g)
    pad = torch.ones(B, 1, 1, 7)
    pad[1, ..., 4:] = 0  # second sequence: last 3 keys are padding
    causal = torch.tril(torch.ones(6, 6)).view(1, 1, 6, 6)
    for name, args in [("no mask", (Q, K, V, None)), ("padding mask", (Q, K, V, pad)),
                       ("causal mask", (X, X, X, causal))]:
        with torch.no_grad():
            ref_out = ref(*args)
        results[f"MHA  {name}"] = compare(ref_out, lambda: stu(*args))

    ref_sdpa, stu_sdpa = ref_ns["ScaledDotProductAttention"](), ns["ScaledDotProductAttention"]()
    q = torch.randn(B, 3, 5, 8, generator=g)
    k = torch.randn(B, 3, 7, 8, generator=g)
    v = torch.randn(B, 3, 7, 6, generator=g)
    x = torch.randn(B, 3, 6, 8, generator=g)
    xv = torch.randn(B, 3, 6, 6, generator=g)
    for name, args in [("no mask", (q, k, v, None)), ("padding mask", (q, k, v, pad)),
                       ("causal mask", (x, x, xv, causal))]:
        with torch.no_grad():
            out, att = ref_sdpa(*args)

        def run(args=args):
            o, a = stu_sdpa(*args)
            return {"out": o, "attention": a}

        results[f"SDPA {name}"] = compare({"out": out, "attention": att}, run)
    return results


def lstm_cases(ref_ns: dict, ns: dict) -> dict[str, dict[str, str]]:
    results = {}
    g = torch.Generator().manual_seed(2)
    for n_layer in (3, 1):
        torch.manual_seed(0)
        ref = ref_ns["RecurrentNeuralNetworkClass"](n_layer=n_layer).eval()
        stu = ns["RecurrentNeuralNetworkClass"](n_layer=n_layer)
        stu.load_state_dict(ref.state_dict())
        stu.eval()
        shapes = [(3, 5), (1, 1), (256, 2)] if n_layer == 3 else [(3, 5)]
        for N, L in shapes:
            x = torch.randn(N, L, 28, generator=g)
            with torch.no_grad():
                logits = ref(x)
            label = f"RNN  N={N} L={L}" + ("" if n_layer == 3 else f" n_layer={n_layer}")
            results[label] = compare({"logits": logits}, lambda: {"logits": stu(x)})

    torch.manual_seed(0)
    ref_cell = ref_ns["LSTMCell"](xdim=28, hdim=32)
    stu_cell = ns["LSTMCell"](xdim=28, hdim=32)
    stu_cell.load_state_dict(ref_cell.state_dict())
    x = torch.randn(4, 28, generator=g)
    state = (torch.randn(4, 32, generator=g), torch.randn(4, 32, generator=g))
    for name, args in [("no state", (x,)), ("with state", (x, state))]:
        with torch.no_grad():
            h, c = ref_cell(*args)

        def run(args=args):
            h_, c_ = stu_cell(*args)
            return {"h": h_, "c": c_}

        results[f"Cell {name}"] = compare({"h": h, "c": c}, run)
    return results


# --------------------------------------------------------------------------- expectations
MHA_AFTER_SCORES = {"scores", "attention", "x_raw", "x_rsh1", "x_rsh2", "x"}
MHA_AFTER_SPLIT = {"Q_split", "K_split", "V_split"} | MHA_AFTER_SCORES
SDPA_BOTH = {"out", "attention"}
MHA_ALL = ["MHA  no mask", "MHA  padding mask", "MHA  causal mask"]
MHA_MASKED = ["MHA  padding mask", "MHA  causal mask"]
SDPA_ALL = ["SDPA no mask", "SDPA padding mask", "SDPA causal mask"]
SDPA_MASKED = ["SDPA padding mask", "SDPA causal mask"]
RNN_ALL = ["RNN  N=3 L=5", "RNN  N=1 L=1", "RNN  N=256 L=2", "RNN  N=3 L=5 n_layer=1"]
CELL_ALL = ["Cell no state", "Cell with state"]


def differs(cases, keys):
    return {case: set(keys) for case in cases}


# file -> {case: keys expected to differ, or "error"}; cases not listed must match fully
EXPECTED: dict[str, dict] = {
    "mha/correct_einsum.py": {},
    "mha/correct_inf_mask.py": {},
    "mha/correct_sdpa_reuse.py": {},
    "mha/bug_sqrt_dfeat.py": differs(MHA_ALL, MHA_AFTER_SCORES),
    "mha/bug_no_scaling.py": {**differs(MHA_ALL, MHA_AFTER_SCORES), **differs(SDPA_ALL, SDPA_BOTH)},
    "mha/bug_softmax_dim.py": {**differs(MHA_ALL, MHA_AFTER_SCORES - {"scores"}),
                               **differs(SDPA_ALL, SDPA_BOTH)},
    "mha/bug_inverted_mask.py": {**differs(MHA_MASKED, MHA_AFTER_SCORES),
                                 **differs(SDPA_MASKED, SDPA_BOTH)},
    "mha/bug_mask_zero_fill.py": {**differs(MHA_MASKED, MHA_AFTER_SCORES),
                                  **differs(SDPA_MASKED, SDPA_BOTH)},
    "mha/bug_split_no_permute.py": differs(MHA_ALL, MHA_AFTER_SPLIT),
    "mha/bug_missing_lin_O.py": differs(MHA_ALL, {"x"}),
    "lstm/correct_hn.py": {},
    "lstm/correct_no_state.py": {},
    "lstm/correct_notebook_style.py": {},
    # L=1: the first step is the last step
    "lstm/bug_first_step.py": differs(["RNN  N=3 L=5", "RNN  N=256 L=2", "RNN  N=3 L=5 n_layer=1"],
                                      {"logits"}),
    "lstm/bug_hardcoded_batch.py": {case: "error" for case in RNN_ALL if case != "RNN  N=256 L=2"},
    # with one layer hn[0] is the top layer
    "lstm/bug_first_layer_hn.py": differs(["RNN  N=3 L=5", "RNN  N=1 L=1", "RNN  N=256 L=2"],
                                          {"logits"}),
    "lstm/bug_gate_order.py": differs(CELL_ALL, {"h", "c"}),
    "lstm/bug_no_tanh_c.py": differs(CELL_ALL, {"h"}),
    # L=1: the mean over one step is that step
    "lstm/bug_whole_sequence.py": differs(["RNN  N=3 L=5", "RNN  N=256 L=2", "RNN  N=3 L=5 n_layer=1"],
                                          {"logits"}),
    "lstm/bug_sigmoid_candidate.py": differs(CELL_ALL, {"h", "c"}),
}


def actual_outcome(status: dict[str, str]):
    if all(s.startswith("error") for s in status.values()):
        return "error"
    return {key for key, s in status.items() if s != "match"}


def describe(status: dict[str, str]) -> str:
    if all(s == "match" for s in status.values()):
        return f"all match ({', '.join(status)})" if len(status) <= 2 else f"all {len(status)} match"
    if all(s.startswith("error") for s in status.values()):
        return next(iter(status.values()))
    bad = [f"{k}[{s}]" if s != "differ" else k for k, s in status.items() if s != "match"]
    good = [k for k, s in status.items() if s == "match"]
    return f"DIFFER: {' '.join(bad)}" + (f"   | match: {' '.join(good)}" if good else "")


def main() -> int:
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    refs = {name: runpy.run_path(str(REFERENCE / f"{name}.py"), run_name="reference")
            for name in ("mha", "lstm")}
    files = sorted(HERE.glob("mha/*.py")) + sorted(HERE.glob("lstm/*.py"))
    failures = []
    for path in files:
        rel = path.relative_to(HERE).as_posix()
        kind = rel.split("/")[0]
        first = path.read_text().splitlines()[0]
        signal.signal(signal.SIGALRM, _timeout)
        signal.alarm(60)
        try:
            ns, skipped = load_submission(path)
        finally:
            signal.alarm(0)
        results = (mha_cases if kind == "mha" else lstm_cases)(refs[kind], ns)
        expected = EXPECTED.get(rel)
        problems = []
        if expected is None:
            problems.append("no expectation written down for this file")
        else:
            for case, status in results.items():
                want = expected.get(case, set())
                got = actual_outcome(status)
                if want != got:
                    problems.append(f"{case}: expected {sorted(want) if want != 'error' else 'error'}"
                                    f", got {sorted(got) if got != 'error' else 'error'}")
        verdict = "as expected" if not problems else "UNEXPECTED"
        print(f"== {rel}  [{verdict}]")
        print(f"   {first}")
        if skipped:
            print(f"   skipped at load: {'; '.join(skipped)}")
        for case, status in results.items():
            print(f"   {case:<26}: {describe(status)}")
        for problem in problems:
            print(f"   !! {problem}")
        if problems:
            failures.append(rel)
    missing = sorted(set(EXPECTED) - {p.relative_to(HERE).as_posix() for p in files})
    for rel in missing:
        print(f"!! expected file not found: {rel}")
    print()
    print(f"{len(files)} files, {len(failures) + len(missing)} unexpected"
          + (f": {', '.join(failures + missing)}" if failures or missing else ""))
    return 1 if failures or missing else 0


if __name__ == "__main__":
    sys.exit(main())
