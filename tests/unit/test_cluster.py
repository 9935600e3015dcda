"""The SLURM setup, checked without a cluster: the sbatch script the submitit launcher would
submit, and the DDP ranks Lightning derives from the environment SLURM gives each task."""

import submitit
from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, RunMode
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.strategies import DDPStrategy
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only

from pipeline.build import check_environment
from tests.helpers import CONF


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
