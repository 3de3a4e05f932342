"""Anomaly families: config validation, preprocessing, the score path in Keras, calibration and report.

Arrays here are constructed for arithmetic; no physics model is trained on them.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from trigger.config import FixedType, parse_config
from trigger.errors import ConfigError
from trigger.families.anomaly import (
    N_INPUTS,
    Autoencoder,
    VariationalAutoencoder,
    difference_type,
    pt_shift_features,
    sum_of_squares_type,
)
from trigger.fixed_point import to_grid

CLASSES = ["background", "sig_a", "sig_b"]


def _config(family: str = "autoencoder", **sections: Any) -> Any:
    raw: dict[str, Any] = {"name": "ad_unit", "model": {"family": family}, "data": {"file": "unused.h5"},
                           "quantization": {"input": {"bits": 12, "integer": 6},
                                            "default": {"weight": {"bits": 8, "integer": 1},
                                                        "bias": {"bits": 8, "integer": 3},
                                                        "activation": {"bits": 10, "integer": 5}},
                                            "layers": {"latent" if family == "autoencoder" else "mu":
                                                       {"activation": {"bits": 10, "integer": 4}}}}}
    for key, value in sections.items():
        if key in ("architecture", "preprocessing"):
            raw["model"][key] = value
        else:
            raw[key] = value
    return parse_config(raw)


def _family(family: str = "autoencoder", **sections: Any) -> Autoencoder | VariationalAutoencoder:
    cls = Autoencoder if family == "autoencoder" else VariationalAutoencoder
    return cls(_config(family, **sections))


@pytest.mark.parametrize(("sections", "field"), [
    ({"architecture": {"encoder": [32, 0]}}, "model.architecture.encoder"),
    ({"architecture": {"latent": 0}}, "model.architecture.latent"),
    ({"architecture": {"bottleneck": 4}}, "model.architecture.bottleneck"),
    ({"architecture": {"score_type": {"bits": 16}, "difference_type": {"bits": 12, "integer": 3}}},
     "model.architecture.difference_type"),  # 57 squares of ap_fixed<12,4> overflow float32's mantissa
    ({"architecture": {"score_type": {"bits": 16, "width": 3}}}, "model.architecture.score_type.width"),
    ({"preprocessing": {"pt_shift": {"tau": 3}}}, "model.preprocessing.pt_shift.tau"),
    ({"preprocessing": {"pt_shift": {"jet": -1}}}, "model.preprocessing.pt_shift.jet"),
    ({"preprocessing": {"log_pt": True}}, "model.preprocessing.log_pt"),
    ({"evaluation": {"rates_khz": [1, 50_000]}}, "evaluation.rates_khz"),
    ({"evaluation": {"rates_khz": []}}, "evaluation.rates_khz"),
    ({"evaluation": {"collision_rate_mhz": 0}}, "evaluation.collision_rate_mhz"),
    ({"evaluation": {"target": 3}}, "evaluation.target"),
])
def test_autoencoder_config_errors_name_the_field(sections: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        _family("autoencoder", **sections)
    assert err.value.field == field


def test_quantization_layers_must_name_on_chip_dense_layers() -> None:
    cfg = _config("autoencoder")
    raw = {**cfg.raw, "quantization": {**cfg.raw["quantization"], "layers": {"score": {}}}}
    with pytest.raises(ConfigError) as err:
        Autoencoder(parse_config(raw))
    assert err.value.field == "quantization.layers.score"
    raw["quantization"]["layers"] = {"dec1": {}}  # the VAE decoder is float and off chip
    raw["model"] = {"family": "vae"}
    with pytest.raises(ConfigError) as err:
        VariationalAutoencoder(parse_config(raw))
    assert err.value.field == "quantization.layers.dec1"


def test_vae_config_checks_kl_weight_and_mu_width() -> None:
    with pytest.raises(ConfigError) as err:
        _family("vae", architecture={"kl_weight": 0})
    assert err.value.field == "model.architecture.kl_weight"
    cfg = _config("vae", architecture={"latent": 64})
    raw = {**cfg.raw, "quantization": {**cfg.raw["quantization"],
                                       "layers": {"mu": {"activation": {"bits": 12, "integer": 3}}}}}
    with pytest.raises(ConfigError) as err:
        VariationalAutoencoder(parse_config(raw))
    assert err.value.field == "quantization.layers.mu.activation"


def test_shipped_configs_are_valid(root: Path) -> None:
    from trigger.config import load_config

    assert isinstance(Autoencoder(load_config(root / "configs" / "ad_autoencoder.yaml")), Autoencoder)
    vae = VariationalAutoencoder(load_config(root / "configs" / "ad_vae.yaml"))
    assert vae.rates_khz == [1.0, 10.0]


def _all_values(t: FixedType) -> np.ndarray:
    step = 2.0 ** -(t.bits - 1 - t.integer)
    return np.arange(-(2 ** (t.bits - 1)), 2 ** (t.bits - 1)) * step


def test_exact_types_hold_every_possible_value() -> None:
    a, b = FixedType(5, 2), FixedType(4, 1)
    width, integer = difference_type(a, b)
    diffs = np.subtract.outer(_all_values(a), _all_values(b)).ravel()
    frac = width - integer
    assert np.all(diffs * 2**frac == np.round(diffs * 2**frac))  # no rounding
    assert diffs.min() >= -(2.0 ** (integer - 1))
    assert diffs.max() <= 2.0 ** (integer - 1) - 2.0**-frac
    # and not a bit wider than needed:
    assert diffs.min() < -(2.0 ** (integer - 2)) or diffs.max() > 2.0 ** (integer - 2)

    d = FixedType(4, 1)
    width, integer = sum_of_squares_type(d, 3)
    sums = [sum(v * v for v in c) for c in itertools.combinations_with_replacement(_all_values(d), 3)]
    assert max(sums) <= 2.0**integer - 2.0 ** -(width - integer)
    assert max(sums) > 2.0 ** (integer - 1)
    assert sum_of_squares_type(FixedType(10, 4), 57) == (24, 14)


def test_pt_shift_scales_pt_by_powers_of_two_in_object_major_order() -> None:
    objects = np.zeros((2, 19, 3), dtype=np.float32)
    objects[:, :, 0] = 64.0  # pT
    objects[:, :, 1] = 1.5  # eta
    objects[:, :, 2] = -3.0  # phi
    x = pt_shift_features(objects, {"met": 1, "electron": 2, "muon": 3, "jet": 6})
    assert x.shape == (2, N_INPUTS)
    assert x.dtype == np.float32
    pts = x[0, 0::3]
    np.testing.assert_array_equal(pts, [32.0] + [16.0] * 4 + [8.0] * 4 + [1.0] * 10)
    np.testing.assert_array_equal(x[0, 1::3], 1.5)
    np.testing.assert_array_equal(x[0, 2::3], -3.0)
    with pytest.raises(ValueError, match="shape"):
        pt_shift_features(np.zeros((2, 18, 3)), {"met": 1, "electron": 2, "muon": 3, "jet": 6})


def _dataset(name: str = "l1") -> SimpleNamespace:
    rng = np.random.default_rng(0)

    def part(n: int, labels: list[int]) -> dict[str, np.ndarray]:
        label = np.array(labels * (n // len(labels)), dtype=np.int8)
        return {"objects": rng.normal(0, 1, (label.size, 19, 3)).astype(np.float32), "label": label,
                "process": (label * 2).astype(np.int8)}

    return SimpleNamespace(name=name, class_names=CLASSES, feature_names=[f"f{i}" for i in range(N_INPUTS)],
                           path=Path(f"{name}.h5"), manifest={},
                           train=part(60, [0, 0, 1]), val=part(20, [0, 2]), test=part(20, [0, 1, 2, 0]))


def test_prepare_trains_on_background_and_tests_on_test_background_and_all_signals() -> None:
    family = _family()
    data = _dataset()
    prepared = family.prepare(data)
    assert len(prepared.train) == 40
    assert np.all(prepared.train.meta["label"] == 0)
    np.testing.assert_array_equal(prepared.train.x, prepared.train.y)  # the autoencoder's target is its input
    assert len(prepared.val) == 10
    assert np.all(prepared.val.meta["label"] == 0)
    test_labels = prepared.test.meta["label"]
    assert np.count_nonzero(test_labels == 0) == 10  # test background only: val and test stay distinct
    assert np.count_nonzero(test_labels == 1) == 20 + 5  # signal of every split
    assert np.count_nonzero(test_labels == 2) == 10 + 5
    np.testing.assert_array_equal(prepared.test.meta["process"], test_labels * 2)
    assert prepared.output_names == ["anomaly_score"]
    assert family.class_names == CLASSES
    assert "input port" in prepared.preprocessing["where"]
    with pytest.raises(ConfigError) as err:
        family.prepare(_dataset("jets"))
    assert err.value.field == "data.file"


def _randomise(model: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32) for w in layer.get_weights()])


def _round_to(x: np.ndarray, t: FixedType) -> np.ndarray:
    """quantized_bits(bits, integer): round half to even on the grid, saturate at the type's limits."""
    step = 2.0 ** -(t.bits - 1 - t.integer)
    return np.clip(np.round(x / step) * step, -(2.0**t.integer), 2.0**t.integer - step)


