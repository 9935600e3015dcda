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

from typing import TypedDict, Unpack

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


class KerasArgs(TypedDict, total=False):
    """The Keras library's input and layer arguments (their meaning here: the module's
    docstring)."""

    input_dim: int
    input_length: int
    input_shape: tuple[int, int]
    batch_input_shape: tuple[int, int, int]
    batch_size: int
    unroll: bool
    stateful: bool


def _input_shape(keras: KerasArgs) -> tuple[int, int | None]:
    unknown = set(keras) - set(KerasArgs.__annotations__)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    input_dim, input_length = keras.get("input_dim"), keras.get("input_length")
    for shape in (keras.get("batch_input_shape"), keras.get("input_shape")):
        if shape is not None:
            input_length, dim = shape[-2:]
            input_dim = input_dim or dim
    if input_dim is None:
        raise ValueError("give input_dim, input_shape=(length, dim) or batch_input_shape")
    return input_dim, input_length


def _build(keras: KerasArgs, *, hidden_dim: int | None, output_dim: int,
           inner_broadcast_state: bool = True, teacher_force: bool = False,
           **switches) -> KerasPresetModel:
    if keras.get("stateful"):
        raise ValueError(
            "stateful=True is not supported: carrying RNN state across batches silently "
            "couples unrelated sequences; pass the state explicitly if you need it"
        )
    if not inner_broadcast_state:
        raise ValueError(
            "inner_broadcast_state=False is not supported: the bridge initialises every "
            "decoder layer (use broadcast_state=False for no bridge at all)"
        )
    input_dim, input_length = _input_shape(keras)  # unroll, batch_size: no meaning here
    net = EncoderDecoder(
        kind="vectors",
        input_dim=input_dim,
        output_dim=output_dim,
        hidden_dim=hidden_dim or output_dim,
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
    **keras: Unpack[KerasArgs],
) -> KerasPresetModel:
    """Encoder summary -> Dense(hidden, relu) -> repeated at every step -> decoder -> linear.

    No state handed to the decoder, no feedback of outputs (the library's first model).
    """
    return _build(keras, output_dim=output_dim, output_length=output_length,
                  hidden_dim=hidden_dim, depth=depth, dropout=dropout, cell=cell,
                  bridge=False, feedback=False)


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
    **keras: Unpack[KerasArgs],
) -> KerasPresetModel:
    """Sutskever et al. 2014: bridge + feedback; ``peek=True`` is Cho et al. 2014."""
    return _build(keras, output_dim=output_dim, output_length=output_length,
                  hidden_dim=hidden_dim, inner_broadcast_state=inner_broadcast_state,
                  teacher_force=teacher_force, depth=depth, peek=peek, dropout=dropout,
                  bidirectional=bidirectional, bridge=broadcast_state, cell=cell)


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
    **keras: Unpack[KerasArgs],
) -> KerasPresetModel:
    """Bahdanau et al. 2014: bidirectional encoder, attention context fed into every step.

    As in the Keras library no state is handed from encoder to decoder (``broadcast_state=False``).
    """
    return _build(keras, output_dim=output_dim, output_length=output_length,
                  hidden_dim=hidden_dim, teacher_force=teacher_force, depth=depth,
                  dropout=dropout, bidirectional=bidirectional, bridge=broadcast_state,
                  peek=True, attention=attention, cell=cell)


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
