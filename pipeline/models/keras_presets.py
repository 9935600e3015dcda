"""The models of the Keras seq2seq library (farizrahman4u/seq2seq) with its argument names,
as presets of :class:`EncoderDecoder`.

The library's calls work as written, with PyTorch shapes ``(batch, time, features)``::

    SimpleSeq2Seq(input_dim=5, hidden_dim=10, output_length=8, output_dim=8, depth=3)
    Seq2Seq(batch_input_shape=(16, 7, 5), hidden_dim=10, output_length=8, output_dim=20,
            depth=4, peek=True)
    AttentionSeq2Seq(input_dim=5, input_length=7, hidden_dim=10, output_length=8,
                     output_dim=20, depth=4)

Keras arguments with no PyTorch meaning: ``unroll`` is accepted and has no effect (PyTorch
runs the recurrence step by step either way; results are identical); ``stateful=True``
is rejected (state carried across batches would silently couple unrelated sequences
here; pass the state yourself if you need it); ``inner_broadcast_state=False`` is rejected
(the bridge always initialises every decoder layer).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.search import Generation
from pipeline.models.seq2seq import EncoderDecoder


class KerasPresetModel(nn.Module):
    """A vector-in, vector-out :class:`EncoderDecoder` with the Keras seq2seq library's call
    signature.

    ``forward(x)`` maps (batch, input_length, input_dim) to (batch, output_length,
    output_dim); ``forward(x, y)`` feeds the ground truth ``y`` back when the model was
    built with ``teacher_force=True`` (training mode only).
    """

    def __init__(self, net: EncoderDecoder, input_length: int | None):
        super().__init__()
        self.net = net
        self.input_length = input_length

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.input_length is not None and x.shape[1] != self.input_length:
            raise ValueError(
                f"this model was built for input_length={self.input_length}, got {x.shape[1]}"
            )
        if y is None:
            return self.net(x, max_len=self.net.output_length).outputs
        return self.net(x, target=y).outputs

    def generate(self, x: torch.Tensor, **kwargs) -> Generation:
        """Free-running decode of ``output_length`` steps (see ``EncoderDecoder.generate``)."""
        return self.net.generate(x, **kwargs)


def _input_shape(input_dim, input_length, input_shape, batch_input_shape, batch_size):
    if batch_input_shape is not None:
        batch_size, input_length, dim = batch_input_shape
        input_dim = input_dim or dim
    if input_shape is not None:
        input_length, dim = input_shape
        input_dim = input_dim or dim
    if input_dim is None:
        raise ValueError("give input_dim, input_shape=(length, dim) or batch_input_shape")
    return input_dim, input_length


def _build(
    *,
    output_dim: int,
    output_length: int,
    hidden_dim: int | None,
    input_dim: int | None,
    input_length: int | None,
    input_shape,
    batch_input_shape,
    batch_size,
    unroll: bool,
    stateful: bool,
    inner_broadcast_state: bool,
    teacher_force: bool,
    **switches,
) -> KerasPresetModel:
    if stateful:
        raise ValueError(
            "stateful=True is not supported: carrying RNN state across batches silently "
            "couples unrelated sequences; pass the state explicitly if you need it"
        )
    if not inner_broadcast_state:
        raise ValueError(
            "inner_broadcast_state=False is not supported: the bridge initialises every "
            "decoder layer (use broadcast_state=False for no bridge at all)"
        )
    del unroll, batch_size  # no meaning in PyTorch (see module docstring)
    input_dim, input_length = _input_shape(
        input_dim, input_length, input_shape, batch_input_shape, None
    )
    net = EncoderDecoder(
        kind="vectors",
        input_dim=input_dim,
        output_dim=output_dim,
        hidden_dim=hidden_dim or output_dim,
        output_length=output_length,
        teacher_forcing=1.0 if teacher_force else 0.0,
        **switches,
    )
    return KerasPresetModel(net, input_length)


def SimpleSeq2Seq(  # noqa: N802 - the Keras library's class name
    output_dim: int,
    output_length: int,
    hidden_dim: int | None = None,
    depth: int | tuple[int, int] = 1,
    dropout: float = 0.0,
    cell: str = "lstm",
    input_dim: int | None = None,
    input_length: int | None = None,
    input_shape=None,
    batch_input_shape=None,
    batch_size=None,
    unroll: bool = False,
    stateful: bool = False,
) -> KerasPresetModel:
    """Encoder summary -> Dense(hidden, relu) -> repeated at every step -> decoder -> linear.

    No state handed to the decoder, no feedback of outputs (the library's first model).
    """
    return _build(
        output_dim=output_dim, output_length=output_length, hidden_dim=hidden_dim,
        input_dim=input_dim, input_length=input_length, input_shape=input_shape,
        batch_input_shape=batch_input_shape, batch_size=batch_size, unroll=unroll,
        stateful=stateful, inner_broadcast_state=True, teacher_force=False,
        depth=depth, dropout=dropout, cell=cell, bridge=False, feedback=False,
    )


def Seq2Seq(  # noqa: N802
    output_dim: int,
    output_length: int,
    hidden_dim: int | None = None,
    depth: int | tuple[int, int] = 1,
    peek: bool = False,
    dropout: float = 0.0,
    bidirectional: bool = False,
    broadcast_state: bool = True,
    inner_broadcast_state: bool = True,
    teacher_force: bool = False,
    cell: str = "lstm",
    input_dim: int | None = None,
    input_length: int | None = None,
    input_shape=None,
    batch_input_shape=None,
    batch_size=None,
    unroll: bool = False,
    stateful: bool = False,
) -> KerasPresetModel:
    """Sutskever et al. 2014: bridge + feedback; ``peek=True`` is Cho et al. 2014."""
    return _build(
        output_dim=output_dim, output_length=output_length, hidden_dim=hidden_dim,
        input_dim=input_dim, input_length=input_length, input_shape=input_shape,
        batch_input_shape=batch_input_shape, batch_size=batch_size, unroll=unroll,
        stateful=stateful, inner_broadcast_state=inner_broadcast_state,
        teacher_force=teacher_force, depth=depth, peek=peek, dropout=dropout,
        bidirectional=bidirectional, bridge=broadcast_state, cell=cell,
    )


def AttentionSeq2Seq(  # noqa: N802
    output_dim: int,
    output_length: int,
    hidden_dim: int | None = None,
    depth: int | tuple[int, int] = 1,
    dropout: float = 0.0,
    bidirectional: bool = True,
    broadcast_state: bool = False,
    teacher_force: bool = False,
    attention: str = "additive",
    cell: str = "lstm",
    input_dim: int | None = None,
    input_length: int | None = None,
    input_shape=None,
    batch_input_shape=None,
    batch_size=None,
    unroll: bool = False,
    stateful: bool = False,
) -> KerasPresetModel:
    """Bahdanau et al. 2014: bidirectional encoder, attention context fed into every step.

    As in the Keras library no state is handed from encoder to decoder (``broadcast_state=False``).
    """
    return _build(
        output_dim=output_dim, output_length=output_length, hidden_dim=hidden_dim,
        input_dim=input_dim, input_length=input_length, input_shape=input_shape,
        batch_input_shape=batch_input_shape, batch_size=batch_size, unroll=unroll,
        stateful=stateful, inner_broadcast_state=True, teacher_force=teacher_force,
        depth=depth, dropout=dropout, bidirectional=bidirectional, bridge=broadcast_state,
        peek=True, attention=attention, cell=cell,
    )


def build_model(input_size: int, max_out_seq_len: int, hidden_size: int, cell: str = "lstm"):
    """The Keras article's hand-built RepeatVector model (its first and second listing: LSTM
    or GRU).

    Encoder's last output -> Dense(hidden, relu) -> repeated ``max_out_seq_len`` times ->
    decoder RNN -> per-step linear layer back to ``input_size``; train it with mse.
    """
    return SimpleSeq2Seq(
        input_dim=input_size, hidden_dim=hidden_size, output_length=max_out_seq_len,
        output_dim=input_size, cell=cell,
    )
