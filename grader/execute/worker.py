"""The worker: the only place where submitted (or reference) code runs.

Started by ``grader.execute.runner`` as ``python -m grader.execute.worker CHANNEL_FD``. It imports torch
first (so the import overlaps with the parent's own work), then reads one job from
stdin, executes the given statements, and for every call builds the module, loads the
parameters it is given, runs the inputs it is given, and writes plain named tensors to
safetensors files. It reports on the channel fd as JSON lines; it never decides a verdict.

In ``generate`` mode (the reference only) it also makes the seeded inputs, masks,
parameters and loss weights that every student's run will later receive.
"""
from __future__ import annotations

import builtins
import json
import linecache
import os
import sys
import time
import traceback
from typing import Any


def _drop_privileges() -> None:
    """Become ``nobody`` when the sandbox starts us as root, before anything else is imported."""
    uid = os.environ.pop("GRADER_WORKER_UID", None)
    if uid and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))


if __name__ == "__main__":
    _drop_privileges()

import torch  # noqa: E402  (after dropping privileges)
from safetensors.torch import load_file, save_file  # noqa: E402

MAX_MESSAGE = 2000


class StudentAPIError(Exception):
    """The student's code ran but returned something of the wrong kind (wrong arity, not a tensor)."""


class Channel:
    """JSON lines to the parent over a dedicated pipe, each stamped with the job's nonce.

    The nonce makes naive forgeries (a submission writing records to every fd) easy to
    drop; the parent trusts no record beyond what it can check anyway.
    """

    def __init__(self, fd: int):
        self._f = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        self._nonce = ""

    def stamp(self, nonce: str) -> None:
        self._nonce = nonce

    def send(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(dict(record, nonce=self._nonce)) + "\n")
        self._f.flush()


def main(argv: list[str]) -> int:
    channel = Channel(int(argv[1]))
    try:
        job = json.loads(sys.stdin.read())
        channel.stamp(job.pop("nonce", ""))
        channel.send({"kind": "ready"})  # started: from here on, time counts against the submission
        run_job(job, channel)
    except BaseException:  # a failure of the worker itself, not of the submission
        channel.send({"kind": "internal", "traceback": traceback.format_exc()})
        return 3
    channel.send({"kind": "done"})
    return 0


def run_job(job: dict[str, Any], channel: Channel) -> None:
    """Execute the statements, then every call, streaming one record per call."""
    torch.set_num_threads(1)
    files = {name: unit["label"] for name, unit in job["units"].items()}
    for name, unit in job["units"].items():
        lines = unit["source"].splitlines(keepends=True)
        linecache.cache[name] = (len(unit["source"]), None, lines, name)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    exec_errors = []
    for st in job["statements"]:
        try:
            code = compile("\n" * (st["lineno"] - 1) + st["source"], st["file"], "exec")
            exec(code, namespace)
        except BaseException as e:  # student code may raise anything, SystemExit included
            exec_errors.append(describe_error(e, files))
    channel.send({"kind": "exec", "errors": exec_errors})
    inputs = load_file(job["inputs_file"]) if job.get("inputs_file") else {}
    generate = job["mode"] == "generate"
    for n, spec in enumerate(job["calls"]):
        start = time.perf_counter()
        tensors: dict[str, torch.Tensor] = {}
        record: dict[str, Any] = {"kind": "call", "id": spec["id"], "status": "ok", "phase": None, "error": None}
        given = {k[len(spec["id"]) + 1:]: v for k, v in inputs.items() if k.startswith(spec["id"] + "/")}
        try:
            run_call(spec, namespace, given, tensors, record, generate)
        except BaseException as e:
            record["status"] = "error"
            record["error"] = describe_error(e, files)
        if tensors:
            path = os.path.join(job["out_dir"], f"{n}.safetensors")
            save_file(tensors, path)
            record["file"] = path
        record["duration"] = time.perf_counter() - start
        channel.send(record)


def run_call(spec: dict[str, Any], namespace: dict[str, Any], given: dict[str, torch.Tensor],
             tensors: dict[str, torch.Tensor], record: dict[str, Any], generate: bool) -> None:
    """One case: build, load parameters, run forward (and backward / perturbed forward)."""
    if spec.get("static_only"):
        return
    record["phase"] = "build"
    cls = namespace.get(spec["target"])
    if cls is None:
        raise NameError(f"{spec['target']} is not defined")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise TypeError(f"{spec['target']} must be a class derived from nn.Module, got {type(cls).__name__}")
    torch.manual_seed(spec["seed"])
    module = cls(**spec["init"])
    record["params"] = {k: list(p.shape) for k, p in module.named_parameters()}
    if spec["build_only"]:
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
    torch.manual_seed(spec["seed"] + 1)  # any randomness in forward draws the same numbers for everyone
    with torch.set_grad_enabled(spec["grad"]):
        outputs = invoke(module, spec, args, kwargs)
    for k, v in outputs.items():
        tensors["out/" + k] = plain(v, k)
    if spec["grad"]:
        record["phase"] = "backward"
        backward(module, spec, outputs, given, tensors, generate)
    if spec["perturb"]:
        record["phase"] = "perturbed forward"
        if generate:
            perturb_inputs(spec, given, tensors)
        args, kwargs = call_args(spec, given, "pin/")
        torch.manual_seed(spec["seed"] + 1)
        with torch.no_grad():
            pout = invoke(module, spec, args, kwargs)
        for k, v in pout.items():
            tensors["pout/" + k] = plain(v, k)
    record["phase"] = None


