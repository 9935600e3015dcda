"""``make results`` (``python -m bench.results [--only NAME ...] [--list]``): re-run the quick
recipes of ``docs/results.md`` and print each figure beside the one published there.

The quick recipes take a few minutes each on one core: ``make train`` on the default task
(``default``), three-digit addition (``addition``) and your data's example (``numbers``).
Each runs as ``python -m pipeline.train <its overrides> threads=1``, one after the other,
into one temporary output directory (``SEQ2SEQ_OUTPUT_DIR``); its figures are read from
that directory's MLflow store, the newest run of the experiment ``seq2seq-<task>``. The
published figures are read from ``docs/results.md``, one narrow regular expression per figure
within its section, so the markdown stays the one place the figures live.

A figure has drifted when it is further from the published one than its tolerance, absolute:
0.005 for accuracies and CER (half a point), 0.5 for BLEU and chrF (on their 0-100 scale).
Epochs and wall time are shown but not judged: they depend on the machine and on what else
runs on it. The exit status is 1 where a figure drifted, a figure is missing or a run failed;
the output directory is then kept (its path printed, with each run's log), else removed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "results.md"
ACCURACY = 0.005  # absolute, on a 0-1 scale: half a point of accuracy
TEXT_SCORE = 0.5  # absolute, on sacrebleu's 0-100 scale
EPOCHS, WALL = "epochs", "wall_s"  # measures that are not MLflow metrics
DURATION = r"(?:\d+ h )?(?:\d+ min )?\d+ s"
NUMBER = r"\d+(?:\.\d+)?"


@dataclass(frozen=True)
class Figure:
    name: str  # as the table shows it
    pattern: str  # within the recipe's section; its one group is the figure as written
    measure: str  # an MLflow metric key of the run, or EPOCHS (val/loss points), WALL
    tolerance: float | None = None  # absolute; None: shown, not judged


@dataclass(frozen=True)
class Recipe:
    name: str
    section: str  # the heading of its section in docs/results.md
    task: str  # data.task: its runs are in the MLflow experiment seq2seq-<task>
    overrides: tuple[str, ...]
    figures: tuple[Figure, ...]

    @property
    def args(self) -> list[str]:
        return [*self.overrides, "threads=1"]

    @property
    def command(self) -> str:
        return f'make train ARGS="{" ".join(self.args)}"'


def _row(key: str, rest: str) -> str:
    """A row of a two-column table: ``| key | ...``."""
    return rf"^\| {key} \| {rest}"


# The first row of the default recipe's table: command | epochs | wall time | test seq_acc.
_DEFAULT_ROW = r'^\| `make train ARGS="threads=1"` [^|\n]*\| '
RECIPES = (
    Recipe("default", "The default recipe and threads", "reverse", (), (
        Figure("test seq_acc", _DEFAULT_ROW + rf"\d+ \| {DURATION} \| ({NUMBER}) \|$",
               "test/seq_acc", ACCURACY),
        Figure("epochs", _DEFAULT_ROW + r"(\d+) \|", EPOCHS),
        Figure("wall time", _DEFAULT_ROW + rf"\d+ \| ({DURATION}) \|", WALL),
    )),
    Recipe("addition", "Three-digit addition", "addition", ("experiment=addition",), (
        Figure("test seq_acc", _row("result", rf"\*\*test seq_acc ({NUMBER})\*\*"),
               "test/seq_acc", ACCURACY),
        Figure("test token_acc", _row("result", rf"[^\n]*, token_acc ({NUMBER})"),
               "test/token_acc", ACCURACY),
        Figure("epochs", _row("epochs", r"(\d+) of \d+"), EPOCHS),
        Figure("wall time", _row("wall time", rf"\**({DURATION})\**"), WALL),
    )),
    Recipe("numbers", "Your data (`data=files`)", "files", ("experiment=numbers",), (
        Figure("test seq_acc", _row("result", rf"\*\*test seq_acc ({NUMBER})\*\*"),
               "test/seq_acc", ACCURACY),
        Figure("test BLEU", _row("result", rf"[^\n]*, BLEU ({NUMBER})"), "test/bleu",
               TEXT_SCORE),
        Figure("test chrF", _row("result", rf"[^\n]*, chrF ({NUMBER})"), "test/chrf",
               TEXT_SCORE),
        Figure("test CER", _row("result", rf"[^\n]*, CER ({NUMBER})"), "test/cer", ACCURACY),
        Figure("epochs", _row("epochs", r"(\d+) of \d+"), EPOCHS),
        Figure("wall time", _row("wall time", rf"\**({DURATION})\**"), WALL),
    )),
)


class DocError(ValueError):
    """docs/results.md does not hold a figure where its regular expression looks."""


def section(doc: str, heading: str) -> str:
    """The text under ``## heading`` up to the next ``## `` heading."""
    found = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", doc, re.M | re.S)
    if found is None:
        raise DocError(f"no section '## {heading}' in {DOC.name}")
    return found.group(1)


