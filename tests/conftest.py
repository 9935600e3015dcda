"""Fixtures and hooks only; what tests import lives in ``tests/helpers``."""

from __future__ import annotations

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from tests.helpers import compose_config

# Tiny models train fastest on one thread (two would fight the subprocesses tests start).
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Everything under ``tests/integration`` is an end-to-end test (``slow``); ``gpu``
    tests skip, with the reason, where CUDA is absent (``make test`` in CI)."""
    skip = pytest.mark.skip(reason=f"needs an NVIDIA GPU: CUDA is not available to torch "
                                   f"{torch.__version__} here (run them with make gpu-check)")
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)


@pytest.fixture
def compose_cfg(tmp_path):
    """compose_cfg(*overrides) -> the composed config, writing only under tmp_path."""
    yield lambda *overrides: compose_config(tmp_path, *overrides)
    GlobalHydra.instance().clear()
