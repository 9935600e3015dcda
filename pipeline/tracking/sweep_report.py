"""The sweep parent's report: statistics over each candidate's replicates, plots, the
champion.

A candidate is one configuration of the sweep (the ``candidate`` tag its replicates share;
stores written before that name hold it as ``cell``). Candidates are ranked by the mean of
the monitored (validation) metric at each run's best checkpoint, the weights its test scores
come from (``best/<monitor>``); the best is compared with every other on the test metric,
by Welch's t-test over the replicates and, with every test example's score logged, by a
paired permutation test over the examples, Holm-corrected (``pipeline/stats.py``).

Written to the sweep folder and logged to the parent:

- ``summary.csv`` (one row per candidate), ``summary.md`` (the table and the comparisons in
  words), ``runs.csv`` (one row per run);
- ``summary.html``: the table (mean ± 95 % interval half-width per metric, p-values, status,
  n), the comparisons in words and the plots, in one page the UI's artifact view shows.

Logged to the parent only:

- ``plots/``: ``grid.png`` (each candidate's mean and interval, a panel per metric, on axes
  fitted to the values), ``accuracy_by_length.png``, ``curves.png`` (validation curves with
  bands);
- ``candidates.json``: the candidates as a table for the UI's table view;
- metrics ``candidate/<rank>/<metric>/mean`` and ``candidate/<rank>/<metric>/half_width``
  (rank 1 is the best; the monitored metric and each test metric; the half-width only with
  replicates), the tag ``candidate/<rank>`` naming the candidate, and ``best/<metric>`` (the
  best candidate's means);
- the champion: the best candidate's replicate with the best validation score, registered
  as ``champion`` and linked as the parent's model output.

Candidates a search pruned (runs tagged ``pruned``) are listed as such, outside the
statistics.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, Metric, Run, RunTag

from pipeline import stats
from pipeline.tracking import champion, plots, report_html
from pipeline.tracking.artifacts import TEST_EXAMPLES

ALPHA = 0.05
CANDIDATES_TABLE = "candidates.json"


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
    """A run's candidate hash and name: its ``candidate`` and ``candidate_name`` tags."""
    return run.data.tags.get("candidate"), run.data.tags.get("candidate_name")


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

    def beaten(self, mode: str) -> bool:
        """The best candidate beats this one: either Holm-corrected test is significant and
        the difference is the best's way."""
        significant = any(np.isfinite(p) and p < ALPHA
                          for p in (self.p_welch_holm, self.p_paired_holm))
        return significant and (1 if mode == "max" else -1) * self.diff.diff > 0


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


def with_comparisons(table: pd.DataFrame, comparisons: list[Comparison], mode: str
                     ) -> pd.DataFrame:
    """``table`` (best first) with the columns of each row's comparison with the best, and
    whether the best beats it (``vs best: beaten``)."""
    def column(value) -> list[float]:
        return [np.nan, *(value(c) for c in comparisons)]

    table["vs best: diff"] = column(lambda c: -c.diff.diff)
    table["vs best: ci_low"] = column(lambda c: -c.diff.high)
    table["vs best: ci_high"] = column(lambda c: -c.diff.low)
    table["p welch"] = column(lambda c: c.p_welch)
    table["p welch holm"] = column(lambda c: c.p_welch_holm)
    table["p paired"] = column(lambda c: c.p_paired)
    table["p paired holm"] = column(lambda c: c.p_paired_holm)
    table["vs best: beaten"] = [False, *(c.beaten(mode) for c in comparisons)]
    return table


# What a run's per-example test scores are (its ``example_score`` tag; older runs: exact).
EXAMPLE_SCORES = {None: "exact match", "exact": "exact match", "chrf": "sentence chrF",
                  "squared_error": "squared error"}


