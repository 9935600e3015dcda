"""What a person sees: results on stdout (a training's scores and where its run and model
are; a sweep's table); the sweep's live progress and one line per finished replicate on
stderr. Which log lines reach the console: :mod:`pipeline.logs`.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.logs import verbose
from pipeline.tracking.progress import Replicate
from pipeline.tracking.progress import read as read_replicates


def _seconds(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def replicate_line(done: int, total: int | None, r: Replicate) -> str:
    """``12/30 ok  model=cho model.depth=2 seed 43  val/seq_acc 0.938  test/seq_acc 0.931
    in 43 s``, or the replicate's status and error."""
    head = f"{done:>{len(str(total or done))}}/{total or '?'}"
    what = f"{r.candidate} seed {r.seed}" if r.seed >= 0 else f"{r.candidate} ({r.runs} runs)"
    took = _seconds(r.seconds or 0)
    if r.status in ("FINISHED", "SKIPPED"):
        earlier = " (done earlier)" if r.status == "SKIPPED" else f" in {took}"
        return (f"{head} ok      {what}  {r.monitor} {_score(r.value)}  "
                f"{r.test_metric} {_score(r.test)}{earlier}")
    if r.status == "PRUNED":
        return f"{head} pruned  {what}  {r.monitor} {_score(r.value)} after {took}"
    return f"{head} FAILED  {what} after {took}: {r.error or 'no record of why'}"


class SweepDisplay:
    """The sweep's console, in the process that launches its jobs: a live progress display
    (runs done, running and failed of the total, elapsed, time left, the best candidate so
    far) and one line per finished replicate, read from the replicates' records
    (``tracking/progress.py``) every second. Outside a terminal, or verbose, the lines
    alone."""

    def __init__(self, sweep_dir: Path, total: int | None, parallel: int = 1):
        self.sweep_dir, self.total, self.parallel = Path(sweep_dir), total, max(1, parallel)
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal and not verbose()
        self.progress = Progress(
            TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
            TimeElapsedColumn(), TextColumn("{task.fields[state]}"),
            console=self.console, transient=True, auto_refresh=self.live,
            redirect_stdout=False, redirect_stderr=False)
        self.task = self.progress.add_task("sweep", total=total, state="starting")
        self.shown: dict[tuple[str, int, float], int] = {}  # the runs each stands for
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="sweep-display", daemon=True)

    def start(self) -> SweepDisplay:
        if self.live:
            self.progress.start()
            atexit.register(self.stop)
        self.thread.start()
        return self

    def stop(self) -> None:
        """One last look at the records, then the display ends (idempotent)."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        self.poll()
        if self.live:
            self.progress.stop()

    def finish(self, table, metric: str, where: list[tuple[str, str]]) -> None:
        """The sweep's result: see :func:`print_sweep`."""
        print_sweep(table, metric, where)

    def _loop(self) -> None:
        while not self.stopping.wait(1.0):
            with contextlib.suppress(Exception):  # a display never stops a sweep
                self.poll()

    def poll(self) -> None:
        records = read_replicates(self.sweep_dir)
        done = [r for r in records if r.done]
        for r in done:
            key = (r.candidate, r.seed, r.started)
            if key not in self.shown:
                self.shown[key] = r.runs
                self.console.print(replicate_line(sum(self.shown.values()), self.total, r),
                                   markup=False)
        running = sum(r.status == "RUNNING" for r in records)
        failed = sum(r.status == "FAILED" for r in done)
        state = [f"{running} running"] + ([f"{failed} failed"] if failed else [])
        left = self._time_left(done)
        if left:
            state.append(left)
        best = best_so_far(done)
        if best:
            state.append(f"best {best}")
        self.progress.update(self.task, completed=sum(r.runs for r in done),
                             state=", ".join(state))

    def _time_left(self, done: list[Replicate]) -> str | None:
        timed = [r.seconds for r in done if r.status in ("FINISHED", "PRUNED") and r.seconds]
        if not self.total or not timed:
            return None
        rest = max(0, self.total - sum(r.runs for r in done))
        return f"about {_seconds(sum(timed) / len(timed) * rest / self.parallel)} left" \
            if rest else None


