"""How a run is named and identified: flattened params, the config hash, run names, and the
parsing of Hydra overrides they are built from."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pipeline.tracking.handoff import sweep_info

MAX_PARAM_LENGTH = 6000
SECRET = re.compile(r"pass(word|wd)?|secret|token|api_?key|credential", re.IGNORECASE)
# Overrides that say where results go, not what is trained: left out of run names.
_INFRA_PREFIXES = ("logger.", "paths.", "hydra.", "trainer.enable_", "hparams_search")
# Flattened keys that only place or show outputs (or resume a sweep): left out of the config
# hash, with every callback's dirpath.
_PLACEMENT_KEYS = ("paths.", "logger.", "tags", "trainer.default_root_dir", "data.cache_dir",
                   "sweep_id", "trainer.enable_progress_bar", "trainer.enable_model_summary",
                   "seeds")


def flatten(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as {override path: value}, e.g. ``{"model.depth": "2"}``; values
    of keys that look like secrets (password, token, ...) are masked."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = json.dumps(node) if isinstance(node, list | dict) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
    return {k: "***" if SECRET.search(k.rsplit(".", 1)[-1]) else v[:MAX_PARAM_LENGTH]
            for k, v in flat.items()}


def config_hash(cfg: DictConfig, without: tuple[str, ...] = ()) -> str:
    """A digest of everything that decides the result (not where outputs go, nor how many
    replicates there are): runs with the same hash should agree, and a resumed sweep finds
    earlier attempts by it. ``without``: keys left out as well."""
    flat = {k: v for k, v in flatten(cfg).items() if not k.startswith(_PLACEMENT_KEYS)
            and not (k.startswith("callbacks.") and k.endswith(".dirpath")) and k not in without}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def candidate_hash(cfg: DictConfig) -> str:
    """The hash of a run's candidate (one configuration a sweep compares): its configuration
    but the seed, shared by its replicates."""
    return config_hash(cfg, without=("seed",))


def variant_name(model: DictConfig) -> str:
    """A short readable name of a model config, e.g. ``seq2seq-lstm-d2-peek-additive``."""
    depth = model.depth
    depth = f"d{depth}" if isinstance(depth, int) else f"d{depth[0]}x{depth[1]}"
    family = "simple" if not model.feedback else "seq2seq"
    parts = [family, str(model.cell), depth]
    if model.bidirectional:
        parts.append("bi")
    if not model.bridge and model.feedback:
        parts.append("nobridge")
    if model.peek:
        parts.append("peek")
    if str(model.attention) != "none":
        parts.append(str(model.attention))
    return "-".join(parts)


def override_key(override: str) -> str:
    """``+model.depth=2`` -> ``model.depth``."""
    return override.lstrip("+~").partition("=")[0]


def override_values(overrides: list[str]) -> dict[str, str]:
    """``["+model.depth=1,2", "model=cho"]`` -> ``{"model.depth": "1,2", "model": "cho"}``."""
    return {override_key(o): o.partition("=")[2] for o in overrides}


def task_overrides() -> list[str]:
    """The command-line overrides of this job (sweep values included)."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def candidate_name(cfg: DictConfig) -> str:
    """The overrides the sweep varies (in a sweep), or those that change what is trained;
    the variant's name when there are none. Replicates share it."""
    info = sweep_info()
    swept = [k for k in (info.swept if info else []) if k != "seed"]
    wanted = [
        o for o in task_overrides()
        if (override_key(o) in swept if swept
            else not override_key(o).startswith(_INFRA_PREFIXES) and override_key(o)
            not in ("seed", "seeds"))
    ]
    return " ".join(wanted)[:250] if wanted else variant_name(cfg.model)


def run_name(cfg: DictConfig) -> str:
    """The candidate's name, and the seed where the candidate has replicates."""
    name = candidate_name(cfg)
    return f"{name} seed={cfg.seed}" if cfg.get("seeds", 1) > 1 else name
