"""Everything a run needs, built from the config before its MLflow run exists.

config -> data + module -> trainer. :func:`settle` checks the settings the schemas and this
machine can judge; :func:`build` then builds every object that can still refuse a value
(the data module's splits, the model on the meta device against free memory, the optimizer
and scheduler called on the real parameters, the callbacks, the Trainer) inside
:func:`blame`, which turns whatever a library raises into a ``ConfigError`` naming the key
the user set, its value and the library's own words. Nothing here opens the tracking store.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline.config import check, is_int, validate
from pipeline.data.tasks import TASKS
from pipeline.errors import ConfigError, DiskFull
from pipeline.tracking.handoff import in_sweep
from pipeline.tracking.naming import override_key, task_overrides
from pipeline.tracking.store import check_tracking_uri

if TYPE_CHECKING:  # Lightning takes seconds to import: a bad setting is refused before it
    import lightning as L

    from pipeline.data import Seq2SeqDataModule
    from pipeline.module import Seq2SeqModule

# Parameters, gradients and Adam's two moments, 4 bytes each; activations come on top.
BYTES_PER_PARAMETER = 16


@dataclass
class Parts:
    """A run's objects, built and checked."""

    datamodule: Seq2SeqDataModule
    module: Seq2SeqModule
    trainer: L.Trainer


def settle(cfg: DictConfig) -> None:
    """Check the settings, this machine and the store's address; then fill what depends on
    the task and the terminal, and set up torch for this process."""
    validate(cfg)
    check_environment(cfg)
    check_tracking_uri(cfg.logger.tracking_uri)
    fill_monitor(cfg)
    fill_progress_bar(cfg)
    set_up_torch(cfg)


# Metrics where lower is better; every other one (accuracies, BLEU, chrF) is maximised.
LOWER_IS_BETTER = ("loss", "per", "wer", "cer", "mse", "mae", "mase")


def fill_monitor(cfg: DictConfig) -> None:
    """The monitored metric, where unset, by the task's kind (sequence accuracy for token
    tasks, the loss for vector tasks), and its direction, where unset, by its name."""
    tokens = TASKS[cfg.data.task].kind == "tokens"
    with open_dict(cfg):
        cfg.monitor = cfg.monitor or ("val/seq_acc" if tokens else "val/loss")
        lower = cfg.monitor.rsplit("/", 1)[-1] in LOWER_IS_BETTER
        cfg.monitor_mode = cfg.monitor_mode or ("min" if lower else "max")


def fill_progress_bar(cfg: DictConfig) -> None:
    """Lightning's progress bar, where unset: in a terminal, outside a sweep (whose own
    display reports each replicate); else a line per epoch (``pipeline/progress_bar.py``)."""
    if cfg.trainer.get("enable_progress_bar") is None:
        with open_dict(cfg):
            cfg.trainer.enable_progress_bar = sys.stderr.isatty() and not in_sweep()



def set_up_torch(cfg: DictConfig) -> None:
    """torch's threads and, on a GPU, the fp32 matmul precision. ``trainer.deterministic``
    keeps deterministic algorithms but not their filling of every new tensor with NaN (a
    check for reads of unwritten memory, which the models never do; it cost a tenth of
    a training step's time)."""
    torch.set_num_threads(cfg.get("threads") or default_threads(usable_cores(),
                                                                parallel_jobs()))
    torch.utils.deterministic.fill_uninitialized_memory = False
    if str(cfg.trainer.accelerator) in ("gpu", "cuda"):
        torch.set_float32_matmul_precision(cfg.accel.matmul_precision)


