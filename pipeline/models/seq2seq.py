"""The configurable encoder-decoder behind every model of the Keras seq2seq library.

Switches (orthogonal; the library's classes are presets of them, see ``keras_presets.py``):

- ``cell`` lstm|gru, ``depth`` int or ``[encoder, decoder]``, ``dropout`` between layers;
  ``io_dropout`` on the embedded inputs of encoder and decoder and on the output layer's
  input (the connections outside the stacks; Zaremba et al. 2014 drop both kinds);
- ``bidirectional`` encoder, its directions concatenated and projected to ``hidden_dim``
  (``directions="project"``) or each ``hidden_dim / 2`` wide (``"split"``, OpenNMT-py's brnn);
  ``rnn_precision`` fp32|bf16: what the recurrent layers compute in (``cells.Precision``);
- ``bridge``: the encoder's final state initialises the decoder, layer by layer (decoder
  layer i takes encoder layer min(i, encoder depth - 1)); off: the decoder starts at zeros;
- ``feedback``: the decoder's input at step t is its output at t-1 (a start token or start
  vector at t=0); during training the ground truth at t-1 with probability
  ``teacher_forcing`` per sequence and step. Off: the RepeatVector model;
- ``peek``: the context is concatenated to the decoder's input at every step and to the
  output layer's input (Cho et al. 2014);
- ``attention`` none|additive|dot|general: without peek the attention context is used at
  the output only (Luong, no input feeding); with peek it also enters the recurrent step
  (Bahdanau, Luong input feeding). So every combination of depth x peek x attention is distinct.

``init`` keras (default) starts every RNN in Keras' manner (glorot input kernels, orthogonal
recurrent kernels, zero biases, LSTM forget-gate bias 1; ``cells.keras_init``) and the
RepeatVector Dense as Keras does (glorot, zero bias); torch keeps PyTorch's defaults, with
which the RepeatVector model barely learns at depth 2 or more.

``kind="tokens"``: embeddings in, logits out, padding (id ``pad_id``) masked everywhere.
``kind="vectors"``: linear in, linear out (the Keras article's setup, trained with mse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pipeline.models.attention import AttentionType
from pipeline.models.cells import Cell, Init, Precision, State, keras_init
from pipeline.models.decoder import Decoder, Source
from pipeline.models.encoder import Directions, Encoded, Encoder
from pipeline.models.search import Generation, beam_search, greedy_search

KINDS = ("tokens", "vectors")
# Beyond this a run would not fit in memory or time on any machine this project targets.
MAX_DEPTH = 64
DEPTH_RULE = (f"an int >= 1, or an [encoder, decoder] pair such as [2, 3] (layers "
              f"<= {MAX_DEPTH})")


@dataclass
class Switches:
    """The model's settings (the module docstring), each declared once, here: its name, type
    and default. The model group's typed config extends it (``pipeline/config.py``), which
    ``conf/model/*.yaml`` fill in; :class:`EncoderDecoder` takes them by keyword."""

    cell: Cell = Cell.lstm
    depth: Any = 1  # int, or [encoder, decoder]
    hidden_dim: int = 128
    embed_dim: int | None = None  # null: hidden_dim
    dropout: float = 0.0
    io_dropout: float = 0.0
    bidirectional: bool = False
    # How a bidirectional encoder's two directions make hidden_dim: project (each direction
    # hidden_dim wide, concatenated, then projected) or split (each hidden_dim / 2 wide,
    # concatenated, as OpenNMT-py's brnn).
    directions: Directions = Directions.project
    # What the recurrent layers compute in: fp32, or bf16 (the encoder's RNN and the
    # input-feeding loop's matrix products; see cells.Precision).
    rnn_precision: Precision = Precision.fp32
    bridge: bool = True
    peek: bool = False
    attention: AttentionType = AttentionType.none
    feedback: bool = True
    teacher_forcing: float = 1.0
    init: Init = Init.keras  # how the RNNs start: as Keras' layers, or PyTorch's defaults


@dataclass
class Seq2SeqOutput:
    """outputs: (B, T, V) logits or (B, T, D) vectors; attention: (B, T, S) or None."""

    outputs: torch.Tensor
    attention: torch.Tensor | None


def split_depth(depth: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    """``depth`` as (encoder, decoder) layers: an int for both, or a pair; anything else
    is a ValueError (the one check of a depth: the configs' validation calls this too)."""
    if isinstance(depth, int) and not isinstance(depth, bool):
        pair = (depth, depth)
    elif isinstance(depth, (list, tuple)) and len(depth) == 2:
        pair = tuple(depth)
    else:
        pair = ()
    if not pair or not all(isinstance(d, int) and not isinstance(d, bool)
                           and 1 <= d <= MAX_DEPTH for d in pair):
        raise ValueError(f"depth must be {DEPTH_RULE}, got {depth!r}")
    return pair


class EncoderDecoder(nn.Module):
    """One encoder-decoder implementing every switch (the module docstring; the README's
    "The models")."""

    def __init__(self, kind: str = "tokens", input_dim: int = 16, output_dim: int = 16,
                 output_length: int | None = None, pad_id: int = 0, bos_id: int = 1,
                 eos_id: int = 2, fast: bool = True, **switches: Any):
        """``kind`` and the sizes come from the data; ``switches`` are :class:`Switches`'
        (an unknown one is a TypeError naming it)."""
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        s = Switches(**switches)
        enc_depth, dec_depth = split_depth(s.depth)
        embed_dim = s.embed_dim or s.hidden_dim
        self.kind = kind
        self.output_dim = output_dim
        self.hidden_dim = s.hidden_dim
        self.bridge = s.bridge
        self.teacher_forcing = s.teacher_forcing
        self.output_length = output_length
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        # The encoder's final state is read by the bridge and as the fixed context (peek
        # without attention, RepeatVector), its outputs by attention: each part is built
        # only where it is read, so no parameter goes unused (DDP requires it).
        final_state = s.bridge or not s.feedback or (s.peek and s.attention == "none")
        self.encoder = Encoder(
            self._input_layer(input_dim, embed_dim), embed_dim, s.hidden_dim, enc_depth,
            cell=s.cell, bidirectional=s.bidirectional, dropout=s.dropout,
            final_state=final_state, outputs=s.attention != "none", io_dropout=s.io_dropout,
            directions=s.directions, precision=s.rnn_precision,
        )
        self.decoder = Decoder(
            self._input_layer(output_dim, embed_dim), output_dim, embed_dim, s.hidden_dim,
            dec_depth, cell=s.cell, dropout=s.dropout, peek=s.peek, attention=s.attention,
            feedback=s.feedback, fast=fast, io_dropout=s.io_dropout, precision=s.rnn_precision,
        )
        self.dec_depth = dec_depth
        if Init(s.init) is Init.keras:
            keras_init(self.encoder.rnn)
            keras_init(self.decoder.rnn)
            if self.decoder.repeat is not None:  # the RepeatVector Dense(hidden, relu): Keras' own
                nn.init.xavier_uniform_(self.decoder.repeat[0].weight)
                nn.init.zeros_(self.decoder.repeat[0].bias)

    def _input_layer(self, dim: int, embed_dim: int) -> nn.Module:
        if self.kind == "tokens":
            return nn.Embedding(dim, embed_dim, padding_idx=self.pad_id)
        return nn.Linear(dim, embed_dim)

    @property
    def fast(self) -> bool:
        """The decoder's fast paths (default) or its plain step-by-step path (see
        ``decoder.py``): the same numbers to float tolerance."""
        return self.decoder.fast

    @fast.setter
    def fast(self, on: bool) -> None:
        self.decoder.fast = on

    # -- the step interface (search drives it) --------------------------------------------

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor | None = None) -> Encoded:
        """Run the encoder; ``src_lengths`` defaults to the full width of ``src``."""
        if src_lengths is None:
            src_lengths = torch.full((src.shape[0],), src.shape[1], dtype=torch.long)
        return self.encoder(src, src_lengths.to(src.device))

    def begin(
        self, src: torch.Tensor, src_lengths: torch.Tensor | None = None
    ) -> tuple[Source, State]:
        """Encode, and return what every decoder step reads of the source and the decoder's
        first state: the bridged encoder state, or zeros without bridge."""
        enc = self.encode(src, src_lengths)
        return self.decoder.prepare(enc), self.initial_state(enc)

    def initial_state(self, enc: Encoded) -> State:
        """The decoder's first state: the bridged encoder state, or zeros without bridge."""
        if not self.bridge:
            zeros = enc.memory.new_zeros(self.dec_depth, enc.memory.shape[0], self.hidden_dim)
            return (zeros, zeros) if self.encoder.cell == "lstm" else zeros
        layers = [min(i, self.encoder.depth - 1) for i in range(self.dec_depth)]
        if isinstance(enc.state, tuple):
            return tuple(s[layers] for s in enc.state)
        return enc.state[layers]

    def start(self, batch: int, device: torch.device) -> torch.Tensor:
        """The decoder's first input: the start token (B, 1) or a zero start vector (B, 1, D)."""
        if self.kind == "tokens":
            return torch.full((batch, 1), self.bos_id, dtype=torch.long, device=device)
        return torch.zeros(batch, 1, self.output_dim, device=device)

    def step(
        self, prev: torch.Tensor, state: State, source: Source
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """One decoder step after the previous output ``prev`` (B, 1) token or (B, 1, D)
        vector: the output (B, V) or (B, D), the new state, attention weights (B, 1, S)."""
        out, state, weights = self.decoder.step(prev, state, source)
        return out.squeeze(1), state, weights

    # -- training / scoring -------------------------------------------------------------

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        max_len: int | None = None,
        teacher_forcing: float | None = None,
    ) -> Seq2SeqOutput:
        """Decode ``target.shape[1]`` steps (or ``max_len``) and return every step's output.

        In training mode the ground truth of step t-1 is fed at step t with probability
        ``teacher_forcing`` (default: the model's setting); in eval mode, or without a
        target, the model feeds back its own previous output (greedy, no early stop).
        """
        steps = target.shape[1] if target is not None else (max_len or self.output_length)
        if steps is None:
            raise ValueError("give a target, max_len, or build the model with output_length")
        if teacher_forcing is None:
            teacher_forcing = self.teacher_forcing if self.training else 0.0
        if target is None:
            teacher_forcing = 0.0
        source, state = self.begin(src, src_lengths)
        start = self.start(src.shape[0], src.device)
        if not self.decoder.feedback or teacher_forcing >= 1.0:  # every input known in advance
            prev = torch.cat([start, target[:, :-1]], dim=1) if self.decoder.feedback else None
            return Seq2SeqOutput(*self.decoder.run(prev, state, source, steps))
        outputs, weights, prev = [], [], start
        for t in range(steps):
            out, state, w = self.step(prev, state, source)
            outputs.append(out)
            weights.append(w)
            prev = out.argmax(-1, keepdim=True) if self.kind == "tokens" else out.unsqueeze(1)
            if teacher_forcing > 0.0:
                gold = torch.rand(prev.shape[0], device=prev.device) < teacher_forcing
                gold = gold.view(-1, *([1] * (prev.dim() - 1)))
                prev = torch.where(gold, target[:, t : t + 1], prev)
        attention = None if weights[0] is None else torch.cat(weights, dim=1)
        return Seq2SeqOutput(torch.stack(outputs, dim=1), attention)

    # -- inference ----------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor | None = None,
        max_len: int | None = None,
        beam_size: int = 1,
        length_penalty: float = 0.0,
        return_attention: bool = False,
    ) -> Generation:
        """Decode without ground truth: greedy (``beam_size=1``) or batched beam search.

        Token models stop each sequence at its end-of-sequence token (or ``max_len``);
        vector models run ``max_len`` (default ``output_length``) steps. Beam scores are
        divided by ``length ** length_penalty``. With ``return_attention`` the weights of
        every step, (B, T, S), come back for plotting.
        """
        was_training = self.training
        self.eval()
        try:
            max_len = max_len or self.output_length
            if max_len is None:
                raise ValueError("give max_len, or build the model with output_length")
            if self.kind == "vectors":
                if beam_size != 1:
                    raise ValueError("beam search needs token outputs; vectors decode greedily")
                out = self.forward(src, src_lengths, max_len=max_len)
                gen = Generation(out.outputs, None, None, out.attention)
            elif beam_size == 1:
                gen = greedy_search(self, *self.begin(src, src_lengths), max_len)
            else:
                gen = beam_search(
                    self, *self.begin(src, src_lengths), max_len, beam_size, length_penalty
                )
            return gen if return_attention else gen._replace(attention=None)
        finally:
            self.train(was_training)
