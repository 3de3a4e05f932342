"""`l1`: Level-1 event summaries in the ADC2021 anomaly-detection layout (MET, 4 e, 4 mu, 10 jets).

A Standard-Model background mixture plus labelled BSM signals. Objects are built from Pythia's visible final
state with a simple parametrised detector: Gaussian pT resolutions, track-free relative isolation for leptons,
a sum-ET-driven MET resolution, and L1-like granularity. Every choice is listed in docs/data.md.
`l1_objects` is the object code, shared with `zerobias`, which summarises bunch crossings with it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import awkward as ak
import numpy as np

from trigger.data.events import (
    EventRecord,
    Jets,
    Momenta,
    cluster_antikt,
    delta_phi,
    generate_batch,
    jagged_momenta,
    make_pythia,
)
from trigger.data.spec import ArraySpec, DatasetSpec, Stream

N_E, N_MU, N_JET = 4, 4, 10
OBJECTS = ["MET"] + [f"e{i}" for i in range(1, N_E + 1)] + [f"mu{i}" for i in range(1, N_MU + 1)] + \
    [f"jet{i}" for i in range(1, N_JET + 1)]
FEATURE_NAMES = [f"{o}_{v}" for o in OBJECTS for v in ("pt", "eta", "phi")]

CALO_MAX_ETA = 5.0
E_CUTS = (3.0, 3.0)  # pT > 3 GeV, |eta| < 3.0
MU_CUTS = (3.0, 2.1)
JET_CUTS = (15.0, 4.0)
JET_R = 0.4
JET_SEED_PT = 8.0  # GeV, jets clustered above this before smearing; kept if smeared pT > 15
ISO_R = 0.3
ISO_MAX = 0.15  # relative isolation: sum pT of other visible particles within dR < 0.3, over the lepton pT
RESOLUTION = {  # sigma(pT)/pT = a (+) b / sqrt(pT/GeV) (+) c * pT/GeV, added in quadrature
    "e": (0.03, 0.10, 0.0),
    "mu": (0.05, 0.0, 1e-4),
    "jet": (0.10, 1.00, 0.0),
}
MET_SIGMA_PER_SQRT_SUMET = 0.5  # sigma(MET_x) = sigma(MET_y) = 0.5 GeV * sqrt(sum ET / GeV)
PT_LSB = 0.25  # GeV; stored pT is a multiple of this (L1-like granularity, exact in binary)
ANGLE_LSB = 1 / 256  # stored eta and phi are multiples of this
SIGNAL_FRACTION = 0.05  # of the requested events, for each signal
BACKGROUND_MIX = {"W_lnu": 0.592, "QCD": 0.338, "Z_ll": 0.067, "ttbar": 0.003}  # ADC2021 composition
FAST = ("PartonLevel:MPI = off",)  # documented shortcut: no multiparton interactions in L1 summaries

# Hard processes of the signals, shared with `zerobias` (which embeds them in pileup)
PROCESSES = {
    "Zprime_ll": ("NewGaugeBoson:ffbar2gmZZprime = on", "Zprime:gmZmode = 3", "32:m0 = 1000.", "32:onMode = off",
                  "32:onIfAny = 11 13"),
    "h_tautau": ("HiggsSM:gg2H = on", "25:m0 = 60.", "25:onMode = off", "25:onIfMatch = 15 -15"),
    "Hplus_taunu": ("Higgs:useBSM = on", "HiggsBSM:ffbar2H+- = on", "37:m0 = 60.", "37:onMode = off",
                    "37:onIfAny = 15"),
}

_bkg = 1.0 - 3 * SIGNAL_FRACTION
STREAMS = (
    Stream("W_lnu", _bkg * BACKGROUND_MIX["W_lnu"],
           (*FAST, "WeakSingleBoson:ffbar2W = on", "24:onMode = off", "24:onIfAny = 11 13 15"),
           chunk_events=1000, rows_per_event=1.0, label=0, kind="background",
           description="inclusive W -> l nu (l = e, mu, tau)"),
    Stream("QCD", _bkg * BACKGROUND_MIX["QCD"], (*FAST, "HardQCD:all = on", "PhaseSpace:pTHatMin = 30."),
           chunk_events=1000, rows_per_event=1.0, label=0, kind="background",
           description="QCD 2->2 multijet, pTHat > 30 GeV, no lepton filter"),
    Stream("Z_ll", _bkg * BACKGROUND_MIX["Z_ll"],
           (*FAST, "WeakSingleBoson:ffbar2gmZ = on", "WeakZ0:gmZmode = 2", "23:onMode = off",
            "23:onIfAny = 11 13 15"),
           chunk_events=1000, rows_per_event=1.0, label=0, kind="background",
           description="inclusive Z -> l l (l = e, mu, tau), pure Z"),
    Stream("ttbar", _bkg * BACKGROUND_MIX["ttbar"], (*FAST, "Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
           chunk_events=500, rows_per_event=1.0, label=0, kind="background", description="inclusive ttbar"),
    Stream("Zprime_ll", SIGNAL_FRACTION, (*FAST, *PROCESSES["Zprime_ll"]),
           chunk_events=1000, rows_per_event=1.0, label=1, kind="signal",
           description="Z' (1 TeV, SM-like couplings) -> e e, mu mu"),
    Stream("h_tautau", SIGNAL_FRACTION, (*FAST, *PROCESSES["h_tautau"]),
           chunk_events=1000, rows_per_event=1.0, label=2, kind="signal",
           description="light scalar h (60 GeV, gg -> h) -> tau tau"),
    Stream("Hplus_taunu", SIGNAL_FRACTION, (*FAST, *PROCESSES["Hplus_taunu"]),
           chunk_events=1000, rows_per_event=1.0, label=3, kind="signal",
           description="charged Higgs H+- (60 GeV, f fbar' -> H+-) -> tau nu"),
)


@dataclass
class Particles(Momenta):
    """The calorimeter-visible particles of a batch, flat, `event` ascending: what the L1 object code reads,
    whether an event is one collision (`l1`) or a bunch crossing of many merged ones (`zerobias`)."""

    id: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    event: np.ndarray
    n_events: int

    # computed once: the object code and the tower projection read them several times
    pt = functools.cached_property(Momenta.pt.fget)
    eta = functools.cached_property(Momenta.eta.fget)
    phi = functools.cached_property(Momenta.phi.fget)

    @classmethod
    def visible(cls, rec: EventRecord) -> Particles:
        """The visible final state within the calorimeter acceptance |eta| < 5."""
        calo = rec.visible_final() & (np.abs(rec.eta) < CALO_MAX_ETA)
        return cls(rec.id[calo], rec.px[calo], rec.py[calo], rec.pz[calo], rec.e[calo], rec.event[calo],
                   rec.n_events)

    def momenta(self, mask: np.ndarray) -> ak.Array:
        """The selected particles as a per-event awkward array of (px, py, pz, E) for FastJet."""
        return jagged_momenta(self.px[mask], self.py[mask], self.pz[mask], self.e[mask],
                              np.bincount(self.event[mask], minlength=self.n_events))


def _resolution(kind: str, pt: np.ndarray) -> np.ndarray:
    a, b, c = RESOLUTION[kind]
    return np.sqrt(a**2 + b**2 / np.maximum(pt, 1e-3) + (c * pt) ** 2)


def _smear(kind: str, pt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian pT smearing, floored at zero."""
    return np.maximum(pt * (1.0 + _resolution(kind, pt) * rng.standard_normal(len(pt))), 0.0)


