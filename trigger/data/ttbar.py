"""`ttbar`: all-hadronic ttbar events with parton-matched R=0.4 jets, for jet-parton assignment (SPA-Net)."""

from __future__ import annotations

import awkward as ak
import numpy as np

from trigger.data.events import (
    EventRecord,
    cluster_antikt,
    delta_r,
    generate_batch,
    jagged_momenta,
    make_pythia,
)
from trigger.data.spec import ArraySpec, DatasetSpec, Stream

JET_R = 0.4
JET_MIN_PT = 25.0  # GeV
JET_MAX_ABS_ETA = 2.5
MIN_JETS = 6  # event selection: at least six jets passing the cuts
MAX_JETS = 10
MATCH_R = 0.4
GHOST_SCALE = 1e-18  # ghost b hadrons keep their direction but carry no momentum
QUARKS = (1, 2, 3, 4, 5)
FEATURES = ["pt", "eta", "phi", "mass", "btag"]
SLOTS = ["b1", "q1a", "q1b", "b2", "q2a", "q2b"]

STREAMS = (
    Stream("ttbar", 1.0,
           ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", "24:onIfAny = 1 2 3 4 5"),
           chunk_events=300, rows_per_event=0.45, label=0, kind="signal",
           description="ttbar, both W decaying to quarks; MPI, ISR, FSR and hadronisation on"),
)


