"""Bad values fail in one line before a run exists; good ones train. Generated, not listed:
every numeric setting of the model, data, optimizer, trainer, eval and accel groups is set to
-1, 0 and a huge value, and every string setting to a wrong one."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from mlflow import MlflowClient
from omegaconf import OmegaConf

from pipeline.build import build, settle
from pipeline.errors import ConfigError
from pipeline.train import train
from tests.helpers import TINY, run_cli

pytestmark = pytest.mark.slow

GROUPS = ("model", "data", "optimizer", "trainer", "eval", "accel")
HUGE = 10**9
# Settings that only place outputs: not choices, no wrong value for them to test.
PLACES = ("trainer.default_root_dir", "data.cache_dir")
# Bounded training for the values that pass: they must still train, but not for long.
BOUNDED = ["+trainer.max_steps=2"]


def settings(cfg) -> tuple[list[str], list[str]]:
    """(numeric keys, string keys) of ``GROUPS`` in the default config, plus the monitor."""
    numeric, strings = [], ["monitor", "monitor_mode"]
    for group in GROUPS:
        tree = OmegaConf.to_container(cfg[group], resolve=False)

        def walk(node, prefix):
            for key, value in node.items():
                path = f"{prefix}.{key}"
                if isinstance(value, dict):
                    walk(value, path)
                elif isinstance(value, bool) or value is None or path in PLACES:
                    continue
                elif isinstance(value, int | float):
                    numeric.append(path)
                elif isinstance(value, str) and not value.startswith("${"):
                    strings.append(path)

        walk(tree, group)
    return numeric, strings


def cases(compose) -> list[str]:
    numeric, strings = settings(compose(*TINY))
    out = [f"{key}={value}" for key in numeric for value in (-1, 0, HUGE)]
    return out + [f"{key}=no-such-{key.rsplit('.', 1)[-1]}" for key in strings]


def test_every_bad_value_fails_in_one_line_before_a_run_and_the_good_ones_train(
        compose_cfg, tmp_path):
    store = tmp_path / "mlflow.db"

    def runs() -> int:
        if not store.exists():
            return 0
        client = MlflowClient(f"sqlite:///{store}")
        return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))

    generated = cases(compose_cfg)
    assert len(generated) > 60
    refused, trained = {}, []
    for override in generated:
        key = override.partition("=")[0]
        try:
            cfg = compose_cfg(*TINY, override)
        except ConfigCompositionException as err:  # Hydra's own check of types and enums
            assert key.rsplit(".", 1)[-1] in str(err) + str(err.__cause__), override
            refused[override] = "composition"
            continue
        before = runs()
        try:
            settle(cfg)
            build(cfg)
        except ConfigError as err:
            message = str(err)
            assert "\n" not in message and key in message and "is invalid" in message, (
                override, message)
            assert runs() == before and (before or not store.exists()), override
            refused[override] = message
            continue
        cfg = compose_cfg(*TINY, override, *BOUNDED)
        metrics = train(cfg)
        assert metrics, override
        trained.append(override)
    client = MlflowClient(f"sqlite:///{store}")
    finished = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(finished) == len(trained) and all(r.info.status == "FINISHED" for r in finished)
    assert len(refused) > 30 and len(trained) > 10, (len(refused), trained)
    for expected in ("optimizer.lr=-1", "trainer.devices=0", "trainer.max_epochs=0",
                     "data.train_size=1000000000", "model.depth=1000000000",
                     "monitor=no-such-monitor", "trainer.precision=no-such-precision"):
        assert expected in refused, expected


@pytest.mark.parametrize("override", ["optimizer.lr=-0.1", "trainer.precision=77",
                                      "model.hidden_dim=1000000000", "monitor_mode=up"])
def test_the_command_line_says_it_in_one_line_and_leaves_nothing(tmp_path, override):
    result = run_cli(*TINY, override, output_dir=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if "is invalid" in ln]
    assert len(lines) == 1 and override.partition("=")[0] in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "runs").exists()  # not even Hydra's run folder
    assert result.stdout == ""  # errors go to stderr
