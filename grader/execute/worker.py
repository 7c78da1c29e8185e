"""The worker: the only place where submitted (or reference) code runs.

Started by ``grader.execute.runner`` as ``python -m grader.execute.worker CHANNEL_FD``. It
imports torch first (so the import overlaps with the parent's own work), then reads one
job from stdin (``grader.execute.protocol.Job``, then the inputs as safetensors bytes),
executes the given statements, and for every call builds the module, loads the parameters
it is given, runs the inputs it is given, and sends back plain named tensors. It reports on
the channel fd (protocol records); it never decides a verdict.

In ``generate`` mode (the reference only) it also makes the seeded inputs, masks,
parameters and loss weights that every student's run will later receive.
"""
from __future__ import annotations

import ast
import builtins
import linecache
import os
import sys
import time
import traceback
from typing import Any

#: The thread pools a worker's libraries could start, each at one thread, set before they load: how
#: many threads a reduction is split over changes its last bits, so the reference's outputs and every
#: student's are computed alike, in a cold worker or a forked one, on any machine, whatever the
#: environment the grader itself runs in (the sandbox passes none of it on). ``fix_threads`` sets
#: torch's own.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")
os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))

import torch  # noqa: E402 - after the thread settings it reads as it loads
from safetensors.torch import load as load_tensors, save as save_tensors

from grader.execute.guard import ForbiddenCallGuard
from grader.execute.protocol import WORKER_FAILED_EXIT, CallSpec, Job, encode_record

#: Modules solutions commonly import, loaded before the worker gives up root (without a
#: sandbox, the Python environment may not be readable by the worker's own user).
_PRELOAD = ("math", "copy", "collections", "itertools", "functools", "typing", "dataclasses", "numpy",
            "torch.nn", "torch.nn.functional", "torch.nn.init")


def preload() -> None:
    """Import what solutions commonly import, and what safetensors imports lazily."""
    for name in _PRELOAD:
        __import__(name)
    load_tensors(save_tensors({"warm-up": torch.zeros(1)}))


def _drop_privileges() -> None:
    """Become the worker's own user when started as root: after the imports, before the job.

    Nothing of the submission has run yet; from here on the process limit counts only this
    worker's processes, and it can signal nothing of the grader's.
    """
    uid = os.environ.pop("GRADER_WORKER_UID", None)
    if uid and os.geteuid() == 0:
        preload()
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))

MAX_MESSAGE = 2000
#: Output dtypes numpy can read; any other floating dtype (bfloat16, float8) is sent as float32.
_PLAIN_DTYPES = {torch.float16, torch.float32, torch.float64, torch.bool, torch.uint8, torch.int8,
                 torch.int16, torch.int32, torch.int64}


class StudentAPIError(Exception):
    """The student's code ran but returned something of the wrong kind (wrong arity, not a tensor)."""


class Channel:
    """Records to the parent over a dedicated pipe, each stamped with the job's nonce.

    The functions it needs are bound now, before any submitted code runs, so that a
    submission that patches ``json`` or ``os`` does not silently change what is sent.
    """

    def __init__(self, fd: int):
        self._fd = fd
        self._nonce = ""
        self._encode = encode_record
        self._write = os.write

    def stamp(self, nonce: str) -> None:
        self._nonce = nonce

    def send(self, kind: str, payload: bytes = b"", **fields: Any) -> None:
        data = memoryview(self._encode(kind, self._nonce, payload, **fields))
        while data:
            data = data[self._write(self._fd, data):]


def read_job(stream: Any) -> tuple[Job, dict[str, torch.Tensor]]:
    """The job line, then its inputs (safetensors bytes), from stdin."""
    job = Job.from_line(stream.readline())
    raw = stream.read(job.inputs_size) if job.inputs_size else b""
    return job, (load_tensors(raw) if raw else {})


def main(argv: list[str]) -> int:
    return serve(Channel(int(argv[1])), sys.stdin.buffer, _drop_privileges)


def serve(channel: Channel, stdin: Any, before_ready: Any = None) -> int:
    """One job, start to end: read it, report ``ready``, run it, report ``done``; the exit status.

    ``before_ready`` runs after the job is read and before anything of it runs (a cold
    worker gives up root there). A zygote's child (``grader.execute.zygote``) calls this too.
    """
    try:
        job, inputs = read_job(stdin)
        channel.stamp(job.nonce)
        guards = _guards(job)  # resolved now, with torch as the grader imported it
        if before_ready is not None:
            before_ready()
        channel.send("ready")  # started: from here on, time counts against the submission
        run_job(job, inputs, guards, channel)
    except BaseException:  # a failure of the worker itself (or of what the submission did to it)
        try:
            channel.send("internal", traceback=traceback.format_exc()[-8000:])
        except BaseException:
            pass
        return WORKER_FAILED_EXIT
    channel.send("done")
    return 0


