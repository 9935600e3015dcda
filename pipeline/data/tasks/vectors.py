"""Sequences of float vectors and a fixed, learnable function of them."""

from __future__ import annotations

import numpy as np

from pipeline.data.tasks.base import SPLITS, VectorSplit, VectorTask

MAP_SEED = 1234


class Vectors(VectorTask):
    """Inputs x of shape (input_length, input_dim) with i.i.d. standard normal entries.

    The target has ``output_length`` steps: step t is ``tanh(W @ x[S - 1 - (t mod S)])``
    with S = ``input_length``, i.e. the input read backwards and cycled (or cut) to the
    output length, each step mapped by the same ``(output_dim, input_dim)`` matrix W. W is
    drawn once with entries N(0, 1 / input_dim) from a generator seeded by the constant
    :data:`MAP_SEED`, so it is the same for every split and every seed. Each split's inputs
    come from their own random stream (seed, split).
    """

    def __init__(
        self, input_length: int = 7, input_dim: int = 5, output_length: int = 8,
        output_dim: int = 8,
    ):
        self.input_length, self.input_dim = input_length, input_dim
        self.output_length, self.output_dim = output_length, output_dim
        rng = np.random.default_rng(MAP_SEED)
        self.weights = rng.normal(0.0, input_dim**-0.5, size=(output_dim, input_dim))

    def target(self, sources: np.ndarray) -> np.ndarray:
        """The (N, output_length, output_dim) targets of (N, input_length, input_dim) inputs."""
        steps = self.input_length - 1 - np.arange(self.output_length) % self.input_length
        return np.tanh(sources[:, steps] @ self.weights.T)

    def build(self, seed: int, sizes: dict[str, int]) -> dict[str, VectorSplit]:
        splits = {}
        for i, name in enumerate(SPLITS):
            rng = np.random.default_rng([seed, i])
            x = rng.standard_normal((sizes[name], self.input_length, self.input_dim))
            splits[name] = VectorSplit(x.astype(np.float32), self.target(x).astype(np.float32))
        return splits
