"""Global attention over the encoder's outputs: additive (Bahdanau) and dot/general (Luong).

Every score depends on the decoder state (the query) and is masked over padding, so
the weights are a distribution over the real source tokens only. The key-side work
(``U h_j`` for additive, ``W h_j`` for general) is done once per batch by ``keys``; the
query side (``W s`` for additive) by ``query``, which a decoder may merge with another
matmul reading the same state (``query_weight``).
"""

from __future__ import annotations

from enum import StrEnum

import torch
from torch import nn


class AttentionType(StrEnum):
    """How (and whether) the decoder attends: none, or one of the scores below."""

    none = "none"
    additive = "additive"
    dot = "dot"
    general = "general"


def mask_bias(mask: torch.Tensor) -> torch.Tensor:
    """(B, S) bool mask -> additive bias: 0 on real positions, -inf on padding."""
    return torch.zeros(mask.shape, dtype=torch.float, device=mask.device).masked_fill(
        ~mask, float("-inf"))


class Attention(nn.Module):
    """score(s, h_j): additive ``v·tanh(W s + U h_j)``, dot ``s·h_j``, general ``s·W h_j``."""

    def __init__(self, kind: str, dim: int):
        super().__init__()
        kinds = [k.value for k in AttentionType if k != AttentionType.none]
        if kind not in kinds:
            raise ValueError(f"attention must be one of {kinds}, got {kind!r}")
        self.kind = kind
        if kind == "additive":
            self.query_proj = nn.Linear(dim, dim, bias=False)
            self.key_proj = nn.Linear(dim, dim)
            self.v = nn.Linear(dim, 1, bias=False)
        elif kind == "general":
            self.key_proj = nn.Linear(dim, dim, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """Precompute the key side of the score once per batch: (B, S, H)."""
        return memory if self.kind == "dot" else self.key_proj(memory)

    @property
    def query_weight(self) -> torch.Tensor | None:
        """The query projection's weight (additive), or None where the query is the state."""
        return self.query_proj.weight if self.kind == "additive" else None

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Unmasked scores (B, S) of one projected query (B, H) (see ``query_weight``)."""
        if self.kind == "additive":
            return self.v(torch.tanh(query.unsqueeze(1) + keys)).squeeze(-1)
        return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend with queries (B, T, H) over memory (B, S, H).

        Returns the contexts (B, T, H) and the weights (B, T, S), zero on padding.
        """
        if self.kind == "additive":
            hidden = torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))
            scores = self.v(hidden).squeeze(-1)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, memory), weights
