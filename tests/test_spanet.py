"""SPA-Net family and chi-square baseline on a toy ttbar sample built from two-body decays.

The toy is kinematics only (t -> b W, W -> q q', a few extra jets, 10 % energy smearing): enough to test that
the baseline finds true assignments, that the family's data handling, loss, firmware rebuild and metrics
fit together, and that a short training learns something. Physics figures come from data/ttbar.h5.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import on_input_port

from trigger.baselines.chi2 import Chi2Params, chi2_assign, fit_resolutions, permutations
from trigger.config import load_config, parse_config
from trigger.design import lower, run
from trigger.errors import ConfigError
from trigger.families.spanet import SpaNet, efficiencies, top_matches, triplet_targets

ROOT = Path(__file__).resolve().parents[1]
M_TOP, M_W, M_B = 172.5, 80.4, 4.8


def _two_body(parent: np.ndarray, m1: float, m2: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic decay of (N, 4) four-vectors (E, px, py, pz) into masses m1, m2, boosted to the lab."""
    mass = np.sqrt(np.maximum(parent[:, 0] ** 2 - (parent[:, 1:] ** 2).sum(1), 1e-9))
    p = np.sqrt((mass ** 2 - (m1 + m2) ** 2) * (mass ** 2 - (m1 - m2) ** 2)) / (2 * mass)
    cos, phi = rng.uniform(-1, 1, len(mass)), rng.uniform(-np.pi, np.pi, len(mass))
    sin = np.sqrt(1 - cos ** 2)
    mom = p[:, None] * np.stack([sin * np.cos(phi), sin * np.sin(phi), cos], 1)
    beta = parent[:, 1:] / parent[:, :1]
    gamma = parent[:, 0] / mass
    out = []
    for m, sign in ((m1, 1), (m2, -1)):
        k = sign * mom
        e = np.sqrt(m ** 2 + (k ** 2).sum(1))
        bk = (beta * k).sum(1)
        b2 = np.maximum((beta ** 2).sum(1), 1e-12)
        k_lab = k + ((gamma - 1) * bk / b2 + gamma * e)[:, None] * beta
        out.append(np.concatenate([(gamma * (e + bk))[:, None], k_lab], 1))
    return out[0], out[1]


def _to_jet(p: np.ndarray) -> np.ndarray:
    pt = np.hypot(p[..., 1], p[..., 2])
    eta = np.arcsinh(p[..., 3] / np.maximum(pt, 1e-9))
    mass = np.sqrt(np.maximum(p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1), 0))
    return np.stack([pt, eta, np.arctan2(p[..., 2], p[..., 1]), mass], -1)


def toy_ttbar(events: int, seed: int, smear: float = 0.1) -> dict[str, np.ndarray]:
    """Arrays with the ttbar keys: jets (pt, eta, phi, m, btag), mask, flavour, n_jets, assignment,
    fully_matched."""
    rng = np.random.default_rng(seed)
    pt = rng.exponential(120, events)
    phi = rng.uniform(-np.pi, np.pi, events)
    partons = []
    for sign in (1, -1):
        eta = rng.normal(0, 1.2, events)
        px, py, pz = sign * pt * np.cos(phi), sign * pt * np.sin(phi), pt * np.sinh(eta)
        top = np.stack([np.sqrt(M_TOP ** 2 + px ** 2 + py ** 2 + pz ** 2), px, py, pz], 1)
        b, w = _two_body(top, M_B, M_W, rng)
        q1, q2 = _two_body(w, 0.3, 0.3, rng)
        partons += [b, q1, q2]
    extra = rng.integers(0, 5, events)
    jets = np.zeros((events, 10, 5), np.float32)
    flavour = np.zeros((events, 10), np.int8)
    assignment = np.full((events, 6), -1, np.int8)
    n_jets = np.zeros(events, np.int8)
    for e in range(events):
        cand = [_to_jet(p[e] * rng.normal(1, smear)) for p in partons]
        cand += [np.array([rng.exponential(40) + 25, rng.normal(0, 2), rng.uniform(-np.pi, np.pi), 8.0])
                 for _ in range(extra[e])]
        btag = [float(rng.random() < (0.7 if i in (0, 3) else 0.1)) for i in range(len(cand))]
        order = np.argsort([-c[0] for c in cand])[:10]
        for slot, i in enumerate(order):
            jets[e, slot] = [*cand[i], btag[i]]
            flavour[e, slot] = 5 if i in (0, 3) else 0
            if i < 6:
                assignment[e, i] = slot
        n_jets[e] = len(order)
    mask = np.arange(10)[None] < n_jets[:, None]
    return {"jets": jets, "mask": mask, "flavour": flavour, "n_jets": n_jets, "assignment": assignment,
            "fully_matched": np.all(assignment >= 0, 1)}


