"""Clusters checked without one: the sbatch script the submitit launcher would submit, the
DDP ranks Lightning derives from the environment SLURM or torchrun gives each process, what
DDP across hosts needs, and what a rank other than 0 does with the MLflow run."""

from datetime import timedelta
from pathlib import Path

import pytest
import submitit
import torch
from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, RunMode
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers.logger import DummyLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only
from mlflow import MlflowClient

from pipeline.build import check_environment, strategy_name
from pipeline.errors import ConfigError, RankLost
from pipeline.tracking.logger import checkpoint_dir
from pipeline.tracking.run import rank_lost, run_in_this_folder, tracked_run
from pipeline.tracking.store import ensure_experiment, open_store
from tests.helpers import CONF, TINY


def test_slurm_launcher_submits_one_task_per_gpu(tmp_path, monkeypatch):
    """The real hydra-submitit launcher, stopped where it would call sbatch."""
    monkeypatch.setenv("SEQ2SEQ_SLURM_PARTITION", "gpu-a100")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(CONF))
    cfg = loader.load_configuration(
        "train", overrides=["hydra/launcher=slurm", "trainer=slurm", f"hydra.sweep.dir={tmp_path}",
                            "hydra.launcher.gpus_per_node=8"], run_mode=RunMode.MULTIRUN)
    HydraConfig.instance().set_config(cfg)
    submitted = {}

    def fake_map_array(executor, fn, *args):  # noqa: ARG001 - what sbatch would receive
        submitted["sbatch"] = executor._executor._make_submission_file_text("CMD", "uid")
        submitted["jobs"] = args[0]
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # srun
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=HydraContext(loader, Callbacks()), task_function=lambda c: None,
                   config=cfg)
    returns: list[JobReturn] = launcher.launch([["model.depth=1"], ["model.depth=2"]], 0)
    assert returns == []
    sbatch = submitted["sbatch"]
    for line in ("#SBATCH --partition=gpu-a100", "#SBATCH --nodes=1",
                 "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --time=240", "#SBATCH --signal=USR2@120"):
        assert line in sbatch, sbatch
    assert "srun" in sbatch and "CMD" in sbatch
    assert submitted["jobs"] == (["model.depth=1"], ["model.depth=2"])


def test_slurm_tasks_become_the_ddp_ranks(compose_cfg, monkeypatch):
    """What task 3 of 4 sees: SLURM's variables make it rank 3 of plain DDP (no re-launch),
    and the multirun guard lets plain ddp through because SLURM started the ranks."""
    for key, value in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "4", "SLURM_PROCID": "3",
                       "SLURM_LOCALID": "3", "SLURM_NODEID": "0", "SLURM_JOB_ID": "42",
                       "SLURM_JOB_NAME": "pipeline.train", "SLURM_NODELIST": "node1"}.items():
        monkeypatch.setenv(key, value)
    # The strategy sets the process-wide rank Lightning's rank_zero_only reads (later
    # trainings in this process would log nothing): restore it after the test.
    for flag in (rank_zero_only, utils_rank_zero_only):
        monkeypatch.setattr(flag, "rank", getattr(flag, "rank", 0), raising=False)
    cfg = compose_cfg("trainer=slurm", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4",
                      "trainer.accelerator=cpu")
    assert cfg.trainer.devices == 4 and cfg.trainer.num_nodes == 1
    check_environment(cfg)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert type(trainer.strategy) is DDPStrategy
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank) == (4, 3, 3)
    assert not trainer.is_global_zero
    assert rank_zero_only.rank == utils_rank_zero_only.rank == 3


def torchrun_env(monkeypatch, rank: int, hosts: int = 2, per_host: int = 1) -> None:
    """What torchrun gives the process of global rank ``rank`` among ``hosts`` hosts."""
    for key, value in {"TORCHELASTIC_RUN_ID": "job", "RANK": rank, "LOCAL_RANK": rank % per_host,
                       "GROUP_RANK": rank // per_host, "WORLD_SIZE": hosts * per_host,
                       "LOCAL_WORLD_SIZE": per_host, "GROUP_WORLD_SIZE": hosts,
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, str(value))


