"""Pythia 8 event batches as flat NumPy arrays, plus the kinematic helpers every dataset shares.

`pythia.nextBatch` returns an awkward array per batch; flattening it once into NumPy columns with event
offsets lets truth matching run vectorised over thousands of events instead of looping over particles in
Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version

import awkward as ak
import numpy as np

NEUTRINOS = (12, 14, 16)
PYTHIA_SEED_MAX = 900_000_000  # Pythia's Random:seed accepts 1..900000000


def library_versions() -> dict[str, str]:
    """Versions recorded in every manifest: the same seed gives the same file only with these versions."""
    import fastjet
    import h5py

    from trigger import __version__

    return {"pythia8mc": version("pythia8mc"), "fastjet": fastjet.__version__, "awkward": ak.__version__,
            "numpy": np.__version__, "h5py": h5py.__version__, "trigger": __version__}


def derive_seed(*keys: int) -> int:
    """A Pythia seed in 1..900000000 derived from the user's seed and the chunk's coordinates."""
    state = np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]
    return int(state % PYTHIA_SEED_MAX) + 1


def make_pythia(settings: list[str], seed: int):
    """An initialised, silent Pythia seeded with `seed`; raises RuntimeError if a setting is rejected."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    base = ["Beams:eCM = 13000.", "Print:quiet = on", "Next:numberCount = 0", "Random:setSeed = on",
            f"Random:seed = {seed}"]
    for line in base + settings:
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected setting {line!r}")
    if not pythia.init():
        raise RuntimeError("Pythia failed to initialise")
    return pythia


def generate_batch(pythia, n_events: int) -> EventRecord:
    """`n_events` events (failed ones are skipped by Pythia, so the batch may be a little shorter)."""
    return EventRecord.from_awkward(pythia.nextBatch(n_events))


class Momenta:
    """pT, eta and phi of arrays of momenta (the `px`, `py`, `pz` of a particle or jet record)."""

    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray

    @property
    def pt(self) -> np.ndarray:
        return np.hypot(self.px, self.py)

    @property
    def eta(self) -> np.ndarray:
        return pseudorapidity(self.px, self.py, self.pz)

    @property
    def phi(self) -> np.ndarray:
        return np.arctan2(self.py, self.px)


@dataclass
class EventRecord(Momenta):
    """The full Pythia event record of a batch: per-particle columns, `offsets[i]:offsets[i+1]` is event i.

    Mother/daughter columns are converted to global indices into the flat columns (-1 when absent).
    """

    id: np.ndarray
    status: np.ndarray
    daughter1: np.ndarray
    daughter2: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    offsets: np.ndarray
    event: np.ndarray  # event index of each particle

    @classmethod
    def from_awkward(cls, batch: ak.Array) -> EventRecord:
        prt = batch.prt
        counts = ak.to_numpy(ak.num(prt.id, axis=1)).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        event = np.repeat(np.arange(len(counts)), counts)
        base = offsets[:-1][event]

        def flat(x: ak.Array) -> np.ndarray:
            return ak.to_numpy(ak.flatten(x, axis=1))

        def glob(d: np.ndarray) -> np.ndarray:
            return np.where(d > 0, d + base, -1)

        return cls(flat(prt.id), flat(prt.status), glob(flat(prt.daughter1)), glob(flat(prt.daughter2)),
                   flat(prt.p.px), flat(prt.p.py), flat(prt.p.pz), flat(prt.p.e), offsets, event)

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    def visible_final(self) -> np.ndarray:
        """Final-state particles a detector sees: everything stable except neutrinos."""
        return (self.status > 0) & ~np.isin(np.abs(self.id), NEUTRINOS)

    def first(self, mask: np.ndarray) -> np.ndarray:
        """Per event, the global index of the first particle where `mask` holds, -1 if none."""
        out = np.full(self.n_events, -1, dtype=np.int64)
        hits = np.flatnonzero(mask)
        out[self.event[hits[::-1]]] = hits[::-1]
        return out

    def decaying(self, pdg: int, daughters: tuple[int, ...]) -> np.ndarray:
        """Per event, the last copy of particle `pdg` (signed), i.e. the one whose first daughter's |id| is
        in `daughters`; -1 if the event has none."""
        d1 = self.daughter1
        d1_id = np.where(d1 >= 0, np.abs(self.id[np.maximum(d1, 0)]), 0)
        return self.first((self.id == pdg) & np.isin(d1_id, daughters))

    def momenta(self, mask: np.ndarray) -> ak.Array:
        """The selected particles as a per-event awkward array of (px, py, pz, E) for FastJet."""
        return jagged_momenta(self.px[mask], self.py[mask], self.pz[mask], self.e[mask],
                              np.bincount(self.event[mask], minlength=self.n_events))


def jagged_momenta(px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray,
                   counts: np.ndarray) -> ak.Array:
    """Flat four-momenta grouped into lists of `counts` entries, in FastJet's input layout."""
    flat = ak.zip({"px": px, "py": py, "pz": pz, "E": e}, with_name="Momentum4D")
    return ak.unflatten(flat, counts)


def pseudorapidity(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """eta = asinh(pz / pT), finite for every particle with pT > 0 (exactly collinear ones get +-20)."""
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(pz / pt)
    return np.where(pt > 0, eta, np.sign(pz) * 20.0)


def delta_phi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b wrapped into [-pi, pi)."""
    return (np.asarray(a) - np.asarray(b) + np.pi) % (2 * np.pi) - np.pi


def delta_r(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """Angular distance in (eta, phi), broadcasting."""
    return np.hypot(np.asarray(eta1) - np.asarray(eta2), delta_phi(phi1, phi2))


@dataclass
class Jets(Momenta):
    """Clustered jets of a batch, flat: `event[j]` is jet j's event, `constituents[j]` its input indices
    (per event, into the list given to FastJet; None when not asked for), jets in each event sorted by
    decreasing pT."""

    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    event: np.ndarray
    constituents: ak.Array | None

    @property
    def mass(self) -> np.ndarray:
        m2 = self.e**2 - self.px**2 - self.py**2 - self.pz**2
        return np.sqrt(np.maximum(m2, 0.0))


def cluster_antikt(particles: ak.Array, radius: float, min_pt: float, *, constituents: bool = True) -> Jets:
    """Anti-kt jets above `min_pt` (GeV) of every event, pT-ordered within each event; extracting the
    constituents costs about a third of the clustering, so it can be skipped."""
    import fastjet

    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    seq = fastjet.ClusterSequence(particles, jet_def)
    jets = seq.inclusive_jets(min_pt=min_pt)
    order = ak.argsort(np.hypot(jets.px, jets.py), axis=1, ascending=False, stable=True)
    jets = jets[order]
    index = ak.flatten(seq.constituent_index(min_pt=min_pt)[order], axis=1) if constituents else None
    counts = ak.to_numpy(ak.num(jets, axis=1))

    def flat(x: ak.Array) -> np.ndarray:
        return ak.to_numpy(ak.flatten(x, axis=1)).astype(np.float64)

    return Jets(flat(jets.px), flat(jets.py), flat(jets.pz), flat(jets.E),
                np.repeat(np.arange(len(counts)), counts), index)
