"""MLflow glue that must hold up under parallel jobs."""

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from pipeline.tracking.artifacts import log_datasets

UNIQUE_VIOLATION = ('(psycopg2.errors.UniqueViolation) duplicate key value violates unique '
                    'constraint "dataset_pk" DETAIL: Key (...)=(1, reverse-train, 3dd4) '
                    'already exists.')


class RacingClient:
    """Fails ``log_inputs`` as MLflow on PostgreSQL does when another job inserted the same
    dataset first, ``failures`` times, then records the call."""

    def __init__(self, failures: int, message: str = UNIQUE_VIOLATION):
        self.failures, self.message, self.logged = failures, message, []

    def log_inputs(self, run_id, datasets):
        if self.failures:
            self.failures -= 1
            raise MlflowException(self.message)
        self.logged.append((run_id, [d.dataset.name for d in datasets]))


SPLITS = {"train": (np.zeros((4, 3)), np.ones((4, 2))), "val": (np.zeros((2, 3)), np.ones((2, 2)))}


def test_a_dataset_inserted_by_a_parallel_job_is_linked_on_the_next_attempt():
    client = RacingClient(failures=1)
    log_datasets(client, "run", "reverse", SPLITS)
    assert client.logged == [("run", ["reverse-train", "reverse-val"])]


def test_other_errors_and_a_persistent_race_still_raise():
    with pytest.raises(MlflowException, match="permission denied"):
        log_datasets(RacingClient(1, "permission denied"), "run", "reverse", SPLITS)
    with pytest.raises(MlflowException, match="already exists"):
        log_datasets(RacingClient(3), "run", "reverse", SPLITS)


def test_band_gives_each_key_its_mean_and_interval_and_a_lone_value_no_spread():
    from pipeline.tracking.sweep_report import band

    table = band({1: [0.5, 0.7, 0.6], 2: [0.9], 3: [0.8, np.nan, 0.8]})
    assert list(table.index) == [1, 2, 3]
    assert table.loc[1, "mean"] == pytest.approx(0.6)
    # Student t, 2 degrees of freedom: 0.6 +/- 4.303 * 0.1 / sqrt(3)
    assert table.loc[1, "high"] - 0.6 == pytest.approx(4.3027 * 0.1 / np.sqrt(3), rel=1e-4)
    assert table.loc[2].tolist() == [0.9, 0.9, 0.9]
    assert table.loc[3].tolist() == pytest.approx([0.8, 0.8, 0.8])  # NaN left out


def test_candidates_are_scored_at_the_checkpoint_that_was_tested():
    """A run that peaked at epoch 3 and ended lower counts with its best checkpoint's
    validation score (the weights its test metrics come from); a run without
    ``best/<monitor>`` counts with its last value."""
    from types import SimpleNamespace

    from pipeline.tracking.sweep_report import Candidate

    def run(**metrics):
        return SimpleNamespace(info=SimpleNamespace(status="FINISHED"),
                               data=SimpleNamespace(metrics=metrics))

    candidate = Candidate("c", [run(**{"val/seq_acc": 0.80, "best/val/seq_acc": 0.95,
                                       "test/seq_acc": 0.9}),
                                run(**{"val/seq_acc": 0.70})])
    assert candidate.values("val/seq_acc") == [0.95, 0.70]
    assert candidate.values("test/seq_acc") == [0.9]


def test_runs_group_by_candidate():
    """Replicates share the ``candidate`` tag; an untagged run stands alone."""
    from types import SimpleNamespace

    from pipeline.tracking.sweep_report import candidates_of

    def run(run_id, **tags):
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id, run_name=run_id,
                                                    status="FINISHED"),
                               data=SimpleNamespace(tags=tags, metrics={}))

    runs = [run("a", candidate="h1", candidate_name="model.depth=1"),
            run("b", candidate="h1", candidate_name="model.depth=1"),
            run("c", candidate="h2", candidate_name="model.depth=2"),
            run("d", candidate="h2", candidate_name="model.depth=2"),
            run("e")]
    grouped = {c.name: [r.info.run_id for r in c.runs] for c in candidates_of(runs)}
    assert grouped == {"model.depth=1": ["a", "b"], "model.depth=2": ["c", "d"], "e": ["e"]}


