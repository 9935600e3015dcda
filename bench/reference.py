"""The plain reference: Bahdanau attention written the straightforward way.

As in the PyTorch seq2seq tutorial (``AttnDecoderRNN`` with ``BahdanauAttention``): every
decoder step computes its score from scratch (``Va·tanh(Wa q + Ua K)``, the key projection
included), concatenates the embedded input with the context, runs the RNN for one step and
the output layer on that step. It is the same model as the project's
``EncoderDecoder(attention="additive", peek=True, bidirectional=True, bridge=False)``:
:meth:`TutorialAttention.copy_from` loads that model's weights, and then both give the same
outputs (to float tolerance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pipeline.models import EncoderDecoder
from pipeline.models.encoder import RNNS

# Reference module -> the project's module holding the same weights.
PROJECT_NAMES = {
    "embedding": "encoder.input", "encoder": "encoder.rnn", "merge": "encoder.merge_out",
    "target_embedding": "decoder.input", "Wa": "decoder.attention.query_proj",
    "Ua": "decoder.attention.key_proj", "Va": "decoder.attention.v", "decoder": "decoder.rnn",
    "combine": "decoder.combine", "out": "decoder.out",
}


class TutorialAttention(nn.Module):
    """Bidirectional encoder, additive attention with input feeding, teacher-forced decoder."""

    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int, cell: str = "lstm",
                 depth: int = 1, pad_id: int = 0, bos_id: int = 1):
        super().__init__()
        h = hidden_dim
        self.cell, self.depth, self.hidden_dim, self.bos_id = cell, depth, h, bos_id
        self.embedding = nn.Embedding(input_dim, h, padding_idx=pad_id)
        self.encoder = RNNS[cell](h, h, depth, batch_first=True, bidirectional=True)
        self.merge = nn.Linear(2 * h, h)
        self.target_embedding = nn.Embedding(output_dim, h, padding_idx=pad_id)
        self.Wa = nn.Linear(h, h, bias=False)
        self.Ua = nn.Linear(h, h)
        self.Va = nn.Linear(h, 1, bias=False)
        self.decoder = RNNS[cell](2 * h, h, depth, batch_first=True)
        self.combine = nn.Linear(2 * h, h)
        self.out = nn.Linear(h, output_dim)

    @torch.no_grad()
    def copy_from(self, model: EncoderDecoder) -> TutorialAttention:
        """Load the weights of the project's equivalent model."""
        for name, path in PROJECT_NAMES.items():
            getattr(self, name).load_state_dict(model.get_submodule(path).state_dict())
        return self

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V), feeding the ground truth of step t-1 at step t."""
        embedded = self.embedding(src)
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.encoder(packed)
        keys, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        keys = self.merge(keys)
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < src_lengths[:, None]
        hidden = keys.new_zeros(self.depth, src.shape[0], self.hidden_dim)
        state = (hidden, hidden.clone()) if self.cell == "lstm" else hidden
        prev = torch.full((src.shape[0], 1), self.bos_id, dtype=torch.long, device=src.device)
        outputs = []
        for t in range(target.shape[1]):
            embedded = self.target_embedding(prev)
            query = (state[0] if self.cell == "lstm" else state)[-1].unsqueeze(1)
            scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
            scores = scores.squeeze(2).unsqueeze(1).masked_fill(~mask.unsqueeze(1), float("-inf"))
            weights = F.softmax(scores, dim=-1)
            context = torch.bmm(weights, keys)
            output, state = self.decoder(torch.cat((embedded, context), dim=2), state)
            outputs.append(self.out(torch.tanh(self.combine(torch.cat((output, context), dim=2)))))
            prev = target[:, t].unsqueeze(1)
        return torch.cat(outputs, dim=1)
