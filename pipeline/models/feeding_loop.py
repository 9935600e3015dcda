"""The input-feeding attention decoder's time loop as one autograd node (one LSTM layer,
additive attention), with its backward pass through time written out.

Autograd records every small op of every step (about 20 forward, 35 backward) and sums each
weight's gradient step by step. Here the forward builds no graph and keeps what the backward
needs; the backward walks the steps in reverse with a few batched ops each and computes the
weights' gradients once, one matrix product over all steps (as cuDNN does for its RNNs).
Step t, from the previous state (h, c) and the first layer's input gates x_t:

    [g_h; q] = W_top h + b_top            (recurrent gates and attention query, one matmul)
    a = tanh(q + K);  e = a v + bias;  w = softmax(e);  ctx = w M
    i, f, g, o = act(x_t + g_h + W_c ctx)   (sigmoid, sigmoid, tanh, sigmoid; nn.LSTM's order)
    c' = f c + i g;  h' = o tanh(c')

K: the attention keys, M: the memory, bias: 0 on real source positions and -inf on padding.
With ``low=torch.bfloat16`` the products with W_top and W_c (forward, backward and the
weights' gradients) take bf16 operands and return fp32; everything else stays fp32.
The same ops run on every device; ``tests/unit/test_feeding_loop.py`` checks the gradients
against autograd's.
"""

from __future__ import annotations

import torch


def _addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, low: torch.dtype | None,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """bias + a @ b in fp32; with ``low``, the product computed in ``low`` (a weight cast
    once before the loop is not cast again)."""
    if low is None:
        return torch.addmm(bias, a, b, out=out)
    return torch.add(bias, torch.mm(a.to(low), b.to(low)), out=out)


def _mm(a: torch.Tensor, b: torch.Tensor, low: torch.dtype | None) -> torch.Tensor:
    """a @ b in fp32; with ``low``, computed in ``low``."""
    return a @ b if low is None else torch.mm(a.to(low), b.to(low)).float()


