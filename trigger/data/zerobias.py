"""`zerobias`: bunch crossings with pileup in the `l1` layout, and signals embedded in the same pileup.

A crossing is Poisson(mu) inelastic pp collisions (Pythia `SoftQCD:inelastic`, 13.6 TeV), the sample a
zero-bias trigger records and the background a trigger rate is a fraction of. Generating every collision
afresh would cost mu x 2.6 ms per crossing, so each chunk generates one *library* of minimum-bias events and
draws each crossing's collisions from it at random, merging them at particle level. As in the L1 calorimeter
trigger, jets are found on towers rather than particles: the merged particles' ET is summed into
0.087 x 0.087 towers and a 9 x 9-tower window around each local-maximum seed tower is a jet. Leptons and MET
come from the merged particles through the `l1` object code (`l1.l1_objects`), with the same resolutions.
docs/data.md gives every choice, the cost, and the correlation the library introduces.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from hashlib import sha256
from importlib.metadata import version
from pathlib import Path

import numpy as np

from trigger.data import l1
from trigger.data.events import Jets, derive_seed, generate_batch, make_pythia
from trigger.data.l1 import Particles, l1_objects
from trigger.data.spec import ArraySpec, DatasetSpec, Stream
from trigger.errors import InputError

PILEUP = 60.0  # default mean number of inelastic collisions per crossing (Run 3, docs/data.md)
MAX_PILEUP = 300.0
LIBRARY_EVENTS = 2000  # default minimum-bias library size, per chunk
CROSSINGS_PER_CHUNK = 2000
SIGNAL_EVENTS_PER_CHUNK = 1000
BATCH_COLLISIONS = 4000  # collisions merged at once (about 150 visible particles each): bounds the memory
LIBRARY_BATCH = 500  # library events per Pythia batch: bounds the memory of the full event records
MPI_INIT_SEED = 1  # seed of the cached MPI initialisation (see _pythia)
ECM = "Beams:eCM = 13600."  # Run 3; after make_pythia's 13 TeV default, so it wins
MINIMUM_BIAS = (ECM, "SoftQCD:inelastic = on")
TOWER_ETA_BINS = 115  # over the calorimeter's |eta| < 5: 10 / 115 = 0.0870 wide
TOWER_PHI_BINS = 72  # 2 pi / 72 = 0.0873 wide
TOWER_MIN_ET = 0.5  # GeV, on the tower's summed ET (one L1 trigger-primitive LSB)
JET_WINDOW = 9  # towers in eta and in phi of a jet (0.78 x 0.79, the CMS L1 jet)
JET_SEED_ET = 4.0  # GeV, a jet's seed tower (CMS L1's seed threshold)
RHO_PATCH = (5, 8)  # towers in eta x phi of the patches whose median ET density is the crossing's rho
_ETA_WIDTH = 2 * l1.CALO_MAX_ETA / TOWER_ETA_BINS
_PHI_WIDTH = 2 * np.pi / TOWER_PHI_BINS
_TOWERS = TOWER_ETA_BINS * TOWER_PHI_BINS
_WINDOW_AREA = JET_WINDOW**2 * _ETA_WIDTH * _PHI_WIDTH

# The ADC2021 signals (Govorkova et al., Sci Data 9 (2022) 118) and the l1 dataset's Z', in label order:
# name, hard-process settings, description
SIGNALS = (
    ("A_4l", ("Higgs:useBSM = on", "HiggsBSM:gg2H2 = on", "35:m0 = 50.", "35:onMode = off",
              "35:onIfMatch = 23 23", "23:onMode = off", "23:onIfAny = 11 13"),
     "neutral scalar A (50 GeV, gg -> A; Pythia's H0) -> Z* Z* -> 4 l (l = e, mu)"),
    ("LQ_btau", ("LeptoQuark:all = on", "42:m0 = 80.", "42:0:products = 5 -15"),
     "scalar leptoquark (80 GeV, all LeptoQuark processes: mostly pair production) -> b tau"),
    ("h_tautau", l1.PROCESSES["h_tautau"], "light scalar h0 (60 GeV, gg -> h) -> tau tau"),
    ("Hplus_taunu", l1.PROCESSES["Hplus_taunu"], "charged scalar h+- (60 GeV, f fbar' -> h+-) -> tau nu"),
    ("Zprime_ll", l1.PROCESSES["Zprime_ll"], "Z' (1 TeV, SM-like couplings) -> e e, mu mu"),
)
PROCESS_NAMES = ("zero_bias", *(name for name, _, _ in SIGNALS))


def make_spec(pileup: float = PILEUP, library: int = LIBRARY_EVENTS, signal_fraction: float = 0.0) -> DatasetSpec:
    """The dataset for mean pileup `pileup`, `library` minimum-bias events per chunk, and `signal_fraction`
    of the rows signal crossings (split equally over the five signals); one-line InputError if out of range."""
    if isinstance(pileup, bool) or not isinstance(pileup, int | float) or not 0 <= pileup <= MAX_PILEUP:
        raise InputError(f"--pileup: must be a number in [0, {MAX_PILEUP:g}], got {pileup!r}")
    if isinstance(library, bool) or not isinstance(library, int) or library <= 0:
        raise InputError(f"--library: must be a positive integer, got {library!r}")
    if isinstance(signal_fraction, bool) or not isinstance(signal_fraction, int | float) \
            or not 0 <= signal_fraction <= 1:
        raise InputError(f"--signal-fraction: must be a number in [0, 1], got {signal_fraction!r}")
    pileup, signal_fraction = float(pileup), float(signal_fraction)
    streams = (
        Stream("zero_bias", 1.0 - signal_fraction, MINIMUM_BIAS, chunk_events=CROSSINGS_PER_CHUNK,
               rows_per_event=1.0, label=0, kind="background",
               description=f"bunch crossing of Poisson(mu = {pileup:g}) inelastic collisions"),
        *(Stream(name, signal_fraction / len(SIGNALS), (ECM, *settings), chunk_events=SIGNAL_EVENTS_PER_CHUNK,
                 rows_per_event=1.0, label=label, kind="signal",
                 description=f"{description}, on a crossing of Poisson(mu = {pileup:g}) pileup")
          for label, (name, settings, description) in enumerate(SIGNALS, start=1)),
    )
    object_settings = {k: v for k, v in l1.SPEC.settings.items()
                       if k not in ("signal_fraction_each", "background_mix", "mpi")}
    return DatasetSpec(
        name="zerobias",
        unit="crossings",
        streams=streams,
        arrays={
            **l1.SPEC.arrays,
            "pileup": ArraySpec((), "int16", "number of minimum-bias collisions in the crossing (Poisson(mu); "
                                             "a signal crossing has the signal collision besides)"),
            "library": ArraySpec((), "int32", "Pythia seed of the minimum-bias library the crossing's pileup "
                                              "was drawn from: crossings sharing it share collisions"),
        },
        feature_names=l1.FEATURE_NAMES,
        class_names=["background", *(name for name, _, _ in SIGNALS)],
        make_chunk=functools.partial(make_chunk, pileup=pileup, library=library),
        settings={
            **object_settings,
            "pileup": {"mu": pileup, "collisions": "Poisson(mu) SoftQCD:inelastic per crossing",
                       "library_events_per_chunk": library, "library_pythia_settings": list(MINIMUM_BIAS),
                       "library_seed": "the chunk's seed (array `library`); signal events use "
                                       "derive_seed(chunk seed, 1)",
                       "draw": "uniform with replacement from the chunk's library"},
            "jet_inputs": {"towers_eta_phi": [TOWER_ETA_BINS, TOWER_PHI_BINS], "tower_eta_width": _ETA_WIDTH,
                           "tower_phi_width": _PHI_WIDTH, "tower_min_et_GeV": TOWER_MIN_ET,
                           "tower_acceptance_abs_eta": l1.CALO_MAX_ETA,
                           "jet_algorithm": {"kind": "sliding window (CMS L1 Stage-2)",
                                             "window_towers": [JET_WINDOW, JET_WINDOW],
                                             "seed_tower_min_et_GeV": JET_SEED_ET,
                                             "seed": "maximum of its window", "position": "seed tower centre"},
                           "pileup_subtraction": {"method": "jet pT - rho x window area (area-median)",
                                                  "rho": "median ET density of the crossing's "
                                                         f"{RHO_PATCH[0]} x {RHO_PATCH[1]}-tower patches"}},
            "signal_fraction": signal_fraction,
            "mpi": "on",
            "mpi_initialisation": f"computed once per machine with Random:seed = {MPI_INIT_SEED}, cached and "
                                  "read by every chunk (MultipartonInteractions:reuseInit)",
        },
        extra_manifest=l1.SPEC.extra_manifest,
        options={"pileup": pileup, "library": library, "signal_fraction": signal_fraction},
    )


def make_chunk(stream: Stream, n_events: int, seed: int, *, pileup: float, library: int) -> dict[str, np.ndarray]:
    """`n_events` crossings of one stream: the chunk's library seeded with `seed`, then per crossing the signal
    event (signal streams) plus Poisson(pileup) library events, summarised as the 19 L1 objects."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    signal = stream.kind == "signal"
    sources = []  # the signal events (signal streams), then the library: source events, indexed in this order
    if signal:
        sources.append(Particles.visible(generate_batch(_pythia(stream.settings, derive_seed(seed, 1)), n_events)))
        n_events = sources[0].n_events  # Pythia skips failed events
    counts = rng.poisson(pileup, n_events)
    if counts.any():
        pythia = _pythia(MINIMUM_BIAS, seed)
        sources += [Particles.visible(generate_batch(pythia, min(LIBRARY_BATCH, library - done)))
                    for done in range(0, library, LIBRARY_BATCH)]
    source = _concatenate(sources, n_events)
    offsets = np.searchsorted(source.event, np.arange(source.n_events + 1))

    # the collisions of every crossing, in order: its signal event (signal streams), then its pileup
    per = counts + signal
    first = np.cumsum(per) - per
    collisions = np.empty(int(per.sum()), dtype=np.int64)
    pileup_slots = np.ones(len(collisions), dtype=bool)
    if signal:
        collisions[first] = np.arange(n_events)
        pileup_slots[first] = False
    library_start = n_events if signal else 0
    collisions[pileup_slots] = library_start + rng.integers(0, max(source.n_events - library_start, 1),
                                                            int(counts.sum()))

    objects = np.empty((n_events, len(l1.OBJECTS), 3), dtype=np.float32)
    batch = max(1, BATCH_COLLISIONS // (int(np.ceil(pileup)) + 1))
    for start in range(0, n_events, batch):
        end = min(start + batch, n_events)
        lo, hi = first[start], first[end - 1] + per[end - 1]
        merged = _merge(source, offsets, collisions[lo:hi], np.repeat(np.arange(end - start), per[start:end]),
                        end - start)
        objects[start:end] = crossing_objects(merged, rng)
    return {"objects": objects, "label": np.full(n_events, stream.label, np.int8),
            "process": np.full(n_events, PROCESS_NAMES.index(stream.name), np.int8),
            "pileup": counts.astype(np.int16), "library": np.full(n_events, seed, np.int32)}


def _pythia(settings: tuple[str, ...], seed: int):
    """`make_pythia` with the multiparton-interaction initialisation read from a per-machine cache.

    Initialising MPI for `SoftQCD:inelastic` (diffractive systems included) takes about 10 s, a chunk's
    worth of crossings. The initialisation is Monte Carlo, so it is computed once with a fixed seed and every
    chunk reads it, whether or not the cache existed before: files do not depend on the cache's state.
    """
    key = sha256(json.dumps([version("pythia8mc"), MPI_INIT_SEED, *settings]).encode()).hexdigest()[:16]
    path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trigger" / f"pythia-mpi-{key}.dat"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        make_pythia([*settings, "MultipartonInteractions:reuseInit = 1",
                     f"MultipartonInteractions:initFile = {tmp}"], MPI_INIT_SEED)
        tmp.replace(path)  # atomic: concurrent workers write the same bytes
    return make_pythia([*settings, "MultipartonInteractions:reuseInit = 2",
                        f"MultipartonInteractions:initFile = {path}"], seed)