def test_sweep_statistics_rank_compare_and_say_it_in_words():
    """Best candidate first; the columns of its comparison with each other; a candidate far
    behind is beaten, a close one does not differ, one replicate gets no Welch test."""
    from types import SimpleNamespace

    import numpy as np

    from pipeline.stats import seeds_needed
    from pipeline.tracking.sweep_report import candidates_of, statistics

    class NoArtifacts:  # no per-example scores: Welch's test only
        def download_artifacts(self, *args):
            raise OSError("none")

    def run(run_id, name, value):
        return SimpleNamespace(
            info=SimpleNamespace(run_id=run_id, run_name=run_id, status="FINISHED"),
            data=SimpleNamespace(tags={"candidate": name, "candidate_name": name},
                                 metrics={"val/seq_acc": value, "test/seq_acc": value - 0.01}))

    scores = {"a": [0.9, 0.92, 0.91], "b": [0.5, 0.55, 0.52], "c": [0.91, 0.9, 0.93],
              "d": [0.7]}
    runs = [run(f"{n}{i}", n, v) for n, vs in scores.items() for i, v in enumerate(vs)]
    table, words = statistics(NoArtifacts(), candidates_of(runs), "val/seq_acc", "max")
    assert list(table.candidate) == ["c", "a", "d", "b"]
    assert np.isnan(table["p welch holm"][0]) and table["p welch holm"][3] < 0.05
    assert table["vs best: diff"][3] < 0
    assert list(table["vs best: beaten"]) == [False, False, False, True]  # as the words say
    assert "- c beats b by 39.0 +/- 5.1 points on test/seq_acc" in words
    assert "- a and c do not differ significantly" in words
    assert "- d and c do not differ significantly on test/seq_acc (one replicate" in words
    # the power: the beaten candidate's test had it, the close one says how many seeds would
    # tell, the one with a single replicate has no estimate
    (beaten,) = [ln for ln in words.splitlines() if ln.startswith("- c beats b")]
    assert "; power 1.00 at the observed difference)" in beaten
    (close,) = [ln for ln in words.splitlines() if ln.startswith("- a and c")]
    needed = seeds_needed([v - 0.01 for v in scores["c"]], [v - 0.01 for v in scores["a"]])
    assert needed > 3
    assert (f"about {needed} seeds per candidate would detect a difference of 0.33 points "
            "with 80 % power") in close
    (single,) = [ln for ln in words.splitlines() if ln.startswith("- d and c")]
    assert "one replicate: no power estimate" in single


def test_the_paired_test_says_which_per_example_score_it_compared(tmp_path):
    """Runs that monitored chrF logged each example's sentence chrF: the words say so."""
    import json
    from types import SimpleNamespace

    from pipeline.tracking.sweep_report import candidates_of, statistics

    rows = {"a": [0.9, 0.8, 0.95, 0.7] * 10, "b": [0.2, 0.3, 0.1, 0.25] * 10}

    class Examples:
        def download_artifacts(self, run_id, name, folder):
            path = tmp_path / f"{run_id}.json"
            scores = rows[run_id[0]]
            path.write_text(json.dumps({"columns": ["index", "score"],
                                        "data": [[i, s] for i, s in enumerate(scores)]}))
            return str(path)

    def run(run_id, value):
        tags = {"candidate": run_id[0], "candidate_name": run_id[0], "example_score": "chrf"}
        return SimpleNamespace(
            info=SimpleNamespace(run_id=run_id, run_name=run_id, status="FINISHED"),
            data=SimpleNamespace(tags=tags, metrics={"val/chrf": value, "test/chrf": value}))

    runs = [run("a0", 80.0), run("a1", 82.0), run("b0", 20.0), run("b1", 25.0)]
    _, words = statistics(Examples(), candidates_of(runs), "val/chrf", "max")
    assert "- a beats b by 58.5" in words and " points on test/chrf" in words
    assert "paired over test examples' sentence chrF p" in words


def test_the_printed_links_open_the_ui_in_its_model_training_mode():
    """A tracking server is its own UI, a local store's is `make ui`'s; every link names
    the model-training mode (the UI's own run links drop it: GenAI unless told)."""
    from pipeline.tracking.store import experiment_link, run_link, run_where, ui_base

    assert ui_base("http://mlflow.lan:5000/") == "http://mlflow.lan:5000"
    assert ui_base("https://mlflow.example.org") == "https://mlflow.example.org"
    assert ui_base("sqlite:////work/outputs/mlflow.db") == "http://127.0.0.1:5000"
    assert ui_base("sqlite:///x.db", default="http://127.0.0.1:5001") == "http://127.0.0.1:5001"
    assert run_link("http://127.0.0.1:5000/", "3", "abc") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning")
    assert experiment_link("http://127.0.0.1:5000", "3") == (
        "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning")
    assert run_where("sqlite:///x.db", "3", "abc") == (
        "abc  http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
        "  (make ui)")
    assert run_where("http://mlflow.lan:5000", "3", "abc") == (
        "abc  http://mlflow.lan:5000/#/experiments/3/runs/abc?workflowType=machine_learning")


def test_the_ensemble_is_made_only_where_switched_on():
    from pipeline.tracking.sweep_callback import MLflowSweepCallback

    off = MLflowSweepCallback("sqlite:///x.db", "e", None, ensemble=False)
    assert off._ensembler() is None
    on = MLflowSweepCallback("sqlite:///x.db", "e", None, ensemble={
        "_target_": "pipeline.ensemble.EnsembleChampion", "top": 2})
    assert on._ensembler().top == 2
