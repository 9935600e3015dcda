"""The decoder: one recurrent step with feedback, peek and attention, or all steps fused.

Where the context comes from and where it goes (H = hidden size):

==============  ==========================================  ==========================
attention       peek=False                                  peek=True
==============  ==========================================  ==========================
none            s_t = RNN(x_t, s_t-1); y_t = O(s_t)         c = encoder summary;
                                                            s_t = RNN([x_t; c], s_t-1);
                                                            y_t = O([s_t; c])   (Cho)
additive/dot/   s_t = RNN(x_t, s_t-1); c_t = attn(s_t);     c_t = attn(s_t-1);
general         y_t = O([s_t; c_t])  (Luong, no input       s_t = RNN([x_t; c_t], s_t-1);
                feeding)                                    y_t = O([s_t; c_t])
                                                            (Bahdanau / input feeding)
==============  ==========================================  ==========================

x_t is the previous output y_t-1 embedded (feedback), or, without feedback, the encoder
summary through ``Dense(H, relu)`` at every step (the seed's RepeatVector model).
O([s; c]) is ``Linear(tanh(Linear([s; c])))``; O(s) is ``Linear(s)``.

Fast paths (same outputs to float tolerance, tested against the plain ones): ``run`` runs
every step in one fused RNN call where no step depends on the previous output; ``run_feeding``
handles input feeding with inputs known in advance (teacher forcing 1.0): the inputs' share
of the first layer's projection for all steps in one matmul, the output layer for all steps
after the loop; single steps call the RNN cells directly (``torch.lstm_cell``/``gru_cell``),
which costs less than a one-step ``nn.LSTM`` call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.attention import Attention
from pipeline.models.encoder import RNNS, Encoded, State


def top_hidden(state: State) -> torch.Tensor:
    """The top layer's hidden state (B, H) of an LSTM (h, c) or GRU h state."""
    return state[0][-1] if isinstance(state, tuple) else state[-1]


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


