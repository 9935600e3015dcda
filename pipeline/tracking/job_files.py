"""Hydra's own files of a job (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``),
written atomically and without stopping a sweep when the disk is full.

Hydra writes them itself with a plain ``open``: on a full disk a truncated file and an
exception that ends the whole multirun in a traceback. ``conf/hydra/default.yaml`` turns
that off (``output_subdir: null``) and this callback writes the same three files as each job
starts, each whole or not at all; on a full disk it logs one line and the job goes on to
fail at its own first write, in one line as well.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from pipeline.errors import DiskFull
from pipeline.files import write_text

log = logging.getLogger(__name__)
SUBDIR = ".hydra"


class HydraJobFiles(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(config.hydra.runtime.output_dir) / SUBDIR
        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        files = {"config.yaml": task, "hydra.yaml": HydraConfig.instance().cfg,
                 "overrides.yaml": config.hydra.overrides.task}
        try:
            for name, cfg in files.items():
                write_text(folder / name, OmegaConf.to_yaml(cfg))
        except DiskFull as err:
            log.error("%s (Hydra's record of this job's config)", err)
