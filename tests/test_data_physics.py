"""Physics sanity of freshly generated small samples: mass peaks, N-subjettiness, parton matching, L1 objects.

The default samples are small enough for CI (about a minute on two cores in total); the `slow` variants
repeat the checks with tighter tolerances on larger samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trigger.data import generate, load
from trigger.data.substructure import tau32


def _peak(values: np.ndarray, expected: float) -> float:
    """Median of the values within +-40 % of the expected peak (robust against the low-mass tail)."""
    window = values[(values > 0.6 * expected) & (values < 1.4 * expected)]
    return float(np.median(window))


def _all(data) -> dict[str, np.ndarray]:
    return {k: np.concatenate([data.train[k], data.val[k], data.test[k]]) for k in data.train}


def _check_jets(path: Path, tolerance: float) -> None:
    data = load(path)
    a = _all(data)
    f, y = a["features"], a["label"]
    col = {n: i for i, n in enumerate(data.feature_names)}
    classes = {n: i for i, n in enumerate(data.class_names)}
    assert np.isfinite(f).all()
    assert np.bincount(y, minlength=5).min() == np.bincount(y, minlength=5).max()  # balanced by construction
    assert (a["jet_pt"] > 500).all()
    assert (np.abs(a["jet_eta"]) < 2.5).all()
    mass = f[:, col["mass_mmdt"]]
    peaks = {name: _peak(mass[y == classes[name]], m) for name, m in (("W", 80.4), ("Z", 91.2), ("t", 172.5))}
    for name, m in (("W", 80.4), ("Z", 91.2), ("t", 172.5)):
        assert abs(peaks[name] - m) < tolerance * m, (name, peaks[name])
        # most boosted-resonance jets sit in the peak window
        in_window = np.mean(np.abs(mass[y == classes[name]] - m) < 0.25 * m)
        assert in_window > 0.5, (name, in_window)
    assert peaks["W"] < peaks["Z"] < peaks["t"]
    # light jets: groomed mass far below the W mass for most quark jets
    assert np.median(mass[y == classes["q"]]) < 40
    # three-prong tops have lower tau3/tau2 than QCD jets
    t32 = tau32(a["constituents"])
    top = np.median(t32[y == classes["t"]])
    qcd = np.median(t32[(y == classes["q"]) | (y == classes["g"])])
    assert top < qcd - 0.1, (top, qcd)
    # two-prong W/Z: lower N2 than quark jets
    n2 = f[:, col["n2_b1_mmdt"]]
    assert np.median(n2[y == classes["W"]]) < np.median(n2[y == classes["q"]])
    # constituents: pT-ordered, zero padded consistently, multiplicity bounds the count
    c = a["constituents"].astype(np.float32)
    present = c[:, :, 0] > 0
    assert (c[~present] == 0).all()
    assert (np.diff(present.astype(int), axis=1) <= 0).all()  # padding only at the end
    assert (np.diff(c[:, :, 0], axis=1)[present[:, 1:]] <= 0).all()
    stored = np.minimum(f[:, col["multiplicity"]], 30)
    assert (present.sum(axis=1) <= stored).all()
    assert np.mean(present.sum(axis=1) == stored) > 0.999  # only pT underflowing float16 becomes padding
    # inside the R = 0.8 jet; deta is in pseudorapidity while clustering uses rapidity, so a few soft massive
    # hadrons sit further out
    assert np.mean(np.hypot(c[:, :, 1], c[:, :, 2])[present] < 0.8) > 0.99


def _check_ttbar(path: Path, min_matched: float) -> float:
    data = load(path)
    a = _all(data)
    jets, mask, n_jets = a["jets"], a["mask"], a["n_jets"].astype(int)
    assign, full = a["assignment"].astype(int), a["fully_matched"]
    assert (n_jets >= 6).all()
    assert (mask.sum(axis=1) == np.minimum(n_jets, 10)).all()
    assert (jets[~mask] == 0).all()
    assert (jets[mask][:, 0] > 25).all()
    assert (np.abs(jets[mask][:, 1]) < 2.5).all()
    assert (np.diff(np.where(mask, jets[:, :, 0], 0), axis=1) <= 0).all()  # pT-ordered
    assert set(np.unique(jets[:, :, 4])) <= {0.0, 1.0}
    assert (assign < mask.sum(axis=1, keepdims=True)).all()
    assert (assign >= -1).all()
    for row in assign:  # each jet used once
        used = row[row >= 0]
        assert len(used) == len(set(used))
    assert np.array_equal(full, (assign >= 0).all(axis=1))
    matched = float(full.mean())
    assert matched > min_matched, matched
    # b partons land on jets of b flavour; each flavour is tagged at its working-point rate (within 4 sigma)
    flavour = a["flavour"]
    assert (flavour[~mask] == 0).all()
    assert set(np.unique(flavour)) <= {0, 4, 5}
    rows = np.arange(len(assign))
    b_slots = assign[:, [0, 3]]
    b_flavour = np.where(b_slots >= 0, flavour[rows[:, None], np.maximum(b_slots, 0)] == 5, np.nan)
    assert np.nanmean(b_flavour) > 0.85  # 0.957 on the shipped 200 000 events; ~100 b jets here
    rates = data.manifest["settings"]["btag"]
    for code, p in ((5, rates["efficiency_b"]), (4, rates["mistag_c"]), (0, rates["mistag_light"])):
        tags = jets[mask & (flavour == code)][:, 4]
        assert abs(tags.mean() - p) < 4 * np.sqrt(p * (1 - p) / tags.size) + 1e-9, (code, tags.mean(), tags.size)
    # fully matched events reconstruct the W and top masses
    p4 = _four_vectors(jets[full])
    af = assign[full]
    r = np.arange(len(af))
    w = p4[r, af[:, 1]] + p4[r, af[:, 2]]
    top = w + p4[r, af[:, 0]]
    assert abs(np.median(_mass(w)) - 80.4) < 10
    assert abs(np.median(_mass(top)) - 172.5) < 25
    return matched


def _four_vectors(jets: np.ndarray) -> np.ndarray:
    pt, eta, phi, m = (jets[..., i].astype(np.float64) for i in range(4))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)], axis=-1)


def _mass(p: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(p[:, 3] ** 2 - (p[:, :3] ** 2).sum(axis=1), 0))


def _check_l1(path: Path) -> None:
    data = load(path)
    a = _all(data)
    o, label, process = a["objects"], a["label"], a["process"]
    manifest = data.manifest
    assert o.shape[1:] == (19, 3)
    assert len(data.feature_names) == 57
    assert (o[:, 0, 0] >= 0).all()
    assert (o[:, 0, 1] == 0).all()
    assert (o[:, 1:, 0] >= 0).all()
    empty = o[:, 1:, 0] == 0
    assert (o[:, 1:, 1:][empty] == 0).all()  # padding consistent
    for first, n, max_eta in ((1, 4, 3.0), (5, 4, 2.1), (9, 10, 4.0)):
        block = o[:, first:first + n]
        assert (np.diff(block[:, :, 0], axis=1) <= 0).all()  # pT-ordered, padding last
        # acceptance cuts are applied before eta and phi are rounded to multiples of 1/256
        assert (np.abs(block[:, :, 1]) <= max_eta + 1 / 512).all()
        assert (np.abs(block[:, :, 2]) <= np.pi + 1 / 512).all()
    assert (o[:, 9:, 0][o[:, 9:, 0] > 0] > 15).all()
    processes = manifest["processes"]
    assert set(np.unique(process)) == set(range(len(processes)))
    assert all(label[process == i].tolist() == [p["label"]] * int((process == i).sum())
               for i, p in enumerate(processes))
    names = [p["name"] for p in processes]
    # physics: W -> l nu has real MET, QCD little; the 1 TeV Z' gives hard leptons
    met = o[:, 0, 0]
    assert np.median(met[process == names.index("W_lnu")]) > 2 * np.median(met[process == names.index("QCD")])
    lead_lepton = np.maximum(o[:, 1, 0], o[:, 5, 0])
    assert np.median(lead_lepton[process == names.index("Zprime_ll")]) > 200
    assert np.mean(o[process == names.index("QCD"), 9, 0] > 0) > 0.8  # QCD events have a jet


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("physics")
    return {
        "jets": generate("jets", 750, 101, d / "jets.h5", workers=2, progress=False),
        "ttbar": generate("ttbar", 200, 102, d / "ttbar.h5", workers=2, progress=False),
        "l1": generate("l1", 1500, 103, d / "l1.h5", workers=2, progress=False),
    }


def test_jets_physics(samples: dict[str, Path]) -> None:
    _check_jets(samples["jets"], tolerance=0.06)


def test_ttbar_physics(samples: dict[str, Path]) -> None:
    matched = _check_ttbar(samples["ttbar"], min_matched=0.15)
    print(f"fully matched ttbar fraction: {matched:.3f}")


def test_l1_physics(samples: dict[str, Path]) -> None:
    _check_l1(samples["l1"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jets", "ttbar", "l1"])
def test_shipped_dataset_physics(name: str) -> None:
    """The same checks on the committed default datasets (tens of thousands of rows each)."""
    path = Path(__file__).resolve().parent.parent / "data" / f"{name}.h5"
    {"jets": lambda p: _check_jets(p, tolerance=0.04), "ttbar": lambda p: _check_ttbar(p, min_matched=0.2),
     "l1": _check_l1}[name](path)
