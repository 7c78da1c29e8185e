"""Run-time check for forbidden APIs, inside the worker that runs the student's code.

``grader.policy`` reads the source; this module watches what actually runs, so it also
sees the APIs a student reaches through ``getattr`` with a computed name, ``importlib``,
``sys.modules``, ``exec`` of decoded source, ``torch.ops.aten``, ``torch._C`` or a class
built with ``type()``. A :class:`ForbiddenCallGuard` is built from a target's ``forbid``
list and records uses while :meth:`~ForbiddenCallGuard.watching`. Import this module and
build the guards before the student's statements are executed.

How each forbid entry is resolved (once, in ``__init__``, with references taken then):

* a builtin such as ``torch.lstm_cell`` or ``torch.nn.functional.scaled_dot_product_attention``:
  that function object, the ATen operator of the same name (``aten::lstm_cell``: catches
  ``torch.ops.aten.lstm_cell``, ``torch._C._jit_get_operation``), and the attribute it is
  looked up under when called (so rebinding ``torch._C._nn.scaled_dot_product_attention`` to
  a wrapper still counts);
* a Python function (``torch.nn.functional.multi_head_attention_forward``): that function,
  and its code object, seen on the stack when it calls into torch;
* a class (``torch.nn.LSTMCell``): calls of instances of it or of any subclass (a global
  module forward pre-hook), and the code of its methods on the stack (catches
  ``cell.forward(x)`` called directly and construction inside ``forward``);
* a Python module (``torch.nn.modules.rnn``): the classes and Python functions defined in it.
* Anything else, or a name that does not exist in this torch version, resolves to nothing.
  In particular ``torch._VF`` resolves to nothing: it only forwards to builtins such as
  ``torch.tanh``, which a hand-written cell must be free to use. Its forbidden members must
  be listed by name (``torch.lstm_cell``, ``torch._C._VariableFunctions.lstm_cell``).

Two mechanisms, the cheapest pair that sees every route above (measured on torch 2.13):

* a ``TorchFunctionMode`` is handed every ``torch.*``, ``torch.nn.functional.*``,
  ``torch._VF.*``, ``torch._C._nn.*`` and ``torch.ops.*`` call and every Tensor method made
  from Python, before any decomposition; the guard matches the function, the operator's
  name, and the code object of the calling frame. (A ``TorchDispatchMode`` would not do:
  composite operators such as ``aten::lstm_cell`` and ``aten::scaled_dot_product_attention``
  decompose before they reach it, and ``nn.MultiheadAttention`` with ``need_weights=True``
  dispatches only ``addmm``/``bmm``/``softmax``. The profiler sees composite operators at
  dispatcher entry, but costs several times more and sees no Python class or function.)
* a global ``nn.Module`` forward pre-hook, for subclasses of a forbidden class that
  override ``forward``.

Neither changes what the student's code computes: the mode calls each function exactly
as it was called. One side effect: while a mode is active, ``torch.nn.MultiheadAttention``
and ``TransformerEncoderLayer`` skip their inference fast path (they check
``has_torch_function``), so a target should be watched only when it has a forbid list.

Not seen, by design or by limitation: ``torch._VF`` as a whole (see above), so
``torch.lstm``/``torch._VF.lstm``/``torch.gru`` and kernels such as
``torch._scaled_dot_product_attention_math`` count only if listed by name; Python code in a
custom ``torch.autograd.Function.backward`` (the engine runs it without the mode); calls from
other threads.

What an in-process check cannot promise: the student's code runs in the same interpreter
as the guard, so a determined student can switch it off. It can pop the mode
(``torch._C._pop_torch_function_stack()``), run under ``torch._C.DisableTorchFunction()``,
clear the global module hooks (hiding a subclass's own ``forward``), rebind what this module
imported, copy the source of a forbidden function into the notebook, or reach the C++
kernels through ``ctypes``. The guard records the ordinary and the moderately clever routes
to a forbidden API; it is evidence for a reviewer, not a sandbox, and the static check and
human review remain necessary.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import types
from typing import Any, Iterator, Sequence

import torch
from torch.overrides import TorchFunctionMode

MAX_USES = 20

# Trusted references, taken when the worker imports this module (before student code runs).
_getframe = sys._getframe
_HANDLE = torch.overrides.handle_torch_function.__code__  # the frame between a Python function and the mode
_push_mode = torch._C._push_on_torch_function_stack
_pop_mode = torch._C._pop_torch_function_stack
_stack_len = torch._C._len_torch_function_stack
_stack_at = torch._C._get_function_stack_at
_add_pre_hook = torch.nn.modules.module.register_module_forward_pre_hook
_schemas = torch._C._jit_get_schemas_for_operator
_FunctionType = types.FunctionType
_BuiltinType = types.BuiltinFunctionType
_OpOverload = torch._ops.OpOverload
_OpPacket = torch._ops.OpOverloadPacket

Hit = tuple[str, str]  # (forbid entry, what was called)


class ForbiddenCallGuard:
    """Resolves forbidden dotted names once (before any student code runs) and records uses while watching."""

    def __init__(self, forbid: Sequence[str]) -> None:
        self._objects: dict[int, Hit] = {}  # id(function) -> hit
        self._ops: dict[str, str] = {}  # "aten::lstm_cell" -> forbid entry
        self._codes: dict[int, Hit] = {}  # id(code object) -> hit
        self._classes: dict[int, str] = {}  # id(class) -> forbid entry
        self._slots: list[tuple[Any, str, Hit]] = []  # (namespace, name, hit) a builtin is dispatched through
        self._keep: list[Any] = []  # keeps every id above alive, so that no id is reused
        for entry in forbid:
            obj = _resolve(entry)
            if obj is not None:
                self._add(entry, obj, None)
        self._uses: list[dict[str, str]] = []
        self._seen: set[Hit] = set()
        self._local = threading.local()
        self._hook: Any = None
        self._hook_users = 0

    # --- resolution -------------------------------------------------------------

    def _add(self, entry: str, obj: Any, inside: types.ModuleType | None) -> None:
        if id(obj) in self._objects or id(obj) in self._classes:
            return  # already forbidden by an earlier entry, which is the one reported
        if isinstance(obj, types.ModuleType):
            if inside is None:  # a module forbids the classes and functions it defines, not what it imports
                for value in list(vars(obj).values()):
                    if isinstance(value, (type, _FunctionType)) and value.__module__ == obj.__name__:
                        self._add(entry, value, obj)
        elif isinstance(obj, type):
            self._keep.append(obj)
            self._classes.setdefault(id(obj), entry)
            for value in list(vars(obj).values()):
                for fn in (getattr(value, "__func__", value), getattr(value, "fget", None)):
                    # only methods written in this class's body (not functions merely assigned to it)
                    if isinstance(fn, _FunctionType) and fn.__qualname__.startswith(obj.__qualname__ + "."):
                        self._add_code(entry, fn.__code__, obj.__module__)
        elif isinstance(obj, _FunctionType):
            self._keep.append(obj)
            self._objects[id(obj)] = (entry, _dotted(obj.__module__, obj.__qualname__))
            self._add_slots(entry, obj)
            for _ in range(8):  # the function and the ones it wraps (functools.wraps)
                if obj.__code__.co_name == obj.__name__:  # its own code, not a wrapper's shared by others
                    self._add_code(entry, obj.__code__, obj.__module__)
                obj = getattr(obj, "__wrapped__", None)
                if not isinstance(obj, _FunctionType):
                    break
        elif isinstance(obj, _BuiltinType):
            op = f"aten::{obj.__name__}"
            is_op = bool(_schemas(op))
            if is_op:
                self._ops.setdefault(op, entry)
            self._keep.append(obj)
            self._objects[id(obj)] = (entry, op if is_op else _dotted(obj.__module__, obj.__name__))
            self._add_slots(entry, obj)
        elif isinstance(obj, (_OpOverload, _OpPacket)):
            name = obj._schema.name if isinstance(obj, _OpOverload) else obj._qualified_op_name
            self._ops.setdefault(name, entry)

    def _add_code(self, entry: str, code: types.CodeType, module: str | None) -> None:
        if id(code) not in self._codes:
            self._keep.append(code)
            self._codes[id(code)] = (entry, _dotted(module, getattr(code, "co_qualname", code.co_name)))
        for const in code.co_consts:  # functions, lambdas and comprehensions defined inside it
            if isinstance(const, types.CodeType):
                self._add_code(entry, const, module)

    def _add_slots(self, entry: str, obj: Any) -> None:
        """Where torch looks the function up by name when it is called (``torch._C._nn`` for
        ``scaled_dot_product_attention``, the defining module for a Python function): a wrapper
        bound there is what the mode is then handed, even when the original was called."""
        namespace = _resolve(obj.__module__ or "")
        if namespace is not None and getattr(namespace, obj.__name__, None) is obj:
            self._slots.append((namespace, obj.__name__, self._objects[id(obj)]))

    # --- watching ---------------------------------------------------------------

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Record forbidden uses in this block (re-entrant: a nested block adds nothing)."""
        if not (self._objects or self._ops or self._codes or self._classes):
            yield  # nothing forbidden resolved: no mode, no hook, no cost
            return
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        mode = _Mode(self)
        base = _stack_len()
        self._local.depth = 1
        self._hook_on()
        try:
            _push_mode(mode)
            yield
        finally:
            self._local.depth = 0
            with contextlib.suppress(Exception):
                # Pop ours, and any mode the student pushed above it and left there.
                if any(_stack_at(i) is mode for i in range(base, _stack_len())):
                    while _stack_len() > base:
                        _pop_mode()
            self._hook_off()

    def take(self) -> list[dict[str, str]]:
        """The uses seen since the last take: deduplicated, in order, at most MAX_USES."""
        uses, self._uses, self._seen = self._uses, [], set()
        return uses

    def _hook_on(self) -> None:
        self._hook_users += 1
        if self._classes and self._hook is None:
            self._hook = _add_pre_hook(self._pre_hook)

    def _hook_off(self) -> None:
        self._hook_users -= 1
        if self._hook is not None and self._hook_users <= 0:
            with contextlib.suppress(Exception):
                self._hook.remove()
            self._hook = None

    def _record(self, hit: Hit) -> None:
        if hit not in self._seen and len(self._uses) < MAX_USES:
            self._seen.add(hit)
            self._uses.append({"forbidden": hit[0], "called": hit[1]})

    def _pre_hook(self, module: Any, args: Any) -> None:
        try:
            if getattr(self._local, "depth", 0):
                cls = type(module)
                for base in cls.__mro__:
                    entry = self._classes.get(id(base))
                    if entry is not None:
                        self._record((entry, _dotted(cls.__module__, f"{cls.__qualname__}.forward")))
                        break
        except Exception:  # never into the student's code path
            pass

    def _see(self, func: Any) -> None:
        """One torch call made while watching: the function itself, or the code that called it."""
        hit = self._objects.get(id(func))
        if hit is None:
            kind = type(func)
            if kind is _OpPacket or kind is _OpOverload:
                name = func._qualified_op_name if kind is _OpPacket else func._schema.name
                entry = self._ops.get(name)
                hit = (entry, name) if entry else None
            elif kind is _FunctionType:  # a wrapper bound where torch looks a forbidden function up
                hit = next((h for n, a, h in self._slots if getattr(n, a, None) is func), None)
        if hit is None and self._codes:  # forbidden Python code making this call: the caller's frame or,
            frame = _getframe(2)  # via handle_torch_function, the Python function and its caller
            for frame in (frame,) if frame.f_code is not _HANDLE else (frame.f_back, frame.f_back.f_back):
                hit = self._codes.get(id(frame.f_code)) if frame is not None else None
                if hit is not None or frame is None:
                    break
        if hit is not None:
            self._record(hit)


class _Mode(TorchFunctionMode):
    def __init__(self, guard: ForbiddenCallGuard) -> None:
        super().__init__()
        self._guard = guard

    def __torch_function__(self, func, types, args=(), kwargs=None):
        try:
            self._guard._see(func)
        except Exception:  # never into the student's code path
            pass
        return func(*args, **(kwargs or {}))


def _dotted(module: str | None, qualname: str) -> str:
    """``torch.nn.modules.rnn.LSTMCell.forward``; the bare qualname where ``__name__`` was unset."""
    return qualname if module in (None, "", "builtins") else f"{module}.{qualname}"


def _resolve(dotted: str) -> Any:
    """The object a dotted name refers to, importing modules on the way; None if there is none."""
    parts = dotted.split(".")
    try:
        obj = importlib.import_module(parts[0])
        for i in range(1, len(parts)):
            try:
                obj = getattr(obj, parts[i])
            except AttributeError:
                obj = importlib.import_module(".".join(parts[: i + 1]))
    except Exception:
        return None
    return obj
