"""The decoder: one recurrent step with feedback, peek and attention, or all steps at once.

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
summary through ``Dense(H, relu)`` at every step (the Keras library's RepeatVector model).
O([s; c]) is ``Linear(tanh(Linear([s; c])))``; O(s) is ``Linear(s)``. ``io_dropout`` drops
out the embedded previous outputs x_t and the features entering the last ``Linear`` of O.

Two paths compute the same numbers (to float tolerance; tested against each other), chosen
in one place, :meth:`Decoder.run` / :meth:`Decoder.step`, by the ``fast`` switch:

- plain (``fast=False``): every step calls ``nn.LSTM``/``nn.GRU`` for one step, attends with
  :class:`Attention` and runs the output layer: the model as written above.
- fast (the default): where no step depends on the previous output and there is no input
  feeding, all steps are one fused RNN call (cuDNN on a GPU). Otherwise the steps run
  through :func:`stacked_step` with what does not depend on the step hoisted out of the
  loop (:meth:`Decoder.prepare`): the first layer's input projection of every step at once
  (for tokens a lookup in the embedding table projected once, ``(E W^T)[y]`` instead of
  ``E[y] W^T``), the attention keys, the top layer's recurrent matmul merged with the
  attention query's (both read s_t-1), and the output layer after the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.attention import Attention, mask_bias
from pipeline.models.cells import (
    RNNS,
    Precision,
    State,
    gate_size,
    join_layers,
    split_layers,
    stacked_step,
    top_of,
)
from pipeline.models.encoder import Encoded
from pipeline.models.feeding_loop import feeding_loop


@dataclass
class FastWeights:
    """The fast path's weights, derived once per batch from the decoder's parameters alone
    (the same for every row, so beams share them).

    token_gates (V, G): the embedding table through the first layer's input weights;
    context_weight (H, G): the first layer's context weights transposed (input feeding: one
    view per batch, so the backward pass slices the weight once, not at every step);
    top_weight/top_bias: the top layer's recurrent weights stacked on the attention query's
    (additive input feeding).
    """

    token_gates: torch.Tensor | None = None
    context_weight: torch.Tensor | None = None
    top_weight: torch.Tensor | None = None
    top_bias: torch.Tensor | None = None


@dataclass
class Source:
    """What every decoder step reads of the encoded source, one row per sequence.

    memory (B, S, H), mask (B, S) and summary (B, H) as in :class:`Encoded`; bias (B, S):
    0 on real positions, -inf on padding; keys (B, S, H): the attention's key side;
    summary_gates (B, G), on the fast path: the summary through the first layer's context
    weights (peek without attention). ``weights``: the fast path's per-batch weights.
    """

    memory: torch.Tensor
    mask: torch.Tensor
    bias: torch.Tensor
    summary: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    summary_gates: torch.Tensor | None = None
    weights: FastWeights = field(default_factory=FastWeights)

    def select(self, index: torch.Tensor) -> Source:
        """The batch rows ``index`` (used to expand and reorder beams)."""
        rows = ("memory", "mask", "bias", "summary", "keys", "summary_gates")
        return replace(self, **{name: getattr(self, name)[index] for name in rows
                                if getattr(self, name) is not None})


class Decoder(nn.Module):
    """Decoder over an :class:`Encoded` source; see the module docstring for the wiring."""

    def __init__(
        self,
        input: nn.Module,
        output_dim: int,
        embed_dim: int,
        hidden_dim: int,
        depth: int,
        *,
        cell: str = "lstm",
        dropout: float = 0.0,
        peek: bool = False,
        attention: str = "none",
        feedback: bool = True,
        fast: bool = True,
        io_dropout: float = 0.0,
        precision: str = Precision.fp32,
    ):
        super().__init__()
        self.precision = Precision(precision)
        self.input = input if feedback else None
        self.io_dropout = io_dropout
        self.peek = peek
        self.feedback = feedback
        self.fast = fast
        self.repeat = (
            None if feedback else nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
        )
        self.input_size = embed_dim if feedback else hidden_dim
        self.rnn = RNNS[cell](
            self.input_size + (hidden_dim if peek else 0), hidden_dim, num_layers=depth,
            batch_first=True, dropout=dropout if depth > 1 else 0.0,
        )
        self.attention = None if attention == "none" else Attention(attention, hidden_dim)
        self.combine = nn.Linear(2 * hidden_dim, hidden_dim) if peek or self.attention else None
        self.out = nn.Linear(hidden_dim, output_dim)

    @property
    def input_feeding(self) -> bool:
        """True when the recurrent step depends on the attention context (peek + attention)."""
        return self.peek and self.attention is not None

    # -- what is computed once per batch ------------------------------------------------

    def prepare(self, enc: Encoded) -> Source:
        """The per-batch part of every step (more of it on the fast path)."""
        source = Source(enc.memory, enc.mask, mask_bias(enc.mask), enc.summary)
        if self.attention is not None:
            source.keys = self.attention.keys(enc.memory)
        if not self.fast:
            return source
        if self.peek and self.attention is None:
            source.summary_gates = F.linear(enc.summary, self._w_context)
        source.weights = self._fast_weights()
        return source

    def _fast_weights(self) -> FastWeights:
        """The fast path's weights for this batch (recomputed per batch: the parameters
        change between batches, and autograd must see them used)."""
        weights = FastWeights()
        if isinstance(self.input, nn.Embedding) and not self._io_dropping:
            weights.token_gates = F.linear(self.input.weight, self._w_input)
        if not self.input_feeding:
            return weights
        weights.context_weight = self._w_context.t()
        query = self.attention.query_weight
        if query is not None:
            top = self.rnn.num_layers - 1
            weights.top_weight = torch.cat([getattr(self.rnn, f"weight_hh_l{top}"), query])
            weights.top_bias = torch.cat(
                [getattr(self.rnn, f"bias_hh_l{top}"), query.new_zeros(query.shape[0])])
        return weights

    # -- the two paths, chosen here -------------------------------------------------------

    def step(
        self, prev: torch.Tensor | None, state: State, source: Source
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """One step after the previous output ``prev`` (B, 1) token or (B, 1, D) vector (None
        without feedback): output (B, 1, V), the new state, weights (B, 1, S)."""
        if not self.fast:
            return self._plain_step(self._inputs(prev, source, 1), state, source)
        first = self._first_gates(prev, source, 1)[:, 0]
        layers, ctx, weights = self._advance(first, split_layers(state), source)
        h = top_of(layers).unsqueeze(1)
        if weights is None:
            out, weights = self._output(h, source)
        else:
            out, _ = self._output(h, source, ctx.unsqueeze(1))
            weights = weights.unsqueeze(1)
        return out, join_layers(layers), weights

    def run(
        self, prev: torch.Tensor | None, state: State, source: Source, steps: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``steps`` steps over previous outputs known in advance, ``prev`` (B, T) tokens or
        (B, T, D) vectors (None without feedback): outputs (B, T, V), weights (B, T, S)."""
        if not self.fast:  # the steps, then the output layer over all of them
            x, hs, contexts, weights = self._inputs(prev, source, steps), [], [], []
            for t in range(steps):
                h, state, ctx, w = self._plain_recur(x[:, t : t + 1], state, source)
                hs.append(h)
                contexts.append(ctx)
                weights.append(w)
            ctx = None if contexts[0] is None else torch.cat(contexts, 1)
            out, w = self._output(torch.cat(hs, 1), source, ctx)
            return out, w if ctx is None else torch.cat(weights, 1)
        if not self.input_feeding:
            x = self._inputs(prev, source, steps)
            if self.peek:
                x = torch.cat([x, source.summary.unsqueeze(1).expand(-1, steps, -1)], -1)
            h, _ = self.rnn(x, state)
            return self._output(h, source)
        first = self._first_gates(prev, source, steps).transpose(0, 1)  # (T, B, G)
        if self._loop_applies():
            fast = source.weights
            inputs = (first, *(s[0] for s in state), source.keys, source.memory, source.bias,
                      fast.top_weight, fast.top_bias, self.attention.v.weight,
                      fast.context_weight)
            with torch.autocast(first.device.type, enabled=False):  # fp32 under autocast
                hs, contexts, weights = feeding_loop(*(x.float() for x in inputs),
                                                     low=self.precision.low)
            out, _ = self._output(hs.transpose(0, 1), source, contexts.transpose(0, 1))
            return out, weights.transpose(0, 1)
        layers, hs, contexts, weights = split_layers(state), [], [], []
        for first_t in first.unbind(0):  # unbind: one gradient copy back, not one per step
            layers, ctx, w = self._advance(first_t, layers, source)
            hs.append(top_of(layers))
            contexts.append(ctx)
            weights.append(w)
        out, _ = self._output(torch.stack(hs, 1), source, torch.stack(contexts, 1))
        return out, torch.stack(weights, 1)

    def _loop_applies(self) -> bool:
        """Whether :func:`feeding_loop` runs the input-feeding steps: one LSTM layer and
        additive attention (elsewhere autograd records every step)."""
        return (isinstance(self.rnn, nn.LSTM) and self.rnn.num_layers == 1
                and self.attention.kind == "additive")

    def _inputs(self, prev: torch.Tensor | None, source: Source, steps: int) -> torch.Tensor:
        """Decoder inputs (B, T, E): the embedded previous outputs, or the repeated summary
        without feedback."""
        if self.feedback:
            return F.dropout(self.input(prev), self.io_dropout, self.training)
        return self.repeat(source.summary).unsqueeze(1).expand(-1, steps, -1)

    # -- the plain path ---------------------------------------------------------------------

    def _plain_step(self, x, state, source):
        h, state, ctx, weights = self._plain_recur(x, state, source)
        out, w = self._output(h, source, ctx)
        return out, state, weights if weights is not None else w

    def _plain_recur(self, x, state, source):
        """The recurrent step: s_t (B, 1, H), the new state and, with input feeding, the
        context (B, 1, H) and weights (B, 1, S) it used (else None, None)."""
        weights = ctx = None
        if self.input_feeding:
            query = (state[0] if isinstance(state, tuple) else state)[-1].unsqueeze(1)
            ctx, weights = self.attention(query, source.keys, source.memory, source.mask)
            x = torch.cat([x, ctx], dim=-1)
        elif self.peek:
            x = torch.cat([x, source.summary.unsqueeze(1)], dim=-1)
        h, state = self.rnn(x, state)
        return h, state, ctx, weights

    # -- the fast path's step ---------------------------------------------------------------

    @property
    def _io_dropping(self) -> bool:
        """Training with ``io_dropout``: the table projected once, (E W^T)[y], cannot drop
        out E[y], so :meth:`prepare` leaves it out."""
        return self.training and self.io_dropout > 0

    @property
    def _w_input(self) -> torch.Tensor:
        """The first layer's input weights for the inputs (the context's columns follow)."""
        return self.rnn.weight_ih_l0[:, : self.input_size]

    @property
    def _w_context(self) -> torch.Tensor:
        return self.rnn.weight_ih_l0[:, self.input_size :]

    def _first_gates(self, prev: torch.Tensor | None, source: Source, steps: int):
        """The inputs' share of the first layer's gates for ``steps`` steps (B, T, G)."""
        bias = self.rnn.bias_ih_l0
        if source.weights.token_gates is not None:
            return F.embedding(prev, source.weights.token_gates, self.input.padding_idx) + bias
        if not self.feedback:  # the same input at every step
            first = F.linear(self.repeat(source.summary), self._w_input, bias)
            return first.unsqueeze(1).expand(-1, steps, -1)
        return F.linear(self._inputs(prev, source, steps), self._w_input, bias)

    def _advance(self, first: torch.Tensor, layers: list, source: Source):
        """One recurrent step through the cells from the inputs' gates ``first`` (B, G):
        the new layers and, with input feeding, the context (B, H) and the attention
        weights (B, S) it used (else None, None)."""
        ctx = weights = top_gates = None
        fast = source.weights
        if self.input_feeding:
            query = top_of(layers)
            if fast.top_weight is not None:  # W_hh s and W_q s in one matmul
                top_gates, query = F.linear(query, fast.top_weight, fast.top_bias).split(
                    [gate_size(self.rnn), query.shape[-1]], dim=-1)
            scores = self.attention.scores(query, source.keys) + source.bias
            weights = torch.softmax(scores, dim=-1)
            ctx = torch.bmm(weights.unsqueeze(1), source.memory).squeeze(1)
            first = torch.addmm(first, ctx, fast.context_weight)
        elif self.peek:
            first = first + source.summary_gates
        return stacked_step(self.rnn, None, layers, first, top_gates), ctx, weights

    # -- shared -----------------------------------------------------------------------------

    def _output(
        self, h: torch.Tensor, source: Source, ctx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y = O([s; c]) (or O(s)) for states h (B, T, H); Luong attention (no input feeding)
        attends from h here and returns its weights."""
        weights = None
        if ctx is None and self.attention is not None:
            ctx, weights = self.attention(h, source.keys, source.memory, source.mask)
        elif ctx is None and self.peek:
            ctx = source.summary.unsqueeze(1).expand_as(h)
        if self.combine is not None:
            h = torch.tanh(self.combine(torch.cat([h, ctx], dim=-1)))
        if self._io_dropping:  # a mask's layout follows h's strides:
            h = F.dropout(h.contiguous(), self.io_dropout)  # contiguous, the same on both paths
        return self.out(h), weights
