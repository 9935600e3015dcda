"""Every configuration the GPU paths compose (the ``gpu`` tests, the GPU bench, the README's
GPU commands) composes and validates here, on a CPU: a renamed or removed key fails in CI,
not on the next GPU machine. Only the machine checks (a GPU present) are left out."""

from __future__ import annotations

import itertools

import pytest

from bench.gpu import g2p_overrides
from pipeline.config import validate
from tests.helpers.gpu_runs import GPU_DDP, GPU_MULTIRUN, GPU_TRAININGS

COMMANDS = {
    **{f"gpu test {name}": overrides for name, overrides in GPU_TRAININGS.items()},
    "gpu test multirun": GPU_MULTIRUN,
    "gpu test ddp": GPU_DDP,
    "bench g2p eager": g2p_overrides(cuda_graphs=False),
    "bench g2p graphs": g2p_overrides(cuda_graphs=True),
    "README one GPU": ["trainer=gpu", "trainer.precision=bf16-mixed"],
    "README every GPU": ["trainer=ddp", "trainer.precision=bf16-mixed"],
    "README GPU sweep": ["-m", "hparams_search=grid", "trainer=ddp"],
    "README SLURM ranks": ["-m", "hparams_search=grid", "trainer=slurm"],
}


def jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs of a command line: ``-m`` dropped, each ``key=a,b`` expanded (a sweep's own
    parameters come from its hparams_search file and are composed with their defaults)."""
    choices = [[f"{o.partition('=')[0]}={v}" for v in o.partition("=")[2].split(",")]
               if "," in o and "[" not in o else [o] for o in overrides if o != "-m"]
    return [list(job) for job in itertools.product(*choices)]


@pytest.mark.parametrize("name", COMMANDS)
def test_gpu_command_composes_and_validates_on_a_cpu(compose_cfg, name):
    for overrides in jobs(COMMANDS[name]):
        cfg = compose_cfg(*overrides)
        validate(cfg)
        if any(o.startswith("trainer=gpu") for o in overrides):
            assert cfg.trainer.accelerator in ("gpu", "cuda")


def test_a_removed_key_fails_the_dry_run(compose_cfg):
    """An override of a key the config does not have fails the dry run."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose_cfg("trainer=gpu", "callbacks.model_checkpoint.save_last=false")