def _quantise(x: np.ndarray, lsb: float) -> np.ndarray:
    return np.round(x / lsb) * lsb


def _relative_isolation(vis: Particles, leptons: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """Per lepton (index into `vis`), the summed pT of the other visible particles within dR < 0.3, less the
    event's pileup `offset` if given (floored at 0), over its pT."""
    pt, eta, phi = vis.pt, vis.eta, vis.phi
    starts = np.searchsorted(vis.event, np.arange(vis.n_events + 1))
    iso = np.empty(len(leptons))
    for k, i in enumerate(leptons):
        first, end = starts[vis.event[i]], starts[vis.event[i] + 1]
        near = np.hypot(eta[first:end] - eta[i], delta_phi(phi[first:end], phi[i])) < ISO_R
        near[i - first] = False
        cone = pt[first:end][near].sum()
        iso[k] = (cone if offset is None else max(cone - offset[vis.event[i]], 0.0)) / pt[i]
    return iso


def _fill(objects: np.ndarray, slots: slice, event: np.ndarray, kinematics: np.ndarray) -> None:
    """Write objects (rows of pT, eta, phi) into their event's `slots`, highest pT first; drop extras."""
    order = np.lexsort((-kinematics[:, 0], event))
    event, kinematics = event[order], kinematics[order]
    rank = np.arange(len(event)) - np.searchsorted(event, event, side="left")
    ok = rank < slots.stop - slots.start
    objects[event[ok], slots.start + rank[ok]] = kinematics[ok]


def l1_objects(vis: Particles, rng: np.random.Generator, cluster: Callable[[np.ndarray], Jets],
               isolation_offset: np.ndarray | None = None) -> np.ndarray:
    """The 19 L1 objects (float64) of every event of `vis`: isolated leptons and MET from the particles, jets
    from `cluster(mask of the particles that are not selected isolated leptons)`. `isolation_offset` is, per
    event, the pileup pT expected in an isolation cone (rho x pi 0.3^2), removed from each lepton's."""
    n = vis.n_events
    pt, eta, phi = vis.pt, vis.eta, vis.phi
    objects = np.zeros((n, len(OBJECTS), 3), dtype=np.float64)

    isolated = np.zeros(len(pt), dtype=bool)
    slot = 1
    for pdg, kind, (min_pt, max_eta), n_slots in ((11, "e", E_CUTS, N_E), (13, "mu", MU_CUTS, N_MU)):
        cand = np.flatnonzero(np.abs(vis.id) == pdg)
        spt = _quantise(_smear(kind, pt[cand], rng), PT_LSB)
        passed = (spt > min_pt) & (np.abs(eta[cand]) < max_eta)
        cand, spt = cand[passed], spt[passed]
        good = _relative_isolation(vis, cand, isolation_offset) < ISO_MAX
        cand, spt = cand[good], spt[good]
        isolated[cand] = True
        _fill(objects, slice(slot, slot + n_slots), vis.event[cand],
              np.stack([spt, _quantise(eta[cand], ANGLE_LSB), _quantise(phi[cand], ANGLE_LSB)], axis=1))
        slot += n_slots

    jets = cluster(~isolated)
    jpt = _quantise(_smear("jet", jets.pt, rng), PT_LSB)
    jeta = jets.eta
    passed = (jpt > JET_CUTS[0]) & (np.abs(jeta) < JET_CUTS[1])
    _fill(objects, slice(slot, slot + N_JET), jets.event[passed],
          np.stack([jpt[passed], _quantise(jeta[passed], ANGLE_LSB),
                    _quantise(jets.phi[passed], ANGLE_LSB)], axis=1))

    # MET: minus the vector sum of all calorimeter-visible particles, with a sum-ET resolution
    mex = -np.bincount(vis.event, weights=vis.px, minlength=n)
    mey = -np.bincount(vis.event, weights=vis.py, minlength=n)
    sum_et = np.bincount(vis.event, weights=pt, minlength=n)
    sigma = MET_SIGMA_PER_SQRT_SUMET * np.sqrt(sum_et)
    mex = mex + sigma * rng.standard_normal(n)
    mey = mey + sigma * rng.standard_normal(n)
    objects[:, 0, 0] = _quantise(np.hypot(mex, mey), PT_LSB)
    objects[:, 0, 2] = _quantise(np.arctan2(mey, mex), ANGLE_LSB)
    return objects


def make_chunk(stream: Stream, n_events: int, seed: int) -> dict[str, np.ndarray]:
    """Generate `n_events` events of one process and summarise each as 19 L1 objects."""
    pythia = make_pythia(list(stream.settings), seed)
    vis = Particles.visible(generate_batch(pythia, n_events))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    # jets from the calorimeter-visible particles that are not selected isolated leptons
    objects = l1_objects(vis, rng, lambda keep: cluster_antikt(vis.momenta(keep), JET_R, JET_SEED_PT))
    n = vis.n_events
    return {"objects": objects.astype(np.float32), "label": np.full(n, stream.label, np.int8),
            "process": np.full(n, STREAMS.index(stream), np.int8)}


SPEC = DatasetSpec(
    name="l1",
    unit="events",
    streams=STREAMS,
    arrays={
        "objects": ArraySpec((len(OBJECTS), 3), "float32",
                             "MET, e1-e4, mu1-mu4, jet1-jet10, each (pT [GeV], eta, phi); MET eta = 0; "
                             "pT-ordered within a type, zero padded"),
        "label": ArraySpec((), "int8", "0 = Standard-Model background, k = signal k (class_names[k])"),
        "process": ArraySpec((), "int8", "index into manifest['processes']"),
    },
    feature_names=FEATURE_NAMES,
    class_names=["background"] + [s.name for s in STREAMS if s.kind == "signal"],
    make_chunk=make_chunk,
    settings={"objects": OBJECTS, "calo_max_abs_eta": CALO_MAX_ETA,
              "electron_cuts": {"min_pt_GeV": E_CUTS[0], "max_abs_eta": E_CUTS[1]},
              "muon_cuts": {"min_pt_GeV": MU_CUTS[0], "max_abs_eta": MU_CUTS[1]},
              "jet_cuts": {"min_pt_GeV": JET_CUTS[0], "max_abs_eta": JET_CUTS[1], "R": JET_R,
                           "algorithm": "anti-kt", "clustered_above_GeV": JET_SEED_PT},
              "isolation": {"cone_dR": ISO_R, "max_relative": ISO_MAX},
              "resolution_a_b_c": RESOLUTION, "met_sigma_per_sqrt_sumet": MET_SIGMA_PER_SQRT_SUMET,
              "pt_lsb_GeV": PT_LSB, "angle_lsb": ANGLE_LSB, "signal_fraction_each": SIGNAL_FRACTION,
              "background_mix": BACKGROUND_MIX, "mpi": "off (speed shortcut)"},
    extra_manifest={"feature_units": {name: {"pt": "GeV", "eta": "1", "phi": "rad"}[name.rsplit("_", 1)[1]]
                                      for name in FEATURE_NAMES}},
)