def toy_dataset(events: int, seed: int) -> Any:
    full = toy_ttbar(events, seed)
    cut = [int(events * 0.6), int(events * 0.8)]
    slices = (slice(0, cut[0]), slice(*cut), slice(cut[1], None))
    parts = [{k: v[sl] for k, v in full.items()} for sl in slices]
    return SimpleNamespace(name="ttbar", train=parts[0], val=parts[1], test=parts[2], manifest={})


def _config(preprocessing: dict[str, Any] | None = None, **architecture: Any) -> Any:
    raw = load_config(ROOT / "configs" / "spanet_ttbar.yaml").raw
    model = {**raw["model"], "architecture": {**raw["model"]["architecture"], **architecture},
             "preprocessing": {**raw["model"]["preprocessing"], **(preprocessing or {})}}
    return parse_config({**raw, "model": model})


# ------------------------------------------------------------------------------------------ chi-square


def test_permutations_count_each_assignment_once() -> None:
    assert len(permutations(6)) == 90
    assert len(permutations(10)) == 18900
    rows = permutations(7)
    assert all(len(set(r)) == 6 for r in rows.tolist())


def test_chi2_finds_unsmeared_truth() -> None:
    data = toy_ttbar(300, seed=3, smear=0.0)
    params = fit_resolutions(Chi2Params(M_TOP, M_W, None, None), data["jets"][data["fully_matched"]],
                             data["assignment"][data["fully_matched"]])
    assert params.sigma_top < 1.0  # exact masses without smearing
    assert params.sigma_w < 1.0
    chosen, cost = chi2_assign(data["jets"], data["n_jets"], Chi2Params(M_TOP, M_W, 15.0, 10.0), 10)
    matched = data["fully_matched"]
    right = top_matches(chosen, data["assignment"].astype(np.int64))[matched] == 2
    assert right.mean() > 0.9  # only accidental combinations with the same masses can win
    assert set(np.unique(cost[data["n_jets"] == 6])) == {90}


def test_top_matching_is_symmetric_in_quarks_and_tops() -> None:
    truth = np.array([[0, 1, 2, 3, 4, 5]])
    assert top_matches(np.array([[[3, 5, 4], [0, 2, 1]]]), truth)[0] == 2
    assert top_matches(np.array([[[0, 1, 2], [3, 4, 6]]]), truth)[0] == 1
    assert top_matches(np.array([[[1, 0, 2], [4, 3, 5]]]), truth)[0] == 0
    meta = {"assignment": truth, "n_jets": np.array([6]), "fully_matched": np.array([True])}
    result = efficiencies(np.array([[[0, 1, 2], [3, 4, 6]]]), meta)
    six = result["by_multiplicity"]["6"]
    assert {k: six[k] for k in ("events", "event", "top")} == {"events": 1, "event": 0.0, "top": 0.5}
    # 68 % Clopper-Pearson: 0 of 1 events -> [0, 1 - 0.1587]; 1 of 2 tops -> symmetric about 0.5
    assert six["event_interval"][0] == 0.0
    assert six["event_interval"][1] == pytest.approx(0.8413, abs=1e-4)
    assert six["top_interval"][0] == pytest.approx(1 - six["top_interval"][1])


def test_triplet_targets_order_the_quarks() -> None:
    targets = triplet_targets(np.array([[2, 7, 1, 0, 3, 4]]), 10)
    assert targets.tolist() == [[2 * 100 + 1 * 10 + 7, 0 * 100 + 3 * 10 + 4]]


# ---------------------------------------------------------------------------------------------- config


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"model\.architecture\.head_dims"):
        SpaNet(_config(head_dims=4))
    with pytest.raises(ConfigError, match=r"model\.architecture\.embed"):
        SpaNet(_config(embed=[]))
    with pytest.raises(ConfigError, match=r"model\.architecture\.types\.exp\.integer"):
        SpaNet(_config(types={"exp": {"bits": 8, "integer": 0}}))
    with pytest.raises(ConfigError, match=r"triplet_score"):
        SpaNet(_config(types={"triplet_score": {"bits": 12, "integer": 2}}))


# ---------------------------------------------------------------------------------------------- family


