"""trigger.data: CLI input errors, the loader's refusals and splits, reproducibility, feature formulae."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from trigger.cli import main
from trigger.data import generate, load
from trigger.errors import InputError

REPO = Path(__file__).resolve().parent.parent


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_jets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 25-jet file (5 per class), generated once for the loader tests."""
    return generate("jets", 25, 11, tmp_path_factory.mktemp("jets") / "jets.h5", progress=False)


# --- CLI -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "field"), [
    (["data", "generate", "muons", "--events", "10", "--seed", "1"], "dataset"),
    (["data", "generate", "jets", "--events", "0", "--seed", "1"], "--events"),
    (["data", "generate", "l1", "--events", "-5", "--seed", "1"], "--events"),
    (["data", "generate", "ttbar", "--events", "10", "--seed", "-1"], "--seed"),
    (["data", "generate", "jets", "--events", "10", "--seed", "1", "--workers", "0"], "--workers"),
])
def test_cli_bad_input_is_one_line_exit_2(argv: list[str], field: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.h5"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert field in err
    assert "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_unwritable_path_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a directory should be")
    assert main(["data", "generate", "jets", "--events", "5", "--seed", "1", "--out",
                 str(blocker / "jets.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert "not_a_dir" in err
    assert "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_dir"]


def test_cli_writes_file_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "l1.h5"
    argv = ["data", "generate", "l1", "--events", "40", "--seed", "5", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l1.h5"]
    with h5py.File(out, "r") as f:
        manifest = json.loads(f.attrs["manifest"])
        assert f["objects"].shape == (40, 19, 3)
        assert f["objects"].dtype == np.float32
        assert f["objects"].compression == "gzip"
        assert f["objects"].shuffle
    assert manifest["dataset"] == "l1"
    assert manifest["seed"] == 5
    assert manifest["rows"] == 40
    assert manifest["command"] == "trigger data generate l1 --events 40 --seed 5"
    assert sum(manifest["counts"].values()) == 40
    assert {"pythia8mc", "fastjet", "numpy", "h5py"} <= set(manifest["versions"])
    assert len(manifest["feature_names"]) == 57
    assert manifest["feature_names"][:4] == [
        "MET_pt", "MET_eta", "MET_phi", "e1_pt"]


def test_failed_generation_removes_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trigger.data.generation as gen

    def explode(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(gen, "_run_chunk", explode)
    with pytest.raises(RuntimeError, match="boom"):
        generate("ttbar", 5, 1, tmp_path / "t.h5", progress=False)
    assert list(tmp_path.iterdir()) == []


# --- reproducibility -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("dataset", "events"), [("jets", 15), ("ttbar", 6), ("l1", 30)])
def test_same_seed_same_bytes_any_workers(dataset: str, events: int, tmp_path: Path) -> None:
    a = generate(dataset, events, 21, tmp_path / "a.h5", workers=1, progress=False)
    b = generate(dataset, events, 21, tmp_path / "b.h5", workers=2, progress=False)
    assert _digest(a) == _digest(b)


def test_different_seed_different_events(tmp_path: Path) -> None:
    a = generate("l1", 30, 1, tmp_path / "a.h5", progress=False)
    b = generate("l1", 30, 2, tmp_path / "b.h5", progress=False)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert not np.array_equal(fa["objects"][()], fb["objects"][()])


# --- loader --------------------------------------------------------------------------------------------

def test_load_splits_and_names(small_jets: Path) -> None:
    data = load(small_jets, fractions=(0.6, 0.2, 0.2), seed=3)
    assert data.name == "jets"
    assert data.path == small_jets
    assert data.class_names == ["q", "g", "W", "Z", "t"]
    assert len(data.feature_names) == 16
    sizes = [len(s["label"]) for s in (data.train, data.val, data.test)]
    assert sizes == [15, 5, 5]
    assert set(data.train) == {"features", "constituents", "label", "jet_pt", "jet_eta", "jet_mass"}
    # a permutation: every jet exactly once, the same split for the same seed, another for another seed
    pts = np.concatenate([s["jet_pt"] for s in (data.train, data.val, data.test)])
    with h5py.File(small_jets) as f:
        assert sorted(pts) == sorted(f["jet_pt"][()])
    assert np.array_equal(load(small_jets, seed=3).train["jet_pt"], data.train["jet_pt"])
    assert not np.array_equal(load(small_jets, seed=4).train["jet_pt"], data.train["jet_pt"])
    few = load(small_jets, max_events=10)
    assert sum(len(s["label"]) for s in (few.train, few.val, few.test)) == 10


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.6, 0.3, 0.3), (1.0, 0.0, 0.0), "abc"])
def test_load_rejects_bad_fractions(small_jets: Path, fractions: object) -> None:
    with pytest.raises(InputError, match=r"^fractions: "):
        load(small_jets, fractions=fractions)  # type: ignore[arg-type]


def test_load_refuses_truncated_file(small_jets: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.h5"
    raw = small_jets.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as exc:
        load(cut)
    message = str(exc.value)
    assert message.startswith(f"{cut}: ")
    assert "\n" not in message


@pytest.mark.parametrize("case", ["missing", "garbage", "no_manifest", "missing_array", "bad_shape"])
def test_load_refuses_bad_files(case: str, small_jets: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    if case == "garbage":
        path.write_bytes(b"not an HDF5 file at all" * 100)
    elif case != "missing":
        with h5py.File(small_jets) as src, h5py.File(path, "w") as dst:
            if case != "no_manifest":
                dst.attrs["manifest"] = src.attrs["manifest"]
            for name in src:
                if case == "missing_array" and name == "features":
                    continue
                data = src[name][()]
                dst[name] = data[:, :8] if case == "bad_shape" and name == "features" else data
    with pytest.raises(InputError) as exc:
        load(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert "\n" not in str(exc.value)


# --- feature formulae ----------------------------------------------------------------------------------

def _ecf(pt: np.ndarray, y: np.ndarray, phi: np.ndarray, n: int, beta: float) -> float:
    """Energy-correlation function e_n^(beta) (un-normalised, pT and (y, phi) distances), by brute force."""
    dphi = np.abs(phi[:, None] - phi[None, :])
    dphi = np.minimum(dphi, 2 * np.pi - dphi)
    r = np.hypot(y[:, None] - y[None, :], dphi) ** beta
    if n == 1:
        return float(pt.sum())
    if n == 2:
        return float(np.sum(np.triu(np.outer(pt, pt) * r, 1)))
    total = np.einsum("i,j,k,ij,ik,jk->", pt, pt, pt, r, r, r)
    return float(total / 6)  # each unordered triple counted 3! times; i=j terms vanish (r=0)


def _generalised(jet: tuple[np.ndarray, np.ndarray, np.ndarray], v: int, n: int, beta: float) -> float:
    """v e_n^(beta) of Moult, Necib, Thaler: sum over n-tuples of z's times the product of the v smallest
    pairwise angles^beta; normalised by (sum pT)^n."""
    from itertools import combinations

    pt, y, phi = jet
    dphi = np.abs(phi[:, None] - phi[None, :])
    dphi = np.minimum(dphi, 2 * np.pi - dphi)
    r = np.hypot(y[:, None] - y[None, :], dphi) ** beta
    total = 0.0
    for idx in combinations(range(len(pt)), n):
        angles = sorted(r[a, b] for a, b in combinations(idx, 2))
        total += np.prod(pt[list(idx)]) * np.prod(angles[:v])
    return total / pt.sum() ** n


def test_correlator_features_match_their_definitions() -> None:
    """A symmetric four-prong jet that soft drop keeps whole: the 13 correlator features equal the formulae of
    docs/data.md evaluated by brute force."""
    import awkward as ak

    from trigger.data.events import jagged_momenta
    from trigger.data.substructure import FEATURE_NAMES, jet_features

    pt = np.array([300.0, 250.0, 200.0, 150.0])
    y = np.array([0.05, -0.10, 0.12, -0.02])
    phi = np.array([0.00, 0.09, -0.11, 0.20])
    cons = jagged_momenta(pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(y), pt * np.cosh(y), np.array([4]))
    got = dict(zip(FEATURE_NAMES, jet_features(ak.Array(cons))[0].astype(np.float64), strict=False))
    jet = (pt, y, phi)
    e1 = _ecf(pt, y, phi, 1, 1)
    want = {"zlogz": float(np.sum(pt / e1 * np.log(pt / e1))), "multiplicity": 4.0}
    for b in (0, 1, 2):
        want[f"c1_b{b}_mmdt"] = _ecf(pt, y, phi, 2, b) / e1**2
    for b in (1, 2):
        e2, e3 = _ecf(pt, y, phi, 2, b), _ecf(pt, y, phi, 3, b)
        want[f"c2_b{b}_mmdt"] = e3 * e1 / e2**2
        want[f"d2_b{b}_mmdt"] = e3 * e1**3 / e2**3
        want[f"d2_a1_b{b}_mmdt"] = (_ecf(pt, y, phi, 3, 1) / e1**3) / (e2 / e1**2) ** (3 / b)
        want[f"m2_b{b}_mmdt"] = _generalised(jet, 1, 3, b) / _generalised(jet, 1, 2, b)
        want[f"n2_b{b}_mmdt"] = _generalised(jet, 2, 3, b) / _generalised(jet, 1, 2, b) ** 2
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-4), name
    assert got["mass_mmdt"] > 0


def test_shipped_datasets_meet_the_families_needs() -> None:
    """The committed defaults: load, have the documented shapes, and are as large as the families need."""
    jets = load(REPO / "data" / "jets.h5")
    assert len(jets.train["label"]) + len(jets.val["label"]) + len(jets.test["label"]) >= 30_000
    assert len(jets.val["label"]) + len(jets.test["label"]) >= 10_000
    assert min(jets.manifest["class_counts"].values()) >= 6_000
    ttbar = load(REPO / "data" / "ttbar.h5")
    assert ttbar.manifest["rows"] >= 200_000
    assert ttbar.feature_names == ["pt", "eta", "phi", "mass", "btag"]
    assert ttbar.manifest["settings"]["btag"]["efficiency_b"] == 0.7
    zerobias = load(REPO / "data" / "zerobias.h5")
    counts = zerobias.manifest["class_counts"]
    assert counts["background"] >= 150_000
    assert zerobias.class_names == ["background", "A_4l", "LQ_btau", "h_tautau", "Hplus_taunu", "Zprime_ll"]
    assert min(v for k, v in counts.items() if k != "background") >= 8_000
    assert zerobias.manifest["settings"]["pileup"]["mu"] == 60.0
    l1 = load(REPO / "data" / "l1.h5")
    counts = l1.manifest["class_counts"]
    assert counts["background"] >= 120_000
    assert min(v for k, v in counts.items() if k != "background") >= 10_000
    assert l1.class_names[0] == "background"
    assert len(l1.feature_names) == 57
