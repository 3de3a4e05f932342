"""The design and its interpreter: equal to hls4ml's C simulation bit for bit for every layer kind the project
compiles, on random inputs that overflow the input type (so the input cast wraps) and types narrow enough that
accumulators truncate and wrap and results round and saturate; a property test over random types of Dense +
quantizer chains against hls4ml's own C++ templates; save/reload; `trigger emulate` and `trigger verify`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from trigger.design import Design, Fx, Op, Tensor, lower, quantize, run
from trigger.design.fixed import ROUNDING

HLS4ML_TEMPLATES = Path(__import__("hls4ml").__file__).parent / "templates" / "vivado"


def _compile(model: Any, tmp: Path, precisions: dict[str, dict[str, str]] | None = None,
             default: str = "fixed<16,6>") -> Any:
    import hls4ml

    conf = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis",
                                                default_precision=default)
    for name, values in (precisions or {}).items():
        conf["LayerName"].setdefault(name, {}).setdefault("Precision", {}).update(values)
    hls_model = hls4ml.converters.convert_from_keras_model(model, hls_config=conf, output_dir=str(tmp / "prj"),
                                                           backend="Vitis", io_type="io_parallel")
    hls_model.compile()
    return hls_model


def _assert_emulator_equals_csim(hls_model: Any, xs: list[np.ndarray], tmp: Path) -> Design:
    design = lower(hls_model)
    emulated = run(design, xs)
    csim = hls_model.predict([np.ascontiguousarray(x, dtype=np.float64) for x in xs] if len(xs) > 1
                             else np.ascontiguousarray(xs[0], dtype=np.float64))
    csim = csim if isinstance(csim, list) else [csim]
    for e, c in zip(emulated, csim, strict=True):
        np.testing.assert_array_equal(e.reshape(len(e), -1), np.asarray(c).reshape(len(c), -1))
    design.save(tmp / "saved")
    for a, b in zip(run(Design.load(tmp / "saved"), xs), emulated, strict=True):
        np.testing.assert_array_equal(a, b)
    return design


def _wide_inputs(shape: tuple[int, ...], n: int = 3000, seed: int = 0) -> np.ndarray:
    """Inputs that reach past ap_fixed<16,6>'s range (+-32), so the input port's cast wraps on some."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(scale=3.0, size=(n, *shape)), rng.uniform(-40, 40, size=(n // 10, *shape))])


