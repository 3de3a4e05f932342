"""Physics data: the `jets`, `ttbar` and `l1` datasets, generated locally with Pythia 8 and FastJet.

`generate` writes a dataset to HDF5 (see docs/data.md for every array and feature); `load` reads one back as
train / validation / test splits. Generation imports Pythia and FastJet lazily, so loading needs only h5py.
"""

from __future__ import annotations

from trigger.data.generation import DATASET_NAMES, generate
from trigger.data.loader import Dataset, load, read

__all__ = ["DATASET_NAMES", "Dataset", "generate", "load", "read"]