def test_autoencoder_firmware_score_is_the_rounded_sum_of_squared_differences() -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    family = _family()
    model = family.build(quantized=True)
    _randomise(model, 1)
    firmware = family.firmware_model(model)
    assert [layer.name for layer in firmware.layers[-4:]] == ["diff", "diff_q", "sum_squares", "score"]
    assert firmware.output_shape == (None, 1)
    rng = np.random.default_rng(2)
    x = to_grid(rng.normal(0, 1, (400, N_INPUTS)) * rng.choice([0.2, 1.0, 8.0], (400, 1)),
                family.cfg.quantization.input).values.astype(np.float32)
    recon = model.predict(x, verbose=0).astype(np.float64)
    diff = _round_to(x - recon, family.difference)
    st = family.score_type
    expected = np.minimum(np.round((diff**2).sum(axis=1) / st.step) * st.step, st.top)
    score = firmware.predict(x, verbose=0)[:, 0]
    np.testing.assert_array_equal(score, expected)
    assert 0 < family.score_type.saturated(score) < len(score)  # both regimes are exercised

    float_family = _family()
    float_model = float_family.build(quantized=False)
    float_score = float_family.firmware_model(float_model).predict(x, verbose=0)[:, 0]
    recon = float_model.predict(x, verbose=0)
    np.testing.assert_allclose(float_score, ((x - recon) ** 2).sum(axis=1), rtol=1e-5)


