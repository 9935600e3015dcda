"""Human-readable dates in many formats -> ISO 8601 ("3 March 1994" -> "1994-03-03")."""

from __future__ import annotations

import datetime as dt

import numpy as np

from pipeline.data.tasks.base import SPLITS, TokenSplit, TokenTask
from pipeline.data.vocab import Vocab

FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FORMATS = (
    "{d} {B} {Y}",
    "{dd} {B} {Y}",
    "{B} {d}, {Y}",
    "{A}, {B} {d}, {Y}",
    "{A} {d} {B} {Y}",
    "{a}, {d} {b} {Y}",
    "{b} {d} {Y}",
    "{b} {d}, {yy}",
    "{d}-{b}-{yy}",
    "{d} {b} {Y}",
    "{mm}/{dd}/{yy}",
    "{m}/{d}/{Y}",
    "{dd}.{mm}.{Y}",
    "{Y}.{mm}.{dd}",
    "{Y}/{mm}/{dd}",
    "{Y}{mm}{dd}",
    "{d} {b_lower} {Y}",
)


def format_date(date: dt.date, fmt: str) -> str:
    """``date`` written in ``fmt``, with English names whatever the locale."""
    return fmt.format(
        d=date.day, dd=f"{date.day:02d}", m=date.month, mm=f"{date.month:02d}",
        Y=date.year, yy=f"{date.year % 100:02d}",
        B=MONTHS[date.month - 1], b=MONTHS[date.month - 1][:3],
        b_lower=MONTHS[date.month - 1][:3].lower(),
        A=WEEKDAYS[date.weekday()], a=WEEKDAYS[date.weekday()][:3],
    )


class Dates(TokenTask):
    """A date between 1950-01-01 and 2049-12-31 in one of :data:`FORMATS` -> its ISO form.

    Dates and formats are drawn uniformly; the century makes two-digit years unambiguous
    (50-99 are 19xx, 00-49 are 20xx), numeric month-first formats use "/", day-first ones
    "." and year-first ones four-digit years, so every source string names one date.
    Source and target are characters; the vocabularies hold every character a format can
    produce, whatever the sizes.
    Every source occurs once in the whole data set: each split comes from its own random
    stream (seed, split) and skips strings already drawn, so no validation or test pair is
    in train and no test pair is in validation.
    """

    def build(self, seed: int, sizes: dict[str, int]) -> dict[str, TokenSplit]:
        days = (LAST - FIRST).days + 1
        seen: set[str] = set()
        splits = {}
        for i, name in enumerate(SPLITS):
            rng = np.random.default_rng([seed, i])
            sources, targets = [], []
            for _ in range(100 * sizes[name] + 1000):
                if len(sources) == sizes[name]:
                    break
                date = FIRST + dt.timedelta(days=int(rng.integers(days)))
                text = format_date(date, FORMATS[int(rng.integers(len(FORMATS)))])
                if text not in seen:
                    seen.add(text)
                    sources.append(list(text))
                    targets.append(list(date.isoformat()))
            if len(sources) < sizes[name]:
                raise ValueError(
                    f"cannot draw {sizes[name]} distinct {name} dates; there are "
                    f"{days * len(FORMATS)} date strings in all"
                )
            splits[name] = TokenSplit(sources, targets)
        return splits

    def vocabularies(self, splits):
        names = "".join(MONTHS + WEEKDAYS)
        source = sorted(set(names + names.lower() + "0123456789 ,./-"))
        return Vocab(source), Vocab(list("0123456789-"))
