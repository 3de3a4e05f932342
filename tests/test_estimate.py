"""Estimator tests on real hls4ml graphs (converted, not compiled) and on a hand-made graph."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from trigger.errors import InputError
from trigger.estimate import (
    Estimate,
    LayerEstimate,
    budget_table,
    check_budget,
    estimate_model,
    load_params,
    part_resources,
    register_layer_estimator,
)
from trigger.estimate import model as est_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "models"
TOTAL_KEYS = {"latency_cycles", "latency_ns", "ii", "dsp", "lut", "ff", "bram"}


def _convert(model, tmp_path: Path, **kwargs):
    hls4ml = pytest.importorskip("hls4ml")
    cfg_kwargs = {
        "granularity": kwargs.pop("granularity", "model"),
        "default_precision": kwargs.pop("precision", "ap_fixed<16,6>"),
    }
    config = hls4ml.utils.config_from_keras_model(model, **cfg_kwargs)
    for key in ("Strategy", "ReuseFactor"):
        if key in kwargs:
            config["Model"][key] = kwargs.pop(key)
    return hls4ml.converters.convert_from_keras_model(
        model,
        hls_config=config,
        output_dir=str(tmp_path / "prj"),
        backend=kwargs.pop("backend", "Vitis"),
        part=kwargs.pop("part", "xcvu13p-flga2577-2-e"),
        clock_period=kwargs.pop("clock_period", 5),
        **kwargs,
    )


def _jet_tagger(weights: str):
    tf = pytest.importorskip("tensorflow")
    if not (SHARED / "KERAS_3layer.json").exists():
        pytest.skip("shared/models not present")
    model = tf.keras.models.model_from_json((SHARED / "KERAS_3layer.json").read_text())
    model.load_weights(str(SHARED / weights))
    return model


@pytest.fixture(scope="module")
def pruned_estimate(tmp_path_factory):
    model = _jet_tagger("KERAS_3layer_70pruned_retrained_weights.h5")
    hls_model = _convert(
        model, tmp_path_factory.mktemp("pruned"), part="xcku115-flvb2104-2-i", backend="Vivado"
    )
    return estimate_model(hls_model)


def test_totals_have_the_documented_keys_and_add_up(pruned_estimate: Estimate):
    totals = pruned_estimate.totals
    assert set(totals) == TOTAL_KEYS
    assert all(isinstance(totals[k], int) for k in TOTAL_KEYS - {"latency_ns"})
    assert totals["latency_ns"] == pytest.approx(totals["latency_cycles"] * 5.0)
    for key in ("dsp", "lut", "bram"):
        assert totals[key] == sum(getattr(layer, key) for layer in pruned_estimate.layers)
    assert totals["latency_cycles"] == sum(layer.latency_cycles for layer in pruned_estimate.layers)
    assert totals["latency_cycles"] > 0
    assert totals["dsp"] > 0
    assert totals["lut"] > 0


def test_as_dict_is_json_and_marked_as_estimate(pruned_estimate: Estimate):
    data = json.loads(json.dumps(pruned_estimate.as_dict()))
    assert data["kind"] == "estimate"
    assert data["model"] == load_params()("model_version")
    assert data["clock_period_ns"] == 5.0
    assert data["part"] == "xcku115-flvb2104-2-i"
    assert [layer["name"] for layer in data["layers"]][:2] == ["input_1", "fc1_relu"]
    assert set(data["layers"][1]) >= {
        "name",
        "class_name",
        "latency_cycles",
        "ii",
        "dsp",
        "lut",
        "ff",
        "bram",
        "notes",
    }


def test_pruned_weights_are_removed(pruned_estimate: Estimate, tmp_path):
    dense = pruned_estimate.layers[1]
    assert any("zero weights removed" in note for note in dense.notes)
    unpruned = estimate_model(
        _convert(
            _jet_tagger("KERAS_3layer_weights.h5"), tmp_path, part="xcku115-flvb2104-2-i", backend="Vivado"
        )
    )
    assert unpruned.totals["dsp"] > 2 * pruned_estimate.totals["dsp"]
    assert unpruned.totals["lut"] > pruned_estimate.totals["lut"]


def test_softmax_uses_tables(pruned_estimate: Estimate):
    softmax = pruned_estimate.layers[-1]
    assert softmax.class_name == "Softmax"
    assert softmax.bram > 0
    assert softmax.latency_cycles >= 2 * load_params()("timing", "table_read_cycles")


def test_shorter_clock_means_more_cycles_but_not_more_time(tmp_path):
    model = _jet_tagger("KERAS_3layer_70pruned_retrained_weights.h5")
    slow = estimate_model(_convert(model, tmp_path / "a", clock_period=10))
    fast = estimate_model(_convert(model, tmp_path / "b", clock_period=2.5))
    assert fast.totals["latency_cycles"] > slow.totals["latency_cycles"]
    assert estimate_model(_convert(model, tmp_path / "c"), clock_period_ns=2.5).totals == fast.totals


def test_reuse_factor_sets_interval_and_shares_multipliers(tmp_path):
    model = _jet_tagger("KERAS_3layer_weights.h5")
    base = estimate_model(_convert(model, tmp_path / "a"))
    reused = estimate_model(_convert(model, tmp_path / "b", Strategy="Resource", ReuseFactor=4))
    assert base.totals["ii"] == 1
    assert reused.totals["ii"] == 4
    assert reused.totals["dsp"] < base.totals["dsp"]
    assert reused.totals["latency_cycles"] > base.totals["latency_cycles"]


def test_io_stream_adds_fifo_hops(tmp_path):
    model = _jet_tagger("KERAS_3layer_70pruned_retrained_weights.h5")
    parallel = estimate_model(_convert(model, tmp_path / "a"))
    stream = estimate_model(_convert(model, tmp_path / "b", io_type="io_stream"))
    assert stream.io_type == "io_stream"
    assert stream.totals["latency_cycles"] > parallel.totals["latency_cycles"]


def test_narrow_qkeras_weights_need_fewer_dsps(tmp_path):
    pytest.importorskip("qkeras")
    tf = pytest.importorskip("tensorflow")
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    def build(bits: int):
        tf.keras.utils.set_random_seed(3)
        q = quantized_bits(bits, 0, alpha=1)
        return tf.keras.Sequential(
            [
                tf.keras.Input((16,)),
                QDense(32, kernel_quantizer=q, bias_quantizer=q),
                QActivation(quantized_relu(bits)),
                QDense(5, kernel_quantizer=q, bias_quantizer=q),
            ]
        )

    wide = estimate_model(_convert(build(16), tmp_path / "a", granularity="name"))
    narrow = estimate_model(_convert(build(4), tmp_path / "b", granularity="name"))
    assert narrow.totals["dsp"] < wide.totals["dsp"]
    assert narrow.totals["dsp"] == 0


def test_conv_and_pooling_io_stream_interval_follows_pixels(tmp_path):
    tf = pytest.importorskip("tensorflow")
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 2)),
            tf.keras.layers.Conv2D(4, 3, padding="same"),
            tf.keras.layers.MaxPooling2D(),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(3),
        ]
    )
    est = estimate_model(_convert(model, tmp_path, io_type="io_stream"))
    conv = next(layer for layer in est.layers if layer.class_name == "Conv2D")
    assert conv.ii >= 64
    assert conv.latency_cycles >= 64
    assert est.totals["ii"] >= 64


# ----------------------------------------------------------------- hand-made graph (no TensorFlow needed)


class _Config:
    def __init__(self, **values):
        self.values = {"IOType": "io_parallel", "ClockPeriod": 5, "Part": "xcvu9p-flga2104-2-e", **values}

    def get_config_value(self, key, default=None):
        return self.values.get(key, default)

    def get_project_name(self):
        return "fake"


class _Layer:
    def __init__(self, name, class_name, model, out_shape=(4,), **attrs):
        self.name, self.class_name, self.model, self.attrs = name, class_name, model, attrs
        precision = SimpleNamespace(width=16, integer=6, rounding_mode="TRN")
        self.var = SimpleNamespace(shape=list(out_shape), type=SimpleNamespace(precision=precision))
        self.weights = {}

    def get_attr(self, key, default=None):
        return self.attrs.get(key, default)

    def get_output_variable(self):
        return self.var

    def get_input_variable(self):
        return self.var


def _fake_model(*classes: str):
    model = SimpleNamespace(config=_Config())
    model.layers = [_Layer("in", "Input", model)]
    model.layers += [_Layer(f"l{i}", c, model, activation="relu") for i, c in enumerate(classes)]
    model.get_layers = lambda: iter(model.layers)
    return model


def test_unknown_layer_is_reported_not_hidden():
    est = estimate_model(_fake_model("Mystery"))
    assert est.unsupported == ["l0"]
    assert "no estimator for Mystery" in est.layers[1].notes[0]
    assert est.as_dict()["unsupported_layers"] == ["l0"]


def test_extension_estimator_is_used(monkeypatch):
    monkeypatch.setattr(est_model, "_EXTENSIONS", {})

    def attention(layer, params, clock_period_ns):
        assert clock_period_ns == 5.0
        assert params("timing", "add_ns") > 0
        return LayerEstimate(
            layer.name, layer.class_name, latency_cycles=7, ii=2, dsp=10, lut=100, ff=50, bram=1
        )

    register_layer_estimator("SPANetAttention", attention)
    est = estimate_model(_fake_model("SPANetAttention", "Activation"))
    assert est.layers[1].notes[-1] == "extension estimator"
    assert est.totals["latency_cycles"] >= 7
    assert est.totals["ii"] == 2
    assert est.totals["dsp"] == 10
    assert est.totals["bram"] == 1


def test_dot_product_of_variables():
    est = estimate_model(_fake_model("Dot"))
    dot = est.layers[1]
    assert dot.dsp == 4
    assert dot.lut > 0
    assert est.unsupported == []


def test_csd_digits_and_dsp_split():
    p = load_params()
    assert est_model.csd_digits(np.array([0, 1, 3, 7, 8, -7, 0b1010101])).tolist() == [0, 1, 2, 2, 1, 2, 4]
    assert est_model.dsp_count(16, 16, p) == 1
    assert est_model.dsp_count(27, 18, p) == 1
    assert est_model.dsp_count(32, 32, p) == 4
    cost = est_model.constant_mults(np.array([0, 0, 4, 3, 1234, -1234]), 16, 16, p, shared=False)
    assert (cost.n_zero, cost.n_lut_mults, cost.n_dsp_mults, cost.dsp) == (2, 2, 2, 2)


def test_bad_clock_is_an_input_error():
    with pytest.raises(InputError, match="clock_period_ns"):
        estimate_model(_fake_model(), clock_period_ns=0)


# --------------------------------------------------------------------------------------------- budget

TOTALS = {"latency_cycles": 20, "latency_ns": 100.0, "ii": 1, "dsp": 684, "lut": 11822, "ff": 0, "bram": 0}


def test_part_resources_known_and_unknown():
    assert part_resources("xcvu13p-flga2577-2-e") == {
        "lut": 1728000,
        "ff": 3456000,
        "dsp": 12288,
        "bram": 5376,
    }
    assert part_resources("XCKU115-FLVB2104-2-I")["dsp"] == 5520
    with pytest.raises(InputError, match="xc9nope"):
        part_resources("xc9nope")


def test_budget_pass_fail_and_none():
    none = check_budget(TOTALS, latency_ns=None, resources_pct={}, part="xcvu9p-flga2104-2-e")
    assert none.passed is None
    assert none.utilisation_pct["dsp"] == pytest.approx(10.0)
    ok = check_budget(TOTALS, latency_ns=100.0, resources_pct={"dsp": 10.0}, part="xcvu9p")
    assert ok.passed is True
    assert ok.reasons == []
    bad = check_budget(TOTALS, latency_ns=99.0, resources_pct={"lut": 0.5, "dsp": 50.0}, part="xcvu9p")
    assert bad.passed is False
    assert bad.reasons == ["latency 100 ns > budget 99 ns", "LUT 1.00 % of xcvu9p > budget 0.5 %"]
    with pytest.raises(InputError, match=r"resources_pct\.uram"):
        check_budget(TOTALS, latency_ns=None, resources_pct={"uram": 1.0}, part="xcvu9p")


def test_budget_table_lists_layers_and_says_estimate(pruned_estimate: Estimate):
    table = budget_table(pruned_estimate)
    assert "not a synthesis result" in table.splitlines()[0]
    for layer in pruned_estimate.layers:
        assert layer.name in table
    assert "TOTAL (estimate)" in table.splitlines()[-1]
