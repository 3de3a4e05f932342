"""Estimator tests on designs: hand-made ones (no TensorFlow or hls4ml needed) and one lowered from hls4ml."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from trigger.design import Design, Fx, Op, Tensor, quantize
from trigger.design.spanet import attention_op, dense_op, softmax_tables, triplet_op
from trigger.errors import InputError
from trigger.estimate import (
    Estimate,
    LayerEstimate,
    budget_table,
    check_budget,
    estimate_design,
    load_params,
    part_resources,
    register_layer_estimator,
)
from trigger.estimate import model as est_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "models"
TOTAL_KEYS = {"latency_cycles", "latency_ns", "ii", "dsp", "lut", "ff", "bram"}
FX16 = Fx(16, 6)  # hls4ml's default ap_fixed<16,6>
TABLE_T = Fx(18, 8, True, "RND", "SAT")  # hls4ml 1.3.0's softmax table types
PART = "xcku115-flvb2104-2-i"
SETTINGS = {"clock_period_ns": 5.0, "io_type": "io_parallel", "strategy": "Latency", "reuse_factor": 1,
            "part": PART, "clock_uncertainty": "12.5%"}


def _estimate(design: Design, **overrides: object) -> Estimate:
    return estimate_design(design, **{**SETTINGS, **overrides})


def _dense(name: str, source: str, kernel: np.ndarray, bias: np.ndarray, w_t: Fx = FX16) -> Op:
    return Op("dense", name, [source], Tensor(name, (kernel.shape[1],), FX16), types={"accum": FX16},
              weights={"kernel": quantize(kernel, w_t), "bias": quantize(bias, w_t)},
              weight_types={"kernel": w_t, "bias": w_t})


def _softmax(name: str, source: str, n: int) -> Op:
    """hls4ml's `stable` table softmax as `trigger.design.softmax` lowers it (the estimate reads only the
    tables' sizes, so their values here are any on the table type)."""
    table = quantize(np.exp(-np.linspace(0.0, 8.0, 1024)), TABLE_T)
    return Op("softmax", name, [source], Tensor(name, (n,), FX16),
              types={"exp_table": TABLE_T, "inv_table": TABLE_T, "accum": FX16, "inv_inp": TABLE_T,
                     "inp_norm": Fx(15, 5, False)},
              weights={"exp_table": table, "inv_table": table},
              weight_types={"exp_table": TABLE_T, "inv_table": TABLE_T},
              attrs={"implementation": "stable", "table_size": 1024})


def _mlp(layers: list[tuple[np.ndarray, np.ndarray]], w_t: Fx = FX16, softmax: bool = True) -> Design:
    """An MLP as hls4ml lowers it: dense + relu per hidden layer, the last dense, a softmax; types `FX16`."""
    x = Tensor("input_1", (layers[0][0].shape[0],), FX16)
    ops, prev = [], x.name
    for i, (kernel, bias) in enumerate(layers):
        ops.append(_dense(f"fc{i + 1}", prev, kernel, bias, w_t=w_t))
        prev = ops[-1].name
        if i < len(layers) - 1:
            ops.append(Op("relu", f"{prev}_relu", [prev], Tensor(f"{prev}_relu", ops[-1].output.shape, FX16)))
            prev = ops[-1].name
    if softmax:
        ops.append(_softmax("softmax", prev, layers[-1][0].shape[1]))
    return Design("mlp", [x], ops, [ops[-1].name])


def _jet_tagger(weights: str) -> Design:
    """The 16-64-32-32-5 jet tagger of the hls4ml paper, from its published weights (h5py, no TensorFlow)."""
    h5py = pytest.importorskip("h5py")
    if not (SHARED / weights).exists():
        pytest.skip("shared/models not present")
    with h5py.File(SHARED / weights) as f:
        layers = [(np.asarray(f[f"{n}/{n}/kernel:0"]), np.asarray(f[f"{n}/{n}/bias:0"]))
                  for n in ("fc1_relu", "fc2_relu", "fc3_relu", "output_softmax")]
    return _mlp(layers)


