"""An ensemble of token models decoded as one: at every step each model advances its own
state and attention over the source, and the ensemble's next-token distribution is the
mean of the models' log-probabilities (renormalised by the search: the normalised geometric
mean of their distributions). It has the :class:`~pipeline.models.search.Stepper`
interface, so greedy and beam search drive it as they drive one model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.models.cells import State
from pipeline.models.seq2seq import EncoderDecoder, Seq2SeqOutput


@dataclass
class EnsembleSource:
    """Each model's view of the encoded source; ``memory``: the first one's, for the batch
    size and device."""

    parts: tuple

    @property
    def memory(self) -> torch.Tensor:
        return self.parts[0].memory

    def select(self, index: torch.Tensor) -> EnsembleSource:
        return EnsembleSource(tuple(p.select(index) for p in self.parts))


class Ensemble(nn.Module):
    """K token models that share their vocabularies (the same special ids and output size),
    decoded together."""

    def __init__(self, members: list[EncoderDecoder]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        first = members[0]
        for m in members:
            if m.kind != "tokens":
                raise ValueError("an ensemble decodes token models only")
            same = (m.pad_id, m.eos_id, m.bos_id, m.output_dim) == (
                first.pad_id, first.eos_id, first.bos_id, first.output_dim)
            if not same:
                raise ValueError("an ensemble's models must share their vocabularies")
        self.members = nn.ModuleList(members)
        self.kind = "tokens"
        self.pad_id, self.bos_id, self.eos_id = first.pad_id, first.bos_id, first.eos_id
        self.output_dim, self.output_length = first.output_dim, first.output_length

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor | None = None,
                target: torch.Tensor | None = None, max_len: int | None = None,
                teacher_forcing: float | None = 1.0) -> Seq2SeqOutput:
        """Scores the ``target`` as each model does with the ground truth fed back: the mean
        of their log-probabilities per step as ``outputs`` (a cross-entropy of them is the
        loss under the ensemble's renormalised distribution)."""
        if target is None:
            raise ValueError("an ensemble scores a target; generate() decodes without one")
        outputs = [m(src, src_lengths, target=target, teacher_forcing=1.0).outputs
                   for m in self.members]
        return Seq2SeqOutput(torch.stack([o.log_softmax(-1) for o in outputs]).mean(0), None)

    def begin(self, src: torch.Tensor, src_lengths: torch.Tensor | None = None
              ) -> tuple[EnsembleSource, State]:
        sources, states = zip(*(m.begin(src, src_lengths) for m in self.members), strict=True)
        return EnsembleSource(tuple(sources)), tuple(states)

    def start(self, batch: int, device: torch.device) -> torch.Tensor:
        return self.members[0].start(batch, device)

    def step(self, prev: torch.Tensor, state: tuple, source: EnsembleSource
             ) -> tuple[torch.Tensor, tuple, torch.Tensor | None]:
        """The mean of the models' log-probabilities (B, V), each model's new state, and the
        mean of their attention weights (None where a model has none)."""
        logps, states, weights = [], [], []
        for model, part, own in zip(self.members, source.parts, state, strict=True):
            out, new, w = model.step(prev, own, part)
            logps.append(out.log_softmax(-1))
            states.append(new)
            weights.append(w)
        attention = None if any(w is None for w in weights) else torch.stack(weights).mean(0)
        return torch.stack(logps).mean(0), tuple(states), attention

    # EncoderDecoder's own decoding (greedy or beam search from begin(), in eval mode):
    # the ensemble has every part of the interface it reads.
    generate = EncoderDecoder.generate