def load_params(module: torch.nn.Module, params: dict[str, torch.Tensor], spec: dict[str, Any]) -> None:
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
            f"{spec['target']}'s parameters differ from the template's, so the reference's parameters "
            f"cannot be loaded: {'; '.join(problems)}. Keep the layers the template defines in __init__, "
            "with the same attribute names and sizes.")
    module.load_state_dict(params, strict=True)


def make_inputs(spec: dict[str, Any], given: dict[str, torch.Tensor]) -> None:
    """Seeded inputs and mask (generate mode)."""
    g = torch.Generator().manual_seed(spec["seed"])
    for name, shape in spec["inputs"].items():
        dtype = getattr(torch, spec.get("dtypes", {}).get(name, "float32"))
        if isinstance(shape[0], list):
            for i, s in enumerate(shape):
                given[f"in/{name}.{i}"] = torch.randn(s, generator=g).to(dtype)
        else:
            given[f"in/{name}"] = torch.randn(shape, generator=g).to(dtype)
    if spec["mask"]:
        given["in/mask"] = make_mask(spec)


def make_mask(spec: dict[str, Any]) -> torch.Tensor:
    """A boolean mask broadcastable to the scores' shape; True = attend, False (0) = masked."""
    shapes = spec["inputs"]
    q_shape = shapes[spec["args"][0]]
    k_shape = shapes[spec["key_args"][0]] if spec["key_args"] else shapes[spec["args"][1]]
    rank = spec["mask_rank"] or len(q_shape)
    n_q, n_k = q_shape[-2], k_shape[-2]
    kind = spec["mask"]["kind"]
    if kind == "custom":
        return torch.tensor(spec["mask"]["values"]).bool()
    if kind == "padding":
        lengths = torch.tensor(spec["mask"]["lengths"])
        keep = torch.arange(n_k)[None, :] < lengths[:, None]
        return keep.reshape([q_shape[0]] + [1] * (rank - 2) + [n_k])
    causal = torch.ones(n_q, n_k).tril().bool()
    return causal.reshape([1] * (rank - 2) + [n_q, n_k])


def perturb_inputs(spec: dict[str, Any], given: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> None:
    """Copy the inputs, changing the last key position of every key input (generate mode)."""
    g = torch.Generator().manual_seed(spec["seed"] + 104729)
    for k, v in list(given.items()):
        if not k.startswith("in/"):
            continue
        p = v.clone()
        if k[len("in/"):] in spec["key_args"]:
            p[..., -1, :] += 3.0 * torch.randn(p[..., -1, :].shape, generator=g)
        given["pin/" + k[len("in/"):]] = p
        tensors["pin/" + k[len("in/"):]] = p


def call_args(spec: dict[str, Any], given: dict[str, torch.Tensor], prefix: str) -> tuple[list, dict]:
    """Positional inputs in the target's order, plus ``mask=`` when the case has one."""
    args = []
    for name in spec["args"]:
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


def invoke(module: torch.nn.Module, spec: dict[str, Any], args: list, kwargs: dict) -> dict[str, Any]:
    """Call forward (or unroll a recurrent cell) and name what comes back."""
    if spec["call"] == "unroll":
        # A recurrent cell: forward(x_t, state) returns the next state, h or (h, c).
        x, state, hs = args[0], None, []
        for t in range(x.shape[1]):
            result = module(x[:, t], state)
            if isinstance(result, torch.Tensor):
                hs.append(result)
            elif isinstance(result, tuple) and len(result) == 2:
                hs.append(result[0])
            else:
                raise StudentAPIError(f"{spec['target']}.forward must return the next state, h or (h, c); "
                                      f"got {describe_value(result)}")
            state = result
        outputs = {"h_seq": torch.stack(hs, dim=1)}
        if isinstance(state, tuple):
            outputs["c_last"] = state[1]
        return outputs
    result = module(*args, **kwargs)
    returns = spec["returns"]
    if returns == "dict":
        if not isinstance(result, dict):
            raise StudentAPIError(f"{spec['target']}.forward must return a dict with keys "
                                  f"{', '.join(spec['keys'])}; got {describe_value(result)}")
        return {k: result[k] for k in spec["keys"] if k in result}
    if isinstance(returns, str):
        return {returns: result}
    if not isinstance(result, (tuple, list)) or len(result) != len(returns):
        raise StudentAPIError(f"{spec['target']}.forward must return a tuple ({', '.join(returns)}); "
                              f"got {describe_value(result)}")
    return dict(zip(returns, result))


def backward(module: torch.nn.Module, spec: dict[str, Any], outputs: dict[str, Any],
             given: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], generate: bool) -> None:
    """Backpropagate a seeded weighted sum of the outputs; record every parameter's gradient."""
    names = spec["loss"] or list(outputs)
    g = torch.Generator().manual_seed(spec["seed"] + 7919)
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
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
    shown = [f"{files[f.filename]}, line {f.lineno}, in {f.name}\n    {(f.line or '').strip()}" for f in frames]
    message = str(exc)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + " …"
    if isinstance(exc, SyntaxError) and exc.filename in files:
        frames_last = {"label": files[exc.filename], "line": exc.lineno, "code": (exc.text or "").strip(),
                       "function": None}
    elif frames:
        last = frames[-1]
        frames_last = {"label": files[last.filename], "line": last.lineno,
                       "code": (last.line or "").strip(), "function": last.name}
    else:
        frames_last = {"label": None, "line": None, "code": None, "function": None}
    return {"type": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
            "message": message, "traceback": "\n".join(shown), "student_error": not isinstance(exc, StudentAPIError),
            **frames_last}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
