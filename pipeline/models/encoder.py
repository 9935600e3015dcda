"""Stacked, optionally bidirectional LSTM/GRU encoder over padded batches."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pipeline.models.cells import RNNS, Precision, State


class Directions(StrEnum):
    """How a bidirectional encoder's directions make its hidden size H: ``project`` (each H
    wide, concatenated, then projected to H) or ``split`` (each H / 2, concatenated)."""

    project = "project"
    split = "split"


# Above this many distinct lengths in a batch, the CPU runs it as one packed sequence.
MAX_LENGTH_GROUPS = 16


@dataclass
class Encoded:
    """What the encoder hands to the decoder.

    memory: (B, S, H) outputs of the top layer, directions projected to H.
    mask: (B, S) True on real positions.
    state: per-layer final state (h or (h, c)), each (layers, B, H), directions merged.
    summary: (B, H) the top layer's final hidden state: the fixed context vector c.
    Both None when the encoder was built without ``final_state``, and the memory's
    directions left unprojected without ``outputs`` (nothing reads them then).
    """

    memory: torch.Tensor
    mask: torch.Tensor
    state: State | None
    summary: torch.Tensor | None


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class Encoder(nn.Module):
    """Embeds (tokens) or projects (vectors) the input (``io_dropout`` on the result) and runs
    a packed RNN over it.

    Padding never reaches the RNN (packed sequences), so the final state of every
    sequence is taken at its own last real step, and the backward direction of a
    bidirectional encoder starts at the last real token.
    """

    def __init__(
        self,
        input: nn.Module,
        embed_dim: int,
        hidden_dim: int,
        depth: int,
        *,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        final_state: bool = True,
        outputs: bool = True,
        io_dropout: float = 0.0,
        directions: str = Directions.project,
        precision: str = Precision.fp32,
    ):
        super().__init__()
        self.precision = Precision(precision)
        split = bidirectional and directions == Directions.split
        self.final_state = final_state
        self.io_dropout = io_dropout
        self.input = input
        self.cell = cell
        self.depth = depth
        self.bidirectional = bidirectional
        self.rnn = RNNS[cell](
            embed_dim,
            hidden_dim // 2 if split else hidden_dim,
            num_layers=depth,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if depth > 1 else 0.0,
        )
        width = 2 * hidden_dim  # both directions side by side, each hidden_dim wide
        self.merge_out = (
            nn.Linear(width, hidden_dim)
            if bidirectional and outputs and not split else None
        )
        merge = bidirectional and final_state and not split
        self.merge_h = nn.Linear(width, hidden_dim) if merge else None
        self.merge_c = (
            nn.Linear(width, hidden_dim) if merge and cell == "lstm" else None
        )

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> Encoded:
        x = F.dropout(self.input(src), self.io_dropout, self.training)
        memory, state = self._run_in_precision(x, lengths.cpu())
        if self.merge_out is not None:
            memory = self.merge_out(memory)
        mask = length_mask(lengths, src.shape[1])
        if not self.final_state:
            return Encoded(memory, mask, None, None)
        if self.cell == "lstm":
            h, c = state
            state = (self._merge(h, self.merge_h), self._merge(c, self.merge_c))
            top = state[0][-1]
        else:
            state = self._merge(state, self.merge_h)
            top = state[-1]
        return Encoded(memory, mask, state, top)

    def _run_in_precision(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor,
                                                                                 State]:
        """:meth:`_run` in the encoder's :class:`Precision` (bf16: under autocast), its
        results in ``x``'s dtype."""
        low = self.precision.low
        if low is None:
            return self._run(x, lengths)
        with torch.autocast(x.device.type, dtype=low):
            memory, state = self._run(x, lengths)
        if isinstance(state, tuple):
            return memory.to(x.dtype), tuple(s.to(x.dtype) for s in state)
        return memory.to(x.dtype), state.to(x.dtype)

    def _run(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """The RNN over each sequence's real steps only: outputs (B, S, directions * H), zero
        on padding, and the final state (layers * directions, B, H).

        On a CPU, a batch of a few distinct lengths runs as one unpadded call per length
        (2-3x faster there than a packed sequence, whose backward pass clears and adds a
        buffer of the whole batch at every step); elsewhere, and for many lengths, packed."""
        distinct = lengths.unique()
        if x.device.type != "cpu" or len(distinct) > MAX_LENGTH_GROUPS:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, state = self.rnn(packed)
            memory, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            return memory, state
        if len(distinct) == 1 and int(distinct[0]) == x.shape[1]:
            return self.rnn(x)
        groups = []
        for length in distinct.tolist():
            rows = (lengths == length).nonzero().squeeze(1)
            out, state = self.rnn(x[rows.to(x.device), :length])
            groups.append((rows, F.pad(out, (0, 0, 0, x.shape[1] - length)),
                           state if isinstance(state, tuple) else (state,)))
        order = torch.cat([rows for rows, _, _ in groups]).argsort().to(x.device)
        memory = torch.cat([out for _, out, _ in groups]).index_select(0, order)
        states = tuple(torch.cat(parts, 1).index_select(1, order)
                       for parts in zip(*(state for _, _, state in groups), strict=True))
        return memory, states if isinstance(self.rnn, nn.LSTM) else states[0]

    def _merge(self, s: torch.Tensor, proj: nn.Linear | None) -> torch.Tensor:
        """(layers*dirs, B, H') -> (layers, B, H): concatenate the directions, then project
        them to H (``project``; ``split`` concatenates two of H / 2)."""
        if not self.bidirectional:
            return s
        layers, batch = self.depth, s.shape[1]
        s = s.view(layers, 2, batch, -1).permute(0, 2, 1, 3).reshape(layers, batch, -1)
        return s if proj is None else proj(s)