def test_dense_relu_quantizers_and_narrow_accumulators(tmp_path: Path) -> None:
    """QKeras Dense + quantized_relu + linear quantizer, a float Dense whose accumulator truncates products
    and wraps, results rounding half-even / half-up and saturating, and the table softmax."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(1)
    x = tf.keras.Input((10,), name="x")
    h = QDense(12, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1),
               name="d1")(x)
    h = QActivation(quantized_relu(6, 2), name="r1")(h)
    h = QDense(8, kernel_quantizer=quantized_bits(8, 1, alpha=1), bias_quantizer=quantized_bits(8, 1, alpha=1),
               name="d2")(h)
    h = QActivation(quantized_bits(7, 2, alpha=1), name="q2")(h)
    h = tf.keras.layers.Dense(6, name="d3")(h)
    h = tf.keras.layers.Activation("relu", name="r3")(h)
    h = tf.keras.layers.Dense(5, name="d4")(h)
    out = tf.keras.layers.Activation("softmax", name="sm")(h)
    model = tf.keras.Model(x, out)
    hls_model = _compile(model, tmp_path, {
        "d3": {"accum": "ap_fixed<12,4>", "result": "ap_fixed<9,3,AP_RND_CONV,AP_SAT>",
               "weight": "ap_fixed<8,2,AP_RND,AP_SAT>"},
        "r3": {"result": "ap_ufixed<6,2,AP_RND,AP_SAT>"},
        "d4": {"accum": "ap_fixed<14,5>", "result": "ap_fixed<10,4,AP_TRN,AP_WRAP>"},
    })
    design = _assert_emulator_equals_csim(hls_model, [_wide_inputs((10,))], tmp_path)
    kinds = [op.kind for op in design.ops]
    assert {"dense", "relu", "cast", "softmax"} <= set(kinds), kinds
    accum = {op.name: op.types["accum"] for op in design.ops if op.kind == "dense"}
    assert accum["d3"] == Fx(12, 4)  # the narrow accumulator the test means to exercise


def test_conv1d_conv2d_pointwise_and_flatten(tmp_path: Path) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(2)
    a = tf.keras.Input((9, 3), name="a")
    h = tf.keras.layers.Conv1D(4, 3, padding="same", name="c1")(a)
    h = tf.keras.layers.Activation("relu", name="r1")(h)
    h = tf.keras.layers.Conv1D(2, 1, name="pw")(h)
    h = tf.keras.layers.Conv1D(3, 2, strides=2, name="c2")(h)
    h = tf.keras.layers.Flatten(name="f1")(h)
    out = tf.keras.layers.Dense(3, name="d")(h)
    model = tf.keras.Model(a, out)
    _assert_emulator_equals_csim(_compile(model, tmp_path, {"c1": {"accum": "ap_fixed<14,5>"}},
                                          default="fixed<12,4,RND,SAT>"), [_wide_inputs((9, 3))], tmp_path)

    b = tf.keras.Input((6, 5, 2), name="b")
    h = tf.keras.layers.Conv2D(3, (3, 3), name="k1")(b)
    h = tf.keras.layers.Activation("relu", name="r2")(h)
    h = tf.keras.layers.Conv2D(2, (2, 2), padding="same", name="k2")(h)
    h = tf.keras.layers.Flatten(name="f2")(h)
    out = tf.keras.layers.Dense(2, name="d2")(h)
    model = tf.keras.Model(b, out)
    _assert_emulator_equals_csim(_compile(model, tmp_path / "2d", default="fixed<12,4>"),
                                 [_wide_inputs((6, 5, 2), n=1000)], tmp_path / "2d")


def test_merges_dot_concatenate_and_batchnorm(tmp_path: Path) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    a = tf.keras.Input((6,), name="a")
    b = tf.keras.Input((6,), name="b")
    ha = tf.keras.layers.Dense(6, name="da")(a)
    hb = tf.keras.layers.Dense(6, name="db")(b)
    bn = tf.keras.layers.BatchNormalization(name="bn")(ha)
    add = tf.keras.layers.Add(name="add")([bn, hb])
    sub = tf.keras.layers.Subtract(name="sub")([ha, hb])
    mul = tf.keras.layers.Multiply(name="mul")([add, sub])
    dot = tf.keras.layers.Dot(axes=1, name="dot")([sub, sub])
    cat = tf.keras.layers.Concatenate(name="cat2")([tf.keras.layers.Concatenate(name="cat1")([mul, add]), dot])
    out = tf.keras.layers.Dense(3, name="out")(cat)
    model = tf.keras.Model([a, b], out)
    bn_layer = model.get_layer("bn")
    rng = np.random.default_rng(4)
    bn_layer.set_weights([rng.uniform(0.5, 2, 6), rng.normal(size=6), rng.normal(size=6), rng.uniform(0.5, 2, 6)])
    narrow = {name: {"result": "ap_fixed<12,5,AP_RND,AP_SAT>"} for name in ("da", "db", "bn", "add", "sub")}
    hls_model = _compile(model, tmp_path, {**narrow,
                                           "dot": {"accum": "ap_fixed<14,6>", "result": "ap_fixed<10,5,AP_RND,AP_SAT>"},
                                           "mul": {"result": "ap_fixed<10,4,AP_RND_CONV,AP_SAT>"}},
                         default="fixed<14,6,RND,SAT>")
    design = _assert_emulator_equals_csim(hls_model, [_wide_inputs((6,), seed=5), _wide_inputs((6,), seed=6)],
                                          tmp_path)
    assert {"merge", "dot", "concatenate", "batchnorm"} <= {op.kind for op in design.ops}


# ------------------------------------------------------------------------------------------------ property test

# 0 <= integer <= width: ap_types' own C simulation asserts ("reading bit beyond MSB") on some roundings of
# types with negative or over-wide integer parts, so those are outside what the firmware can use anyway.
TYPES = st.builds(lambda w, i, s, r, o: (w, min(i, w), s, r, "SAT" if o == "SAT_SYM" and not s else o),
                  st.integers(3, 18), st.integers(0, 8), st.booleans(),
                  st.sampled_from(ROUNDING), st.sampled_from(("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")))
CHAIN = st.fixed_dictionaries({"input": TYPES, "weight": TYPES, "accum": TYPES, "result": TYPES, "quant": TYPES,
                               "relu": st.booleans(), "n_in": st.integers(1, 6), "n_out": st.integers(1, 4),
                               "seed": st.integers(0, 2 ** 16)})
HARNESS = """
#include <cstdio>
#include "ap_fixed.h"
#include "nnet_utils/nnet_dense.h"
#include "nnet_utils/nnet_activation.h"
{chains}
int main() {{
{calls}
    return 0;
}}
"""
CHAIN_CPP = """
namespace c{k} {{
typedef {input} in_t; typedef {weight} w_t; typedef {accum} acc_t; typedef {result} res_t; typedef {quant} q_t;
struct dense_cfg : nnet::dense_config {{
    static const unsigned n_in = {n_in}; static const unsigned n_out = {n_out};
    static const unsigned reuse_factor = 1; static const unsigned n_zeros = 0;
    static const unsigned multiplier_limit = n_in * n_out;
    typedef acc_t accum_t; typedef w_t bias_t; typedef w_t weight_t;
    template <class x_T, class y_T> using product = nnet::product::mult<x_T, y_T>;
}};
struct act_cfg : nnet::activ_config {{ static const unsigned n_in = {n_out}; }};
w_t w[{n_in} * {n_out}] = {{{w}}};
w_t b[{n_out}] = {{{b}}};
double v;
void run() {{
    for (int e = 0; e < {events}; e++) {{
        in_t x[{n_in}]; res_t r[{n_out}]; q_t q[{n_out}];
        for (int i = 0; i < {n_in}; i++) {{ std::scanf("%lf", &v); x[i] = v; }}
        nnet::dense_latency<in_t, res_t, dense_cfg>(x, r, w, b);
        nnet::{activation}<res_t, q_t, act_cfg>(r, q);
        for (int j = 0; j < {n_out}; j++) std::printf("%.17g\\n", q[j].to_double());
    }}
}}
}}
"""


def _fx(spec: tuple[Any, ...]) -> Fx:
    width, integer, signed, rounding, overflow = spec
    return Fx(width, integer, signed, rounding, overflow)


def _design(chain: dict[str, Any], w: np.ndarray, b: np.ndarray) -> Design:
    t = {k: _fx(chain[k]) for k in ("input", "weight", "accum", "result", "quant")}
    n_out = chain["n_out"]
    dense = Op("dense", "d", ["x"], Tensor("d", (n_out,), t["result"]), types={"accum": t["accum"]},
               weights={"kernel": w, "bias": b}, weight_types={"kernel": t["weight"], "bias": t["weight"]})
    act = Op("relu" if chain["relu"] else "cast", "q", ["d"], Tensor("q", (n_out,), t["quant"]))
    return Design("chain", [Tensor("x", (chain["n_in"],), t["input"])], [dense, act], ["q"])


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # a shrink would rebuild the harness per step
@given(st.lists(CHAIN, min_size=6, max_size=6))
def test_dense_quantizer_chains_equal_hls4ml_templates(tmp_path_factory: pytest.TempPathFactory,
                                                       chains: list[dict[str, Any]]) -> None:
    """Random widths, integer bits, signedness, rounding and overflow modes for input, weight, accumulator,
    result and quantizer types: the interpreter equals hls4ml's own dense and activation templates, built with
    g++ (one program per example, six chains in it)."""
    tmp = tmp_path_factory.mktemp("chains")
    events = 300
    blocks, calls, stdin, designs = [], [], [], []
    for k, chain in enumerate(chains):
        rng = np.random.default_rng(chain["seed"])
        t_w = _fx(chain["weight"])
        w = quantize(rng.normal(scale=2.0 ** (t_w.integer - 1), size=(chain["n_in"], chain["n_out"])), t_w)
        b = quantize(rng.normal(scale=2.0 ** (t_w.integer - 1), size=chain["n_out"]), t_w)
        t_in = _fx(chain["input"])
        x = rng.normal(scale=max(t_in.max, 2 * t_in.lsb), size=(events, chain["n_in"])) * 1.3
        designs.append((_design(chain, w, b), x))
        blocks.append(CHAIN_CPP.format(
            k=k, events=events, n_in=chain["n_in"], n_out=chain["n_out"],
            activation="relu" if chain["relu"] else "linear",
            w=", ".join(repr(float(v)) for v in w.ravel()), b=", ".join(repr(float(v)) for v in b),
            **{name: _fx(chain[name]).cpp() for name in ("input", "weight", "accum", "result", "quant")}))
        calls.append(f"    c{k}::run();")
        stdin.append("\n".join(" ".join(repr(float(v)) for v in row) for row in x))
    source, binary = tmp / "chains.cpp", tmp / "chains"
    source.write_text(HARNESS.format(chains="".join(blocks), calls="\n".join(calls)))
    subprocess.run(["g++", "-O0", "-std=c++14", f"-I{HLS4ML_TEMPLATES}", f"-I{HLS4ML_TEMPLATES / 'ap_types'}",
                    "-o", str(binary), str(source)], check=True, capture_output=True)
    printed = subprocess.run([str(binary)], input="\n".join(stdin), capture_output=True, text=True, check=True)
    values = np.array([float(v) for v in printed.stdout.split()])
    offset = 0
    for design, x in designs:
        expected = run(design, x)[0]
        got = values[offset:offset + expected.size].reshape(expected.shape)
        offset += expected.size
        np.testing.assert_array_equal(got, expected, err_msg=str(design.to_json()))


def test_quantize_rounding_modes_on_ties() -> None:
    """The seven quantization modes on exact ties and the four overflow modes, as ap_fixed defines them."""
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.25])
    expected = {"TRN": [-3, -2, -1, 0, 1, 2, 2], "TRN_ZERO": [-2, -1, 0, 0, 1, 2, 2],
                "RND": [-2, -1, 0, 1, 2, 3, 2], "RND_ZERO": [-2, -1, 0, 0, 1, 2, 2],
                "RND_INF": [-3, -2, -1, 1, 2, 3, 2], "RND_MIN_INF": [-3, -2, -1, 0, 1, 2, 2],
                "RND_CONV": [-2, -2, 0, 0, 2, 2, 2]}
    for mode, values in expected.items():
        np.testing.assert_array_equal(quantize(x, Fx(8, 8, True, mode, "SAT")), values, err_msg=mode)
    big = np.array([-9.0, 9.0])
    assert quantize(big, Fx(4, 4, True, "TRN", "WRAP")).tolist() == [7.0, -7.0]
    assert quantize(big, Fx(4, 4, True, "TRN", "SAT")).tolist() == [-8.0, 7.0]
    assert quantize(big, Fx(4, 4, True, "TRN", "SAT_SYM")).tolist() == [-7.0, 7.0]
    assert quantize(big, Fx(4, 4, True, "TRN", "SAT_ZERO")).tolist() == [0.0, 0.0]
    assert quantize(big, Fx(4, 4, False, "TRN", "SAT")).tolist() == [0.0, 9.0]


def test_corrupt_or_missing_design_is_one_line(tmp_path: Path) -> None:
    from trigger.errors import InputError

    with pytest.raises(InputError, match="no design here"):
        Design.load(tmp_path)
    (tmp_path / "design.json").write_text("{not json")
    with pytest.raises(InputError, match="corrupt design"):
        Design.load(tmp_path)


@pytest.mark.parametrize("rounding", sorted(ROUNDING))
@pytest.mark.parametrize("log2_sum", [22.9, 23.1, 26.0])
def test_single_precision_path_equals_double(monkeypatch: pytest.MonkeyPatch, rounding: str,
                                             log2_sum: float) -> None:
    """The float32 fast path (taken where the types and weights prove every partial sum and rounding step
    below 2^23 codes) gives the float64 path's values, on both sides of that bound, for every rounding mode."""
    from trigger.design import interpret

    rng = np.random.default_rng(7)
    t_in, t_w = Fx(16, 6, True), Fx(8, 1, True)
    w = quantize(rng.uniform(-1, 1, (16, 8)), t_w)
    w *= 2.0 ** log2_sum / (t_in.max * 2.0 ** (t_in.frac + t_w.frac) * np.abs(w).sum(axis=0).max())
    t_w = Fx(8, 1 + int(np.ceil(np.log2(np.abs(w).max() + 1e-9))), True)
    w = quantize(w, t_w)
    chain = {"input": (16, 6, True, "TRN", "WRAP"), "weight": (t_w.width, t_w.integer, True, "TRN", "WRAP"),
             "accum": (40, 20, True, "TRN", "WRAP"), "result": (40, 20, True, "TRN", "WRAP"),
             "quant": (9, 4, False, rounding, "SAT"), "n_in": 16, "n_out": 8, "relu": True}
    design = _design(chain, w, np.zeros(8))
    x = rng.normal(scale=40.0, size=(5000, 16))
    single = run(design, x)[0]
    assert interpret.cast(np.float32([1.0]), Fx(16, 6, True), Fx(9, 4, False, rounding, "SAT")).dtype == np.float32
    monkeypatch.setattr(interpret, "FLOAT32_EXACT", 0.0)  # every step in float64
    np.testing.assert_array_equal(single, run(design, x)[0])
