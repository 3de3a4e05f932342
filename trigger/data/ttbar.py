"""`ttbar`: all-hadronic ttbar events with parton-matched R=0.4 jets, for jet-parton assignment (SPA-Net).

Each jet carries its truth flavour (b: a weakly decaying b hadron ghost-associated to it; c: a c hadron and no
b; light otherwise) and a b-tag a detector could give: drawn from the flavour with the working point's
efficiency and mistag rates (70 %, 10 %, 1 % by default, as for the DeepJet-like taggers of CMS's L1 and HLT
studies), reproducible by the chunk's seed.
"""

from __future__ import annotations

import functools

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
from trigger.errors import InputError

JET_R = 0.4
JET_MIN_PT = 25.0  # GeV
JET_MAX_ABS_ETA = 2.5
MIN_JETS = 6  # event selection: at least six jets passing the cuts
MAX_JETS = 10
MATCH_R = 0.4
GHOST_SCALE = 1e-18  # ghost b hadrons keep their direction but carry no momentum
QUARKS = (1, 2, 3, 4, 5)
FEATURES = ["pt", "eta", "phi", "mass", "btag"]
B, C, LIGHT = 5, 4, 0  # the `flavour` codes (PDG quark numbers; 0 for light)
BTAG_EFFICIENCY = 0.70  # the working point: P(tag | b)
C_MISTAG = 0.10  # P(tag | c)
LIGHT_MISTAG = 0.01  # P(tag | light)
SLOTS = ["b1", "q1a", "q1b", "b2", "q2a", "q2b"]

STREAMS = (
    Stream("ttbar", 1.0,
           ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", "24:onIfAny = 1 2 3 4 5"),
           chunk_events=300, rows_per_event=0.45, label=0, kind="signal",
           description="ttbar, both W decaying to quarks; MPI, ISR, FSR and hadronisation on"),
)