@pytest.fixture(scope="module")
def pruned() -> Design:
    return _jet_tagger("KERAS_3layer_70pruned_retrained_weights.h5")


@pytest.fixture(scope="module")
def pruned_estimate(pruned: Design) -> Estimate:
    return _estimate(pruned)


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
    assert data["part"] == PART
    assert [(layer["name"], layer["class_name"]) for layer in data["layers"]][:3] == [
        ("input_1", "input"), ("fc1", "dense"), ("fc1_relu", "relu")]
    assert set(data["layers"][1]) >= {"name", "class_name", "latency_cycles", "ii", "dsp", "lut", "ff", "bram",
                                      "notes"}


def test_pruned_weights_are_removed(pruned_estimate: Estimate):
    dense = pruned_estimate.layers[1]
    assert any("zero weights removed" in note for note in dense.notes)
    unpruned = _estimate(_jet_tagger("KERAS_3layer_weights.h5"))
    assert unpruned.totals["dsp"] > 2 * pruned_estimate.totals["dsp"]
    assert unpruned.totals["lut"] > pruned_estimate.totals["lut"]


def test_softmax_uses_tables(pruned_estimate: Estimate):
    softmax = pruned_estimate.layers[-1]
    assert softmax.class_name == "softmax"
    assert softmax.bram > 0
    assert softmax.latency_cycles >= 2 * load_params()("timing", "table_read_cycles")


def test_shorter_clock_means_more_cycles_but_not_more_time(pruned: Design):
    slow, fast = _estimate(pruned, clock_period_ns=10.0), _estimate(pruned, clock_period_ns=2.5)
    assert fast.totals["latency_cycles"] > slow.totals["latency_cycles"]
    assert fast.totals["latency_ns"] <= slow.totals["latency_ns"]
    tighter = _estimate(pruned, clock_period_ns=2.5, clock_uncertainty="27%")
    assert tighter.totals["latency_cycles"] > fast.totals["latency_cycles"]


def test_clock_uncertainty_forms(pruned: Design):
    assert _estimate(pruned, clock_uncertainty=0.27).totals == _estimate(pruned, clock_uncertainty="27%").totals
    default = load_params()("timing", "clock_uncertainty")
    assert _estimate(pruned, clock_uncertainty=None).totals == _estimate(pruned, clock_uncertainty=default).totals


def test_reuse_factor_sets_interval_and_shares_multipliers():
    unpruned = _jet_tagger("KERAS_3layer_weights.h5")
    base = _estimate(unpruned)
    reused = _estimate(unpruned, strategy="Resource", reuse_factor=4)
    assert base.totals["ii"] == 1
    assert reused.totals["ii"] == 4
    assert reused.totals["dsp"] < base.totals["dsp"]
    assert reused.totals["latency_cycles"] > base.totals["latency_cycles"]


def test_io_stream_adds_fifo_hops(pruned: Design, pruned_estimate: Estimate):
    stream = _estimate(pruned, io_type="io_stream")
    assert stream.io_type == "io_stream"
    assert stream.totals["latency_cycles"] > pruned_estimate.totals["latency_cycles"]


def test_narrow_weights_need_fewer_dsps():
    rng = np.random.default_rng(3)
    layers = [(rng.uniform(-1, 1, (16, 32)), rng.uniform(-1, 1, 32)), (rng.uniform(-1, 1, (32, 5)),
                                                                       rng.uniform(-1, 1, 5))]
    wide = _estimate(_mlp(layers, w_t=Fx(16, 1), softmax=False))
    narrow = _estimate(_mlp(layers, w_t=Fx(4, 1), softmax=False))
    assert narrow.totals["dsp"] < wide.totals["dsp"]
    assert narrow.totals["dsp"] == 0