def _guards(job: Job) -> dict[str, Any]:
    """One forbidden-call guard per target that forbids anything (students' runs only)."""
    forbid = {c.target: c.forbid for c in job.calls if c.forbid}
    if job.mode != "run" or not forbid:
        return {}
    return {target: ForbiddenCallGuard(names) for target, names in forbid.items()}


# Bound now, before any submitted code runs: a submission that replaces torch's own functions does not
# change how the next case is computed.
_set_threads, _interop_threads, _set_interop_threads = (torch.set_num_threads, torch.get_num_interop_threads,
                                                        torch.set_num_interop_threads)


def fix_threads() -> None:
    """One intra-op thread (torch, OpenMP, MKL) and one inter-op thread, as every worker computes.

    Inter-op threads can be set only once per process, before any inter-op work: a zygote's
    children keep what the zygote set. Called again before each call, so that a statement of
    the submission that changed them does not carry over into the cases.
    """
    _set_threads(1)
    if _interop_threads() != 1:
        try:
            _set_interop_threads(1)
        except RuntimeError:  # inter-op work has started: torch keeps what it has
            pass


def run_job(job: Job, inputs: dict[str, torch.Tensor], guards: dict[str, Any], channel: Channel) -> None:
    """Execute the statements, then every call, sending one record per call."""
    fix_threads()
    files = {name: unit["label"] for name, unit in job.units.items()}
    for name, unit in job.units.items():
        lines = unit["source"].splitlines(keepends=True)
        linecache.cache[name] = (len(unit["source"]), None, lines, name)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    exec_errors = []
    for st in job.statements:
        try:
            tree = ast.parse(st.source, st.file)
            ast.increment_lineno(tree, st.lineno - 1)
            exec(compile(tree, st.file, "exec"), namespace)
        except BaseException as e:  # student code may raise anything, SystemExit included
            if len(exec_errors) < 50:
                exec_errors.append(describe_error(e, files))
    channel.send("exec", errors=exec_errors)
    generate = job.mode == "generate"
    for spec in job.calls:
        start = time.perf_counter()
        tensors: dict[str, torch.Tensor] = {}
        record: dict[str, Any] = {"id": spec.id, "status": "ok", "phase": None, "error": None, "params": {}}
        given = {k[len(spec.id) + 1:]: v for k, v in inputs.items() if k.startswith(spec.id + "/")}
        guard = guards.get(spec.target)
        fix_threads()
        try:
            if guard is not None:
                with guard.watching():
                    run_call(spec, namespace, given, tensors, record, generate)
            else:
                run_call(spec, namespace, given, tensors, record, generate)
        except BaseException as e:
            record["status"] = "error"
            record["error"] = describe_error(e, files)
        record["forbidden"] = guard.take() if guard is not None else []
        record["duration"] = time.perf_counter() - start
        payload = save_tensors(tensors) if tensors else b""
        if len(payload) > job.max_payload:  # what the parent would refuse: the case's error, not the channel's
            too_big = StudentAPIError(
                f"{spec.target} returned {len(payload) >> 20} MB of tensors in this case; at most "
                f"{job.max_payload >> 20} MB may come back (are the outputs much larger than the inputs?)")
            payload = b""
            record.update(status="error", error=describe_error(too_big, files))
        channel.send("call", payload, **record)


def run_call(spec: CallSpec, namespace: dict[str, Any], given: dict[str, torch.Tensor],
             tensors: dict[str, torch.Tensor], record: dict[str, Any], generate: bool) -> None:
    """One case: build, load parameters, run forward (and backward / perturbed forward)."""
    if spec.static_only:
        return
    record["phase"] = "build"
    cls = namespace.get(spec.target)
    if cls is None:
        raise NameError(f"{spec.target} is not defined")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise TypeError(f"{spec.target} must be a class derived from nn.Module, got {type(cls).__name__}")
    torch.manual_seed(spec.seed)
    module = cls(**spec.init)
    record["params"] = {k: list(p.shape) for k, p in module.named_parameters()}
    if spec.build_only:
        return
    module.eval()
    record["phase"] = "load_params"
    if generate:
        for k, v in module.state_dict().items():
            tensors["params/" + k] = v.detach().clone().contiguous()
        make_inputs(spec, given)
        tensors.update({k: v for k, v in given.items()})
    else:
        load_params(module, {k[len("params/"):]: v for k, v in given.items() if k.startswith("params/")}, spec)
    args, kwargs = call_args(spec, given, "in/")
    record["phase"] = "forward"
    torch.manual_seed(spec.seed + 1)  # any randomness in forward draws the same numbers for everyone
    with torch.set_grad_enabled(spec.grad):
        outputs = invoke(module, spec, args, kwargs)
    for k, v in outputs.items():
        tensors["out/" + k] = plain(v, k)
    if spec.grad:
        record["phase"] = "backward"
        backward(module, spec, outputs, given, tensors, generate)
    if spec.perturb:
        record["phase"] = "perturbed forward"
        if generate:
            perturb_inputs(spec, given, tensors)
        args, kwargs = call_args(spec, given, "pin/")
        torch.manual_seed(spec.seed + 1)
        with torch.no_grad():
            pout = invoke(module, spec, args, kwargs)
        for k, v in pout.items():
            tensors["pout/" + k] = plain(v, k)
    record["phase"] = None