def keep_rank_zero(monkeypatch) -> None:
    """A strategy sets the process-wide rank Lightning's rank_zero_only reads: restore it."""
    for flag in (rank_zero_only, utils_rank_zero_only):
        monkeypatch.setattr(flag, "rank", getattr(flag, "rank", 0), raising=False)


@pytest.mark.parametrize(
    ("hosts", "overrides", "refused"),
    [
        (None, ["trainer=ddp_cpu", "trainer.devices=1"],
         "trainer.devices=1 is invalid: at least 2 devices for DDP, trainer.devices x "
         "trainer.num_nodes (here 1 x 1)"),
        (None, ["trainer=ddp_cpu", "trainer.strategy=ddp", "trainer.devices=1",
                "++trainer.num_nodes=2"],
         "trainer.num_nodes=2 is invalid: 1, unless torchrun or SLURM starts the processes"),
        (None, ["trainer=multinode_cpu"], "trainer.devices=1 is invalid: at least 2 devices"),
        (2, ["trainer=ddp_cpu", "trainer.strategy=ddp", "trainer.devices=1",
             "++trainer.num_nodes=2"], None),
        (2, ["trainer=multinode_cpu"], None),
        (2, ["trainer=ddp_cpu", "trainer.strategy=ddp", "trainer.devices=1"],
         "trainer.num_nodes=1 is invalid: 2, torchrun's --nnodes: it started 2 processes"),
        (2, ["trainer=multinode_cpu", "trainer.devices=2"],
         "trainer.devices=2 is invalid: 1, torchrun's --nproc-per-node"),
        (2, ["trainer=ddp_cpu", "trainer.devices=1", "++trainer.num_nodes=2"],
         "trainer.strategy='ddp_spawn' is invalid: ddp where torchrun starts the processes"),
        (1, ["trainer=multinode_cpu"], "trainer.devices=1 is invalid: at least 2 devices"),
    ],
)
def test_ddp_counts_the_devices_of_every_host(compose_cfg, monkeypatch, hosts, overrides,
                                               refused):
    """DDP needs trainer.devices x trainer.num_nodes >= 2; under torchrun that product is
    the number of processes it started, and the ranks are its processes (no spawning)."""
    if hosts is not None:
        torchrun_env(monkeypatch, rank=0, hosts=hosts)
    cfg = compose_cfg(*overrides)
    if refused is None:
        check_environment(cfg)
        return
    with pytest.raises(ConfigError) as err:
        check_environment(cfg)
    assert str(err.value).startswith(refused), str(err.value)
    assert "\n" not in str(err.value)


def test_multinode_reads_the_hosts_and_devices_from_torchrun(compose_cfg, monkeypatch):
    """trainer=multinode: GPUs, torchrun's --nproc-per-node and --nnodes, plain DDP with a
    timeout; multinode_cpu: the same on CPUs."""
    torchrun_env(monkeypatch, rank=5, hosts=3, per_host=4)
    gpus = compose_cfg("trainer=multinode").trainer
    assert (gpus.accelerator, gpus.devices, gpus.num_nodes) == ("gpu", 4, 3)
    assert instantiate(gpus.strategy).__dict__["_timeout"] == timedelta(seconds=300)
    cpus = compose_cfg("trainer=multinode_cpu", "trainer.strategy.timeout.seconds=20").trainer
    assert (cpus.accelerator, cpus.devices, cpus.num_nodes) == ("cpu", 4, 3)
    assert strategy_name(cpus.strategy) == "ddp"
    assert instantiate(cpus.strategy).__dict__["_timeout"] == timedelta(seconds=20)


