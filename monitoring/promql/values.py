"""The values an expression evaluates to, over all the steps of a query at once: a scalar is
one float per step, an instant vector a list of series each with a value and a presence
flag per step (a series absent at a step has no sample there), a range vector the raw
samples of each series with the window they are read in."""

from dataclasses import dataclass

import numpy as np

from .errors import ExecutionError
from .selection import SeriesData

NAME = "__name__"


def label_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """A hashable identity of a label set, which also orders label sets as Prometheus does."""
    return tuple(sorted(labels.items()))


class VSeries:
    """One series of an instant vector over the steps."""

    __slots__ = ("labels", "present", "values", "_key")

    def __init__(self, labels: dict[str, str], values: np.ndarray, present: np.ndarray):
        self.labels = labels
        self.values = values
        self.present = present
        self._key = None

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        if self._key is None:
            self._key = label_key(self.labels)
        return self._key


@dataclass(slots=True)
class Scalar:
    values: np.ndarray


@dataclass(slots=True)
class String:
    value: str


@dataclass(slots=True)
class Vector:
    series: list[VSeries]


@dataclass(slots=True)
class Matrix:
    """The samples of each series, read once for all steps; step t's window is
    [t - offset - range, t - offset]."""

    series: list[SeriesData]
    range_ms: int
    offset_ms: int


Value = Scalar | String | Vector | Matrix


def without_name(labels: dict[str, str]) -> dict[str, str]:
    if NAME not in labels:
        return labels
    return {name: value for name, value in labels.items() if name != NAME}


def unique_series(series: list[VSeries]) -> list[VSeries]:
    """Series with the same labels merged into one. Two of them present at the same step is
    Prometheus' "vector cannot contain metrics with the same labelset" (for example
    `abs({__name__=~"a|b"})` where a and b have the same labels once the name is dropped)."""
    by_key: dict[tuple, list[VSeries]] = {}
    for item in series:
        by_key.setdefault(item.key, []).append(item)
    if len(by_key) == len(series):
        return series
    merged: list[VSeries] = []
    for group in by_key.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        present = np.zeros_like(group[0].present)
        values = np.full(group[0].values.shape, np.nan)
        for item in group:
            if (present & item.present).any():
                raise ExecutionError("vector cannot contain metrics with the same labelset")
            values = np.where(item.present, item.values, values)
            present = present | item.present
        merged.append(VSeries(group[0].labels, values, present))
    return merged
