"""Families of operators: every kernel behind one ready-made API, however it is reached.

A target's ``forbid`` list names public APIs (``torch.nn.functional.scaled_dot_product_attention``,
``torch.nn.LSTMCell``, ``torch._VF``). Each entry that covers one of a family's ``names`` (the
same rule as everywhere: equal, or a prefix ending at a dot) forbids the whole family: its
operators, matched by name (``fnmatch`` patterns, namespace included, overloads ignored), so
that a kernel is caught whichever route reached it (a Python call, ``torch.ops``, TorchScript,
a custom op's body, compiled code) and whichever of its variants torch chose (the SDPA math,
flash, efficient and cuDNN kernels and their backwards).

Pure data and pure functions: read by the static check in the parent (``grader.plan.policy``)
and by the run-time guard in the worker (``grader.execute.guard``). ``tests/test_guard.py`` checks
that every pattern matches an operator the installed torch registers (a renamed kernel would
otherwise leak) and that hand-written solutions dispatch none; ``tests/test_corpus.py`` grades
every correct submission under the guard. What the references and the corpus dispatch (torch
2.13, CPU): ``addmm``, ``bmm``, ``mm``, ``matmul``, ``einsum``, ``softmax``/``_softmax``,
``masked_fill``, ``sigmoid``, ``tanh``, ``dropout``, views and copies; no operator of a family.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class OperatorFamily:
    """The kernels of one ready-made API."""

    #: what a student recognises, shown with the operator that ran: "torch.lstm (aten::lstm)"
    api: str
    #: operator names, ``fnmatch`` patterns with their namespace ("aten::_scaled_dot_product_*")
    operators: tuple[str, ...]
    #: the dotted names that reach the family: a forbid entry covering one of them forbids it
    names: tuple[str, ...]

    def matches(self, operator: str) -> bool:
        """True for ``aten::lstm`` (or ``aten::lstm.input``) in the family of ``aten::lstm``."""
        return bool(_pattern(self.operators).match(operator.split(".", 1)[0]))


def _functions(*names: str) -> tuple[str, ...]:
    """Where torch exposes a builtin operator to Python."""
    return tuple(f"{ns}.{n}" for n in names for ns in ("torch", "torch._VF", "torch._C._VariableFunctions"))


_RNN = "torch.nn.modules.rnn"

FAMILIES: tuple[OperatorFamily, ...] = (
    OperatorFamily(
        "torch.nn.functional.scaled_dot_product_attention",
        ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product_*", "aten::_fused_sdp_choice",
         "aten::_efficient_attention_*", "aten::_flash_attention_*", "aten::_cudnn_attention_*",
         "aten::_triton_scaled_dot_attention"),
        ("torch.nn.functional.scaled_dot_product_attention", "torch._C._nn.scaled_dot_product_attention")),
    OperatorFamily(
        "torch.nn.MultiheadAttention",
        ("aten::_native_multi_head_attention", "aten::_triton_multi_head_attention",
         "aten::_transformer_encoder_layer_fwd"),
        ("torch.nn.MultiheadAttention", "torch.nn.modules.activation.MultiheadAttention",
         "torch.nn.functional.multi_head_attention_forward",
         *_functions("_native_multi_head_attention", "_transformer_encoder_layer_fwd"))),
    OperatorFamily(
        "torch.lstm",
        ("aten::lstm", "aten::quantized_lstm", "aten::_lstm_mps", "aten::lstm_mps_backward", "aten::mkldnn_rnn_layer*",
         "mkldnn::_reorder_mkldnn_rnn_layer_weight"),
        ("torch.nn.LSTM", f"{_RNN}.LSTM", *_functions("lstm", "quantized_lstm", "mkldnn_rnn_layer"))),
    OperatorFamily(
        "torch.lstm_cell",
        ("aten::lstm_cell", "aten::_thnn_fused_lstm_cell*", "aten::_thnn_differentiable_lstm_cell_backward",
         "aten::quantized_lstm_cell", "quantized::quantized_lstm_cell_dynamic"),
        ("torch.nn.LSTMCell", f"{_RNN}.LSTMCell", "torch.nn.functional.lstm_cell",
         *_functions("lstm_cell", "quantized_lstm_cell"))),
    OperatorFamily(
        "torch.gru",
        ("aten::gru", "aten::quantized_gru"),
        ("torch.nn.GRU", f"{_RNN}.GRU", *_functions("gru", "quantized_gru"))),
    OperatorFamily(
        "torch.gru_cell",
        ("aten::gru_cell", "aten::_thnn_fused_gru_cell*", "aten::_thnn_differentiable_gru_cell_backward",
         "aten::quantized_gru_cell", "quantized::quantized_gru_cell_dynamic"),
        ("torch.nn.GRUCell", f"{_RNN}.GRUCell", *_functions("gru_cell", "quantized_gru_cell"))),
    OperatorFamily(
        "torch.rnn_tanh",
        ("aten::rnn_tanh", "aten::rnn_relu"),
        ("torch.nn.RNN", f"{_RNN}.RNN", *_functions("rnn_tanh", "rnn_relu"))),
    OperatorFamily(
        "torch.rnn_tanh_cell",
        ("aten::rnn_tanh_cell", "aten::rnn_relu_cell", "aten::quantized_rnn_*_cell",
         "quantized::quantized_rnn_*_cell_dynamic"),
        ("torch.nn.RNNCell", f"{_RNN}.RNNCell",
         *_functions("rnn_tanh_cell", "rnn_relu_cell", "quantized_rnn_tanh_cell", "quantized_rnn_relu_cell"))),
    OperatorFamily(  # the fused GPU kernels that nn.LSTM, nn.GRU and nn.RNN share
        "torch.nn.LSTM, GRU or RNN",
        ("aten::_cudnn_rnn", "aten::_cudnn_rnn_backward", "aten::miopen_rnn", "aten::miopen_rnn_backward"),
        (f"{_RNN}.RNNBase", *_functions("_cudnn_rnn", "miopen_rnn"))),
)

#: Dotted prefixes under which a name is an operator's Python binding: ``torch.lstm`` is ``aten::lstm``.
_BINDINGS = ("torch._VF.", "torch._C._VariableFunctions.", "torch._C._nn.", "torch.nn.functional.", "torch.")


def covers(entry: str, name: str) -> bool:
    """True when the forbid ``entry`` covers the dotted ``name`` (equal, or a prefix ending at a dot)."""
    return name == entry or name.startswith(entry + ".")


def forbidden_families(forbid: Sequence[str]) -> list[tuple[OperatorFamily, str]]:
    """The families a forbid list forbids, each with the first entry that covers one of its names."""
    found = []
    for family in FAMILIES:
        entry = next((e for e in forbid if e and any(covers(e, n) for n in family.names)), None)
        if entry is not None:
            found.append((family, entry))
    return found


def operator_of(dotted: str) -> str | None:
    """The operator a dotted Python name calls, if it names one: ``torch.ops.aten.lstm.input`` ->
    ``aten::lstm``, ``torch._VF.gru`` -> ``aten::gru``; None for anything else (``torch.nn``)."""
    parts = dotted.split(".")
    if len(parts) in (4, 5) and parts[:2] == ["torch", "ops"]:
        return f"{parts[2]}::{parts[3]}"
    for prefix in _BINDINGS:
        rest = dotted[len(prefix):]
        if dotted.startswith(prefix) and rest and "." not in rest:
            return f"aten::{rest}"
    return None


def family_of(operator: str, families: Sequence[tuple[OperatorFamily, str]]) -> tuple[OperatorFamily, str] | None:
    """The (family, forbid entry) of ``families`` that ``operator`` belongs to, or None."""
    return next((found for found in families if found[0].matches(operator)), None)


_COMPILED: dict[tuple[str, ...], re.Pattern[str]] = {}


def _pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    compiled = _COMPILED.get(patterns)
    if compiled is None:
        compiled = _COMPILED[patterns] = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
    return compiled
