"""The `zerobias` dataset on tiny generations: layout, reproducibility, pileup dependence, manifest, signals,
and the tower jets on constructed events."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from trigger.cli import main
from trigger.data import generate, load
from trigger.data.events import derive_seed
from trigger.data.generation import DATASET_NAMES
from trigger.data.l1 import Particles
from trigger.data.zerobias import TOWER_MIN_ET, Towers

TINY = {"pileup": 20.0, "library": 100}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh Pythia MPI cache: the first generation creates it, so reproducibility covers both states."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def tiny(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 crossings at mu = 20 from a 100-event library, generated once for the layout tests."""
    return generate("zerobias", 200, 31, tmp_path_factory.mktemp("zb") / "zb.h5", progress=False, options=TINY)


def test_same_seed_same_bytes(tiny: Path, tmp_path: Path) -> None:
    again = generate("zerobias", 200, 31, tmp_path / "again.h5", workers=2, progress=False, options=TINY)
    assert _digest(again) == _digest(tiny)
    other = generate("zerobias", 20, 32, tmp_path / "other.h5", progress=False, options=TINY)
    with h5py.File(tiny) as a, h5py.File(other) as b:
        assert not np.array_equal(a["objects"][:20], b["objects"][()])


def test_layout_is_the_l1_layout(tiny: Path) -> None:
    with h5py.File(tiny) as f:
        assert f["objects"].shape == (200, 19, 3)
        assert f["objects"].dtype == np.float32
        assert f["label"].dtype == np.int8
        assert f["process"].dtype == np.int8
        assert f["pileup"].dtype == np.int16
        assert f["library"].dtype == np.int32
    data = load(tiny)
    assert data.name == "zerobias"
    assert data.feature_names == load_l1_feature_names()
    assert data.class_names == ["background", "A_4l", "LQ_btau", "h_tautau", "Hplus_taunu", "Zprime_ll"]
    a = {k: np.concatenate([data.train[k], data.val[k], data.test[k]]) for k in data.train}
    o = a["objects"]
    assert (a["label"] == 0).all()
    assert (a["process"] == 0).all()
    assert (o[:, :, 0] >= 0).all()  # MET and every pT
    assert (o[:, 0, 1] == 0).all()
    empty = o[:, 1:, 0] == 0
    assert (o[:, 1:, 1:][empty] == 0).all()
    for first, n, max_eta in ((1, 4, 3.0), (5, 4, 2.1), (9, 10, 4.0)):
        block = o[:, first:first + n]
        assert (np.diff(block[:, :, 0], axis=1) <= 0).all()
        assert (np.abs(block[:, :, 1]) <= max_eta + 1 / 512).all()
    assert (o[:, 9:, 0][o[:, 9:, 0] > 0] > 15).all()
    assert (o[:, 9, 0] > 0).mean() > 0.5  # mu = 20 leaves a pileup jet above 15 GeV in most crossings
    assert abs(a["pileup"].mean() - 20) < 1.5


def load_l1_feature_names() -> list[str]:
    from trigger.data.l1 import FEATURE_NAMES

    return FEATURE_NAMES


def test_manifest_records_pileup_and_library(tiny: Path) -> None:
    with h5py.File(tiny) as f:
        manifest = json.loads(f.attrs["manifest"])
        library = f["library"][()]
    pileup = manifest["settings"]["pileup"]
    assert pileup["mu"] == 20.0
    assert pileup["library_events_per_chunk"] == 100
    assert "SoftQCD:inelastic = on" in pileup["library_pythia_settings"]
    assert manifest["command"] == ("trigger data generate zerobias --events 200 --seed 31 --pileup 20.0 "
                                   "--library 100 --signal-fraction 0.0")
    assert manifest["rows_unit"] == "crossings"
    # one chunk: its library is seeded with the chunk's seed
    assert set(library.tolist()) == {derive_seed(31, DATASET_NAMES.index("zerobias"), 0, 0)}
    assert manifest["processes"][0]["pythia_settings"][-2:] == ["Beams:eCM = 13600.", "SoftQCD:inelastic = on"]


def test_jets_and_met_grow_with_pileup(cache: Path, tmp_path: Path) -> None:
    jets, met = {}, {}
    for mu in (1.0, 40.0):
        o = load(generate("zerobias", 40, 5, tmp_path / f"mu{mu:g}.h5", progress=False,
                          options={"pileup": mu, "library": 200})).train["objects"]
        jets[mu] = (o[:, 9:, 0] > 0).sum(axis=1).mean()
        met[mu] = np.median(o[:, 0, 0])
    assert jets[40.0] > jets[1.0] + 1
    assert met[40.0] > 2 * met[1.0]