def test_conv_io_stream_interval_follows_pixels():
    rng = np.random.default_rng(0)
    x = Tensor("image", (8, 8, 2), FX16)
    kernel = quantize(rng.normal(0, 0.5, (3, 3, 2, 4)), FX16)
    conv = Op("conv", "conv", ["image"], Tensor("conv", (8, 8, 4), FX16), types={"accum": FX16},
              weights={"kernel": kernel, "bias": np.zeros(4)}, weight_types={"kernel": FX16, "bias": FX16},
              attrs={"filter": [3, 3], "strides": [1, 1], "padding": [[1, 1], [1, 1]]})
    flat = Op("reshape", "flat", ["conv"], Tensor("flat", (256,), FX16))
    dense = _dense("out", "flat", rng.normal(0, 0.1, (256, 3)), np.zeros(3))
    est = _estimate(Design("conv", [x], [conv, flat, dense], ["out"]), io_type="io_stream")
    layer = next(layer for layer in est.layers if layer.class_name == "conv")
    assert layer.ii >= 64
    assert layer.latency_cycles >= 64
    assert est.totals["ii"] >= 64


# --------------------------------------------------------------------------- what the design must give


def _drop(op: Op, **fields: str) -> Op:
    """A copy of `op` without the named entries of its `types`, `weight_types` or `attrs`."""
    return dataclasses.replace(op, **{f: {k: v for k, v in getattr(op, f).items() if k != key}
                                      for f, key in fields.items()})


@pytest.mark.parametrize(("index", "fields", "match"), [
    (0, {"types": "accum"}, r"fc1: .*type 'accum' for op kind 'dense'"),
    (0, {"weight_types": "kernel"}, r"weight 'kernel'"),
    (-1, {"types": "inv_table"}, r"softmax.*type 'inv_table'"),
    (-1, {"attrs": "implementation"}, r"attribute 'implementation'"),
])
def test_a_missing_type_raises_instead_of_guessing(pruned: Design, index: int, fields: dict[str, str],
                                                   match: str):
    ops = list(pruned.ops)
    ops[index] = _drop(ops[index], **fields)
    with pytest.raises(InputError, match=match):
        _estimate(dataclasses.replace(pruned, ops=ops))


def test_a_dangling_input_and_an_off_grid_weight_raise(pruned: Design):
    ops = list(pruned.ops)
    ops[0] = dataclasses.replace(ops[0], inputs=["nowhere"])
    with pytest.raises(InputError, match="tensor 'nowhere'"):
        _estimate(dataclasses.replace(pruned, ops=ops))
    ops[0] = dataclasses.replace(pruned.ops[0], weights={**pruned.ops[0].weights,
                                                         "kernel": pruned.ops[0].weights["kernel"] + 1e-9})
    with pytest.raises(InputError, match="off the grid"):
        _estimate(dataclasses.replace(pruned, ops=ops))


def test_a_table_activation_needs_its_table():
    x = Tensor("x", (8,), FX16)
    sigmoid = Op("sigmoid", "sig", ["x"], Tensor("sig", (8,), FX16), types={"table": Fx(18, 8)},
                 attrs={"table_size": 1024})
    assert _estimate(Design("d", [x], [sigmoid], ["sig"])).layers[1].latency_cycles >= 2
    with pytest.raises(InputError, match="attribute 'table_size'"):
        _estimate(Design("d", [x], [_drop(sigmoid, attrs="table_size")], ["sig"]))


@pytest.mark.parametrize(("setting", "value"), [("clock_period_ns", 0), ("io_type", "io_serial"),
                                                ("strategy", "Fast"), ("reuse_factor", 0),
                                                ("clock_uncertainty", "100%"), ("clock_uncertainty", "a lot")])
def test_bad_settings_are_input_errors(pruned: Design, setting: str, value: object):
    with pytest.raises(InputError, match=setting):
        _estimate(pruned, **{setting: value})


