"""The GPU training step: the attention decoder's teacher-forced loop as CUDA graphs.

On a GPU the input-feeding decoder (attention with peek, the default model) runs one small
step per target position, dozens of kernels each, so the card waits on Python's launches.
:class:`DecoderGraphs` captures that loop, forward and backward, with
``torch.cuda.make_graphed_callables`` (partial-network capture, as the PyTorch CUDA-graphs
notes describe it) and replays it: one launch for the forward, one for the backward. The
encoder (one cuDNN call), the loss and the optimizer stay eager, so Lightning's loop,
gradient clipping and checkpoints work as before.

A graph needs static shapes: source and target lengths are padded up to a multiple of
``pad_to`` (``accel.pad_to``; padding is masked in attention and ignored by the loss, so the
numbers do not change) and each (batch, lengths, dtype) gets its own graph, at most
``max_graphs``. The switch is ``accel.cuda_graphs``; off, or where a graph cannot apply (the
CPU, another decoder, teacher forcing below 1, DDP), training runs the eager fast path.
Only the capture itself needs CUDA: it is a parameter (``capture``), so the padding and the
choice of graph are tested on a CPU with a stand-in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models import EncoderDecoder
from pipeline.models.encoder import Encoded, length_mask

log = logging.getLogger(__name__)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class _TeacherForced(nn.Module):
    """The decoder over a given source and previous tokens: what one graph captures.
    Holds the decoder as a submodule, so its parameters are the graph's parameters."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, memory, mask, prev, *state):
        source = self.decoder.prepare(Encoded(memory, mask, None, None))
        state = tuple(state) if len(state) == 2 else state[0]
        return self.decoder.run(prev, state, source, prev.shape[1])[0]


class DecoderGraphs:
    """Teacher-forced training outputs of ``net`` (B, T, V), its decoder replayed from one
    CUDA graph per shape. Use :meth:`applies` first."""

    def __init__(self, net: EncoderDecoder, pad_to: int = 8, max_graphs: int = 64,
                 capture: Callable[..., nn.Module] | None = None):
        self.net, self.pad_to, self.max_graphs = net, pad_to, max_graphs
        # (module, sample args) -> a callable replaying it; torch's by default, on CUDA.
        self.capture = capture or torch.cuda.make_graphed_callables
        self.graphs: dict[tuple, nn.Module] = {}
        self.warned = False

    def applies(self, src: torch.Tensor) -> bool:
        """Training on CUDA, the fast path, a token decoder with input feeding, always fed
        the ground truth (teacher forcing 1), autograd on."""
        net, dec = self.net, self.net.decoder
        return (src.is_cuda and net.training and net.fast and dec.input_feeding
                and dec.feedback and net.kind == "tokens" and net.teacher_forcing >= 1.0
                and torch.is_grad_enabled())

    def __call__(self, src: torch.Tensor, lengths: torch.Tensor, tgt: torch.Tensor):
        args, steps = self.static_args(src, lengths, tgt)
        key = self.shape_key(args)
        graphed = self.graphs.get(key)
        if graphed is None:
            if len(self.graphs) >= self.max_graphs:
                if not self.warned:
                    log.warning("more than %d batch shapes: new shapes train without CUDA "
                                "graphs (raise accel.pad_to)", self.max_graphs)
                    self.warned = True
                return _TeacherForced(self.net.decoder)(*args)[:, :steps]
            graphed = self.graphs[key] = self._capture(args)
        return graphed(*args)[:, :steps]

    def static_args(self, src: torch.Tensor, lengths: torch.Tensor, tgt: torch.Tensor
                    ) -> tuple[tuple, int]:
        """The captured module's inputs (encoder memory, mask, previous tokens, state), source
        and target lengths padded to multiples of ``pad_to``; and the unpadded steps."""
        net = self.net
        enc = net.encode(src, lengths)
        state = net.initial_state(enc)
        states = state if isinstance(state, tuple) else (state,)
        prev = torch.cat([net.start(src.shape[0], src.device), tgt[:, :-1]], dim=1)
        steps, width = tgt.shape[1], src.shape[1]
        memory = F.pad(enc.memory, (0, 0, 0, round_up(width, self.pad_to) - width))
        mask = length_mask(lengths.to(src.device), memory.shape[1])
        prev = F.pad(prev, (0, round_up(steps, self.pad_to) - steps), value=net.pad_id)
        return (memory, mask, prev, *states), steps

    @staticmethod
    def shape_key(args: tuple) -> tuple:
        """What decides whether a captured graph can replay ``args``: their shapes, the
        dtype, autocast, and which states carry gradients."""
        memory, states = args[0], args[3:]
        return (tuple(a.shape for a in args), memory.dtype, torch.is_autocast_enabled("cuda"),
                torch.get_autocast_dtype("cuda"), tuple(s.requires_grad for s in states))

    def _capture(self, args: tuple) -> nn.Module:
        """Warm up and capture forward and backward for these shapes (static copies of the
        inputs become the graph's input surface; later calls copy into them)."""
        static = tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in args)
        return self.capture(_TeacherForced(self.net.decoder), static, allow_unused_input=True)