def test_vae_trains_with_kl_and_its_firmware_is_the_encoder_and_mu_squared(tmp_path: Path) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    family = _family("vae")
    model = family.build(quantized=True)
    model.compile(optimizer="adam", **family.compile_args())
    x = np.random.default_rng(3).normal(0, 1, (256, N_INPUTS)).astype(np.float32)
    history = model.fit(x, x, epochs=1, batch_size=64, verbose=0)
    assert history.history["kl"][0] > 0  # the KL term is part of the training loss
    assert history.history["loss"][0] > 0

    # tfmot pruning clones the model: the sampling layer must survive a clone and a save/load.
    with tf.keras.utils.custom_object_scope(family.custom_objects()):
        clone = tf.keras.models.clone_model(model)
    assert clone.get_layer("sampling").kl_weight == family.kl_weight

    firmware = family.firmware_model(model)
    names = [layer.name for layer in firmware.layers]
    assert names[-3:] == ["mu_q", "sum_squares", "score"]
    assert not {"log_var", "sampling", "recon"} & set(names)  # the decoder stays off chip
    mu = tf.keras.Model(model.input, model.get_layer("mu_q").output).predict(x, verbose=0).astype(np.float64)
    st = family.score_type
    expected = np.minimum(np.round((mu**2).sum(axis=1) / st.step) * st.step, st.top)
    np.testing.assert_array_equal(firmware.predict(x, verbose=0)[:, 0], expected)


def _scores(family: Autoencoder) -> tuple[dict[str, np.ndarray], Any]:
    """Constructed on-grid scores: background falls steeply, signal b is far out (saturating)."""
    from trigger.families.base import Split

    rng = np.random.default_rng(4)
    st = family.score_type
    labels = np.concatenate([np.zeros(100_000, dtype=int), np.ones(2_000, dtype=int), np.full(500, 2)])
    raw = np.concatenate([rng.exponential(2.0, 100_000), rng.exponential(30.0, 2_000), np.full(500, 5000.0)])
    quantized = np.minimum(np.floor(raw / st.step) * st.step, st.top)
    outputs = {"float": raw * 1.001, "quantized": quantized[:, None], "csim": quantized[:, None]}
    meta = {"label": labels, "role": np.zeros(labels.size, dtype=int), "library": np.full(labels.size, -1)}
    return outputs, Split(np.zeros((labels.size, 1)), None, meta)