# ------------------------------------------------------------------------------ other kinds, extensions


def test_unknown_op_kind_is_reported_not_hidden():
    x = Tensor("x", (4,), FX16)
    est = _estimate(Design("d", [x], [Op("mystery", "l0", ["x"], Tensor("l0", (4,), FX16))], ["l0"]))
    assert est.unsupported == ["l0"]
    assert "no estimator for op kind 'mystery'" in est.layers[1].notes[0]
    assert est.as_dict()["unsupported_layers"] == ["l0"]


def test_extension_estimator_receives_the_design_op(monkeypatch):
    monkeypatch.setattr(est_model, "_EXTENSIONS", {})
    x = Tensor("x", (4,), FX16)
    op = Op("fx_attention", "att", ["x"], Tensor("att", (4,), FX16))
    design = Design("d", [x], [op, Op("relu", "r", ["att"], Tensor("r", (4,), FX16))], ["r"])
    seen = []

    def attention(op, design, params, clock_period_ns):
        seen.append((op, design, clock_period_ns))
        assert params("timing", "add_ns") > 0
        return LayerEstimate(op.name, op.kind, latency_cycles=7, ii=2, dsp=10, lut=100, ff=50, bram=1)

    register_layer_estimator("fx_attention", attention)
    est = _estimate(design)
    assert seen == [(op, design, 5.0)]
    assert est.layers[1].notes[-1] == "extension estimator"
    assert est.totals["latency_cycles"] >= 7
    assert (est.totals["ii"], est.totals["dsp"], est.totals["bram"]) == (2, 10, 1)


def test_spanet_ops_are_estimated_from_the_design():
    """The SPA-Net estimators (`trigger.hls_ext.estimate`) on the ops `trigger.design.spanet` builds."""
    from trigger.hls_ext import estimate as spanet_estimate

    assert spanet_estimate.register()
    n, d, rng = 10, 16, np.random.default_rng(7)
    act, w_t, b_t = (Fx.declared(s) for s in ([16, 6], [8, 2], [10, 4]))

    def weights(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[np.ndarray, Fx]]:
        return {k: (quantize(rng.normal(0, 0.5, s), b_t if k.startswith("bias") else w_t),
                    b_t if k.startswith("bias") else w_t) for k, s in shapes.items()}

    att_t = {"in": act, "qkv": Fx.declared([14, 6]), "score": Fx.declared([14, 7]), "exp": Fx.declared([10, 1, 0]),
             "inv": Fx.declared([10, 1, 0]), "attn": Fx.declared([10, 1, 0]), "ctx": Fx.declared([14, 6]),
             "out": act, "weight": w_t, "bias": b_t}
    tri_t = {"in": act, "factor": Fx.declared([12, 5]), "pair": Fx.declared([14, 7]),
             "score": Fx.declared([18, 10]), "weight": w_t, "bias": b_t}
    exp, inv = softmax_tables(4, 8, 5, n, exp_t=att_t["exp"], inv_t=att_t["inv"])
    ops = [
        dense_op("dense", ["jets"], Tensor("dense", (n, d), act), {"in": act, "out": act, "weight": w_t, "bias": b_t},
                 weights({"kernel": (6, d), "bias": (d,)}), relu=True),
        attention_op("att", ["dense", "mask"], Tensor("att", (n, d), act), att_t,
                     {**weights({"kernel_q": (d, 8), "bias_q": (8,), "kernel_k": (d, 8), "bias_k": (8,),
                                 "kernel_v": (d, 8), "bias_v": (8,), "kernel_o": (8, d), "bias_o": (d,)}),
                      "exp_table": (exp, att_t["exp"]), "inv_table": (inv, att_t["inv"])}, exp_frac=4, inv_frac=5),
        triplet_op("tri", ["att", "mask"], Tensor("tri", (8,), tri_t["score"]), tri_t,
                   weights({"kernel_b": (2, d, 4), "bias_b": (2, 4), "kernel_p": (2, d, 4), "bias_p": (2, 4)}),
                   n_items=n),
    ]
    inputs = [Tensor("jets", (n, 6), act), Tensor("mask", (n,), Fx(1, 1, False))]
    design = Design("spanet", inputs, ops, ["tri"], {"backend": "Vitis"})
    est = _estimate(design, clock_uncertainty="27%")
    layers = {layer.class_name: layer for layer in est.layers}
    assert not est.unsupported
    for kind in ("fx_dense", "fx_attention", "fx_triplet_argmax"):
        assert layers[kind].latency_cycles > 0
        assert layers[kind].lut > 0
        assert "extension estimator" in layers[kind].notes
    # the softmax table reads alone take two registered cycles each
    assert layers["fx_attention"].latency_cycles > layers["fx_dense"].latency_cycles + 4
    relaxed = _estimate(dataclasses.replace(design, meta={"clock_uncertainty": "0%"}), clock_uncertainty=0.0)
    assert relaxed.totals["latency_cycles"] < est.totals["latency_cycles"]
    broken = [ops[0], _drop(ops[1], types="score"), ops[2]]
    with pytest.raises(InputError, match="type 'score'"):
        _estimate(dataclasses.replace(design, ops=broken))


