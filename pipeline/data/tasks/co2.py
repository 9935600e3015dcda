"""Forecasting weekly Mauna Loa CO2 (statsmodels' copy, 1958-2001, shipped offline)."""

from __future__ import annotations

import numpy as np

from pipeline.data.tasks.base import SPLITS, VectorSplit, VectorTask

SEASON = 52


def load_series():
    """The weekly series (a pandas Series), gaps filled by linear interpolation in time."""
    from statsmodels.datasets import co2  # noqa: PLC0415 - statsmodels: only for this task

    series = co2.load_pandas().data["co2"]
    return series.interpolate(method="time", limit_direction="both")


class CO2(VectorTask):
    """``input_length`` weeks of CO2 -> the next ``output_length`` weeks, vectors of dim 1.

    The timeline is cut into contiguous periods: train (the first ``1 - val_fraction -
    test_fraction``), then val, then test. A window is the ``output_length`` weeks it
    forecasts plus the ``input_length`` weeks before them; it belongs to the period that
    holds all its targets (stride one week), so no target is in two splits and every val
    target comes before every test target. Inputs may look back into the previous period,
    so val and test start forecasting right at their boundary. Targets start no earlier than
    week ``max(input_length, 52)`` so each has a value a season earlier.

    Values are standardised with the mean and std of the train period only; with
    ``relative`` (default) every window is then expressed relative to its last input value
    (so a model forecasts changes, not levels it never saw in training: the series trends
    out of the training range). Errors, MASE included, are unchanged by the shift; add
    ``extra["level"]`` back to get the standardised values. ``extra`` holds
    ``seasonal_naive`` (the value 52 weeks before each target, scaled, shaped like the
    targets), ``target_time`` ((N, output_length) datetime64), ``mean`` and ``std`` (undo
    the scaling: value * std + mean), ``season`` (52) and ``train_naive_mae`` (the mean
    absolute error of the seasonal-naive forecast over the train period, scaled: the MASE
    denominator). The data ignore ``seed`` and ``sizes``.
    """

    def __init__(
        self, input_length: int = 52, output_length: int = 13, val_fraction: float = 0.1,
        test_fraction: float = 0.1, relative: bool = True,
    ):
        self.input_length, self.output_length = input_length, output_length
        self.relative = relative
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def build(self, seed: int, sizes: dict[str, int]) -> dict[str, VectorSplit]:
        series = load_series()
        values, times = series.to_numpy(dtype=np.float64), series.index.to_numpy()
        n = len(values)
        val_start = round(n * (1 - self.val_fraction - self.test_fraction))
        test_start = round(n * (1 - self.test_fraction))
        train = values[:val_start]
        mean, std = float(train.mean()), float(train.std())
        z = (values - mean) / std
        naive_mae = float(np.abs(z[SEASON:val_start] - z[: val_start - SEASON]).mean())
        periods = {
            "train": (max(self.input_length, SEASON), val_start),
            "val": (val_start, test_start),
            "test": (test_start, n),
        }
        steps = np.arange(self.output_length)
        splits = {}
        for name in SPLITS:
            start, stop = periods[name]
            first = np.arange(start, stop - self.output_length + 1)
            if len(first) == 0:
                raise ValueError(
                    f"the {name} period ({stop - start} weeks) is too short for windows of "
                    f"{self.input_length} + {self.output_length} weeks"
                )
            inputs = first[:, None] - self.input_length + np.arange(self.input_length)
            targets = first[:, None] + steps
            level = z[inputs[:, -1:]] if self.relative else 0.0
            splits[name] = VectorSplit(
                (z[inputs] - level)[..., None].astype(np.float32),
                (z[targets] - level)[..., None].astype(np.float32),
                {
                    "seasonal_naive": (z[targets - SEASON] - level)[..., None].astype(np.float32),
                    "level": np.asarray(level, dtype=np.float32),
                    "target_time": times[targets],
                    "mean": mean,
                    "std": std,
                    "season": SEASON,
                    "train_naive_mae": naive_mae,
                },
            )
        return splits
