"""Greedy and batched beam search over any model with the :class:`Stepper` interface
(token outputs): ``EncoderDecoder`` is one.

Both stop a sequence at its end-of-sequence token and the whole batch when every
sequence (every beam) has stopped, or at ``max_len``. No Python loop runs over the
sequences of a batch: beams live in the batch dimension (B * K rows).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch

from pipeline.models.cells import State, select_state


class Stepper(Protocol):
    """What search needs of a model: its special ids, a first input, and one step."""

    pad_id: int
    eos_id: int

    def start(self, batch: int, device: torch.device) -> torch.Tensor:
        """The first input (B, 1)."""

    def step(self, prev: torch.Tensor, state: State, source: Any
             ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """Logits (B, V) after input ``prev`` (B, 1), the new state, attention (B, 1, S)."""


class Generation(NamedTuple):
    """sequences: (B, T) tokens, EOS included, PAD after it (or (B, T, D) vectors);
    lengths: (B,) tokens up to and including EOS; scores: (B,) summed log-probabilities
    (length-normalised for beams); attention: (B, T, S) or None."""

    sequences: torch.Tensor
    lengths: torch.Tensor | None
    scores: torch.Tensor | None
    attention: torch.Tensor | None


def _step(model: Stepper, prev, state, source):
    out, state, weights = model.step(prev, state, source)
    return out.log_softmax(-1), state, weights


def greedy_search(model: Stepper, source: Any, state: State, max_len: int) -> Generation:
    """Pick the most likely token at every step, from the model's ``source`` (what its step
    reads of the input) and first ``state``."""
    batch, device = source.memory.shape[0], source.memory.device
    prev = model.start(batch, device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    tokens, weights = [], []
    for _ in range(max_len):
        logp, state, w = _step(model, prev, state, source)
        best, tok = logp.max(-1)
        tok = tok.masked_fill(finished, model.pad_id)
        scores += best.masked_fill(finished, 0.0)
        lengths += (~finished).long()
        finished |= tok == model.eos_id
        tokens.append(tok)
        weights.append(w)
        prev = tok.unsqueeze(1)
        if finished.all():
            break
    attention = None if weights[0] is None else torch.cat(weights, dim=1)
    return Generation(torch.stack(tokens, dim=1), lengths, scores, attention)


def beam_search(
    model: Stepper,
    source: Any,
    state: State,
    max_len: int,
    beam_size: int = 5,
    length_penalty: float = 0.0,
) -> Generation:
    """Keep the ``beam_size`` best prefixes per sequence; finished beams keep their score.

    The result is the beam with the best ``score / length ** length_penalty``.
    """
    batch, device = source.memory.shape[0], source.memory.device
    k = beam_size
    rows = torch.arange(batch, device=device).repeat_interleave(k)
    source, state = source.select(rows), select_state(state, rows)
    prev = model.start(batch * k, device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start equal: keep one so the first step has k distinct ones
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * k, dtype=torch.long, device=device)
    tokens = torch.empty(batch * k, 0, dtype=torch.long, device=device)
    attention = None
    offsets = (torch.arange(batch, device=device) * k).unsqueeze(1)
    for _ in range(max_len):
        logp, state, w = _step(model, prev, state, source)
        vocab = logp.shape[-1]
        done_row = torch.full_like(logp[0], float("-inf"))
        done_row[model.pad_id] = 0.0
        logp = torch.where(finished.unsqueeze(1), done_row, logp)
        extensions = (scores.view(-1, 1) + logp).view(batch, k * vocab)
        scores, index = extensions.topk(k, dim=1)
        rows = (offsets + index // vocab).view(-1)
        tok = (index % vocab).view(-1)
        state = select_state(state, rows)
        lengths = lengths[rows] + (~finished[rows]).long()
        finished = finished[rows] | (tok == model.eos_id)
        tokens = torch.cat([tokens[rows], tok.unsqueeze(1)], dim=1)
        if w is not None:
            attention = w[rows] if attention is None else torch.cat([attention[rows], w[rows]], 1)
        prev = tok.unsqueeze(1)
        if finished.all():
            break
    normalised = scores / lengths.view(batch, k).clamp(min=1).float() ** length_penalty
    best = (offsets.squeeze(1) + normalised.argmax(dim=1))
    return Generation(
        tokens[best], lengths[best], normalised.view(-1)[best],
        None if attention is None else attention[best],
    )