def test_a_rank_other_than_0_trains_without_a_run(compose_cfg, monkeypatch, tmp_path):
    """What rank 1 of 2 torchrun processes sees: plain DDP over torchrun's environment, and
    tracked_run gives it no run, opens no store and logs nothing; its peers' loss ends it
    in one line."""
    torchrun_env(monkeypatch, rank=1)
    keep_rank_zero(monkeypatch)
    cfg = compose_cfg("trainer=multinode_cpu", *TINY)
    check_environment(cfg)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert type(trainer.strategy) is DDPStrategy
    assert isinstance(trainer.strategy.cluster_environment, TorchElasticEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.num_nodes) == (2, 1, 2)
    with tracked_run(cfg, trainer, None, None, None) as run:
        assert (run.client, run.run_id, run.metrics()) == (None, None, {})
        assert isinstance(trainer.logger, DummyLogger)
    assert not (tmp_path / "mlflow.db").exists()
    gloo = RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection "
                        "closed by peer [127.0.0.1]:4242. This is typically caused by a remote "
                        "worker crashing.")
    with pytest.raises(RankLost) as err, tracked_run(cfg, trainer, None, None, None):
        raise gloo
    assert str(err.value).startswith("another of this training's 2 processes stopped "
                                     "answering (Connection closed by peer [127.0.0.1]:4242): "
                                     "training stopped; run the same command on every host, "
                                     f"with hydra.run.dir={tmp_path}/run, to continue")
    with pytest.raises(ValueError, match="its own"), tracked_run(cfg, trainer, None, None, None):
        raise ValueError("its own error")  # not the peers': as it is


def test_lost_peers_are_told_from_a_rank_s_own_errors():
    closed = RuntimeError("[/gloo/transport/tcp/pair.cc:553] Connection closed by peer [::1]:1")
    timed_out = RuntimeError("[/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
                             "300000ms for recv operation to complete")
    assert rank_lost(closed, 2) and rank_lost(timed_out, 8)
    for said in ("Timed out waiting 15000ms for send operation to complete",
                 "Application timeout caused pair closure", "Operation timed out!"):
        assert rank_lost(RuntimeError(said), 2), said  # gloo's words without its path
    assert rank_lost(torch.distributed.DistNetworkError("store gone"), 2)
    wrapped = ValueError("while saving")
    wrapped.__cause__ = closed
    assert rank_lost(wrapped, 2)
    assert not rank_lost(closed, 1)  # one process has no peers
    assert not rank_lost(RuntimeError("CUDA out of memory"), 2)
    assert not rank_lost(ValueError("Connection closed by peer"), 2)


def test_a_job_in_a_used_run_folder_continues_its_unfinished_run(compose_cfg, tmp_path):
    """The same command with the same hydra.run.dir: the folder's newest checkpoint that
    loads and the unfinished run that left it; once that run FINISHED, no run to continue."""
    cfg = compose_cfg(*TINY)
    uri = cfg.logger.tracking_uri
    open_store(uri)
    experiment = ensure_experiment(uri, "here", None)
    client = MlflowClient(uri)
    folder = Path(checkpoint_dir(cfg))
    assert run_in_this_folder(client, experiment, cfg) == (None, None)  # nothing there yet
    other = client.create_run(experiment, tags={"checkpoint_dir": str(tmp_path / "elsewhere")})
    killed = client.create_run(experiment, tags={"checkpoint_dir": str(folder)})
    client.set_terminated(killed.info.run_id, "KILLED")
    folder.mkdir(parents=True)
    torch.save({"state_dict": {}}, folder / "last.ckpt")
    (folder / "interrupted.ckpt").write_bytes(b"cut short")  # newer, damaged: set aside
    previous, checkpoint = run_in_this_folder(client, experiment, cfg)
    assert previous.info.run_id == killed.info.run_id != other.info.run_id
    assert checkpoint == str(folder / "last.ckpt")
    assert (folder / "interrupted.ckpt.damaged").exists()
    client.set_terminated(killed.info.run_id, "FINISHED")
    assert run_in_this_folder(client, experiment, cfg) == (None, str(folder / "last.ckpt"))
