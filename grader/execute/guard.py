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

* Every entry also forbids the operator families it covers (``grader.spec.operators``): the
  kernels behind an API, however they are reached. ``torch.nn.functional.scaled_dot_product_attention``
  forbids every SDPA kernel and overload (``aten::_scaled_dot_product_attention_math``,
  ``aten::_scaled_dot_product_flash_attention_for_cpu``...); ``torch.nn.LSTMCell``, ``torch.lstm_cell``
  or ``torch._VF`` forbid ``aten::lstm_cell`` and its fused and quantized kernels; ``torch.nn.LSTM``,
  ``torch.nn.modules.rnn`` or ``torch._VF`` forbid ``aten::lstm``; and so on for ``gru``, ``gru_cell``,
  ``rnn_tanh``... A hand-written solution dispatches none of them (measured for the references
  and every submission of the corpus, which ``tests/test_corpus.py`` grades under this guard).

Three mechanisms, the cheapest set that sees every route above (measured on torch 2.13):

* a ``TorchFunctionMode`` is handed every ``torch.*``, ``torch.nn.functional.*``,
  ``torch._VF.*``, ``torch._C._nn.*`` and ``torch.ops.*`` call and every Tensor method made
  from Python, before any decomposition; the guard matches the function, the operator's
  name, and the code object of the calling frame. It names what the student wrote, but sees
  nothing that runs outside Python: TorchScript, a ``torch.library.custom_op``'s body (the
  mode is not active inside an operator), compiled code.
