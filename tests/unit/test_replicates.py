"""seeds=auto's plan (``pipeline/search/replicates.py``): which candidates get more seeds, how
many, and the grid it runs them on."""

from __future__ import annotations

import pytest

from pipeline import stats
from pipeline.config import ConfigError, validate
from pipeline.search.replicates import grid, plan_seeds

CLEARLY_BETTER = [0.90, 0.91, 0.92]
CLEARLY_WORSE = [0.50, 0.51, 0.52]
CLOSE = [0.89, 0.91, 0.93]  # 0.01 below CLEARLY_BETTER's mean, spread 0.02: about 30 seeds
NOISY_CLOSE = [0.84, 0.87, 0.90]  # 0.04 below, Welch p = 0.14: 7 seeds


def test_a_decided_comparison_gets_no_seeds():
    plan = plan_seeds({"best": CLEARLY_BETTER, "worse": CLEARLY_WORSE}, "max", max_seeds=10)
    assert plan.added == {} and plan.target == {"best": 3, "worse": 3}


def test_an_undecided_comparison_decidable_within_the_cap_raises_both_candidates():
    values = {"best": CLEARLY_BETTER, "close": NOISY_CLOSE, "worse": CLEARLY_WORSE}
    needed = stats.seeds_needed(CLEARLY_BETTER, NOISY_CLOSE, cap=10)
    assert needed is not None and 3 < needed <= 10
    plan = plan_seeds(values, "max", max_seeds=10)
    assert plan.target == {"best": needed, "close": needed, "worse": 3}
    assert plan.added == {"best": needed - 3, "close": needed - 3}


def test_a_comparison_that_needs_more_than_the_cap_gets_no_seeds():
    assert stats.seeds_needed(CLEARLY_BETTER, CLOSE, cap=10) is None
    assert plan_seeds({"best": CLEARLY_BETTER, "close": CLOSE}, "max", max_seeds=10).added == {}


def test_min_effect_plans_for_that_difference_and_min_picks_the_lowest():
    losses = {"low": [1.00, 1.02, 1.04], "high": [1.01, 1.03, 1.05]}
    needed = stats.seeds_needed(losses["low"], losses["high"], min_effect=0.04, cap=10)
    plan = plan_seeds(losses, "min", max_seeds=10, min_effect=0.04)
    assert plan.target == {"low": needed, "high": needed} and needed > 3
    assert plan_seeds(losses, "min", max_seeds=10).added == {}  # 0.01 observed: out of reach


def test_a_candidate_without_finished_replicates_is_left_out():
    plan = plan_seeds({"best": CLEARLY_BETTER, "failed": []}, "max", max_seeds=10)
    assert plan.added == {}


def test_the_grid_is_every_combination_of_the_swept_values():
    assert grid(["model.depth=1,2", "optimizer.lr=0.1,0.2", "seeds=auto"]) == [
        ["model.depth=1", "optimizer.lr=0.1", "seeds=auto"],
        ["model.depth=1", "optimizer.lr=0.2", "seeds=auto"],
        ["model.depth=2", "optimizer.lr=0.1", "seeds=auto"],
        ["model.depth=2", "optimizer.lr=0.2", "seeds=auto"]]
    with pytest.raises(ValueError, match="lists of values"):
        grid(["optimizer.lr=interval(0.1, 0.2)"])


def test_seeds_auto_outside_the_replicates_sweeper_is_refused(compose_cfg):
    with pytest.raises(ConfigError, match="or auto in a grid sweep with "
                                          "hydra/sweeper=replicates"):
        validate(compose_cfg("seeds=auto"))


@pytest.mark.parametrize("sweeper, refused", [
    ({"_target_": "hydra_plugins.seq2seq_sweeper.replicates_sweeper.ReplicatesSweeper",
      "start": 3, "max_seeds": 10, "params": None}, False),
    ({"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
      "max_batch_size": None, "params": None}, True),
    ({"_target_": "hydra_plugins.seq2seq_sweeper.replicates_sweeper.ReplicatesSweeper",
      "start": 3, "max_seeds": 10, "params": None, "sampler": {}}, True),  # Optuna's merged
])
def test_seeds_auto_is_refused_before_a_sweep_that_cannot_plan_it(sweeper, refused):
    from omegaconf import OmegaConf

    from pipeline.tracking.sweep_callback import check_auto_seeds

    config = OmegaConf.create({"seeds": "auto", "hydra": {"sweeper": sweeper}})
    if refused:
        with pytest.raises(SystemExit) as stop:
            check_auto_seeds(config)
        assert stop.value.code == 2
    else:
        check_auto_seeds(config)
    check_auto_seeds(OmegaConf.create({"seeds": 3, "hydra": {"sweeper": sweeper}}))