def load_params(module: torch.nn.Module, params: dict[str, torch.Tensor], spec: CallSpec) -> None:
    """Load the reference's parameters, explaining any difference in names or shapes."""
    own = module.state_dict()
    problems = []
    for k, v in params.items():
        if k not in own:
            problems.append(f"the template's parameter `{k}` {list(v.shape)} is missing")
        elif tuple(own[k].shape) != tuple(v.shape):
            problems.append(f"`{k}` has shape {list(own[k].shape)}, the template's has {list(v.shape)}")
    for k in own:
        if k not in params:
            problems.append(f"`{k}` is not a parameter of the template")
    if problems:
        raise StudentAPIError(
            f"{spec.target}'s parameters differ from the template's, so the reference's parameters "
            f"cannot be loaded: {'; '.join(problems)}. Keep the layers the template defines in __init__, "
            "with the same attribute names and sizes.")
    module.load_state_dict(params, strict=True)


def make_inputs(spec: CallSpec, given: dict[str, torch.Tensor]) -> None:
    """Seeded inputs and mask (generate mode)."""
    g = torch.Generator().manual_seed(spec.seed)
    for name, shape in spec.inputs.items():
        dtype = getattr(torch, spec.dtypes.get(name, "float32"))
        if isinstance(shape[0], list):
            for i, s in enumerate(shape):
                given[f"in/{name}.{i}"] = torch.randn(s, generator=g).to(dtype)
        else:
            given[f"in/{name}"] = torch.randn(shape, generator=g).to(dtype)
    if spec.mask:
        given["in/mask"] = make_mask(spec)


def make_mask(spec: CallSpec) -> torch.Tensor:
    """A boolean mask broadcastable to the scores' shape; True = attend, False (0) = masked."""
    shapes = spec.inputs
    q_shape = shapes[spec.args[0]]
    k_shape = shapes[spec.key_args[0]] if spec.key_args else shapes[spec.args[1]]
    rank = spec.mask_rank or len(q_shape)
    n_q, n_k = q_shape[-2], k_shape[-2]
    kind = spec.mask["kind"]
    if kind == "custom":
        return torch.tensor(spec.mask["values"]).bool()
    if kind == "padding":
        lengths = torch.tensor(spec.mask["lengths"])
        keep = torch.arange(n_k)[None, :] < lengths[:, None]
        return keep.reshape([q_shape[0]] + [1] * (rank - 2) + [n_k])
    causal = torch.ones(n_q, n_k).tril().bool()
    return causal.reshape([1] * (rank - 2) + [n_q, n_k])