* the autograd profiler (the legacy, CPU-only one: no Kineto, about a third of its cost) logs the
  name of every operator at the dispatcher's entry, composite ones included, from Python,
  TorchScript, custom-op bodies, compiled graphs and the backward pass, on this thread and the
  threads its work is handed to (autograd, intra-op). The names are matched against the
  forbidden families when the block ends (and every ``DRAIN_EVERY`` torch calls made from
  Python, so a long case does not hold millions of events). A ``TorchDispatchMode`` would not do: composite operators
  such as ``aten::lstm_cell``, ``aten::_scaled_dot_product_attention_math`` and
  ``aten::scaled_dot_product_attention`` decompose before they reach it, its handler runs each
  operator with the mode off (so a custom op's body is unseen) and it sees no TorchScript call
  of a composite. The profiler is on only for a target whose forbid list covers a family.
* a global ``nn.Module`` forward pre-hook, for subclasses of a forbidden class that
  override ``forward``.

A family already reported by the mode in a case is not reported again from the log. An
operator found only in the log is reported with the family's API: ``torch.lstm (aten::lstm)``.

None of them changes what the student's code computes: the mode calls each function exactly
as it was called, the profiler only logs names. Side effects: while a mode is active,
``torch.nn.MultiheadAttention`` and ``TransformerEncoderLayer`` skip their inference fast path
(they check ``has_torch_function``), so a target should be watched only when it has a forbid
list; code that starts a profiler of its own while a case runs gets torch's "Profiler is
already enabled" error; and ``torch.compile`` cannot trace the mode (it takes the caller's
frame), so Dynamo runs each torch call that reaches the mode eagerly, through it: hand-written
code stays as written (inductor would turn a hand-written attention into SDPA's kernel, which
the log would then report). A call Dynamo puts in a graph anyway is logged as it is traced;
the mode is part of what Dynamo guards on, so the first watched case that calls compiled
code compiles it again, and that case reports it. (Compiling in the sandbox can take longer
than a case's time limit: such a case errors and earns nothing.)

Switching the check off is recorded too, as a use of "switching off the grader's check": the
mode gone from the stack when the block ends, the profiler stopped, or operator logging
disabled (a marker logged last, which must be found).

Not seen, by design or by limitation: ``torch._VF`` as a whole (it only forwards to builtins
such as ``torch.tanh``, which a hand-written cell must be free to use: its forbidden members
are the families above and what is listed by name); Python code in a custom
``torch.autograd.Function.backward`` (the engine runs it without the mode; the operators it
calls are logged); calls from threads the code starts itself; C++ that calls a kernel without
the dispatcher.

What an in-process check cannot promise: the student's code runs in the same interpreter
as the guard, so a determined student can switch it off. It can run under
``torch._C.DisableTorchFunction()``, stop the profiler and start one of its own, rebind what
this module imported, copy the source of a forbidden function into the notebook, or reach
the C++ kernels through ``ctypes``. The guard records the ordinary and the moderately clever
routes to a forbidden API, and the crude ways of switching it off; it is evidence for a
reviewer, not a sandbox, and the static check and human review remain necessary.
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

from grader.spec.operators import OperatorFamily, covers, family_of, forbidden_families

MAX_USES = 20
#: Torch calls from Python between two readings of the operator log (bounds its memory, ~600 bytes an
#: operator, for code that calls torch from Python; one TorchScript or custom-op call is read whole).
DRAIN_EVERY = 20_000
#: What is recorded when the check itself was switched off while a case ran.
SWITCHED_OFF = "switching off the grader's check"
PROFILER_STOPPED = (SWITCHED_OFF, "the autograd profiler's controls")
MODE_REMOVED = (SWITCHED_OFF, "torch's function-mode controls")
#: Logged last in every reading of the operator log: missing, operator logging was switched off.
_MARKER = "grader::forbidden-call-check"

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
_log_on = torch._C._autograd._enable_profiler_legacy
_log_off = torch._C._autograd._disable_profiler_legacy
_profiler_type = torch._C._autograd._profiler_type
_LEGACY, _NO_PROFILER = torch._C._profiler.ActiveProfilerType.LEGACY, torch._C._profiler.ActiveProfilerType.NONE
_record_functions = torch._C._autograd._enable_record_function
_Marker = torch._C._profiler._RecordFunctionFast
_LOG_CONFIG = torch._C._profiler.ProfilerConfig(torch._C._profiler.ProfilerState.CPU, False, False, False, False,
                                                False, torch._C._profiler._ExperimentalConfig())
_UNSEEN = object()

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
        #: the operator families the entries forbid, each with the entry that forbids it
        self._families = forbidden_families(forbid)
        self._family_cache: dict[str, tuple[OperatorFamily, str] | None] = {}  # operator or called -> family
        self._uses: list[dict[str, str]] = []
        self._seen: set[Hit] = set()
        self._reported: set[str] = set()  # the APIs of the families reported since the last take
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
        if not (self._objects or self._ops or self._codes or self._classes or self._families):
            yield  # nothing forbidden resolved: no mode, no log, no hook, no cost
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
        logged = False
        try:
            if self._families:
                logged = _LOG.start(self)
                if not logged:
                    self._record(PROFILER_STOPPED)
            _push_mode(mode)
            yield
        finally:
            self._local.depth = 0
            ours = False
            with contextlib.suppress(Exception):
                # Pop ours, and any mode the student pushed above it and left there.
                ours = any(_stack_at(i) is mode for i in range(base, _stack_len()))
                if ours:
                    while _stack_len() > base:
                        _pop_mode()
            if not ours:
                self._record(MODE_REMOVED)
            if logged and not _LOG.stop(self):
                self._record(PROFILER_STOPPED)
            self._hook_off()

    def take(self) -> list[dict[str, str]]:
        """The uses seen since the last take: deduplicated, in order, at most MAX_USES."""
        uses, self._uses, self._seen, self._reported = self._uses, [], set(), set()
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
            found = self._family(hit[1])
            if found is not None:  # the log need not report this family again
                self._reported.add(found[0].api)

    def _family(self, called: str) -> tuple[OperatorFamily, str] | None:
        """The forbidden family of an operator name (``aten::lstm``) or of a dotted name (a class's
        ``torch.nn.modules.rnn.LSTMCell.forward``), or None."""
        found = self._family_cache.get(called, _UNSEEN)
        if found is _UNSEEN:
            if "::" in called:
                found = family_of(called, self._families)
            else:
                found = next(((f, e) for f, e in self._families if any(covers(n, called) for n in f.names)), None)
            self._family_cache[called] = found
        return found  # type: ignore[return-value]

    def _see_operators(self, names: list[str]) -> None:
        """Operators logged while watching: the first of each forbidden family not yet reported."""
        cache, reported = self._family_cache, self._reported
        for name in names:
            found = cache.get(name, _UNSEEN)
            if found is _UNSEEN:
                found = self._family(name) if "::" in name else None
                cache[name] = found
            if found is not None and found[0].api not in reported:
                family, entry = found
                reported.add(family.api)
                self._record((entry, f"{family.api} ({name})"))

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
        # The caller's frame, taken first and on every call: torch.compile cannot trace sys._getframe, so
        # Dynamo breaks its graph at each torch call that reaches this mode and runs it eagerly, through
        # the mode. Compiled hand-written code is then never fused into a kernel the student did not write
        # (inductor turns a hand-written attention into SDPA's, which the operator log would report).
        frame = _getframe(2)
        _LOG.tick()
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
            # via handle_torch_function, the Python function and its caller
            for frame in (frame,) if frame.f_code is not _HANDLE else (frame.f_back, frame.f_back.f_back):
                hit = self._codes.get(id(frame.f_code)) if frame is not None else None
                if hit is not None or frame is None:
                    break
        if hit is not None:
            self._record(hit)


class _OperatorLog:
    """The legacy autograd profiler as a log of operator names, shared by the guards watching.

    It logs the name of every operator entered through the dispatcher on this thread and on the
    threads its work is handed to. Each reading ends with a marker, so that a log that comes
    back without it (logging switched off) or does not come back (the profiler stopped) is
    known to be incomplete.
    """

    def __init__(self) -> None:
        self._guards: list[ForbiddenCallGuard] = []
        self._calls = 0

    def start(self, guard: ForbiddenCallGuard) -> bool:
        """Log for ``guard`` too; False when the log could not be started."""
        if not self._guards and not self._on():
            return False
        self._guards.append(guard)
        return True

    def stop(self, guard: ForbiddenCallGuard) -> bool:
        """Hand what was logged to every guard watching and stop logging for ``guard``; False when
        the log was incomplete (the code switched logging off, or stopped the profiler)."""
        complete = self._read(restart=len(self._guards) > 1)
        with contextlib.suppress(ValueError):
            self._guards.remove(guard)
        return complete

    def tick(self) -> None:
        """One torch call: read the log every ``DRAIN_EVERY`` calls, so that it never grows large."""
        self._calls += 1
        if self._calls >= DRAIN_EVERY and self._guards:
            self._calls = 0
            if not self._read(restart=True):
                for guard in self._guards:
                    guard._record(PROFILER_STOPPED)

    def _on(self) -> bool:
        """Start logging; False when another profiler holds the thread (the code started one and left it
        running: that is switching our check off). Only a log of our own kind is stopped to make room:
        stopping the code's own (Kineto) profiler can hang in torch, so it is never tried."""
        _record_functions(True)  # the code before this case may have switched operator logging off
        try:
            running = _profiler_type()
            if running == _LEGACY:  # a log of our kind left running (by the code, before this case): replaced
                with contextlib.suppress(Exception):
                    _log_off()
            elif running != _NO_PROFILER:
                return False  # the code's own profiler: never touched (mixing kinds can abort or hang torch)
            _log_on(_LOG_CONFIG)
            return True
        except Exception:
            return False

    def _read(self, restart: bool) -> bool:
        self._calls = 0
        try:
            with _Marker(_MARKER):
                pass
            # stopped, or replaced by another kind: not ours to stop (mixing kinds can abort or hang torch)
            events = _log_off() if _profiler_type() == _LEGACY else None
        except Exception:
            events = None
        names = [event.name() for thread in events for event in thread] if events is not None else []
        for guard in self._guards:
            try:
                guard._see_operators(names)
            except Exception:  # never into the student's code path
                pass
        if restart and not self._on():
            return False
        return events is not None and _MARKER in names


_LOG = _OperatorLog()


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