def test_family_trains_and_its_firmware_model_matches_csim(tmp_path: Path) -> None:
    """Prepare, a short QAT training, the fixed-point firmware model, hls4ml C simulation and metrics."""
    import hls4ml
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    # The small plain model this 4-epoch check was written for; the shipped mass prior, shared head and joint
    # decoding go through C simulation in test_spanet_mass_prior.py.
    family = SpaNet(_config({"four_momentum": False}, embed=[16, 16], head_dim=4, rank=4, mass_prior=False,
                            candidates=0, shared_head=False))
    prepared = family.prepare(toy_dataset(2500, seed=5))
    assert prepared.train.meta["fully_matched"].all()
    model = family.build(quantized=True)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), **family.compile_args())
    history = model.fit(prepared.train.x, prepared.train.y, epochs=4, batch_size=128, verbose=0,
                        validation_data=(prepared.val.x, prepared.val.y))
    assert history.history["loss"][-1] < history.history["loss"][0]

    firmware = family.firmware_model(model)
    x = [on_input_port(prepared.test.x[0], family.cfg), prepared.test.x[1]]  # as the pipeline feeds the model
    reference = firmware.predict(x, verbose=0)
    config = hls4ml.utils.config_from_keras_model(firmware, granularity="name", backend="Vitis")
    family.configure_hls(config, firmware)
    hls_model = hls4ml.converters.convert_from_keras_model(
        firmware, hls_config=config, output_dir=str(tmp_path / "prj"), backend="Vitis", io_type="io_parallel")
    hls_model.compile()
    sim = np.asarray(hls_model.predict([np.ascontiguousarray(v, dtype=np.float64) for v in x]))
    np.testing.assert_array_equal(sim.reshape(reference.shape), reference)
    np.testing.assert_array_equal(run(lower(hls_model), x)[0], sim.reshape(reference.shape))  # the emulator

    fixed = family.evaluate(reference, prepared.test)
    floating = family.evaluate(model.predict(prepared.test.x, verbose=0), prepared.test)
    for result in (fixed, floating):
        assert result["by_multiplicity"]["all"]["events"] == int(prepared.test.meta["fully_matched"].sum())
        # measured 0.33 of tops right (fixed point and float); a random triplet gets < 1 %
        assert result["by_multiplicity"]["all"]["top"] > 0.2
    assert fixed["chi2"]["cost"]["permutations_per_event"]["6"] == 90.0
    summary = "\n".join(family.summary_lines({"csim": fixed, "float": floating}))
    assert "| chi-square (masses + b-tag) |" in summary
    assert "| reference: chi-square (masses + truth b flavour) |" in summary
    # the toy's tag finds 70 % of b jets and fakes 10 %: the truth flavour can only help the chi-square
    truth, tagged = (fixed[k]["by_multiplicity"]["all"]["event"] for k in ("chi2_btag_truth", "chi2_btag"))
    assert truth > tagged
    logits = model.predict(prepared.test.x, verbose=0)
    written = family.plots({"csim": reference, "float": logits}, prepared.test, tmp_path)
    assert (tmp_path / written[0]).stat().st_size > 0


def test_four_momentum_features_are_optional() -> None:
    plain = SpaNet(_config({"four_momentum": False}, mass_prior=False))
    extended = SpaNet(_config({"four_momentum": True}))
    assert len(extended.features) == len(plain.features) + 4
    assert extended.build(quantized=False).inputs[0].shape[-1] == len(extended.features)
    jets = toy_ttbar(5, seed=1)
    feats = extended._features(jets["jets"], jets["mask"])
    assert feats.shape == (5, 10, len(extended.features))
    assert np.all(feats[~jets["mask"]] == 0)


def test_saved_model_reloads_with_the_custom_objects(tmp_path: Path) -> None:
    from trigger.model_io import load_model

    family = SpaNet(_config(embed=[8], head_dim=4, rank=2))
    model = family.build(quantized=True)
    model.save(tmp_path / "m.h5")
    again = load_model(tmp_path / "m.h5", None, family.custom_objects())
    x = [np.random.default_rng(0).normal(size=(4, 10, len(family.features))).astype(np.float32),
         np.ones((4, 10), np.float32)]
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))


def test_augmentation_keeps_the_masses_and_the_labels() -> None:
    from trigger.baselines.chi2 import four_vectors, invariant_mass

    family = SpaNet(_config())
    family.augment = 2
    data = toy_ttbar(50, seed=9)
    augmented = family._augmented(data)
    assert len(augmented["jets"]) == 150
    np.testing.assert_array_equal(augmented["assignment"][100:], data["assignment"])
    assert not np.allclose(augmented["jets"][50:100, :, 2], data["jets"][..., 2])
    rows = np.flatnonzero(data["fully_matched"])
    a = data["assignment"][rows].astype(np.int64)

    def top_mass(jets: np.ndarray) -> np.ndarray:
        p = four_vectors(jets)
        return invariant_mass(sum(p[np.arange(len(rows)), a[:, i]] for i in range(3)))

    for copy in range(3):
        np.testing.assert_allclose(top_mass(augmented["jets"][copy * 50 + rows]),
                                   top_mass(data["jets"][rows]), rtol=1e-3)