def _concatenate(parts: list[Particles], n_empty: int) -> Particles:
    """The events of `parts` one after the other (event indices shifted); no parts: `n_empty` empty events."""
    if not parts:
        empty = np.empty(0)
        return Particles(np.empty(0, np.int64), empty, empty, empty, empty, np.empty(0, np.int64), n_empty)
    shifts = np.cumsum([0] + [p.n_events for p in parts])
    return Particles(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("id", "px", "py", "pz", "e")),
                     np.concatenate([p.event + s for p, s in zip(parts, shifts, strict=False)]), int(shifts[-1]))


def _merge(source: Particles, offsets: np.ndarray, collisions: np.ndarray, crossing: np.ndarray,
           n_crossings: int) -> Particles:
    """The particles of source events `collisions` merged into crossings (`crossing[k]` holds collision k,
    ascending)."""
    starts = offsets[collisions]
    lengths = offsets[collisions + 1] - starts
    index = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
    merged = Particles(source.id[index], source.px[index], source.py[index], source.pz[index], source.e[index],
                       np.repeat(crossing, lengths), n_crossings)
    for name in ("pt", "eta", "phi"):  # gathered rather than recomputed for every crossing: the same values
        setattr(merged, name, getattr(source, name)[index])
    return merged


@dataclass
class Towers:
    """The calorimeter towers of a batch of crossings (0.087 x 0.087, |eta| < 5): each particle's tower and ET
    (= E / cosh eta), every tower's summed ET, and each crossing's pileup density rho (GeV per unit area): the
    median density of its tower patches, robust against its hard jets."""

    cell: np.ndarray
    et: np.ndarray
    grid: np.ndarray  # (n_events * towers,) summed ET, no threshold
    rho: np.ndarray  # of the towers above threshold, which the jets are made of
    rho_all: np.ndarray  # of all deposits, which a particle isolation cone sums
    n_events: int

    @classmethod
    def of(cls, vis: Particles) -> Towers:
        ieta = np.clip(((vis.eta + l1.CALO_MAX_ETA) / _ETA_WIDTH).astype(np.int64), 0, TOWER_ETA_BINS - 1)
        iphi = ((vis.phi + np.pi) / _PHI_WIDTH).astype(np.int64) % TOWER_PHI_BINS
        cell = (vis.event * TOWER_ETA_BINS + ieta) * TOWER_PHI_BINS + iphi
        et = vis.e / np.cosh(vis.eta)
        grid = np.bincount(cell, weights=et, minlength=vis.n_events * _TOWERS)
        return cls(cell, et, grid, _rho(_lit(grid), vis.n_events), _rho(grid, vis.n_events), vis.n_events)

    def jets(self, keep: np.ndarray) -> Jets:
        """Pileup-subtracted sliding-window jets of the towers of the `keep` particles, above 8 GeV (`l1`'s
        clustering cut), pT-ordered per crossing.

        The CMS Level-1 calorimeter trigger's jet finder (Stage-2, JINST 12 (2017) P01020): a lit tower above
        `JET_SEED_ET` that is the maximum of the 9 x 9 towers around it (phi wraps, eta stops at the
        calorimeter's edge) seeds a jet, whose ET is that window's sum less rho x its area, at the seed
        tower's centre. One vectorised pass over the crossings' tower grids: clustering the ~2500 towers
        a mu = 60 crossing lights with anti-kt cost 2 ms per crossing, the largest piece of the generation.
        """
        from scipy.ndimage import maximum_filter, uniform_filter

        drop = ~keep
        grid = _lit(self.grid - np.bincount(self.cell[drop], weights=self.et[drop], minlength=self.grid.size))
        grid = grid.reshape(self.n_events, TOWER_ETA_BINS, TOWER_PHI_BINS)
        window = (1, JET_WINDOW, JET_WINDOW)
        modes = ("constant", "constant", "wrap")
        seeds = (grid > JET_SEED_ET) & (grid == maximum_filter(grid, size=window, mode=modes))
        event, ieta, iphi = np.nonzero(seeds)
        summed = uniform_filter(grid, size=window, mode=modes)[event, ieta, iphi] * JET_WINDOW**2
        pt = summed - self.rho[event] * _WINDOW_AREA
        kept = pt > l1.JET_SEED_PT
        event, pt = event[kept], pt[kept]
        eta = -l1.CALO_MAX_ETA + (ieta[kept] + 0.5) * _ETA_WIDTH
        phi = -np.pi + (iphi[kept] + 0.5) * _PHI_WIDTH
        order = np.lexsort((-pt, event))
        event, pt, eta, phi = event[order], pt[order], eta[order], phi[order]
        return Jets(pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta), event, None)


def _lit(grid: np.ndarray) -> np.ndarray:
    """The towers above threshold (the others read as zero)."""
    return np.where(grid > TOWER_MIN_ET, grid, 0.0)


def _rho(grid: np.ndarray, n_events: int) -> np.ndarray:
    """Per event, the median ET density of its 5 x 8-tower patches."""
    n_eta, n_phi = RHO_PATCH  # they divide the tower grid
    patches = grid.reshape(n_events, TOWER_ETA_BINS // n_eta, n_eta, TOWER_PHI_BINS // n_phi, n_phi)
    return np.median(patches.sum(axis=(2, 4)).reshape(n_events, -1), axis=1) / (
        n_eta * n_phi * _ETA_WIDTH * _PHI_WIDTH)


def crossing_objects(vis: Particles, rng: np.random.Generator) -> np.ndarray:
    """The 19 L1 objects of merged crossings: `l1`'s object code, with jets from the calorimeter towers and
    lepton isolation corrected for the crossing's pileup (rho x cone area, as for jets)."""
    towers = Towers.of(vis)
    return l1_objects(vis, rng, towers.jets, isolation_offset=towers.rho_all * np.pi * l1.ISO_R**2)
