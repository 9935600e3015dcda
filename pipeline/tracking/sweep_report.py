"""The sweep parent's report: statistics over each candidate's replicates, plots, the
champion.

A candidate is one configuration of the sweep (the ``candidate`` tag its replicates share;
stores written before that name hold it as ``cell``). Candidates are ranked by the mean of
the monitored (validation) metric at each run's best checkpoint, the weights its test scores
come from (``best/<monitor>``); the best is compared with every other on the test metric,
by Welch's t-test over the replicates and, with every test example's score logged, by a
paired permutation test over the examples, Holm-corrected (``pipeline/stats.py``). Written
to the parent: ``summary.csv`` (one row per candidate), ``summary.md`` (the table and the
comparisons in words), ``runs.csv`` (one row per run), ``plots/`` (the grid with intervals,
accuracy by length and validation curves with bands) and ``best/...`` metrics; the best
candidate's replicate with the best validation score is registered as the ``champion``.
Candidates a search pruned (runs tagged ``pruned``) are listed as such, outside the
statistics.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

from pipeline import stats
from pipeline.tracking import champion, plots
from pipeline.tracking.artifacts import TEST_EXAMPLES

ALPHA = 0.05


@dataclass
class Candidate:
    """One configuration and its replicates."""

    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def pruned(self) -> list[Run]:
        """Its runs that a search's pruner stopped (tag ``pruned``: the epoch)."""
        return [r for r in self.runs if "pruned" in r.data.tags]

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.info.status == "FINISHED"]

    def values(self, metric: str) -> list[float]:
        """``metric`` of each finished replicate: at its best checkpoint where the run logged
        that (``best/<monitor>``), else its last value."""
        scores = (champion.at_best(r, metric) for r in self.finished)
        return [s for s in scores if s is not None]


def candidate_tags(run: Run) -> tuple[str | None, str | None]:
    """A run's candidate hash and name: the ``candidate`` and ``candidate_name`` tags, or
    ``cell`` and ``cell_name`` where an older store holds them."""
    tags = run.data.tags
    return (tags.get("candidate") or tags.get("cell"),
            tags.get("candidate_name") or tags.get("cell_name"))


def candidates_of(runs: list[Run]) -> list[Candidate]:
    """The runs grouped by their candidate tag (a run without one is its own candidate)."""
    candidates: dict[str, Candidate] = {}
    for run in runs:
        key, name = candidate_tags(run)
        key = key or run.info.run_id
        candidates.setdefault(key, Candidate(name or run.info.run_name))
        candidates[key].runs.append(run)
    return list(candidates.values())


def run_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: candidate, overrides, status, val/test metrics."""
    rows = []
    for run in runs:
        row = {"run": run.info.run_name, "run_id": run.info.run_id,
               "candidate": candidate_tags(run)[1] or "",
               "status": "PRUNED" if "pruned" in run.data.tags else run.info.status,
               "overrides": run.data.tags.get("overrides", "")}
        row.update({k: v for k, v in sorted(run.data.metrics.items())
                    if k.startswith(("val/", "test/"))})
        rows.append(row)
    return pd.DataFrame(rows)


def example_scores(client: MlflowClient, run: Run) -> pd.Series | None:
    """A run's per-example test scores by example index, where it logged them."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run.info.run_id, TEST_EXAMPLES, tmp)
            table = json.loads(Path(path).read_text())
    except Exception:  # an older run, or one without a test
        return None
    frame = pd.DataFrame(table["data"], columns=table["columns"])
    return frame.set_index("index")["score"].sort_index()


def candidate_examples(client: MlflowClient, candidate: Candidate) -> pd.Series | None:
    """Each test example's score averaged over the candidate's replicates."""
    scores = [s for s in (example_scores(client, r) for r in candidate.finished)
              if s is not None]
    return pd.concat(scores, axis=1).mean(axis=1) if scores else None


def summary_table(candidates: list[Candidate], metric: str, mode: str
                  ) -> tuple[pd.DataFrame, list[Candidate]]:
    """One row per candidate (n, status, and the mean, std and interval of ``metric`` and of
    every test metric), best first by the mean of ``metric``; the candidates in that order."""
    names = sorted({k for c in candidates for r in c.finished for k in r.data.metrics
                    if k.startswith("test/") and "/len_" not in k} | {metric})
    rows = []
    for candidate in candidates:
        done = len(candidate.finished)
        row = {"candidate": candidate.name, "n": done, "replicates": len(candidate.runs),
               "status": "FINISHED" if done == len(candidate.runs) else "FAILED"}
        for name in names:
            s = stats.summarise(candidate.values(name))
            row.update({name: s.mean, f"{name} std": s.std, f"{name} ci_low": s.low,
                        f"{name} ci_high": s.high})
        rows.append(row)
    table = pd.DataFrame(rows)
    order = table[metric].fillna(-np.inf if mode == "max" else np.inf)
    ranking = order.sort_values(ascending=mode == "min", kind="stable").index
    return table.loc[ranking].reset_index(drop=True), [candidates[i] for i in ranking]


