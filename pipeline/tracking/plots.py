"""Figures for MLflow: attention heatmaps, accuracy by input length, the sweep's grid."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


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


def grid_bars(labels: list[str], means, lows, highs, metric: str) -> Figure:
    """The metric of every candidate of a sweep: its mean over replicates, with its
    confidence interval as an error bar where there are replicates."""
    means = np.asarray(means, dtype=float)
    err = np.vstack([means - np.asarray(lows, float), np.asarray(highs, float) - means])
    fig, ax = plt.subplots(figsize=(7, 1 + 0.35 * max(len(labels), 1)))
    ax.barh(labels, means, xerr=np.nan_to_num(err), capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (mean, 95 % interval)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


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