def test_dot_product_of_variables():
    x, y = Tensor("x", (4,), FX16), Tensor("y", (4,), FX16)
    dot = Op("dot", "dot", ["x", "y"], Tensor("dot", (1,), FX16), types={"accum": FX16})
    est = _estimate(Design("d", [x, y], [dot], ["dot"]))
    assert est.layers[2].dsp == 4
    assert est.layers[2].lut > 0
    assert est.unsupported == []


def test_csd_digits_and_dsp_split():
    p = load_params()
    assert est_model.csd_digits(np.array([0, 1, 3, 7, 8, -7, 0b1010101])).tolist() == [0, 1, 2, 2, 1, 2, 4]
    assert est_model.dsp_count(16, 16, p) == 1
    assert est_model.dsp_count(27, 18, p) == 1
    assert est_model.dsp_count(32, 32, p) == 4
    cost = est_model.constant_mults(np.array([0, 0, 4, 3, 1234, -1234]), 16, 16, p, shared=False)
    assert (cost.n_zero, cost.n_lut_mults, cost.n_dsp_mults, cost.dsp) == (2, 2, 2, 2)


# ------------------------------------------------------------------------------- lowered from hls4ml


def test_the_lowered_jet_tagger_is_estimated_as_the_calibration_point(tmp_path: Path, pruned_estimate: Estimate):
    """The design `trigger.design.lower` makes of the converted, written tagger gives the same estimate as the
    hand-made design above, and the calibration's 13 cycles (bench/results/estimator_calibration.json)."""
    hls4ml = pytest.importorskip("hls4ml")
    tf = pytest.importorskip("tensorflow")
    from trigger.design import lower

    if not (SHARED / "KERAS_3layer.json").exists():
        pytest.skip("shared/models not present")
    model = tf.keras.models.model_from_json((SHARED / "KERAS_3layer.json").read_text())
    model.load_weights(str(SHARED / "KERAS_3layer_70pruned_retrained_weights.h5"))
    config = hls4ml.utils.config_from_keras_model(model, granularity="model", default_precision="ap_fixed<16,6>")
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, output_dir=str(tmp_path / "prj"), backend="Vivado", part=PART, clock_period=5)
    hls_model.write()
    est = _estimate(lower(hls_model), clock_uncertainty=hls_model.config.get_config_value("ClockUncertainty"))
    assert est.totals["latency_cycles"] == 13
    assert est.totals == pruned_estimate.totals
    assert [layer.class_name for layer in est.layers] == [layer.class_name for layer in pruned_estimate.layers]


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