@dataclass
class Comparison:
    """The best candidate against another on one test metric: the difference (Welch) and
    the Holm-corrected p-values over the replicates and, paired, over the test examples."""

    other: Candidate
    diff: stats.Difference
    p_welch: float
    p_paired: float
    p_welch_holm: float = np.nan
    p_paired_holm: float = np.nan


def compare(client: MlflowClient, ranked: list[Candidate], test_metric: str
            ) -> list[Comparison]:
    """The best (first) of ``ranked`` against each other, Holm-corrected over them."""
    best = ranked[0]
    best_examples = candidate_examples(client, best)
    comparisons = []
    for other in ranked[1:]:
        other_examples = candidate_examples(client, other)
        same = (best_examples is not None and other_examples is not None
                and best_examples.index.equals(other_examples.index))
        diff = stats.welch(best.values(test_metric), other.values(test_metric))
        paired = stats.paired_permutation(best_examples, other_examples) if same else np.nan
        comparisons.append(Comparison(other, diff, p_welch=diff.p, p_paired=paired))
    welch_holm = stats.holm([c.p_welch for c in comparisons])
    paired_holm = stats.holm([c.p_paired for c in comparisons])
    for c, pw, pp in zip(comparisons, welch_holm, paired_holm, strict=True):
        c.p_welch_holm, c.p_paired_holm = pw, pp
    return comparisons


def with_comparisons(table: pd.DataFrame, comparisons: list[Comparison]) -> pd.DataFrame:
    """``table`` (best first) with the columns of each row's comparison with the best."""
    def column(value) -> list[float]:
        return [np.nan, *(value(c) for c in comparisons)]

    table["vs best: diff"] = column(lambda c: -c.diff.diff)
    table["vs best: ci_low"] = column(lambda c: -c.diff.high)
    table["vs best: ci_high"] = column(lambda c: -c.diff.low)
    table["p welch"] = column(lambda c: c.p_welch)
    table["p welch holm"] = column(lambda c: c.p_welch_holm)
    table["p paired"] = column(lambda c: c.p_paired)
    table["p paired holm"] = column(lambda c: c.p_paired_holm)
    return table


# What a run's per-example test scores are (its ``example_score`` tag; older runs: exact).
EXAMPLE_SCORES = {None: "exact match", "exact": "exact match", "chrf": "sentence chrF",
                  "squared_error": "squared error"}


def in_words(best: Candidate, comparisons: list[Comparison], metric: str, test_metric: str,
             mode: str) -> str:
    """The comparisons as sentences: who beats whom by how much, or that they do not
    differ significantly, with the evidence."""
    better = 1 if mode == "max" else -1
    scale, unit = ((100, " points") if test_metric.endswith(("acc", "wer", "per", "cer"))
                   else (1, " points") if test_metric.endswith(("bleu", "chrf")) else (1, ""))
    kind = EXAMPLE_SCORES.get(next((r.data.tags.get("example_score") for r in best.finished),
                                   None), "score")
    lines = []
    for c in comparisons:
        p, p_paired, d = c.p_welch_holm, c.p_paired_holm, c.diff
        evidence = "; ".join(
            [f"Welch {stats.p_text(p)}" if np.isfinite(p) else "one replicate: no Welch test"]
            + ([f"paired over test examples' {kind} {stats.p_text(p_paired)}"]
               if np.isfinite(p_paired) else []))
        significant = (np.isfinite(p) and p < ALPHA) or (np.isfinite(p_paired)
                                                          and p_paired < ALPHA)
        if significant and better * d.diff > 0:
            margin = (f" +/- {d.half_width * scale:.1f}" if np.isfinite(d.half_width)
                      else "")
            lines.append(f"- {best.name} beats {c.other.name} by {abs(d.diff) * scale:.1f}"
                         f"{margin}{unit} on {test_metric} ({evidence}).")
        else:
            lines.append(f"- {c.other.name} and {best.name} do not differ significantly on "
                         f"{test_metric} ({evidence}).")
    head = (f"Candidates ranked by mean {metric} over their replicates (95 % Student-t "
            f"intervals); the best against each other candidate, Holm-corrected for "
            f"{len(comparisons)} comparisons:")
    return "\n".join([head, *lines])


def statistics(client: MlflowClient, candidates: list[Candidate], metric: str, mode: str
               ) -> tuple[pd.DataFrame, str]:
    """The per-candidate table, best candidate first, with the comparisons of the best
    against each other candidate on the test counterpart of ``metric``; and those
    comparisons in words."""
    test_metric = metric.replace("val/", "test/")
    table, ranked = summary_table(candidates, metric, mode)
    if len(ranked) < 2 or test_metric not in table:
        return table, ""
    comparisons = compare(client, ranked, test_metric)
    return (with_comparisons(table, comparisons),
            in_words(ranked[0], comparisons, metric, test_metric, mode))


def with_pruned(table: pd.DataFrame, pruned: list[Candidate]) -> pd.DataFrame:
    """``table`` with a row per pruned candidate at the end: status ``PRUNED (epoch N)``, no
    scores (they are in its run, curve included), in no comparison."""
    rows = [{"candidate": c.name, "n": 0, "replicates": len(c.runs),
             "status": f"PRUNED (epoch {c.pruned[0].data.tags['pruned']})"} for c in pruned]
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True) if rows else table


