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


def accuracy_by_length(curves: dict[str, pd.Series]) -> Figure:
    """Sequence accuracy against input-length bucket, one line per run (Bahdanau Fig. 2)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    buckets = sorted({b for curve in curves.values() for b in curve.index})
    for label, curve in curves.items():
        if len(curve):  # at bucket positions: labels like "01-05" would parse as dates
            ax.plot([buckets.index(b) for b in curve.index], curve.values, marker="o",
                    label=label)
    ax.set_xticks(range(len(buckets)), buckets)
    ax.set_xlabel("input length")
    ax.set_ylabel("test sequence accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def grid_bars(table: pd.DataFrame, metric: str, label_columns: list[str]) -> Figure:
    """The metric for every cell of the sweep (one bar per child, labelled by swept values)."""
    done = table.dropna(subset=[metric]) if metric in table else table.iloc[0:0]
    labels = [", ".join(f"{c.split('.')[-1]}={row[c]}" for c in label_columns)
              for _, row in done.iterrows()]
    fig, ax = plt.subplots(figsize=(7, 1 + 0.35 * max(len(done), 1)))
    ax.barh(labels, done[metric] if len(done) else [])
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
