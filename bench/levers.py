"""Each training-speed lever of a recipe switched off (or, for the bf16 ones, flipped),
side by side.

The default attention model trains on the reverse task (lengths 1-40) as ``make train``
composes it, or a named experiment's recipe (``--experiment g2p``): the same first batches
of an epoch, forward, backward, gradient clipping and the optimizer step, one contender
after the other (:func:`bench.timing.compare`). Each lever's effect is the target
tokens per second with the lever on over those with it off; for the bf16 levers, with the
relative difference of the loss on the same batch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import tempfile
from unittest import mock

import torch
from hydra.utils import instantiate

from bench.loop import default_config
from bench.timing import compare
from pipeline.build import build
from pipeline.models import decoder as decoder_module
from pipeline.models import encoder as encoder_module
from pipeline.models.cells import Precision

# lever -> what the contender changes against the recipe.
LEVERS = {
    "length buckets": "random batches (data.bucket_by_length=false)",
    "decoder loop with its own backward": "autograd through every step",
    "encoder by distinct length": "one packed sequence per batch",
    "fused Adam": "Adam's per-tensor loop (optimizer.fused=false)",
    "bf16 recurrent layers": "model.rnn_precision flipped",
    "bf16 autocast": "bf16 autocast on",
}
BF16 = ("bf16 recurrent layers", "bf16 autocast")  # effects: with bf16 / without


def _switch(lever: str | None, net: torch.nn.Module):
    """What a contender runs its steps under."""
    if lever == "decoder loop with its own backward":
        return mock.patch.object(decoder_module.Decoder, "_loop_applies", return_value=False)
    if lever == "encoder by distinct length":
        return mock.patch.object(encoder_module, "MAX_LENGTH_GROUPS", 0)
    if lever == "bf16 autocast":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if lever == "bf16 recurrent layers":
        other = Precision.fp32 if net.encoder.precision is Precision.bf16 else Precision.bf16
        stack = contextlib.ExitStack()
        for part in (net.encoder, net.decoder):
            stack.enter_context(mock.patch.object(part, "precision", other))
        return stack
    return contextlib.nullcontext()


def effects(batches: int = 40, repeats: int = 3, max_len: int = 40,
            train_size: int = 20000, experiment: str | None = None) -> dict:
    """Target tokens/s with the recipe and with each lever flipped, and the levers' effects:
    the default attention model on reverse 1-``max_len``, or ``experiment``'s recipe."""
    with tempfile.TemporaryDirectory() as workdir:
        overrides = ([f"experiment={experiment}"] if experiment else
                     [f"data.max_len={max_len}", f"data.train_size={train_size}"])
        cfg = default_config(workdir, [*overrides, f"data.cache_dir={workdir}/data"])
        parts = build(cfg)
        net, clip = parts.module.net.train(), cfg.trainer.gradient_clip_val
        loss_fn = parts.module.loss
        per_token = parts.module.hparams.mean_target_len
        bf16_recipe = net.encoder.precision is Precision.bf16
        data = {bucket: instantiate(cfg.data, bucket_by_length=bucket)
                for bucket in (True, False)}
        loaded = {}
        for bucket, dm in data.items():
            dm.prepare_data()
            dm.setup()
            torch.manual_seed(0)
            loaded[bucket] = [b for b, _ in zip(dm.train_dataloader(), range(batches),
                                                strict=False)]
        tokens = {b: sum(int((x.tgt != 0).sum()) for x in d) for b, d in loaded.items()}
        optimizers = {fused: instantiate(cfg.optimizer, fused=fused)(net.parameters())
                      for fused in (True, False)}

        def contender(lever: str | None):
            bucketed = lever != "length buckets"
            optimizer = optimizers[lever != "fused Adam"]

            def run():
                for b in loaded[bucketed]:
                    with _switch(lever, net):  # each switch acts in the forward pass
                        out = net(b.src, b.src_lengths, target=b.tgt).outputs
                    loss = loss_fn(out.float(), b.tgt, per_token=per_token)
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
                    optimizer.step()
            return run

        times = compare({"recipe": contender(None),
                         **{lever: contender(lever) for lever in LEVERS}}, repeats=repeats)
        rate = {name: tokens[name != "length buckets"] / t for name, t in times.items()}
        first = loaded[True][0]
        with torch.no_grad():
            losses = {}
            for lever in (None, *BF16):
                with _switch(lever, net):
                    out = net(first.src, first.src_lengths, target=first.tgt).outputs
                losses[lever] = float(loss_fn(out.float(), first.tgt))
    on_in_recipe = {**dict.fromkeys(LEVERS, True), "bf16 autocast": False,
                    "bf16 recurrent layers": bf16_recipe}
    effect = {lever: (rate["recipe"] / rate[lever] if on_in_recipe[lever]
                      else rate[lever] / rate["recipe"]) for lever in LEVERS}
    return dict(task=experiment or f"reverse 1-{max_len}", batches=batches, tok_per_s=rate,
                effect=effect, on_in_recipe=on_in_recipe,
                bf16_loss_rel_diff={lever: abs(losses[lever] - losses[None]) / losses[None]
                                    for lever in BF16})


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.levers``: this section of ``make bench`` alone, one
    thread, printed as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.levers")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--experiment", help="a recipe of conf/experiment (e.g. g2p) "
                        "instead of the default model on reverse 1-40")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(json.dumps(effects(args.batches, args.repeats, experiment=args.experiment),
                     indent=2))


if __name__ == "__main__":
    main()