def perturb_inputs(spec: CallSpec, given: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> None:
    """Copy the inputs, changing the last key position of every key input (generate mode)."""
    g = torch.Generator().manual_seed(spec.seed + 104729)
    for k, v in list(given.items()):
        if not k.startswith("in/"):
            continue
        p = v.clone()
        if k[len("in/"):] in spec.key_args:
            p[..., -1, :] += 3.0 * torch.randn(p[..., -1, :].shape, generator=g)
        given["pin/" + k[len("in/"):]] = p
        tensors["pin/" + k[len("in/"):]] = p


def call_args(spec: CallSpec, given: dict[str, torch.Tensor], prefix: str) -> tuple[list, dict]:
    """Positional inputs in the target's order, plus ``mask=`` when the case has one."""
    args = []
    for name in spec.args:
        if prefix + name in given:
            args.append(given[prefix + name])
        elif prefix + name + ".0" in given:
            parts, i = [], 0
            while f"{prefix}{name}.{i}" in given:
                parts.append(given[f"{prefix}{name}.{i}"])
                i += 1
            args.append(tuple(parts))
        else:
            break  # later arguments keep their defaults
    kwargs = {"mask": given[prefix + "mask"]} if prefix + "mask" in given else {}
    return [a.clone() if isinstance(a, torch.Tensor) else tuple(t.clone() for t in a) for a in args], kwargs


def invoke(module: torch.nn.Module, spec: CallSpec, args: list, kwargs: dict) -> dict[str, Any]:
    """Call forward (or unroll a recurrent cell) and name what comes back."""
    if spec.call == "unroll":
        # A recurrent cell: forward(x_t, state) returns the next state, h or (h, c).
        x, state, hs = args[0], None, []
        for t in range(x.shape[1]):
            result = module(x[:, t], state)
            if isinstance(result, torch.Tensor):
                hs.append(result)
            elif isinstance(result, tuple) and len(result) == 2:
                hs.append(result[0])
            else:
                raise StudentAPIError(f"{spec.target}.forward must return the next state, h or (h, c); "
                                      f"got {describe_value(result)}")
            state = result
        outputs = {"h_seq": torch.stack(hs, dim=1)}
        if isinstance(state, tuple):
            outputs["c_last"] = state[1]
        return outputs
    result = module(*args, **kwargs)
    returns = spec.returns
    if returns == "dict":
        if not isinstance(result, dict):
            raise StudentAPIError(f"{spec.target}.forward must return a dict with keys "
                                  f"{', '.join(spec.keys)}; got {describe_value(result)}")
        return {k: result[k] for k in spec.keys if k in result}
    if isinstance(returns, str):
        return {returns: result}
    if not isinstance(result, (tuple, list)) or len(result) != len(returns):
        raise StudentAPIError(f"{spec.target}.forward must return a tuple ({', '.join(returns)}); "
                              f"got {describe_value(result)}")
    return dict(zip(returns, result))


def backward(module: torch.nn.Module, spec: CallSpec, outputs: dict[str, Any],
             given: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], generate: bool) -> None:
    """Backpropagate a seeded weighted sum of the outputs; record every parameter's gradient."""
    names = spec.loss or list(outputs)
    g = torch.Generator().manual_seed(spec.seed + 7919)
    loss = 0.0
    for name in names:
        out = outputs[name]
        if generate:
            tensors["gradw/" + name] = given["gradw/" + name] = torch.randn(out.shape, generator=g)
        w = given["gradw/" + name]
        if tuple(out.shape) != tuple(w.shape):
            raise StudentAPIError(f"cannot check gradients: {name} has shape {list(out.shape)}, "
                                  f"expected {list(w.shape)}")
        loss = loss + (out * w).sum()
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise StudentAPIError("the outputs do not depend on any parameter (no gradient flows)")
    loss.backward()
    for k, p in module.named_parameters():
        if p.grad is not None:
            tensors["grad/" + k] = plain(p.grad, k)


def plain(value: Any, name: str) -> torch.Tensor:
    """A detached, contiguous, plain CPU tensor copy; anything else is the student's error."""
    if not isinstance(value, torch.Tensor):
        raise StudentAPIError(f"{name} should be a tensor, got {describe_value(value)}")
    t = value.detach().cpu()
    if type(t) is not torch.Tensor:  # drop any subclass: only plain data leaves the worker
        t = t.as_subclass(torch.Tensor)
    if t.is_complex():
        raise StudentAPIError(f"{name} should be a real tensor, got dtype {t.dtype}")
    if t.dtype not in _PLAIN_DTYPES:
        t = t.float()  # bfloat16, float8...: compared as float32
    return t.clone().contiguous()


def describe_value(value: Any) -> str:
    """A short description of a returned value, for messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"a {type(value).__name__}"


def describe_error(exc: BaseException, files: dict[str, str]) -> dict[str, Any]:
    """The student's view of an exception: only frames from submitted code, with cell and line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__, limit=200) if f.filename in files]
    shown = [f"{files[f.filename]}, line {f.lineno}, in {f.name}\n    {(f.line or '').strip()}" for f in frames[-20:]]
    try:
        message = str(exc)
    except BaseException:  # an exception whose __str__ fails still gets reported
        message = "(the exception's message could not be read)"
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + " …"
    where: dict[str, Any] = {"label": None, "line": None, "code": None, "function": None}
    if isinstance(exc, SyntaxError) and exc.filename in files:
        where = {"label": files[exc.filename], "line": exc.lineno, "code": str(exc.text or "").strip()[:500],
                 "function": None}
    elif frames:
        last = frames[-1]
        where = {"label": files[last.filename], "line": last.lineno,
                 "code": (last.line or "").strip()[:500], "function": last.name}
    kind = type(exc)
    return {"type": str(kind.__name__)[:100], "bases": [str(c.__name__)[:100] for c in kind.__mro__][:50],
            "message": message, "traceback": "\n".join(shown)[-8000:],
            "api_misuse": isinstance(exc, StudentAPIError), **where}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