def _has_quark(pdg: np.ndarray, quark: int) -> np.ndarray:
    """PDG codes of hadrons with `quark` (or its anti-quark) among the leading quark digits of a meson or
    baryon."""
    a = np.abs(pdg)
    return (a > 100) & (((a // 100) % 10 == quark) | ((a // 1000) % 10 == quark))


def is_b_hadron(pdg: np.ndarray) -> np.ndarray:
    """PDG codes of hadrons with a b (or anti-b) quark."""
    return _has_quark(pdg, B)


def is_c_hadron(pdg: np.ndarray) -> np.ndarray:
    """PDG codes of hadrons with a c quark and no b (a b hadron's flavour wins)."""
    return _has_quark(pdg, C) & ~is_b_hadron(pdg)


def weakly_decaying(rec: EventRecord, kind: np.ndarray) -> np.ndarray:
    """Mask of the last hadron of `kind` (a mask over the record) in each decay chain: none of its
    daughters is of that kind."""
    d1, d2 = rec.daughter1, rec.daughter2
    last = kind.copy()
    for i in np.flatnonzero(kind):
        if d1[i] >= 0:
            last[i] = not kind[d1[i]:max(d1[i], d2[i]) + 1].any()
    return last


def weakly_decaying_b_hadrons(rec: EventRecord) -> np.ndarray:
    """Mask of the last b hadron in each decay chain (none of its daughters is a b hadron)."""
    return weakly_decaying(rec, is_b_hadron(rec.id))


def btag(flavour: np.ndarray, rng: np.random.Generator, rates: dict[int, float]) -> np.ndarray:
    """A detector's b-tag (0/1) of jets of truth `flavour`: tagged with probability `rates[flavour]`."""
    probability = np.select([flavour == B, flavour == C], [rates[B], rates[C]], rates[LIGHT])
    return (rng.random(flavour.shape) < probability).astype(np.float32)


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


def make_chunk(stream: Stream, n_events: int, seed: int, *, rates: dict[int, float]) -> dict[str, np.ndarray]:
    """Generate `n_events` ttbar events, keep those with >= 6 jets, label the jets with their partons and
    truth flavour, and b-tag them at `rates` (flavour -> tag probability)."""
    pythia = make_pythia(list(stream.settings), seed)
    rec = generate_batch(pythia, n_events)
    visible = rec.visible_final()
    b_ghosts = weakly_decaying_b_hadrons(rec)
    c_ghosts = weakly_decaying(rec, is_c_hadron(rec.id))
    # per event: the visible particles, then the b-hadron ghosts, then the c-hadron ghosts; a constituent's
    # index within its event says which it is
    category = np.select([visible, b_ghosts, c_ghosts], [0, 1, 2], -1)
    chosen = np.flatnonzero(category >= 0)
    chosen = chosen[np.lexsort((category[chosen], rec.event[chosen]))]
    n_visible, n_b, n_c = (np.bincount(rec.event[category == k], minlength=rec.n_events) for k in (0, 1, 2))
    scale = np.where(category[chosen] > 0, GHOST_SCALE, 1.0)
    particles = jagged_momenta(rec.px[chosen] * scale, rec.py[chosen] * scale, rec.pz[chosen] * scale,
                               rec.e[chosen] * scale, n_visible + n_b + n_c)
    jets = cluster_antikt(particles, JET_R, JET_MIN_PT)
    partons, both_tops = _partons(rec)

    keep = np.abs(jets.eta) < JET_MAX_ABS_ETA
    n_jets = np.bincount(jets.event[keep], minlength=rec.n_events)
    selected = np.flatnonzero((n_jets >= MIN_JETS) & both_tops)
    n = len(selected)
    out = {
        "jets": np.zeros((n, MAX_JETS, 5), np.float32),
        "mask": np.zeros((n, MAX_JETS), bool),
        "flavour": np.zeros((n, MAX_JETS), np.int8),
        "n_jets": np.minimum(n_jets[selected], 127).astype(np.int8),
        "assignment": np.full((n, 6), -1, np.int8),
        "fully_matched": np.zeros(n, bool),
    }
    index = np.flatnonzero(keep)
    starts = np.searchsorted(jets.event[index], np.arange(rec.n_events + 1))
    pt, eta, phi, mass = jets.pt, jets.eta, jets.phi, jets.mass
    first_b = n_visible[jets.event]
    first_c = first_b + n_b[jets.event]
    has_b = ak.to_numpy(ak.any((jets.constituents >= first_b) & (jets.constituents < first_c), axis=1))
    has_c = ak.to_numpy(ak.any(jets.constituents >= first_c, axis=1))
    flavour = np.select([has_b, has_c], [B, C], LIGHT).astype(np.int8)
    peta, pphi = rec.eta, rec.phi
    for row, ev in enumerate(selected):
        js = index[starts[ev]:starts[ev + 1]][:MAX_JETS]
        k = len(js)
        out["jets"][row, :k, :4] = np.stack([pt[js], eta[js], phi[js], mass[js]], axis=1)
        out["flavour"][row, :k] = flavour[js]
        out["mask"][row, :k] = True
        assigned = match_partons(eta[js], phi[js], peta[partons[ev]], pphi[partons[ev]])
        out["assignment"][row] = assigned
        out["fully_matched"][row] = (assigned >= 0).all()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    out["jets"][..., 4] = btag(out["flavour"], rng, rates) * out["mask"]
    return out


def make_spec(btag_efficiency: float = BTAG_EFFICIENCY, c_mistag: float = C_MISTAG,
              light_mistag: float = LIGHT_MISTAG) -> DatasetSpec:
    """The ttbar dataset with b-tagging at the given working point; one-line InputError if a rate is not a
    probability."""
    for option, value in (("btag-efficiency", btag_efficiency), ("c-mistag", c_mistag),
                          ("light-mistag", light_mistag)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InputError(f"--{option}: must be a probability in [0, 1], got {value!r}")
    rates = {B: float(btag_efficiency), C: float(c_mistag), LIGHT: float(light_mistag)}
    return DatasetSpec(
        name="ttbar",
        unit="events",
        streams=STREAMS,
        arrays={
            "jets": ArraySpec((MAX_JETS, 5), "float32",
                              "up to 10 pT-ordered jets: pT [GeV], eta, phi, mass [GeV], btag (0/1, drawn from "
                              "the flavour at the working point); zero padded"),
            "mask": ArraySpec((MAX_JETS,), "bool", "True where a jet is present"),
            "flavour": ArraySpec((MAX_JETS,), "int8", "truth flavour: 5 b (a weakly decaying b hadron "
                                                      "ghost-associated), 4 c (a c hadron, no b), 0 light"),
            "n_jets": ArraySpec((), "int8", "jets passing pT > 25 GeV, |eta| < 2.5, before truncation to 10"),
            "assignment": ArraySpec((6,), "int8", "jet index (0..9) of b1, q1a, q1b, b2, q2a, q2b, or -1; "
                                    "1 = top, 2 = anti-top, qa = harder W daughter"),
            "fully_matched": ArraySpec((), "bool", "all six partons matched to distinct stored jets"),
        },
        feature_names=FEATURES,
        class_names=[],
        make_chunk=functools.partial(make_chunk, rates=rates),
        settings={"jet_algorithm": "anti-kt", "jet_R": JET_R, "jet_min_pt_GeV": JET_MIN_PT,
                  "jet_max_abs_eta": JET_MAX_ABS_ETA, "min_jets": MIN_JETS, "max_jets": MAX_JETS,
                  "match_dR": MATCH_R,
                  "flavour": "ghost association of the weakly decaying b hadrons, then c hadrons (b wins)",
                  "btag": {"efficiency_b": rates[B], "mistag_c": rates[C], "mistag_light": rates[LIGHT],
                           "draw": "per jet, uniform from a NumPy generator seeded by (chunk seed, 1)"},
                  "assignment_slots": SLOTS, "inputs": "visible final-state particles (no neutrinos)"},
        extra_manifest={"feature_units": {"pt": "GeV", "eta": "1", "phi": "rad", "mass": "GeV", "btag": "1"}},
        options={"btag_efficiency": rates[B], "c_mistag": rates[C], "light_mistag": rates[LIGHT]},
    )


SPEC = make_spec()