def in_words(best: Candidate, comparisons: list[Comparison], test_metric: str, mode: str,
             min_effect: float | None = None) -> list[str]:
    """The comparisons as sentences, one per other candidate: who beats whom by how much,
    or that they do not differ significantly, with the evidence and the power: for a
    difference, the power its replicates had; for none, how many seeds per candidate would
    detect the observed difference (or ``min_effect``, in the metric's units) with 80 %
    power at the 5 % level (:func:`pipeline.stats.power_sentence`)."""
    scale, unit = ((100, " points") if test_metric.endswith(("acc", "wer", "per", "cer"))
                   else (1, " points") if test_metric.endswith(("bleu", "chrf")) else (1, ""))
    kind = EXAMPLE_SCORES.get(next((r.data.tags.get("example_score") for r in best.finished),
                                   None), "score")
    sentences = []
    for c in comparisons:
        p, p_paired, d = c.p_welch_holm, c.p_paired_holm, c.diff
        evidence = "; ".join(
            [f"Welch {stats.p_text(p)}" if np.isfinite(p) else "one replicate: no Welch test"]
            + ([f"paired over test examples' {kind} {stats.p_text(p_paired)}"]
               if np.isfinite(p_paired) else []))
        beats = c.beaten(mode)
        evidence += "; " + stats.power_sentence(
            best.values(test_metric), c.other.values(test_metric), beats, alpha=ALPHA,
            min_effect=min_effect, scale=scale, unit=unit)
        if beats:
            margin = (f" +/- {d.half_width * scale:.1f}" if np.isfinite(d.half_width)
                      else "")
            sentences.append(f"{best.name} beats {c.other.name} by {abs(d.diff) * scale:.1f}"
                             f"{margin}{unit} on {test_metric} ({evidence}).")
        else:
            sentences.append(f"{c.other.name} and {best.name} do not differ significantly on "
                             f"{test_metric} ({evidence}).")
    return sentences


def heading(metric: str, comparisons: int) -> str:
    """The sentence that introduces the comparisons."""
    return (f"Candidates ranked by mean {metric} over their replicates (95 % Student-t "
            f"intervals); the best against each other candidate, Holm-corrected for "
            f"{comparisons} comparisons:")


def rank_and_compare(client: MlflowClient, candidates: list[Candidate], metric: str,
                     mode: str, min_effect: float | None = None
                     ) -> tuple[pd.DataFrame, list[str]]:
    """The per-candidate table, best candidate first, with the comparisons of the best
    against each other candidate on the test counterpart of ``metric``; and those
    comparisons as sentences (none with fewer than two candidates or no test metric)."""
    test_metric = metric.replace("val/", "test/")
    table, order = summary_table(candidates, metric, mode)
    if len(order) < 2 or test_metric not in table:
        return table, []
    comparisons = compare(client, order, test_metric)
    return (with_comparisons(table, comparisons, mode),
            in_words(order[0], comparisons, test_metric, mode, min_effect))


def statistics(client: MlflowClient, candidates: list[Candidate], metric: str, mode: str
               ) -> tuple[pd.DataFrame, str]:
    """:func:`rank_and_compare` with its sentences as one text: a list under their heading
    (the words of summary.md)."""
    table, sentences = rank_and_compare(client, candidates, metric, mode)
    if not sentences:
        return table, ""
    return table, "\n".join([heading(metric, len(sentences)), *(f"- {s}" for s in sentences)])


def with_pruned(table: pd.DataFrame, pruned: list[Candidate]) -> pd.DataFrame:
    """``table`` with a row per pruned candidate at the end: status ``PRUNED (epoch N)``, no
    scores (they are in its run, curve included), in no comparison."""
    rows = [{"candidate": c.name, "n": 0, "replicates": len(c.runs),
             "status": f"PRUNED (epoch {c.pruned[0].data.tags['pruned']})"} for c in pruned]
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True) if rows else table


def shown_metrics(table: pd.DataFrame, metric: str) -> list[str]:
    """The metrics a person reads: ``metric`` first, then the test metrics."""
    return [m for m in [metric] + [c for c in table.columns if c.startswith("test/")
                                   and " " not in c and c != metric]
            if f"{m} ci_high" in table]


def half_width(table: pd.DataFrame, metric: str) -> pd.Series:
    """Each row's 95 % interval half-width of ``metric`` (NaN with one replicate)."""
    return (table[f"{metric} ci_high"] - table[f"{metric} ci_low"]) / 2