def published(doc: str, recipe: Recipe, figure: Figure) -> str:
    """The figure as docs/results.md writes it; exactly one match in the recipe's section."""
    matches = re.findall(figure.pattern, section(doc, recipe.section), re.M)
    if len(matches) != 1:
        raise DocError(f"{recipe.name} {figure.name}: {len(matches)} matches of "
                       f"{figure.pattern!r} in '## {recipe.section}', not one")
    return matches[0]


def seconds(duration: str) -> float:
    """``'1 h 2 min 3 s'``, ``'10 min 18 s'``, ``'49 s'`` -> seconds."""
    units = {"h": 3600, "min": 60, "s": 1}
    parts = re.findall(r"(\d+) (h|min|s)\b", duration)
    if not parts:
        raise ValueError(f"not a duration: {duration!r}")
    return float(sum(int(n) * units[u] for n, u in parts))


def duration(value: float) -> str:
    """Seconds as docs/results.md writes them: ``'49 s'``, ``'10 min 18 s'``."""
    minutes, secs = divmod(round(value), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def value_of(figure: Figure, written: str) -> float:
    return seconds(written) if figure.measure == WALL else float(written)


def drifted(published_value: float, now: float | None, tolerance: float | None) -> bool | None:
    """Whether ``now`` is further than ``tolerance`` from the published value; None where the
    figure is not judged (no tolerance). A missing or NaN figure has drifted."""
    if tolerance is None:
        return None
    if now is None or math.isnan(now):
        return True
    return abs(now - published_value) > tolerance + 1e-9


def shown(figure: Figure, written: str, now: float | None) -> str:
    """The new figure written as the published one is: as many decimals, or a duration."""
    if now is None or math.isnan(now):
        return "missing"
    if figure.measure == WALL:
        return duration(now)
    decimals = len(written.partition(".")[2])
    return f"{now:.{decimals}f}"


def verdict(figure: Figure, flag: bool | None) -> str:
    if flag is None:
        return "not judged"
    return f"{'DRIFTED' if flag else 'ok'} (±{figure.tolerance:g})"


def machine() -> str:
    """The CPU as /proc/cpuinfo names it (with its bf16 and AMX flags), cores, memory, GPU,
    torch."""
    cpu, flags, memory = platform.machine(), set(), ""
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        name = re.search(r"^model name\s*: (.*)$", info, re.M)
        cpu = name.group(1).strip() if name else cpu
        found = re.search(r"^flags\s*: (.*)$", info, re.M)
        flags = set(found.group(1).split()) if found else set()
    with contextlib.suppress(OSError, AttributeError):
        kib = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        memory = f", {int(kib.group(1)) / 2**20:.0f} GiB"
    features = ", ".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags)
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}{f' ({features})' if features else ''}, {os.cpu_count()} cores{memory}"
            f", {card}, torch {torch.__version__}; one torch thread a run")