def best_so_far(done: list[Replicate]) -> str | None:
    """``model=bahdanau 0.998 (3)``: the candidate with the best mean monitored score over
    its finished replicates, and how many."""
    scores: dict[str, list[float]] = {}
    for r in done:
        if r.status in ("FINISHED", "SKIPPED") and r.value is not None:
            scores.setdefault(r.candidate, []).append(r.value)
    if not scores:
        return None
    sign = -1 if done[0].mode == "min" else 1
    name, values = max(scores.items(), key=lambda kv: sign * sum(kv[1]) / len(kv[1]))
    return f"{name} {sum(values) / len(values):.3f} ({len(values)})"


def _mean_interval(table, metric: str, i: int) -> str:
    value = table[metric].iloc[i]
    if value is None or value != value:
        return "-"
    low, high = table[f"{metric} ci_low"].iloc[i], table[f"{metric} ci_high"].iloc[i]
    half = (high - low) / 2
    return f"{value:.3f}" + (f" ± {half:.3f}" if half == half else "")


def verdict(table, i: int) -> str:
    """Row ``i`` against the best candidate (row 0), as the report judged it (``vs best:
    beaten``), with the smaller Holm-corrected p-value."""
    if i == 0:
        return "best"
    ps = [table[c].iloc[i] for c in ("p welch holm", "p paired holm") if c in table]
    ps = [p for p in ps if p == p]
    if not ps:
        return table["status"].iloc[i].lower() if "status" in table else "-"
    p = min(ps)
    shown = "p < 0.001" if p < 1e-3 else f"p = {p:.3f}"
    return f"worse ({shown})" if table["vs best: beaten"].iloc[i] else f"no difference ({shown})"


def print_sweep(table, metric: str, where: list[tuple[str, str]]) -> None:
    """The sweep's result on stdout: one row per candidate, best first (mean ± 95 %
    interval of the monitored and the test metric, the verdict against the best), then
    where everything is."""
    out = Console(highlight=False, soft_wrap=True, width=200)
    if len(table) and metric in table:
        test = metric.replace("val/", "test/", 1)
        shown = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for name in ("candidate", "n", metric, *([test] if test in table else []), "vs best"):
            shown.add_column(name, justify="right" if name == "n" else "left")
        for i in range(len(table)):
            cells = [str(table["candidate"].iloc[i]), str(table["n"].iloc[i]),
                     _mean_interval(table, metric, i)]
            if test in table:
                cells.append(_mean_interval(table, test, i))
            shown.add_row(*cells, verdict(table, i))
        out.print(shown)
    print_where(out, where)


def print_where(out: Console, where: list[tuple[str, str]]) -> None:
    width = max((len(k) for k, _ in where), default=0)
    for key, value in where:
        out.print(f"{key + ':':<{width + 1}} {value}", markup=False)


@dataclass
class RunResult:
    """What a finished training says: its test scores and where its run and model are."""

    metrics: dict[str, float]
    best: tuple[str, float] | None
    where: list[tuple[str, str]]


def print_result(result: RunResult) -> None:
    """The test scores, rounded, then where the run, the model and its commands are; on
    stdout."""
    out = Console(highlight=False, soft_wrap=True)
    tests = [f"{k.removeprefix('test/')} {_number(v)}" for k, v in sorted(result.metrics.items())
             if k.startswith("test/") and k.count("/") == 1]
    best = f"  (best {result.best[0]} {_number(result.best[1])})" if result.best else ""
    out.print("test: " + "  ".join(tests) + best, markup=False)
    print_where(out, result.where)


def _number(value: float) -> str:
    return f"{value:.3f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.2e}"
