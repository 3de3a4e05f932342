"""`trigger.data.load`: read a generated dataset and split it into train / validation / test.

Every model family reads its data through here, so a corrupt, truncated or foreign file is refused with a
one-line `InputError` naming the file instead of failing later inside training.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trigger.errors import InputError

# arrays each dataset must have: name -> (per-row shape, dtype kind)
REQUIRED: dict[str, dict[str, tuple[tuple[int, ...], str]]] = {
    "jets": {"features": ((16,), "f"), "constituents": ((30, 3), "f"), "label": ((), "i"),
             "jet_pt": ((), "f"), "jet_eta": ((), "f"), "jet_mass": ((), "f")},
    "ttbar": {"jets": ((10, 5), "f"), "mask": ((10,), "b"), "flavour": ((10,), "i"), "n_jets": ((), "i"),
              "assignment": ((6,), "i"), "fully_matched": ((), "b")},
    "l1": {"objects": ((19, 3), "f"), "label": ((), "i"), "process": ((), "i")},
    "zerobias": {"objects": ((19, 3), "f"), "label": ((), "i"), "process": ((), "i"), "pileup": ((), "i"),
                 "library": ((), "i")},
}


@dataclass
class Dataset:
    """A loaded dataset: three splits of the file's arrays (same keys), plus its names and manifest."""

    name: str
    path: Path
    manifest: dict[str, Any]
    feature_names: list[str]
    class_names: list[str]
    train: dict[str, np.ndarray] = field(repr=False)
    val: dict[str, np.ndarray] = field(repr=False)
    test: dict[str, np.ndarray] = field(repr=False)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(next(iter(v.values())))}" for k, v in
                          (("train", self.train), ("val", self.val), ("test", self.test)))
        return f"Dataset({self.name!r}, {self.path}, {sizes})"


def _check_fractions(fractions: Any) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(v > 0 and math.isfinite(v) for v in values) or abs(sum(values) - 1) > 1e-6:
        raise InputError(f"fractions: must be three positive numbers summing to 1, got {fractions!r}")
    return values  # type: ignore[return-value]


def load(path: str | Path, *, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0,
         max_events: int | None = None) -> Dataset:
    """Load `path` and split it by a permutation drawn from `seed` (the same seed gives the same split).

    `max_events` keeps that many rows of the permuted file before splitting, so a small run still sees every
    class.
    """
    path = Path(path)
    fractions = _check_fractions(fractions)
    if max_events is not None and (not isinstance(max_events, int) or max_events <= 0):
        raise InputError(f"max_events: must be a positive integer or None, got {max_events!r}")
    manifest, arrays = read(path)
    n = len(arrays[next(iter(arrays))])
    order = np.random.default_rng(seed).permutation(n)
    if max_events is not None:
        order = order[:max_events]
    n_train = round(fractions[0] * len(order))
    n_val = round(fractions[1] * len(order))
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    train, val, test = ({k: v[idx] for k, v in arrays.items()} for idx in parts)
    return Dataset(manifest["dataset"], path, manifest, list(manifest["feature_names"]),
                   list(manifest["class_names"]), train, val, test)


def _manifest(path: Path, f: h5py.File) -> dict[str, Any]:
    raw = f.attrs.get("manifest")
    if raw is None:
        raise InputError(f"{path}: no manifest attribute (not made by `trigger data generate`)")
    try:
        manifest = json.loads(raw)
    except (TypeError, ValueError):
        raise InputError(f"{path}: the manifest is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: the manifest is not a JSON object")
    for key in ("dataset", "feature_names", "class_names"):
        if key not in manifest:
            raise InputError(f"{path}: the manifest has no {key!r}")
    if manifest["dataset"] not in REQUIRED:
        raise InputError(f"{path}: unknown dataset {manifest['dataset']!r} in the manifest")
    return manifest


def read(path: str | Path, max_events: int | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and the first `max_events` rows (all by default) of every array, unsplit, in file order:
    what `trigger emulate` runs a compiled design on."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (make it with `trigger data generate`)")
    try:
        with h5py.File(path, "r") as f:
            manifest = _manifest(path, f)
            return manifest, _read_arrays(path, f, manifest["dataset"], max_events)
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable HDF5 dataset (corrupt or truncated?): {reason}") from None


def _read_arrays(path: Path, f: h5py.File, dataset: str, max_events: int | None = None) -> dict[str, np.ndarray]:
    """Read every required array (in full by default, which decompresses every chunk, so truncation shows
    here; or its first `max_events` rows)."""
    arrays: dict[str, np.ndarray] = {}
    rows = None
    for name, (shape, kind) in REQUIRED[dataset].items():
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise InputError(f"{path}: missing array {name!r} for dataset {dataset!r}")
        ds = f[name]
        if ds.shape[1:] != shape or ds.dtype.kind != kind:
            raise InputError(f"{path}: array {name!r} has shape {ds.shape} and dtype {ds.dtype}, expected "
                             f"(N, {', '.join(map(str, shape))}) of kind {kind!r}".replace("(N, )", "(N,)"))
        if rows is None:
            rows = ds.shape[0]
        elif ds.shape[0] != rows:
            raise InputError(f"{path}: array {name!r} has {ds.shape[0]} rows, others have {rows}")
        arrays[name] = ds[()] if max_events is None else ds[:max_events]
    if not rows:
        raise InputError(f"{path}: the dataset is empty")
    return arrays