def train(recipe: Recipe, output_dir: Path) -> tuple[int, float, Path]:
    """Run the recipe with one torch thread; (exit status, wall seconds, its log)."""
    log = output_dir / f"{recipe.name}.log"
    env = {**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(output_dir)}
    start = time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run([sys.executable, "-m", "pipeline.train", *recipe.args], cwd=ROOT,
                            env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    return rc, time.perf_counter() - start, log


def measured(recipe: Recipe, output_dir: Path, wall: float) -> dict[str, float]:
    """The newest run of ``seq2seq-<task>`` in the output directory's MLflow store: its
    metrics, its epochs (val/loss points) and the wall time of the command."""
    client = MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"seq2seq-{recipe.task}")
    if experiment is None:
        return {WALL: wall}
    runs = client.search_runs([experiment.experiment_id], max_results=1,
                              order_by=["attributes.start_time DESC"])
    if not runs:
        return {WALL: wall}
    run = runs[0]
    epochs = len(client.get_metric_history(run.info.run_id, "val/loss"))
    return {**run.data.metrics, EPOCHS: float(epochs), WALL: wall}


def rows_of(doc: str, recipe: Recipe, now: dict[str, float]) -> list[tuple[str, ...]]:
    rows = []
    for figure in recipe.figures:
        written = published(doc, recipe, figure)
        new = now.get(figure.measure)
        flag = drifted(value_of(figure, written), new, figure.tolerance)
        rows.append((f"{recipe.name}: {figure.name}", written, shown(figure, written, new),
                     verdict(figure, flag)))
    return rows


def table(rows: list[tuple[str, ...]]) -> str:
    header = ("figure", "docs/results.md", "now", "drift (tolerance, absolute)")
    width = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(r: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in width) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def chosen(only: list[str] | None) -> list[Recipe]:
    if not only:
        return list(RECIPES)
    names = {r.name for r in RECIPES}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise SystemExit(f"unknown recipe {', '.join(unknown)}: one of {', '.join(sorted(names))}")
    return [r for r in RECIPES if r.name in only]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.results", description=__doc__.split(
        "\n\n")[0].replace("``", ""))
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="re-run this recipe only (repeatable): "
                             + ", ".join(r.name for r in RECIPES))
    parser.add_argument("--list", action="store_true",
                        help="list the recipes, their commands and published figures; run none")
    args = parser.parse_args(argv)
    doc = DOC.read_text()
    recipes = chosen(args.only)
    # Every published figure is read before any training: a figure the docs lost fails now.
    written = {r.name: [f"{f.name} {published(doc, r, f)}" for f in r.figures] for r in recipes}
    if args.list:
        for recipe in recipes:
            print(f"{recipe.name}: {recipe.command}  [{', '.join(written[recipe.name])}]")
        return 0

    output_dir = Path(tempfile.mkdtemp(prefix="seq2seq-results-"))
    rows, failed = [], False
    started, load = time.perf_counter(), os.getloadavg()[0]
    for recipe in recipes:
        print(f"{recipe.name}: {recipe.command} ...", file=sys.stderr, flush=True)
        rc, wall, log = train(recipe, output_dir)
        print(f"{recipe.name}: exit {rc} after {duration(wall)} (log: {log})", file=sys.stderr,
              flush=True)
        failed |= rc != 0
        now = measured(recipe, output_dir, wall) if rc == 0 else {WALL: wall}
        rows += rows_of(doc, recipe, now)
    failed |= any(r[3].startswith("DRIFTED") for r in rows)
    print(table(rows))
    busy = ("other work on the machine: the times are upper bounds" if load >= 0.5
            else "a quiet machine")
    print(f"\n{machine()}; {date.today().isoformat()}; {duration(time.perf_counter() - started)}"
          f" in all; load average {load:.1f} before the runs ({busy}).\n"
          "Tolerances are absolute: "
          f"{ACCURACY:g} for accuracies and CER, {TEXT_SCORE:g} for BLEU and chrF (0-100); "
          "epochs and wall time depend on the machine and are not judged.")
    if failed:
        print(f"Kept {output_dir} (each run's log, the MLflow store).")
    else:
        shutil.rmtree(output_dir, ignore_errors=True)
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
