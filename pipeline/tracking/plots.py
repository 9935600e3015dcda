"""Figures for MLflow: attention heatmaps, accuracy by input length, the sweep's grid."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402


def attention_heatmap(weights: np.ndarray, source: list[str], output: list[str]) -> Figure:
    """Weights (output steps x source tokens): output tokens down, input tokens across."""
    fig, ax = plt.subplots(figsize=(1 + 0.4 * len(source), 1 + 0.4 * len(output)))
    ax.imshow(weights[: len(output), : len(source)], cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(source)), source, rotation=90)
    ax.set_yticks(range(len(output)), output)
    ax.set_xlabel("input")
    ax.set_ylabel("output")
    fig.tight_layout()
    return fig


def bucket_curves(metrics: dict[str, float], prefix: str = "test/seq_acc/len_") -> pd.Series:
    """``{"test/seq_acc/len_01-05": 0.9, ...}`` -> a Series indexed by bucket label."""
    items = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
    return pd.Series(items, dtype=float).sort_index()


def accuracy_by_length(curves: dict[str, pd.DataFrame | pd.Series]) -> Figure:
    """Sequence accuracy against input-length bucket, one line per run or candidate
    (Bahdanau Fig. 2). A candidate's curve is a frame with ``mean``, ``low`` and ``high`` per
    bucket: its mean line and, where there are replicates, its confidence band."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    buckets = sorted({b for curve in curves.values() for b in curve.index})
    for label, curve in curves.items():
        if not len(curve):
            continue
        x = [buckets.index(b) for b in curve.index]  # positions: "01-05" would parse as a date
        mean = curve["mean"] if isinstance(curve, pd.DataFrame) else curve
        (line,) = ax.plot(x, mean.values, marker="o", label=label)
        if isinstance(curve, pd.DataFrame) and curve["high"].notna().any():
            ax.fill_between(x, curve["low"], curve["high"], color=line.get_color(), alpha=0.15)
    ax.set_xticks(range(len(buckets)), buckets)
    ax.set_xlabel("input length")
    ax.set_ylabel("test sequence accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def fitted_limits(means, lows, highs, pad: float = 0.08) -> tuple[float, float]:
    """An axis range around the finite means and interval ends, widened by ``pad`` of their
    span on each side (not from zero: 0.998 and 1.000 stay apart); 5 % of the value (at
    least 0.05) either side where they all coincide."""
    values = np.concatenate([np.asarray(a, dtype=float).ravel() for a in (means, lows, highs)])
    values = values[np.isfinite(values)]
    if not values.size:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    if low == high:
        width = 0.05 * max(abs(low), 1.0)
        return low - width, high + width
    return low - pad * (high - low), high + pad * (high - low)


def decimals(values, least: int = 3, most: int = 6) -> int:
    """How many decimals tell the distinct finite ``values`` apart (at least ``least``)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    distinct = len(np.unique(finite))
    for places in range(least, most):
        if len(np.unique(np.round(finite, places))) == distinct:
            return places
    return most


def grid_dots(labels: list[str], panels: dict[str, tuple]) -> Figure:
    """Every candidate of a sweep, best at the top, in one panel per metric (``panels``:
    metric -> means, interval lows, interval highs): its mean as a dot with its 95 % interval
    as an error bar where there are replicates, on an axis fitted to that metric's values."""
    count = max(len(panels), 1)
    columns = min(count, 3)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, squeeze=False, sharey=True,
                             figsize=(2 + 3.4 * columns, rows * (1.2 + 0.4 * max(len(labels), 1))))
    y = np.arange(len(labels))
    shown = list(axes.flat)[:len(panels)]
    for ax, (metric, (means, lows, highs)) in zip(shown, panels.items(), strict=True):
        means, lows, highs = (np.asarray(a, dtype=float) for a in (means, lows, highs))
        err = np.nan_to_num(np.vstack([means - lows, highs - means]))
        ax.errorbar(means, y, xerr=err, fmt="o", capsize=3)
        ax.set_xlim(*fitted_limits(means, lows, highs))
        ticks = ScalarFormatter(useOffset=False)
        ticks.set_scientific(False)
        ax.xaxis.set_major_formatter(ticks)
        places = decimals(means)
        for value, row in zip(means, y, strict=True):
            if np.isfinite(value):
                ax.annotate(f"{value:.{places}f}", (value, row), xytext=(0, 5),
                            textcoords="offset points", ha="center", fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    axes[0, 0].set_yticks(y, labels)
    axes[0, 0].set_ylim(len(labels) - 0.5, -0.7)  # best on top, room for its value
    fig.suptitle("mean and 95 % interval over the replicates", fontsize=9)
    fig.tight_layout()
    return fig


def png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def curves_with_bands(curves: dict[str, pd.DataFrame], metric: str) -> Figure:
    """A metric against the epoch, one line per candidate: the mean over its replicates and
    its 95 % interval as a band (``mean``, ``low``, ``high`` per epoch)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in curves.items():
        (line,) = ax.plot(curve.index, curve["mean"], label=label)
        ax.fill_between(curve.index, curve["low"], curve["high"], color=line.get_color(),
                        alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
