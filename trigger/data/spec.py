"""What a dataset module declares so that one chunked, seeded, streaming writer can produce them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Stream:
    """One physics process (or class) of a dataset, generated in chunks of `chunk_events` Pythia events.

    `fraction` of the requested rows come from this stream; `rows_per_event` is a rough yield used only to
    size the first chunks of small requests (chunk sizes never depend on what was generated, so files stay
    reproducible).
    """

    name: str
    fraction: float
    settings: tuple[str, ...]
    chunk_events: int
    rows_per_event: float
    description: str
    label: int = 0
    kind: str = ""


@dataclass(frozen=True)
class ArraySpec:
    """A top-level HDF5 array: per-row shape, dtype and what it holds."""

    shape: tuple[int, ...]
    dtype: str
    description: str


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its streams, arrays, names and the function that turns one chunk of events into rows."""

    name: str
    unit: str  # what --events counts ("jets" or "events")
    streams: tuple[Stream, ...]
    arrays: dict[str, ArraySpec]
    feature_names: list[str]
    class_names: list[str]
    make_chunk: Callable[[Stream, int, int], dict[str, np.ndarray]]
    settings: dict[str, object] = field(default_factory=dict)
    extra_manifest: dict[str, object] = field(default_factory=dict)
    options: dict[str, object] = field(default_factory=dict)  # the dataset's own `data generate` options

    def command(self, n_rows: int, seed: int) -> str:
        """The `trigger data generate` command that makes this dataset (for the manifest)."""
        extra = "".join(f" --{key.replace('_', '-')} {value}" for key, value in self.options.items())
        return f"trigger data generate {self.name} --events {n_rows} --seed {seed}{extra}"

    def quotas(self, n_rows: int) -> list[int]:
        """Rows per stream summing to `n_rows`: floor of each fraction, remainders to the largest parts."""
        fractions = np.array([s.fraction for s in self.streams], dtype=np.float64)
        exact = fractions / fractions.sum() * n_rows
        quota = np.floor(exact).astype(np.int64)
        for i in np.argsort(-(exact - quota), kind="stable")[: n_rows - int(quota.sum())]:
            quota[i] += 1
        return [int(q) for q in quota]