def test_evaluate_plots_and_summary(tmp_path: Path) -> None:
    family = _family()
    family.class_names = CLASSES
    outputs, split = _scores(family)
    metrics = {kind: family.evaluate(out, split) for kind, out in outputs.items()}
    csim = metrics["csim"]
    assert csim["on_grid"] is True
    assert metrics["float"]["on_grid"] is False
    t = csim["thresholds"]["1kHz"]
    assert t["raw"] * family.score_type.step == t["value"]
    assert t["allowed_background"] == 2
    assert csim["saturated"]["sig_b"] == 500
    assert csim["saturated"]["background"] == 0
    assert metrics["float"]["saturated"]["sig_b"] == 500  # the float score would saturate too
    assert csim["thresholds_below_top"] is True
    assert set(csim["roc_auc"]) == {"sig_a", "sig_b"}

    written = family.plots(outputs, split, tmp_path)
    assert written == ["score_distributions.png", "efficiency_vs_rate.png"]
    for name in written:
        assert (tmp_path / name).stat().st_size > 0

    text = "\n".join(family.summary_lines({**metrics, "unused": None}))
    assert f"| csim | 1kHz | {t['value']:.6g} | {t['raw']} |" in text
    assert "| float | 1kHz |" in text
    assert "quantized vs float efficiency" in text
    assert "not compared" not in text  # sig_a and sig_b both pass >= 100 events at each rate
    assert "| sig_b | 500 | 500 | 500 |" in text  # for the float model: would saturate
    assert "below it, so a saturated score still fires" in text
    assert "verified two-fold on halves of 50000 and 50000 crossings" in text
    lo, hi = csim["efficiency_interval"]["sig_a"]["1kHz"]
    assert f"{csim['efficiency']['sig_a']['1kHz']:.4f} [{lo:.3g}, {hi:.3g}]" in text


def test_calibration_crossings_set_the_thresholds(tmp_path: Path) -> None:
    """With calibration crossings (role 1) in the split, the thresholds and their two-fold verification use
    them alone, split by pileup library; the test split's background steps aside and the signals stay."""
    from trigger.families.base import Split

    family = _family()
    family.class_names = CLASSES
    family.background_source = {"file": "cal.h5", "what": "every zero-bias crossing", "crossings": 200_000}
    rng = np.random.default_rng(8)
    st = family.score_type
    n_test, n_cal = 1_000, 200_000
    labels = np.concatenate([np.zeros(n_test, dtype=int), np.ones(3_000, dtype=int), np.zeros(n_cal, dtype=int)])
    role = np.concatenate([np.zeros(n_test + 3_000, dtype=int), np.ones(n_cal, dtype=int)])
    library = np.concatenate([np.full(n_test + 3_000, 7), np.repeat(np.arange(100), n_cal // 100)])
    raw = np.concatenate([np.full(n_test, 900.0), rng.exponential(30.0, 3_000), rng.exponential(2.0, n_cal)])
    scores = np.minimum(np.floor(raw / st.step) * st.step, st.top)
    split = Split(np.zeros((labels.size, 1)), None, {"label": labels, "role": role, "library": library})
    m = family.evaluate(scores, split)
    assert m["n_background"] == n_cal  # the 900-scoring test background would otherwise set every threshold
    assert m["n_signal"] == {"sig_a": 3_000}
    t = m["thresholds"]["10kHz"]
    assert t["allowed_background"] == 50
    assert t["value"] < 100
    check = t["verification"]
    assert m["calibration"]["split_by_group"] is True
    assert sum(f["n_verification"] for f in check["folds"]) == n_cal
    assert "design_effect" in check
    assert m["background_source"]["file"] == "cal.h5"
    assert family.plots({"csim": scores}, split, tmp_path) == ["score_distributions.png", "efficiency_vs_rate.png"]


@pytest.mark.parametrize(("file", "message"), [
    ("l1.h5", "holds the 'l1' dataset, not zero-bias crossings"),
    ("zerobias.h5", "pileup mu = 60.0, the data file zerobias_mu20.h5 has mu = 20"),
])
def test_a_wrong_calibration_file_stops_at_prepare(file: str, message: str) -> None:
    """Checked when the data is prepared, before any training: a file of another dataset, or of another
    pileup than the data, is a one-line error naming the field; an absent file is not (it is optional)."""
    root = Path(__file__).resolve().parent.parent
    data = _dataset("zerobias")
    data.path, data.manifest = Path("zerobias_mu20.h5"), {"settings": {"pileup": {"mu": 20}}}
    family = _family(evaluation={"calibration": {"file": str(root / "data" / file)}})
    with pytest.raises(ConfigError) as err:
        family.prepare(data)
    assert err.value.field == "evaluation.calibration.file"
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    absent = _family(evaluation={"calibration": {"file": str(root / "data" / "absent.h5")}})
    absent.prepare(data)
    assert absent.calibration_events() is None
    assert absent.background_source["missing"].endswith("absent.h5")