def is_b_hadron(pdg: np.ndarray) -> np.ndarray:
    """PDG codes of hadrons with a b (or anti-b) quark: a 5 among the quark digits of a meson or baryon."""
    a = np.abs(pdg)
    return (a > 100) & (((a // 100) % 10 == 5) | ((a // 1000) % 10 == 5))


def weakly_decaying_b_hadrons(rec: EventRecord) -> np.ndarray:
    """Mask of the last b hadron in each decay chain (none of its daughters is a b hadron)."""
    bh = is_b_hadron(rec.id)
    d1, d2 = rec.daughter1, rec.daughter2
    last = bh.copy()
    for i in np.flatnonzero(bh):
        if d1[i] >= 0:
            hi = max(d1[i], d2[i])
            last[i] = not is_b_hadron(rec.id[d1[i]:hi + 1]).any()
    return last


def _partons(rec: EventRecord) -> tuple[np.ndarray, np.ndarray]:
    """(n_events, 6) global indices of b1, q1a, q1b, b2, q2a, q2b (q_a the harder W daughter), and a mask
    of events where both tops were found."""
    out = np.full((rec.n_events, 6), -1, dtype=np.int64)
    pt = rec.pt
    for slot, sign in ((0, 1), (3, -1)):
        top = rec.decaying(6 * sign, (5, 24))
        w = rec.decaying(24 * sign, QUARKS)
        ok = (top >= 0) & (w >= 0)
        t, ww = top[ok], w[ok]
        d1, d2 = rec.daughter1[t], rec.daughter2[t]
        qa, qb = rec.daughter1[ww], rec.daughter2[ww]
        swap = pt[qb] > pt[qa]
        out[ok, slot] = np.where(np.abs(rec.id[d1]) == 5, d1, d2)
        out[ok, slot + 1] = np.where(swap, qb, qa)
        out[ok, slot + 2] = np.where(swap, qa, qb)
    return out, (out >= 0).all(axis=1)


def match_partons(jet_eta: np.ndarray, jet_phi: np.ndarray, parton_eta: np.ndarray,
                  parton_phi: np.ndarray) -> np.ndarray:
    """Greedy dR matching: repeatedly take the closest (parton, jet) pair with dR < 0.4, each used once.
    Returns, per parton, the jet index or -1."""
    dr = delta_r(parton_eta[:, None], parton_phi[:, None], jet_eta[None, :], jet_phi[None, :])
    dr = np.where(dr < MATCH_R, dr, np.inf)
    result = np.full(len(parton_eta), -1, dtype=np.int64)
    while np.isfinite(dr).any():
        p, j = np.unravel_index(np.argmin(dr), dr.shape)
        result[p] = j
        dr[p, :] = np.inf
        dr[:, j] = np.inf
    return result


def make_chunk(stream: Stream, n_events: int, seed: int) -> dict[str, np.ndarray]:
    """Generate `n_events` ttbar events, keep those with >= 6 jets, and label the jets with their partons."""
    pythia = make_pythia(list(stream.settings), seed)
    rec = generate_batch(pythia, n_events)
    visible = rec.visible_final()
    ghosts = weakly_decaying_b_hadrons(rec)
    # visible particles first, then the ghosts, per event: a constituent index >= n_visible is a ghost
    n_visible = np.bincount(rec.event[visible], minlength=rec.n_events)
    n_ghosts = np.bincount(rec.event[ghosts], minlength=rec.n_events)
    order = np.lexsort((~visible[visible | ghosts], rec.event[visible | ghosts]))
    chosen = np.flatnonzero(visible | ghosts)[order]
    scale = np.where(ghosts[chosen], GHOST_SCALE, 1.0)
    particles = jagged_momenta(rec.px[chosen] * scale, rec.py[chosen] * scale, rec.pz[chosen] * scale,
                               rec.e[chosen] * scale, n_visible + n_ghosts)
    jets = cluster_antikt(particles, JET_R, JET_MIN_PT)
    partons, both_tops = _partons(rec)

    keep = np.abs(jets.eta) < JET_MAX_ABS_ETA
    n_jets = np.bincount(jets.event[keep], minlength=rec.n_events)
    selected = np.flatnonzero((n_jets >= MIN_JETS) & both_tops)
    n = len(selected)
    out = {
        "jets": np.zeros((n, MAX_JETS, 5), np.float32),
        "mask": np.zeros((n, MAX_JETS), bool),
        "n_jets": np.minimum(n_jets[selected], 127).astype(np.int8),
        "assignment": np.full((n, 6), -1, np.int8),
        "fully_matched": np.zeros(n, bool),
    }
    index = np.flatnonzero(keep)
    starts = np.searchsorted(jets.event[index], np.arange(rec.n_events + 1))
    pt, eta, phi, mass = jets.pt, jets.eta, jets.phi, jets.mass
    has_ghost = (ak.to_numpy(ak.max(jets.constituents, axis=1)) >= n_visible[jets.event]).astype(np.float32)
    peta, pphi = rec.eta, rec.phi
    for row, ev in enumerate(selected):
        js = index[starts[ev]:starts[ev + 1]][:MAX_JETS]
        k = len(js)
        out["jets"][row, :k] = np.stack([pt[js], eta[js], phi[js], mass[js], has_ghost[js]], axis=1)
        out["mask"][row, :k] = True
        assigned = match_partons(eta[js], phi[js], peta[partons[ev]], pphi[partons[ev]])
        out["assignment"][row] = assigned
        out["fully_matched"][row] = (assigned >= 0).all()
    return out


SPEC = DatasetSpec(
    name="ttbar",
    unit="events",
    streams=STREAMS,
    arrays={
        "jets": ArraySpec((MAX_JETS, 5), "float32",
                          "up to 10 pT-ordered jets: pT [GeV], eta, phi, mass [GeV], btag (0/1); "
                          "zero padded"),
        "mask": ArraySpec((MAX_JETS,), "bool", "True where a jet is present"),
        "n_jets": ArraySpec((), "int8", "jets passing pT > 25 GeV, |eta| < 2.5, before truncation to 10"),
        "assignment": ArraySpec((6,), "int8", "jet index (0..9) of b1, q1a, q1b, b2, q2a, q2b, or -1; "
                                "1 = top, 2 = anti-top, qa = harder W daughter"),
        "fully_matched": ArraySpec((), "bool", "all six partons matched to distinct stored jets"),
    },
    feature_names=FEATURES,
    class_names=[],
    make_chunk=make_chunk,
    settings={"jet_algorithm": "anti-kt", "jet_R": JET_R, "jet_min_pt_GeV": JET_MIN_PT,
              "jet_max_abs_eta": JET_MAX_ABS_ETA, "min_jets": MIN_JETS, "max_jets": MAX_JETS,
              "match_dR": MATCH_R, "btag": "ghost-associated weakly decaying b hadron (truth proxy, 0/1)",
              "assignment_slots": SLOTS, "inputs": "visible final-state particles (no neutrinos)"},
    extra_manifest={"feature_units": {"pt": "GeV", "eta": "1", "phi": "rad", "mass": "GeV", "btag": "1"}},
)