class FeedingLoop(torch.autograd.Function):
    """Inputs: first (T, B, 4H) the inputs' gates, h and c (B, H) the start state, keys and
    memory (B, S, H), bias (B, S) (no gradient), top_weight (4H + H, H) and top_bias
    (4H + H), v (1, H) the score vector, context_weight (H, 4H) (applied as ``ctx @ W``).
    Outputs: the states h (T, B, H), the contexts (T, B, H) and the attention weights
    (T, B, S) (no gradient). ``low``: the dtype of the products with top_weight and
    context_weight (None: fp32)."""

    @staticmethod
    def forward(ctx, first, h, c, keys, memory, bias, top_weight, top_bias, v,
                context_weight, low=None):
        steps, batch, gates = first.shape
        hidden, source = h.shape[-1], keys.shape[1]
        g_cols = slice(2 * hidden, 3 * hidden)
        score_bias = bias.reshape(batch * source, 1)
        h0, c0 = h, c
        hs, cs, tanh_cs, contexts = (first.new_empty(steps, batch, hidden) for _ in range(4))
        acts = torch.empty_like(first)
        scores_in = keys.new_empty(steps, batch, source, hidden)
        weights = keys.new_empty(steps, batch, source)
        top_t = top_weight.t().to(low or top_weight.dtype)  # cast once, not every step
        context_w = context_weight.to(low or context_weight.dtype)
        for t in range(steps):
            z = _addmm(top_bias, h, top_t, low)
            a = torch.add(keys, z[:, gates:].unsqueeze(1), out=scores_in[t]).tanh_()
            e = torch.addmm(score_bias, a.view(batch * source, hidden), v.t())
            w = torch.softmax(e.view(batch, source), dim=-1)
            weights[t] = w
            context = torch.bmm(w.unsqueeze(1), memory, out=contexts[t].unsqueeze(1))[:, 0]
            pre = _addmm(first[t], context, context_w, low).add_(z[:, :gates])
            act = torch.sigmoid(pre, out=acts[t])
            torch.tanh(pre[:, g_cols], out=act[:, g_cols])
            i, f, g, o = act.chunk(4, dim=1)
            c = torch.addcmul(f * c, i, g, out=cs[t])
            tanh_c = torch.tanh(c, out=tanh_cs[t])
            h = torch.mul(o, tanh_c, out=hs[t])
        ctx.save_for_backward(h0, c0, hs, cs, tanh_cs, acts, scores_in, weights, contexts,
                              memory, top_weight, v, context_weight)
        ctx.low = low
        ctx.mark_non_differentiable(weights)
        return hs, contexts, weights

    @staticmethod
    def backward(ctx, grad_hs, grad_contexts, _grad_weights):
        (h0, c0, hs, cs, tanh_cs, acts, scores_in, weights, contexts, memory, top_weight, v,
         context_weight) = ctx.saved_tensors
        steps, batch, hidden = hs.shape
        gates, source = acts.shape[-1], memory.shape[1]
        low = ctx.low
        top_w = top_weight.to(low or top_weight.dtype)  # cast once, not every step
        context_t = context_weight.t().to(low or context_weight.dtype)
        if grad_hs is None:
            grad_hs = torch.zeros_like(hs)
        if grad_contexts is None:
            grad_contexts = torch.zeros_like(contexts)
        # Per step: the gradients at the pre-activations and the query, side by side (dz),
        # the scores' (de) and the contexts' (dctx); the weights' from them at the end.
        dz = hs.new_empty(steps, batch, gates + hidden)
        de = hs.new_empty(steps, batch, source)
        dctx_all = hs.new_empty(steps, batch, hidden)
        dkeys = torch.zeros_like(memory)
        dh = torch.zeros_like(h0)
        dc = torch.zeros_like(c0)
        v_row = v.view(1, 1, hidden)
        for t in range(steps - 1, -1, -1):
            act, tanh_c, a, w = acts[t], tanh_cs[t], scores_in[t], weights[t]
            i, f, g, o = act.chunk(4, dim=1)
            c_prev = cs[t - 1] if t > 0 else c0
            dh = dh + grad_hs[t]
            dc = torch.addcmul(dc, dh * o, 1 - tanh_c * tanh_c)
            dpre = dz[t, :, :gates]
            torch.cat([dc * g, dc * c_prev, dc * i, dh * tanh_c], dim=1, out=dpre)
            deriv = act * (1 - act)
            deriv[:, 2 * hidden : 3 * hidden] = 1 - g * g
            dpre.mul_(deriv)
            dc = dc * f
            dcontext = _addmm(grad_contexts[t], dpre, context_t, low, out=dctx_all[t])
            dw = torch.bmm(memory, dcontext.unsqueeze(2)).squeeze(2)
            de_t = torch.mul(w, dw - (dw * w).sum(-1, keepdim=True), out=de[t])
            da = de_t.unsqueeze(-1) * v_row
            da = torch.addcmul(da, da, a * a, value=-1)  # through tanh: da (1 - a^2)
            dkeys.add_(da)
            torch.sum(da, dim=1, out=dz[t, :, gates:])
            dh = _mm(dz[t], top_w, low)
        flat = dz.view(steps * batch, -1)
        previous = torch.cat([h0.unsqueeze(0), hs[:-1]]).view(steps * batch, hidden)
        grad_top_weight = _mm(flat.t(), previous, low)
        grad_top_bias = flat.sum(0)
        grad_context_weight = _mm(contexts.view(steps * batch, hidden).t(),
                                  dz[..., :gates].reshape(steps * batch, gates), low)
        grad_memory = torch.bmm(weights.permute(1, 2, 0), dctx_all.transpose(0, 1))
        grad_v = de.view(1, -1) @ scores_in.view(-1, hidden)
        return (dz[..., :gates], dh, dc, dkeys, grad_memory, None, grad_top_weight,
                grad_top_bias, grad_v, grad_context_weight, None)


def feeding_loop(first, h, c, keys, memory, bias, top_weight, top_bias, v, context_weight,
                 low: torch.dtype | None = None):
    """:class:`FeedingLoop` applied: states (T, B, H), contexts (T, B, H), weights (T, B, S)."""
    return FeedingLoop.apply(first, h, c, keys, memory, bias, top_weight, top_bias, v,
                             context_weight, low)
