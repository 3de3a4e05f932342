"""The 16 high-level jet-substructure features of the hls4ml LHC jet-tagging benchmark.

Soft drop and the energy-correlation functions run in FastJet contrib (C++) through the awkward-array
`ClusterSequence`: each selected jet is passed as its own "event" of constituents, reclustered with
Cambridge/Aachen into exactly one exclusive jet, groomed, and the groomed constituents are reclustered once
more so the correlators see only what survived grooming. Formulae are in docs/data.md.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

FEATURE_NAMES = [
    "zlogz", "c1_b0_mmdt", "c1_b1_mmdt", "c1_b2_mmdt", "c2_b1_mmdt", "c2_b2_mmdt", "d2_b1_mmdt", "d2_b2_mmdt",
    "d2_a1_b1_mmdt", "d2_a1_b2_mmdt", "m2_b1_mmdt", "m2_b2_mmdt", "n2_b1_mmdt", "n2_b2_mmdt", "mass_mmdt",
    "multiplicity",
]
FEATURE_UNITS = dict.fromkeys(FEATURE_NAMES, "1") | {"mass_mmdt": "GeV", "multiplicity": "count"}

# (feature, FastJet EnergyCorrelator function, keyword arguments); see docs/data.md for the formulae
_CORRELATORS: list[tuple[str, str, dict[str, float]]] = [
    ("c1_b0_mmdt", "c1", {"beta": 0}),
    ("c1_b1_mmdt", "c1", {"beta": 1}),
    ("c1_b2_mmdt", "c1", {"beta": 2}),
    ("c2_b1_mmdt", "c2", {"beta": 1}),
    ("c2_b2_mmdt", "c2", {"beta": 2}),
    ("d2_b1_mmdt", "d2", {"beta": 1}),
    ("d2_b2_mmdt", "d2", {"beta": 2}),
    ("d2_a1_b1_mmdt", "generalizedd2", {"alpha": 1, "beta": 1}),
    ("d2_a1_b2_mmdt", "generalizedd2", {"alpha": 1, "beta": 2}),
    ("m2_b1_mmdt", "mseries", {"npoint": 2, "beta": 1}),
    ("m2_b2_mmdt", "mseries", {"npoint": 2, "beta": 2}),
    ("n2_b1_mmdt", "nseries", {"npoint": 2, "beta": 1}),
    ("n2_b2_mmdt", "nseries", {"npoint": 2, "beta": 2}),
]
SOFTDROP = {"beta": 0.0, "zcut": 0.1, "R0": 0.8}  # the modified mass-drop tagger (mMDT)
RECLUSTER_R = 2.0  # C/A radius large enough that one exclusive jet holds every constituent of an R=0.8 jet


def jet_features(constituents: ak.Array) -> np.ndarray:
    """(n_jets, 16) float32 features; `constituents` is a list of (px, py, pz, E) Momentum4D per jet.

    Jets whose groomed part has fewer than two constituents get correlator ratios of 0 (they are undefined).
    """
    import fastjet

    n_jets = len(constituents)
    out = np.zeros((n_jets, len(FEATURE_NAMES)), dtype=np.float64)
    column = {name: i for i, name in enumerate(FEATURE_NAMES)}
    pt = np.hypot(constituents.px, constituents.py)
    z = pt / ak.sum(pt, axis=1)
    out[:, column["zlogz"]] = ak.to_numpy(ak.sum(z * np.log(z), axis=1))
    out[:, column["multiplicity"]] = ak.to_numpy(ak.num(constituents, axis=1))

    ca = fastjet.JetDefinition(fastjet.cambridge_algorithm, RECLUSTER_R)
    groomed = fastjet.ClusterSequence(constituents, ca).exclusive_jets_softdrop_grooming(
        njets=1, beta=SOFTDROP["beta"], symmetry_cut=SOFTDROP["zcut"], R0=SOFTDROP["R0"])
    out[:, column["mass_mmdt"]] = ak.to_numpy(groomed.msoftdrop)
    kept = groomed.constituents
    kept = ak.zip({"px": kept.px, "py": kept.py, "pz": kept.pz, "E": kept.E}, with_name="Momentum4D")
    enough = ak.to_numpy(ak.num(kept, axis=1)) >= 2
    if enough.any():
        seq = fastjet.ClusterSequence(kept[enough], ca)
        for name, func, kwargs in _CORRELATORS:
            values = seq.exclusive_jets_energy_correlator(njets=1, func=func, **kwargs)
            out[enough, column[name]] = ak.to_numpy(ak.flatten(values, axis=None))
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def leading_constituents(constituents: ak.Array, jet_eta: np.ndarray, jet_phi: np.ndarray,
                         n: int = 30) -> np.ndarray:
    """(n_jets, n, 3): the `n` highest-pT constituents as (pT [GeV], eta - jet eta, phi - jet phi), zero
    padded."""
    from trigger.data.events import delta_phi, pseudorapidity

    px, py, pz = constituents.px, constituents.py, constituents.pz
    order = ak.argsort(np.hypot(px, py), axis=1, ascending=False, stable=True)[:, :n]
    px, py, pz = px[order], py[order], pz[order]
    counts = ak.to_numpy(ak.num(px, axis=1))
    fpx, fpy, fpz = (ak.to_numpy(ak.flatten(a)) for a in (px, py, pz))
    jet = np.repeat(np.arange(len(counts)), counts)
    slot = ak.to_numpy(ak.flatten(ak.local_index(px, axis=1)))
    out = np.zeros((len(counts), n, 3), dtype=np.float32)
    out[jet, slot, 0] = np.hypot(fpx, fpy)
    out[jet, slot, 1] = pseudorapidity(fpx, fpy, fpz) - jet_eta[jet]
    out[jet, slot, 2] = delta_phi(np.arctan2(fpy, fpx), jet_phi[jet])
    return out


def tau32(constituents: np.ndarray) -> np.ndarray:
    """N-subjettiness ratio tau3/tau2 (beta = 1, R0 = 0.8, one-pass kT axes) from stored (pT, deta, dphi)
    constituents, treated as massless; low for three-prong (top) jets. 0 where tau2 is 0."""
    import fastjet

    from trigger.data.events import jagged_momenta

    pt, eta, phi = (constituents[..., i].astype(np.float64) for i in range(3))
    present = pt > 0
    pt, eta, phi = pt[present], eta[present], phi[present]
    particles = jagged_momenta(pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta),
                               present.sum(axis=1))
    seq = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.antikt_algorithm, RECLUSTER_R))
    taus = ak.to_numpy(seq.njettiness(njets=[2, 3], beta=1.0, R0=0.8))
    tau2, tau3 = taus[:, 0], taus[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tau2 > 0, tau3 / tau2, 0.0)