def check_environment(cfg: DictConfig) -> None:
    """Reject what this machine cannot do (a GPU that is not there, DDP on one device, a
    world that does not match the processes torchrun started): before training, not after
    it. DDP counts every host's devices: ``trainer.devices x trainer.num_nodes``."""
    trainer = cfg.trainer
    accelerator, devices = str(trainer.get("accelerator")), trainer.get("devices")
    nodes, strategy = trainer.get("num_nodes", 1), strategy_name(trainer.get("strategy"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator", accelerator,
                          "this machine has no GPU: use trainer=cpu, ddp_cpu or multinode_cpu")
    gpus = accelerator in ("gpu", "cuda")
    available = torch.cuda.device_count() if gpus else (os.cpu_count() or 1)
    launched = started_by_launcher()
    if not launched:  # else the cluster or torchrun started the processes
        check(devices in (-1, "auto") or (is_int(devices) and 1 <= devices <= available),
               "trainer.devices", devices, f"-1, auto, or an int in [1, {available}] (this "
               f"machine's {'GPUs' if gpus else 'cores'})")
    check(is_int(nodes) and nodes >= 1, "trainer.num_nodes", nodes, "an int >= 1")
    check(nodes == 1 or launched or "NODE_RANK" in os.environ, "trainer.num_nodes", nodes,
           "1, unless torchrun or SLURM starts the processes on every host (README, "
           "\"Scaling out\")")
    if "TORCHELASTIC_RUN_ID" in os.environ:
        check_torchrun_world(devices, nodes, strategy)
    if strategy.startswith("ddp"):
        per_node = torch.cuda.device_count() if gpus and devices in (-1, "auto") else devices
        check(is_int(per_node) and per_node * nodes >= 2, "trainer.devices", devices,
               f"at least 2 devices for DDP, trainer.devices x trainer.num_nodes (here "
               f"{per_node} x {nodes})"
               + (f"; this machine has {torch.cuda.device_count()} GPU" if gpus else "")
               + "; for one device use trainer=cpu or trainer=gpu")
    check(not relaunches_sweep(strategy), "trainer.strategy", strategy,
           "ddp_spawn (trainer=ddp or ddp_cpu) inside a multirun: plain ddp re-launches the "
           "command line and every extra rank would start its own sweep; plain ddp is for "
           "ranks started by SLURM (hydra/launcher=slurm trainer=slurm) or torchrun")


def check_torchrun_world(devices, nodes: int, strategy: str) -> None:
    """Under torchrun: the processes it started are the ranks, so a strategy that starts
    none (``ddp``) and ``trainer.devices x trainer.num_nodes`` equal to its
    ``--nproc-per-node x --nnodes``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_host = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if world == 1:
        return
    check(not any(way in strategy for way in ("spawn", "fork")), "trainer.strategy", strategy,
          "ddp where torchrun starts the processes (trainer=multinode): a spawning strategy "
          "would start more")
    check(devices == per_host, "trainer.devices", devices,
          f"{per_host}, torchrun's --nproc-per-node (or trainer=multinode, which reads it)")
    check(devices * nodes == world, "trainer.num_nodes", nodes,
          f"{world // per_host}, torchrun's --nnodes: it started {world} processes, "
          f"{per_host} per host (or trainer=multinode, which reads it)")


def strategy_name(strategy) -> str:
    """A strategy's name (``ddp``, ``ddp_spawn``, ``auto``), also for one given as an object
    (``_target_: ...DDPStrategy``, with its ``start_method``)."""
    if not OmegaConf.is_config(strategy):
        return "auto" if strategy is None else str(strategy)
    name = str(strategy.get("_target_", "")).rsplit(".", 1)[-1].removesuffix("Strategy").lower()
    method = strategy.get("start_method", "popen")
    return name if method == "popen" else f"{name}_{method}"


# Set where a cluster or torchrun started the ranks: plain ddp then re-launches nothing.
CLUSTER_RANK_VARS = ("SLURM_NTASKS", "TORCHELASTIC_RUN_ID")


def started_by_launcher() -> bool:
    """SLURM or torchrun started this process as one of the ranks."""
    return any(v in os.environ for v in CLUSTER_RANK_VARS)


def relaunches_sweep(strategy: str) -> bool:
    """Plain ``ddp`` in a Hydra multirun with no launcher-made ranks: Lightning would
    re-launch ``python -m pipeline.train -m ...`` for each extra rank, a sweep per rank."""
    return (strategy.startswith("ddp") and "spawn" not in strategy and in_sweep()
            and not started_by_launcher())


def replicates(cfg: DictConfig) -> Iterator[DictConfig]:
    """The configuration of each replicate: seeds ``seed``, ``seed + 1``, ... each in its own
    folder (``<run dir>/seed<seed>``) when there are several."""
    if cfg.seeds == 1:
        yield cfg
        return
    for i in range(cfg.seeds):
        replicate = cfg.copy()
        with open_dict(replicate):
            replicate.seed = cfg.seed + i
            replicate.paths.run_dir = f"{cfg.paths.run_dir}/seed{replicate.seed}"
        yield replicate


def default_threads(cores: int, jobs: int) -> int:
    """Threads of a job where ``threads`` is unset: its share of the cores under parallel
    jobs, else every core but one: a small RNN whose threads meet a busy core slows down
    several times (docs/results.md), so one core stays free for the rest of the machine."""
    return max(1, cores // jobs) if jobs > 1 else max(1, cores - 1)


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as a cluster sets it)."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parallel_jobs() -> int:
    """How many jobs of this sweep run side by side (joblib's ``n_jobs``), else 1."""
    jobs = HydraConfig.get().launcher.get("n_jobs") if HydraConfig.initialized() else None
    return jobs if jobs and jobs > 0 else 1


def build(cfg: DictConfig) -> Parts:
    """The data module (splits built or read from the cache), the LightningModule with its
    optimizer, and the Trainer with its callbacks; its logger comes with the run
    (``pipeline.tracking.run``), so building touches no store."""
    # Lightning takes seconds to import: only once the settings are good.
    from pipeline.checkpoints import AtomicCheckpointIO  # noqa: PLC0415
    from pipeline.module import Seq2SeqModule  # noqa: PLC0415
    from pipeline.progress_bar import progress_callbacks  # noqa: PLC0415

    with blame(cfg, "data"):
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup()
        datamodule.train_dataloader()
    with blame(cfg, "optimizer", "scheduler"):
        optimizer = instantiate(cfg.optimizer)
        scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    with blame(cfg, "model", "data"):
        check_memory(cfg, Seq2SeqModule.from_config, datamodule.spec)
        module = Seq2SeqModule.from_config(cfg, datamodule.spec, optimizer, scheduler)
    if cfg.monitor not in module.monitorable:
        raise ConfigError("monitor", cfg.monitor, "one of the metrics this task logs: "
                          + ", ".join(sorted(module.monitorable)))
    with blame(cfg, "optimizer", "scheduler"):
        module.configure_optimizers()
    with blame(cfg, "callbacks", "monitor", "monitor_mode"):
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
        callbacks += progress_callbacks(bool(cfg.trainer.enable_progress_bar))
    with blame(cfg, "trainer"):
        trainer = instantiate(cfg.trainer, logger=False, callbacks=callbacks,
                              plugins=[AtomicCheckpointIO()])
    return Parts(datamodule, module, trainer)


def check_memory(cfg: DictConfig, make, spec) -> None:
    """Build the module on the meta device (no memory) and refuse one whose parameters,
    gradients and optimizer state would not fit in the memory free now."""
    with torch.device("meta"):
        params = sum(p.numel() for p in make(cfg, spec).parameters())
    gpu = str(cfg.trainer.accelerator) in ("gpu", "cuda") and torch.cuda.is_available()
    free = torch.cuda.mem_get_info()[0] if gpu else psutil.virtual_memory().available
    need = params * BYTES_PER_PARAMETER
    if need > free:
        raise MemoryError(f"the model has {params:,} parameters and needs about "
                          f"{need / 2**30:.1f} GiB to train; {free / 2**30:.1f} GiB are free")


@contextmanager
def blame(cfg: DictConfig, *groups: str) -> Iterator[None]:
    """Turn an error raised while building ``groups`` into a ConfigError naming the
    setting that caused it: the command-line override(s) under those groups, else the
    group's own choice."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as err:
        if DiskFull.of(err):  # the disk's fault, not the setting's: the job's outcome says so
            raise
        words = library_words(err)
        keys = [k for k in (override_key(o) for o in task_overrides())
                if any(k == g or k.startswith(f"{g}.") for g in groups)] or [groups[0]]
        values = [setting(cfg, k) for k in keys]
        if len(keys) == 1:
            raise ConfigError(keys[0], values[0], words) from err
        raise ConfigError(tuple(keys), tuple(values), words) from err


def library_words(err: BaseException) -> str:
    """The first line of what the raising library said (through Hydra's instantiation
    wrapper, whose own line only names the target)."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    words = " ".join(lines[:2] if lines and lines[0].endswith(":") else lines[:1])[:300]
    return f"{type(err).__name__}: {words}" if isinstance(err, KeyError) or not words else words


def setting(cfg: DictConfig, key: str):
    """What ``key`` is set to: a config group's choice (``data`` -> ``g2p``) or a value."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    if key in choices:
        return choices[key]
    value = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
