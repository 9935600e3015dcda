"""What tests import: paths, the tiny-run overrides, composing a config, running the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[2]
CONF = str(ROOT / "conf")
TINY = ["debug=fast", "data.max_len=5", "data.vocab_size=6"]


def compose_config(folder: Path, *overrides: str) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, writing only under ``folder``, as the app
    sees it (Hydra's config set, the task function without the hydra node)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"paths.output_dir={folder}", f"paths.run_dir={folder}/run", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def run_cli(*args: str, output_dir: Path, timeout: int = 300, env: dict | None = None):
    """Run ``python -m pipeline.train ARGS`` as a user would, into ``output_dir``."""
    full_env = {**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(output_dir), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.train", *args], cwd=ROOT, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