def formatted(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The per-candidate table for people: n, status, mean ± interval half-width per metric
    (to as many decimals as tell the candidates' means apart, at least 3), and the
    Holm-corrected p-values of the comparison with the best candidate."""
    shown = table[["candidate", "n", "status"]].copy()
    for m in shown_metrics(table, metric):
        places = plots.decimals(table[m])
        shown[m] = ["" if not np.isfinite(v) else f"{v:.{places}f}" + (
            f" ± {h:.{places}f}" if np.isfinite(h) else "")
            for v, h in zip(table[m], half_width(table, m), strict=True)]
    for column in ("p welch holm", "p paired holm"):
        if column in table:
            shown[column] = ["" if not np.isfinite(p) else stats.p_text(p)
                             for p in table[column]]
    return shown


def readable(table: pd.DataFrame, metric: str) -> str:
    """:func:`formatted` as a Markdown table."""
    return formatted(table, metric).to_markdown(index=False) if len(table) else "no runs"


def band(samples: dict) -> pd.DataFrame:
    """Per key (a length bucket, an epoch): the mean of its values and the 95 % interval
    (the mean alone where there is one value), one row each."""
    rows = {key: stats.summarise(values) for key, values in samples.items()}
    return pd.DataFrame({"mean": [s.mean for s in rows.values()],
                         "low": [s.low if s.n > 1 else s.mean for s in rows.values()],
                         "high": [s.high if s.n > 1 else s.mean for s in rows.values()]},
                        index=list(rows))


def figures(client: MlflowClient, candidates: list[Candidate], table: pd.DataFrame,
            metric: str) -> dict[str, bytes]:
    """``plots/grid.png`` (every candidate's mean and interval, a panel per metric),
    ``plots/accuracy_by_length.png`` and ``plots/curves.png``, as PNG by artifact path."""
    made = {"plots/grid.png": plots.grid_dots(list(table.candidate), {
        m: (table[m], table[f"{m} ci_low"], table[f"{m} ci_high"])
        for m in shown_metrics(table, metric)})}
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
        made["plots/accuracy_by_length.png"] = plots.accuracy_by_length(by_length)
    if curves:
        made["plots/curves.png"] = plots.curves_with_bands(curves, metric)
    pngs = {}
    for path, fig in made.items():
        pngs[path] = plots.png(fig)
        plots.plt.close(fig)
    return pngs


def log_files(client: MlflowClient, run_id: str, files: dict[str, bytes]) -> None:
    """Log each of ``files`` (artifact path -> content) to the run."""
    with tempfile.TemporaryDirectory() as tmp:
        for path, content in files.items():
            (Path(tmp) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / path).write_bytes(content)
        client.log_artifacts(run_id, tmp)


def candidate_metrics(table: pd.DataFrame, metric: str) -> dict[str, float]:
    """``candidate/<rank>/<metric>/mean`` and ``.../half_width`` of every ranked candidate
    (rank 1 the best) and shown metric, where finite."""
    values = {}
    for m in shown_metrics(table, metric):
        for name, column in (("mean", table[m]), ("half_width", half_width(table, m))):
            for rank, value in enumerate(column, start=1):
                if np.isfinite(value):
                    values[f"candidate/{rank}/{m}/{name}"] = float(value)
    return values


def log_candidates(client: MlflowClient, parent_id: str, table: pd.DataFrame,
                   metric: str) -> None:
    """The ranked candidates on the parent: their means and half-widths as metrics
    (:func:`candidate_metrics`), their names as tags ``candidate/<rank>``."""
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in candidate_metrics(table, metric).items()]
    tags = [RunTag(f"candidate/{rank}", str(name))
            for rank, name in enumerate(table.candidate, start=1)]
    for i in range(0, len(metrics), 1000):  # MLflow's limits per batch
        client.log_batch(parent_id, metrics=metrics[i:i + 1000])
    for i in range(0, len(tags), 100):
        client.log_batch(parent_id, tags=tags[i:i + 100])


def candidates_table(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The candidates for the UI's table view: rank, name, n, status, mean and half-width
    per shown metric, the Holm-corrected p-values."""
    frame = table[["candidate", "n", "replicates", "status"]].copy()
    frame.insert(0, "rank", range(1, len(frame) + 1))
    for m in shown_metrics(table, metric):
        frame[f"{m} mean"] = table[m]
        frame[f"{m} half_width"] = half_width(table, m)
    for column in ("p welch holm", "p paired holm"):
        if column in table:
            frame[column] = table[column]
    return frame


def log_table(client: MlflowClient, run_id: str, frame: pd.DataFrame, path: str) -> None:
    """``frame`` as the run's table ``path`` (shown by the UI's table view). ``log_table``
    appends to a table already there, as on a resumed sweep: that one is replaced."""
    if not any(a.path == path for a in client.list_artifacts(run_id)):
        client.log_table(run_id, frame, path)
        return
    with tempfile.TemporaryDirectory() as tmp:
        frame.to_json(Path(tmp) / path, orient="split", index=False, date_format="iso")
        client.log_artifact(run_id, str(Path(tmp) / path))


def link_champion(client: MlflowClient, parent_id: str, runs: list[Run]) -> None:
    """The champion's logged model as the parent's output: the run page then shows the
    parent as a training run (a run without one is shown as an evaluation run)."""
    parent = client.get_run(parent_id)
    pick = next((r for r in runs if r.info.run_id == parent.data.tags.get("champion_run_id")),
                None)
    uri = pick.data.tags.get("model_uri", "") if pick else ""
    if not uri.startswith("models:/m-"):
        return
    model_id = uri.removeprefix("models:/")
    outputs = parent.outputs.model_outputs if parent.outputs else []
    if all(o.model_id != model_id for o in outputs):
        client.log_outputs(parent_id, [LoggedModelOutput(model_id, 0)])


@dataclass
class SweepResult:
    """What :func:`report` found, for a summary on the console."""

    table: pd.DataFrame  # summary.csv's rows: the ranked candidates, then the pruned ones
    sentences: list[str]  # the comparisons in words, then a line on the pruned candidates
    champion_uri: str | None  # e.g. models:/seq2seq-reverse@champion
    summary_path: Path | None  # summary.md in the sweep folder
    html_path: Path | None  # summary.html in the sweep folder (also the parent's artifact)
    metric: str  # the monitored metric the candidates are ranked by
    mode: str  # "max" or "min"
    best: str | None  # the best candidate's name
    pruned: int = 0  # how many candidates a search pruned
    ensemble: Any = None  # pipeline.ensemble.EnsembleOutcome, where one was made

    def formatted_table(self) -> pd.DataFrame:
        """The table for people (mean ± interval half-width, p-values), as in summary.md."""
        return formatted(self.table, self.metric) if len(self.table) else self.table


def seeds_saved(auto_seeds: list[int], runs: int, candidates: int, metric: str) -> str:
    """What ``seeds=auto`` trained, against every candidate at the cap."""
    start, cap = auto_seeds
    full = candidates * cap
    return (f"seeds=auto: {start} seeds per candidate, then up to {cap} where the comparison "
            f"with the best on {metric} was undecided and decidable: {runs} runs, against "
            f"{candidates} x {cap} = {full} with {cap} seeds each ({full - runs} saved).")


def report(tracking_uri: str, parent_id: str, experiment_name: str, runs: list[Run],
           sweep_dir: Path, min_effect: float | None = None,
           ensemble: Callable[..., Any] | None = None,
           auto_seeds: list[int] | None = None) -> SweepResult:
    """Write and log the summary, the plots and the candidates' metrics and table, the best
    candidate's means as ``best/...``, and register the champion (see the module docstring).
    ``ensemble`` (``pipeline.ensemble.EnsembleChampion``), once the best replicate is the
    champion, ensembles the best candidates' replicates; its sentences join the summary.
    ``auto_seeds`` ([pilot seeds, cap], ``seeds=auto``) adds what the planned seeds saved.
    """
    client = MlflowClient(tracking_uri)
    tags = runs[0].data.tags if runs else {}
    metric, mode = tags.get("monitor", "val/seq_acc"), tags.get("monitor_mode", "max")
    every = candidates_of(runs)
    candidates = [c for c in every if not c.pruned]
    pruned = [c for c in every if c.pruned]
    table, sentences = (rank_and_compare(client, candidates, metric, mode, min_effect)
                        if candidates else (pd.DataFrame(), []))
    head = heading(metric, len(sentences)) if sentences else ""
    words = "\n".join([head, *(f"- {s}" for s in sentences)]) if sentences else ""
    pngs, best, outcome = {}, None, None
    if len(table) and metric in table:
        pngs = figures(client, candidates, table, metric)
        log_files(client, parent_id, pngs)
        log_candidates(client, parent_id, table, metric)
        log_table(client, parent_id, candidates_table(table, metric), CANDIDATES_TABLE)
        ranked = [next(c for c in candidates if c.name == name) for name in table.candidate]
        best = ranked[0] if ranked[0].finished else None
        if best is not None:
            outcome = crown(tracking_uri, parent_id, experiment_name, table, ranked, metric,
                            mode, sweep_dir, ensemble)
    if outcome is not None:
        sentences += outcome.sentences
        words += "\n\n" + "\n".join(outcome.sentences)
    if auto_seeds:
        note = seeds_saved(auto_seeds, len(runs), len(every), metric)
        sentences.append(note)
        words += f"\n\n{note}"
    if pruned:
        note = (f"{len(pruned)} of {len(every)} candidates were pruned (stopped early by the "
                "search's pruner): listed, not compared.")
        sentences.append(note)
        words += f"\n\n{note}"
    shown = with_pruned(table, pruned)
    (sweep_dir / "runs.csv").write_text(run_table(runs).to_csv(index=False))
    (sweep_dir / "summary.csv").write_text(shown.to_csv(index=False))
    (sweep_dir / "summary.md").write_text(f"{readable(shown, metric)}\n\n{words.strip()}\n")
    for name in ("summary.csv", "summary.md", "runs.csv"):
        client.log_artifact(parent_id, str(sweep_dir / name))
    champion_uri = client.get_run(parent_id).data.tags.get("champion")
    better = "higher" if mode == "max" else "lower"
    facts = [("ranked by", f"mean {metric} over each candidate's replicates ({better} is "
                           "better)"),
             ("runs", f"{len(runs)} in {len(every)} candidates"
                      + (f", {len(pruned)} pruned" if pruned else ""))]
    if best is not None:
        facts.append(("best candidate", best.name))
    if champion_uri:
        facts.append(("champion", champion_uri))
    html_path = sweep_dir / "summary.html"
    html_path.write_text(report_html.page(
        f"Sweep {sweep_dir.name}", formatted(shown, metric) if len(shown) else shown, head,
        sentences, pngs, facts), encoding="utf-8")
    client.log_artifact(parent_id, str(html_path))
    return SweepResult(shown, sentences, champion_uri, sweep_dir / "summary.md", html_path,
                       metric, mode, best.name if best else None, len(pruned), outcome)


def crown(tracking_uri: str, parent_id: str, experiment_name: str, table: pd.DataFrame,
          ranked: list[Candidate], metric: str, mode: str, sweep_dir: Path,
          ensemble: Callable[..., Any] | None):
    """The best candidate's means as ``best/...``, its best replicate registered as the
    champion, then the ensemble (which may take the alias); the champion's model becomes
    the parent's output. Returns the ensemble's outcome, if any."""
    client, best = MlflowClient(tracking_uri), ranked[0]
    for key, value in table.iloc[0].items():
        if isinstance(key, str) and key.startswith(("val/", "test/")) \
                and " " not in key and pd.notna(value):
            client.log_metric(parent_id, f"best/{key}", float(value))
    client.set_tag(parent_id, "best_candidate", best.name)
    champion.register(tracking_uri, parent_id, experiment_name, best.name, best.finished,
                      metric, mode)
    outcome = ensemble(tracking_uri, parent_id, experiment_name, ranked, metric, mode,
                       sweep_dir) if ensemble is not None else None
    crowned = [client.get_run(outcome.run_id)] if outcome is not None and outcome.champion \
        else best.finished
    link_champion(client, parent_id, crowned)
    return outcome