class Decoder(nn.Module):
    """Decoder over an :class:`Encoded` source; see the module docstring for the wiring."""

    def __init__(
        self,
        input: nn.Module,
        output_dim: int,
        embed_dim: int,
        hidden_dim: int,
        depth: int,
        cell: str = "lstm",
        dropout: float = 0.0,
        peek: bool = False,
        attention: str = "none",
        feedback: bool = True,
    ):
        super().__init__()
        self.input = input if feedback else None
        self.peek = peek
        self.feedback = feedback
        self.repeat = (
            None if feedback else nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
        )
        in_dim = (embed_dim if feedback else hidden_dim) + (hidden_dim if peek else 0)
        self.rnn = RNNS[cell](
            in_dim, hidden_dim, num_layers=depth, batch_first=True,
            dropout=dropout if depth > 1 else 0.0,
        )
        self.attention = None if attention == "none" else Attention(attention, hidden_dim)
        self.combine = nn.Linear(2 * hidden_dim, hidden_dim) if peek or self.attention else None
        self.out = nn.Linear(hidden_dim, output_dim)

    @property
    def input_feeding(self) -> bool:
        """True when the recurrent step depends on the attention context (peek + attention)."""
        return self.peek and self.attention is not None

    def keys(self, enc: Encoded) -> torch.Tensor | None:
        """Attention keys, computed once per batch (None without attention)."""
        return None if self.attention is None else self.attention.keys(enc.memory)

    def inputs(self, prev: torch.Tensor | None, enc: Encoded, steps: int) -> torch.Tensor:
        """Decoder inputs for ``steps`` steps: the embedded previous outputs, or the repeated
        summary without feedback."""
        if self.feedback:
            return self.input(prev)
        return self.repeat(enc.summary).unsqueeze(1).expand(-1, steps, -1)

    def step(
        self, x: torch.Tensor, state: State, enc: Encoded, keys: torch.Tensor | None
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """One step from x (B, 1, E): output (B, 1, V), the new state, weights (B, 1, S)."""
        weights = None
        if self.input_feeding:
            query = top_hidden(state).unsqueeze(1)
            ctx, weights = self.attention(query, keys, enc.memory, enc.mask)
            x = torch.cat([x, ctx], dim=-1)
        elif self.peek:
            x = torch.cat([x, enc.summary.unsqueeze(1)], dim=-1)
        if self.cells_ok:
            layers = self._cells(x.squeeze(1), split_layers(state))
            h, state = top_of(layers).unsqueeze(1), join_layers(layers)
        else:
            h, state = self.rnn(x, state)
        out, w = self._output(h, enc, keys, ctx if self.input_feeding else None)
        return out, state, weights if weights is not None else w

    @property
    def cells_ok(self) -> bool:
        """Steps may call the cells directly: not while the RNN's own dropout between layers is
        active (its random masks would differ from the module's)."""
        return not (self.training and self.rnn.dropout > 0 and self.rnn.num_layers > 1)

    def _cells(self, x: torch.Tensor, layers: list, w_first=None, b_first=None) -> list:
        """One step of the stacked RNN on x (B, I), one cell call per layer; ``layers`` holds
        each layer's h (GRU) or (h, c) (LSTM). ``w_first`` and ``b_first`` replace the first
        layer's input weight and bias (a (B, G) bias carries a precomputed share of the input
        projection). Returns the layers' new states."""
        rnn, new = self.rnn, []
        for layer, state in enumerate(layers):
            w_ih, b_ih = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"bias_ih_l{layer}")
            if layer == 0 and w_first is not None:
                w_ih, b_ih = w_first, b_first
            w_hh, b_hh = getattr(rnn, f"weight_hh_l{layer}"), getattr(rnn, f"bias_hh_l{layer}")
            if isinstance(state, tuple):
                state = torch.lstm_cell(x, state, w_ih, w_hh, b_ih, b_hh)
                x = state[0]
            else:
                state = x = torch.gru_cell(x, state, w_ih, w_hh, b_ih, b_hh)
            new.append(state)
        return new

    def run_feeding(
        self, x: torch.Tensor, state: State, enc: Encoded, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Input feeding over inputs known in advance (B, T, E): equals ``step`` T times."""
        assert self.input_feeding and self.cells_ok
        embed = x.shape[-1]
        w_ih = self.rnn.weight_ih_l0
        pre = F.linear(x.transpose(0, 1), w_ih[:, :embed], self.rnn.bias_ih_l0)  # (T, B, G)
        w_ctx = w_ih[:, embed:]
        layers, hs, contexts, weights = split_layers(state), [], [], []
        for pre_t in pre.unbind(0):  # unbind: one gradient copy back, not one per step
            query = top_of(layers).unsqueeze(1)
            ctx, w = self.attention(query, keys, enc.memory, enc.mask)
            layers = self._cells(ctx.squeeze(1), layers, w_ctx, pre_t)
            hs.append(top_of(layers))
            contexts.append(ctx)
            weights.append(w)
        out, _ = self._output(torch.stack(hs, dim=1), enc, keys, torch.cat(contexts, dim=1))
        return out, torch.cat(weights, dim=1)

    def run(
        self, x: torch.Tensor, state: State, enc: Encoded, keys: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All steps in one fused RNN call, for inputs known in advance (not input feeding)."""
        assert not self.input_feeding, "input feeding needs the step-by-step path"
        if self.peek:
            x = torch.cat([x, enc.summary.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)
        h, _ = self.rnn(x, state)
        return self._output(h, enc, keys, None)

    def _output(
        self, h: torch.Tensor, enc: Encoded, keys: torch.Tensor | None, ctx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        weights = None
        if ctx is None and self.attention is not None:
            ctx, weights = self.attention(h, keys, enc.memory, enc.mask)
        elif ctx is None and self.peek:
            ctx = enc.summary.unsqueeze(1).expand_as(h)
        if self.combine is not None:
            h = torch.tanh(self.combine(torch.cat([h, ctx], dim=-1)))
        return self.out(h), weights
