"""`jets`: boosted, truth-matched jets of five classes (q, g, W, Z, t) with the hls4ml benchmark features."""

from __future__ import annotations

import numpy as np

from trigger.data.events import EventRecord, cluster_antikt, delta_r, generate_batch, make_pythia
from trigger.data.spec import ArraySpec, DatasetSpec, Stream
from trigger.data.substructure import (
    FEATURE_NAMES,
    FEATURE_UNITS,
    SOFTDROP,
    jet_features,
    leading_constituents,
)

JET_R = 0.8
JET_MIN_PT = 500.0  # GeV
JET_MAX_ABS_ETA = 2.5
MATCH_R = 0.8
N_CONSTITUENTS = 30
QUARKS = (1, 2, 3, 4, 5)
LIGHT_QUARKS = (1, 2, 3)
HADRONIC_W = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")
COMMON = ("PhaseSpace:pTHatMin = 1000.",)

STREAMS = (
    Stream("q", 0.2, (*COMMON, "HardQCD:qg2qg = on", "HardQCD:qq2qq = on", "HardQCD:qqbar2qqbarNew = on",
                      "HardQCD:gg2qqbar = on", "HardQCD:nQuarkNew = 3"),
           chunk_events=400, rows_per_event=1.3, label=0,
           description="light-quark (u, d, s) jets from 2->2 QCD with at least one outgoing quark"),
    Stream("g", 0.2, (*COMMON, "HardQCD:gg2gg = on", "HardQCD:qg2qg = on", "HardQCD:qqbar2gg = on"),
           chunk_events=400, rows_per_event=1.2, label=1,
           description="gluon jets from 2->2 QCD with at least one outgoing gluon"),
    Stream("W", 0.2, (*COMMON, "WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
                      *HADRONIC_W),
           chunk_events=400, rows_per_event=1.0, label=2,
           description="W (-> q q') + jet, W decaying to quarks"),
    Stream("Z", 0.2, (*COMMON, "WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                      "WeakZ0:gmZmode = 2", "23:onMode = off", "23:onIfAny = 1 2 3 4 5"),
           chunk_events=400, rows_per_event=1.0, label=3,
           description="Z (-> q qbar) + jet (pure Z, no gamma*), Z decaying to quarks"),
    Stream("t", 0.2, (*COMMON, "Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *HADRONIC_W),
           chunk_events=200, rows_per_event=1.8, label=4,
           description="ttbar with both W decaying to quarks; each top gives at most one jet"),
)


def _truth(rec: EventRecord, label: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Truth objects of this class: (event indices, [primary particle, particles that must be in the jet])."""
    if label in (0, 1):
        wanted = LIGHT_QUARKS if label == 0 else (21,)
        partons = np.flatnonzero((rec.status == -23) & np.isin(np.abs(rec.id), wanted))
        return [(rec.event[partons], [partons])]
    if label in (2, 3):
        found = []
        for pdg in ((24, -24) if label == 2 else (23,)):
            boson = rec.decaying(pdg, QUARKS)
            ok = boson >= 0
            boson = boson[ok]
            found.append((np.flatnonzero(ok), [boson, rec.daughter1[boson], rec.daughter2[boson]]))
        return found
    found = []
    for sign in (1, -1):
        top = rec.decaying(6 * sign, (5, 24))
        w = rec.decaying(24 * sign, QUARKS)
        ok = (top >= 0) & (w >= 0)
        top, w = top[ok], w[ok]
        d1, d2 = rec.daughter1[top], rec.daughter2[top]
        b = np.where(np.abs(rec.id[d1]) == 5, d1, d2)
        found.append((np.flatnonzero(ok), [top, b, rec.daughter1[w], rec.daughter2[w]]))
    return found


def _match(rec: EventRecord, jets_eta: np.ndarray, jets_phi: np.ndarray, jets_event: np.ndarray,
           label: int) -> np.ndarray:
    """Indices of jets that contain a truth object of class `label` (all its particles within dR < 0.8)."""
    starts = np.searchsorted(jets_event, np.arange(rec.n_events + 1))
    eta, phi = rec.eta, rec.phi
    chosen: list[int] = []
    for events, particles in _truth(rec, label):
        for k, ev in enumerate(events):
            lo, hi = starts[ev], starts[ev + 1]
            if lo == hi:
                continue
            inside = np.ones(hi - lo, dtype=bool)
            for p in particles:
                inside &= delta_r(jets_eta[lo:hi], jets_phi[lo:hi], eta[p[k]], phi[p[k]]) < MATCH_R
            if inside.any():
                dr = delta_r(jets_eta[lo:hi], jets_phi[lo:hi], eta[particles[0][k]], phi[particles[0][k]])
                chosen.append(lo + int(np.argmin(np.where(inside, dr, np.inf))))
    return np.array(sorted(set(chosen)), dtype=np.int64)


def _half(constituents: np.ndarray) -> np.ndarray:
    """float16 storage; a constituent whose pT underflows to 0 becomes padding (all three values 0)."""
    out = constituents.astype(np.float16)
    out[out[..., 0] == 0] = 0
    return out


def make_chunk(stream: Stream, n_events: int, seed: int) -> dict[str, np.ndarray]:
    """Generate `n_events` events of one class and return its matched jets (in event order)."""
    pythia = make_pythia(list(stream.settings), seed)
    rec = generate_batch(pythia, n_events)
    visible = rec.momenta(rec.visible_final())
    jets = cluster_antikt(visible, JET_R, JET_MIN_PT)
    index = np.flatnonzero(np.abs(jets.eta) < JET_MAX_ABS_ETA)
    matched = index[_match(rec, jets.eta[index], jets.phi[index], jets.event[index], stream.label)]
    n = len(matched)
    if n == 0:
        return {name: np.zeros((0, *a.shape), a.dtype) for name, a in SPEC.arrays.items()}
    cons = visible[jets.event[matched]][jets.constituents[matched]]
    return {
        "features": jet_features(cons),
        "constituents": _half(leading_constituents(cons, jets.eta[matched], jets.phi[matched],
                                                   N_CONSTITUENTS)),
        "label": np.full(n, stream.label, dtype=np.int8),
        "jet_pt": jets.pt[matched].astype(np.float32),
        "jet_eta": jets.eta[matched].astype(np.float32),
        "jet_mass": jets.mass[matched].astype(np.float32),
    }


SPEC = DatasetSpec(
    name="jets",
    unit="jets",
    streams=STREAMS,
    arrays={
        "features": ArraySpec((len(FEATURE_NAMES),), "float32",
                              "the 16 high-level features, FEATURE_NAMES order"),
        "constituents": ArraySpec((N_CONSTITUENTS, 3), "float16",
                                  "30 highest-pT constituents: pT [GeV], eta - jet eta, phi - jet phi; "
                                  "zero padded"),
        "label": ArraySpec((), "int8", "class index 0..4 = q, g, W, Z, t"),
        "jet_pt": ArraySpec((), "float32", "ungroomed jet pT [GeV]"),
        "jet_eta": ArraySpec((), "float32", "ungroomed jet pseudorapidity"),
        "jet_mass": ArraySpec((), "float32", "ungroomed jet mass [GeV]"),
    },
    feature_names=FEATURE_NAMES,
    class_names=[s.name for s in STREAMS],
    make_chunk=make_chunk,
    settings={"jet_algorithm": "anti-kt", "jet_R": JET_R, "jet_min_pt_GeV": JET_MIN_PT,
              "jet_max_abs_eta": JET_MAX_ABS_ETA, "match_dR": MATCH_R, "softdrop": SOFTDROP,
              "n_constituents": N_CONSTITUENTS, "inputs": "visible final-state particles (no neutrinos)"},
    extra_manifest={"feature_units": FEATURE_UNITS},
)
