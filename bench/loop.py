"""Pipeline-level benchmarks: Lightning + MLflow + checkpoints against a plain loop, the data
module against what training consumes, and the padding of length buckets against plain
batches (their speed is a lever of ``levers.py``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench.networks import VARIANTS
from bench.timing import compare
from pipeline.build import build, settle
from pipeline.data.dataset import padding_share
from pipeline.models import EncoderDecoder
from pipeline.tracking.logger import make_logger
from pipeline.tracking.store import ensure_experiment, open_store

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def default_config(workdir: str, overrides: list[str]):
    """``conf/train.yaml`` as ``make train`` composes it, writing under ``workdir``."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.output_dir={workdir}", f"paths.run_dir={workdir}/run",
            "trainer.max_epochs=1", *overrides,
        ])
    settle(cfg)
    return cfg


def plain_epoch(net, datamodule, lr: float, clip: float, max_len: int, ckpt: Path) -> None:
    """One epoch the plain PyTorch way: train, validate (loss + greedy), save the weights."""
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for b in datamodule.train_dataloader():
        out = net(b.src, b.src_lengths, target=b.tgt).outputs
        loss = F.cross_entropy(out.flatten(0, 1), b.tgt.flatten(), ignore_index=net.pad_id)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
    net.eval()
    right = 0
    with torch.inference_mode():
        for b in datamodule.val_dataloader():
            out = net(b.src, b.src_lengths, target=b.tgt, teacher_forcing=1.0).outputs
            F.cross_entropy(out.flatten(0, 1), b.tgt.flatten(), ignore_index=net.pad_id)
            pred = net.generate(b.src, b.src_lengths, max_len=max_len).sequences
            n = min(pred.shape[1], b.tgt.shape[1])
            right += int((pred[:, :n] == b.tgt[:, :n]).all(1).sum())
    torch.save(net.state_dict(), ckpt)


def overhead(train_size: int, repeats: int) -> dict:
    """``trainer.fit`` as configured by default (MLFlowLogger, checkpoint callbacks; the
    logger's run and the trainer built inside the timing) against :func:`plain_epoch` over
    the same model weights, data, batch size, optimizer and gradient clipping.

    ``ratio`` is the steady-state epoch: (fit of 3 epochs - fit of 1 epoch) / 2 over the plain
    epoch, so each run's fixed costs (creating the MLflow run, the sanity validation, the
    final artifact upload) cancel out; ``fit_ratio`` is a whole 1-epoch fit with them."""
    with tempfile.TemporaryDirectory() as workdir:
        cfg = default_config(workdir, [f"data.train_size={train_size}",
                                       f"data.cache_dir={workdir}/data"])
        parts = build(cfg)
        datamodule, module = parts.datamodule, parts.module
        start = {k: v.clone() for k, v in module.state_dict().items()}
        net = build(cfg).module.net
        max_len = module.hparams.max_decode_len
        runs = iter(range(1000))

        def fit(epochs: int):
            def run():
                module.load_state_dict(start)
                cfg.paths.run_dir = f"{workdir}/run{next(runs)}"  # nothing to resume from
                open_store(cfg.logger.tracking_uri)
                ensure_experiment(cfg.logger.tracking_uri, cfg.logger.experiment_name,
                                  cfg.logger.artifact_location)
                logger = make_logger(cfg)
                # Every callback but stop_when_solved: each fit runs all its epochs.
                callbacks = [instantiate(c) for name, c in cfg.callbacks.items()
                             if name != "stop_when_solved"]
                trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks,
                                      max_epochs=epochs)
                trainer.fit(module, datamodule=datamodule, weights_only=False)
            return run

        def plain():
            net.load_state_dict({k[len("net."):]: v for k, v in start.items()
                                 if k.startswith("net.")})
            plain_epoch(net, datamodule, cfg.optimizer.lr, cfg.trainer.gradient_clip_val,
                        max_len, Path(workdir) / "plain.pt")

        times = compare({"fit1": fit(1), "fit3": fit(3), "plain": plain}, repeats=repeats)
    epoch = (times["fit3"] - times["fit1"]) / 2
    return dict(train_size=train_size, batches=-(-train_size // cfg.data.batch_size),
                pipeline_epoch_s=epoch, pipeline_fit1_s=times["fit1"], plain_s=times["plain"],
                fixed_per_run_s=times["fit1"] - epoch, ratio=epoch / times["plain"],
                fit_ratio=times["fit1"] / times["plain"])


def data_and_buckets(train_size: int, repeats: int, fastest_variant: str) -> dict:
    """Batches/s of the default data module against training on the same batches (the
    fastest variant, at the default size), and the padding share of plain batches and of
    length buckets."""
    with tempfile.TemporaryDirectory() as workdir:
        cfg = default_config(workdir, [f"data.train_size={train_size}",
                                       f"data.cache_dir={workdir}/data"])
        modules = {}
        for bucket in (False, True):
            dm = instantiate(cfg.data, bucket_by_length=bucket)
            dm.prepare_data()
            dm.setup()
            modules[bucket] = dm
        spec = modules[False].spec
        batches = {b: list(dm.train_dataloader()) for b, dm in modules.items()}

        def model(variant):
            torch.manual_seed(0)
            return EncoderDecoder(input_dim=spec.input_dim, output_dim=spec.output_dim,
                                  hidden_dim=cfg.model.hidden_dim, **VARIANTS[variant]).train()

        def trainer(net, data):
            opt = torch.optim.Adam(net.parameters(), lr=1e-4)

            def run():
                for b in data:
                    out = net(b.src, b.src_lengths, target=b.tgt).outputs
                    loss = F.cross_entropy(out.flatten(0, 1), b.tgt.flatten(), ignore_index=0)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            return run

        times = compare({
            "data": lambda: list(modules[False].train_dataloader()),
            "fastest": trainer(model(fastest_variant), batches[False]),
        }, repeats=repeats)
        n = len(batches[False])
        return dict(
            task=cfg.data.task, batch_size=cfg.data.batch_size, batches=n,
            data_batches_per_s=n / times["data"], fastest_variant=fastest_variant,
            fastest_batches_per_s=n / times["fastest"], headroom=times["fastest"] / times["data"],
            padding_share_plain=padding_share(batches[False]),
            padding_share_bucketed=padding_share(batches[True]),
        )
