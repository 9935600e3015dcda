"""The recurrent cells: their names, and one step of a stacked LSTM/GRU written out.

:func:`stacked_step` runs one time step of an ``nn.LSTM``/``nn.GRU`` from that module's own
weights, layer by layer, with the gate arithmetic spelled out (PyTorch's documented
equations). Callers may hand it a first layer's input gates and a top layer's hidden gates
they computed themselves (a projection hoisted out of the time loop, or merged with another
matmul that reads the same vector), which ``torch.lstm_cell``/``gru_cell`` cannot take
within their documented contract (1-D biases of the gate size). Only ``F.linear`` with a
weight and a 1-D bias, pointwise ops and ``chunk`` are used, so the same code is valid on
every device.
"""

from __future__ import annotations

from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import nn

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class Cell(StrEnum):
    """The recurrent cells a model can be built with."""

    lstm = "lstm"
    gru = "gru"


class Init(StrEnum):
    """How the recurrent layers start: Keras' scheme (:func:`keras_init`) or PyTorch's."""

    keras = "keras"
    torch = "torch"


class Precision(StrEnum):
    """What the recurrent layers compute in: ``fp32``, or ``bf16``: the encoder's RNN under
    bf16 autocast, and the input-feeding loop's matrix products with bf16 operands (fp32
    results); embeddings, attention scores, the output layer and the loss stay fp32. On a CPU
    with AMX or AVX512-BF16, oneDNN's bf16 LSTM and matmuls run several times faster."""

    fp32 = "fp32"
    bf16 = "bf16"

    @property
    def low(self) -> torch.dtype | None:
        """The lower dtype the recurrent layers compute in, None for fp32."""
        return torch.bfloat16 if self is Precision.bf16 else None


RNNS: dict[str, type[nn.RNNBase]] = {Cell.lstm: nn.LSTM, Cell.gru: nn.GRU}


def keras_init(rnn: nn.RNNBase) -> None:
    """Initialise ``rnn`` in the manner of Keras' LSTM/GRU layers (on which the Keras
    seq2seq library is built), not as PyTorch does (every weight and bias uniform in
    +-1/sqrt(H)): input kernels glorot-uniform and recurrent kernels orthogonal, each
    gate's block on its own, biases zero, and an LSTM's forget-gate bias 1 (Keras'
    ``unit_forget_bias``; of PyTorch's two biases the input one carries it). With PyTorch's
    default the RepeatVector model barely learns at depth 2 or more; initialising the whole
    (4H, H) matrices at once, as Keras does, gives each gate a quarter of the scale and
    learns far slower there too."""
    lstm = isinstance(rnn, nn.LSTM)
    gates = 4 if lstm else 3
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            if name.startswith("bias"):
                param.zero_()
                if lstm and name.startswith("bias_ih"):
                    hidden = param.shape[0] // 4
                    param[hidden : 2 * hidden] = 1.0  # gate order i, f, g, o
                continue
            fill = nn.init.xavier_uniform_ if name.startswith("weight_ih") else \
                nn.init.orthogonal_
            for block in param.chunk(gates, dim=0):
                fill(block)


def gate_size(rnn: nn.RNNBase) -> int:
    """Rows of each layer's weights: 4H for an LSTM, 3H for a GRU."""
    return rnn.weight_hh_l0.shape[0]


def lstm_update(gi: torch.Tensor, gh: torch.Tensor, c: torch.Tensor):
    """LSTM state update from input gates ``gi`` and hidden gates ``gh`` (B, 4H), order i f g o."""
    gates = gi + gh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_update(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """GRU state update from input gates ``gi`` and hidden gates ``gh`` (B, 3H), order r z n;
    ``gh`` holds ``b_hn``, which the reset gate scales, as in ``nn.GRU``."""
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)


def stacked_step(
    rnn: nn.RNNBase,
    x: torch.Tensor | None,
    layers: list,
    first_gates: torch.Tensor | None = None,
    top_hidden_gates: torch.Tensor | None = None,
) -> list:
    """One step of the stacked ``rnn`` on x (B, I); ``layers`` holds each layer's h (GRU) or
    (h, c) (LSTM). ``first_gates`` (B, G) replaces the first layer's input projection
    (x is then unused), ``top_hidden_gates`` (B, G) the top layer's ``W_hh h + b_hh``.
    Dropout between layers as in ``rnn`` (on the input handed up, in training mode).
    Returns the layers' new states."""
    new, last = [], len(layers) - 1
    lstm = isinstance(rnn, nn.LSTM)
    for layer, state in enumerate(layers):
        h = state[0] if lstm else state
        if layer == 0 and first_gates is not None:
            gi = first_gates
        else:
            gi = F.linear(x, getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"bias_ih_l{layer}"))
        if layer == last and top_hidden_gates is not None:
            gh = top_hidden_gates
        else:
            gh = F.linear(h, getattr(rnn, f"weight_hh_l{layer}"), getattr(rnn, f"bias_hh_l{layer}"))
        state = lstm_update(gi, gh, state[1]) if lstm else gru_update(gi, gh, h)
        x = state[0] if lstm else state
        if layer < last and rnn.dropout > 0:
            x = F.dropout(x, rnn.dropout, rnn.training)
        new.append(state)
    return new


def split_layers(state: State) -> list:
    """(layers, B, H) state -> one h (GRU) or (h, c) (LSTM) per layer."""
    if isinstance(state, tuple):
        return list(zip(state[0].unbind(0), state[1].unbind(0), strict=True))
    return list(state.unbind(0))


def join_layers(layers: list) -> State:
    """The inverse of :func:`split_layers`."""
    if isinstance(layers[0], tuple):
        return tuple(torch.stack(part) for part in zip(*layers, strict=True))
    return torch.stack(layers)


def top_of(layers: list) -> torch.Tensor:
    """The top layer's h (B, H) of per-layer states."""
    return layers[-1][0] if isinstance(layers[-1], tuple) else layers[-1]


def select_state(state: State, index: torch.Tensor) -> State:
    """Rows ``index`` of an RNN state (layers, B, H), of both parts of an LSTM state, or of
    each model's state in an ensemble's tuple of states."""
    if isinstance(state, tuple):
        return tuple(select_state(s, index) for s in state)
    return state.index_select(1, index)