def readable(table: pd.DataFrame, metric: str) -> str:
    """The per-candidate table for people: mean +/- interval half-width per metric, and the
    Holm-corrected p-values of the comparison with the best candidate."""
    if not len(table):
        return "no runs"
    metrics = [m for m in [metric] + [c for c in table.columns if c.startswith("test/")
                                      and " " not in c and c != metric]
               if f"{m} ci_high" in table]
    shown = table[["candidate", "n", "status"]].copy()
    for m in metrics:
        half = (table[f"{m} ci_high"] - table[f"{m} ci_low"]) / 2
        shown[m] = ["" if not np.isfinite(v) else f"{v:.3f}" + (
            f" ± {h:.3f}" if np.isfinite(h) else "") for v, h in zip(table[m], half, strict=True)]
    for column in ("p welch holm", "p paired holm"):
        if column in table:
            shown[column] = ["" if not np.isfinite(p) else stats.p_text(p)
                             for p in table[column]]
    return shown.to_markdown(index=False)


def band(samples: dict) -> pd.DataFrame:
    """Per key (a length bucket, an epoch): the mean of its values and the 95 % interval
    (the mean alone where there is one value), one row each."""
    rows = {key: stats.summarise(values) for key, values in samples.items()}
    return pd.DataFrame({"mean": [s.mean for s in rows.values()],
                         "low": [s.low if s.n > 1 else s.mean for s in rows.values()],
                         "high": [s.high if s.n > 1 else s.mean for s in rows.values()]},
                        index=list(rows))


def log_plots(client: MlflowClient, parent_id: str, candidates: list[Candidate],
              table: pd.DataFrame, metric: str) -> None:
    """``plots/grid.png``, ``plots/accuracy_by_length.png`` and ``plots/curves.png``."""
    figures = {"plots/grid.png": plots.grid_bars(
        list(table.candidate), table[metric], table[f"{metric} ci_low"], table[f"{metric} ci_high"],
        metric)}
    by_length, curves = {}, {}
    for candidate in candidates:
        buckets = defaultdict(list)
        for run in candidate.finished:
            for bucket, value in plots.bucket_curves(run.data.metrics).items():
                buckets[bucket].append(value)
        if buckets:
            by_length[candidate.name] = band(dict(sorted(buckets.items())))
        epochs = defaultdict(list)  # runs stopped early leave their later epochs out
        for run in candidate.finished:
            history = sorted(client.get_metric_history(run.info.run_id, metric),
                             key=lambda m: m.step)
            for i, m in enumerate(history):
                epochs[i + 1].append(m.value)
        if epochs:
            curves[candidate.name] = band(epochs)
    if by_length:
        figures["plots/accuracy_by_length.png"] = plots.accuracy_by_length(by_length)
    if curves:
        figures["plots/curves.png"] = plots.curves_with_bands(curves, metric)
    for path, fig in figures.items():
        client.log_figure(parent_id, fig, path)
        plots.plt.close(fig)


def report(tracking_uri: str, parent_id: str, experiment_name: str, runs: list[Run],
           sweep_dir: Path) -> pd.DataFrame:
    """Write and log the summary and the plots, the best candidate's means as ``best/...``, and
    register the champion. Returns the per-candidate table."""
    client = MlflowClient(tracking_uri)
    tags = runs[0].data.tags if runs else {}
    metric, mode = tags.get("monitor", "val/seq_acc"), tags.get("monitor_mode", "max")
    every = candidates_of(runs)
    candidates = [c for c in every if not c.pruned]
    pruned = [c for c in every if c.pruned]
    table, words = (statistics(client, candidates, metric, mode) if candidates
                    else (pd.DataFrame(), ""))
    if pruned:
        words += (f"\n\n{len(pruned)} of {len(every)} candidates were pruned (stopped early by "
                  "the search's pruner): listed, not compared.")
    shown = with_pruned(table, pruned)
    run_rows = run_table(runs)
    (sweep_dir / "runs.csv").write_text(run_rows.to_csv(index=False))
    (sweep_dir / "summary.csv").write_text(shown.to_csv(index=False))
    (sweep_dir / "summary.md").write_text(f"{readable(shown, metric)}\n\n{words.strip()}\n")
    for name in ("summary.csv", "summary.md", "runs.csv"):
        client.log_artifact(parent_id, str(sweep_dir / name))
    if not len(table) or metric not in table:
        return table
    log_plots(client, parent_id, candidates, table, metric)
    by_name = {c.name: c for c in candidates}
    best = by_name[table.iloc[0].candidate]
    if best.finished:
        for key, value in table.iloc[0].items():
            if isinstance(key, str) and key.startswith(("val/", "test/")) \
                    and " " not in key and pd.notna(value):
                client.log_metric(parent_id, f"best/{key}", float(value))
        client.set_tag(parent_id, "best_candidate", best.name)
        champion.register(tracking_uri, parent_id, experiment_name, best.name, best.finished,
                          metric, mode)
    return table