def test_signals_are_embedded_in_pileup(cache: Path, tmp_path: Path) -> None:
    path = generate("zerobias", 25, 8, tmp_path / "sig.h5", progress=False,
                    options={"pileup": 5.0, "library": 50, "signal_fraction": 1.0})
    data = load(path)
    a = {k: np.concatenate([data.train[k], data.val[k], data.test[k]]) for k in data.train}
    names = [p["name"] for p in data.manifest["processes"]]
    assert names == ["zero_bias", "A_4l", "LQ_btau", "h_tautau", "Hplus_taunu", "Zprime_ll"]
    assert data.manifest["counts"] == {"zero_bias": 0, **dict.fromkeys(names[1:], 5)}
    assert np.array_equal(np.sort(a["label"]), np.repeat(np.arange(1, 6), 5))
    assert (a["process"] == a["label"]).all()
    assert a["pileup"].sum() > 0  # the signal collision comes with its pileup
    o = a["objects"]
    leptons = (o[:, 1:9, 0] > 0).sum(axis=1)
    zprime = a["label"] == names.index("Zprime_ll")
    assert np.median(np.maximum(o[zprime, 1, 0], o[zprime, 5, 0])) > 100  # 1 TeV Z' -> l l
    assert leptons[a["label"] == names.index("A_4l")].max() >= 2  # A -> Z* Z* -> 4 l


@pytest.mark.parametrize(("argv", "field"), [
    (["zerobias", "--pileup", "-1"], "--pileup"),
    (["zerobias", "--library", "0"], "--library"),
    (["zerobias", "--signal-fraction", "1.5"], "--signal-fraction"),
    (["l1", "--pileup", "20"], "--pileup"),
    (["ttbar", "--btag-efficiency", "1.2"], "--btag-efficiency"),
    (["ttbar", "--light-mistag", "-0.1"], "--light-mistag"),
    (["zerobias", "--c-mistag", "0.1"], "--c-mistag: only the ttbar dataset takes it"),
])
def test_cli_bad_dataset_options_are_one_line(argv: list[str], field: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    args = ["data", "generate", argv[0], "--events", "5", "--seed", "1", *argv[1:], "--out", str(tmp_path / "x.h5")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert field in err
    assert "\n" not in err
    assert list(tmp_path.iterdir()) == []


# --- towers --------------------------------------------------------------------------------------------

def _particles(eta: np.ndarray, phi: np.ndarray, pt: np.ndarray, event: np.ndarray, n: int) -> Particles:
    """Massless pions at the given (eta, phi, pT)."""
    return Particles(np.full(len(pt), 211), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta),
                     pt * np.cosh(eta), event, n)


def test_a_hard_deposit_is_one_jet_at_its_tower() -> None:
    vis = _particles(np.array([0.5, 0.52, -2.0]), np.array([1.0, 1.01, -2.0]), np.array([60.0, 40.0, 0.4]),
                     np.array([0, 0, 1]), 2)
    jets = Towers.of(vis).jets(np.ones(3, dtype=bool))
    assert jets.event.tolist() == [0]  # the 0.4 GeV particle lights no tower
    assert jets.pt[0] == pytest.approx(100.0, rel=1e-9)
    assert abs(jets.eta[0] - 0.51) < 0.087
    assert abs(jets.phi[0] - 1.005) < 0.088
    assert TOWER_MIN_ET == 0.5


def test_uniform_pileup_is_subtracted() -> None:
    """Every tower carries 1 GeV (rho = 1 GeV per tower area); a 100 GeV deposit on top. The jet keeps about
    100 GeV after subtracting rho x pi R^2, and the pileup-only regions give no jet above 8 GeV."""
    from trigger.data.zerobias import _ETA_WIDTH, _PHI_WIDTH, TOWER_ETA_BINS, TOWER_PHI_BINS

    i, j = np.meshgrid(np.arange(TOWER_ETA_BINS), np.arange(TOWER_PHI_BINS), indexing="ij")
    eta = -5 + (i.ravel() + 0.5) * _ETA_WIDTH
    phi = -np.pi + (j.ravel() + 0.5) * _PHI_WIDTH
    vis = _particles(np.append(eta, 0.0), np.append(phi, 0.0), np.append(np.ones(eta.size), 100.0),
                     np.zeros(eta.size + 1, dtype=np.int64), 1)
    towers = Towers.of(vis)
    jets = towers.jets(np.ones(eta.size + 1, dtype=bool))
    area = _ETA_WIDTH * _PHI_WIDTH
    assert towers.rho[0] == pytest.approx(1 / area)
    assert len(jets.pt) == 1
    assert jets.pt[0] == pytest.approx(100.0, abs=10.0)
    # the jet's isolated particles leave the towers before clustering: without the deposit, no jet
    keep = np.ones(eta.size + 1, dtype=bool)
    keep[-1] = False
    assert len(towers.jets(keep).pt) == 0
