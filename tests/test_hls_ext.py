"""SPA-Net extension layers: fixed-point semantics, and hls4ml C simulation bit-exact with the Python
references, layer by layer and end to end, on synthetic tensors (arithmetic tests need no physics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trigger.hls_ext.fixed import (
    Fx,
    attention_ref,
    quantize,
    softmax_tables,
    triplet_argmax_ref,
    triplet_scores_ref,
    valid_triplets,
)

N_JETS, N_FEAT, D = 10, 6, 16
IN_T = Fx(16, 6)
W_T, B_T = Fx(8, 2), Fx(10, 4)
ACT = Fx(16, 6)
ATT_TYPES = {"in": ACT, "qkv": Fx(14, 6), "score": Fx(14, 7), "exp": Fx(10, 1, False),
             "inv": Fx(10, 1, False), "attn": Fx(10, 1, False), "ctx": Fx(14, 6), "out": ACT, "weight": W_T,
             "bias": B_T}
TRI_TYPES = {"in": ACT, "factor": Fx(12, 5), "pair": Fx(14, 7), "score": Fx(18, 10), "weight": W_T,
             "bias": B_T}


def test_quantize_rounds_half_up_and_saturates() -> None:
    t = Fx(6, 3)  # step 1/8, range [-4, 4 - 1/8]
    x = np.array([0.0625, -0.0625, 0.1875, 3.99, 100.0, -100.0, -4.0])
    np.testing.assert_array_equal(quantize(x, t), [0.125, 0.0, 0.25, 3.875, 3.875, -4.0, -4.0])
    u = Fx(4, 1, False)  # step 1/8, range [0, 2 - 1/8]
    np.testing.assert_array_equal(quantize(np.array([-1.0, 0.06, 5.0]), u), [0.0, 0.0, 1.875])
    assert Fx(16, 6).cpp() == "ap_fixed<16,6,AP_RND,AP_SAT>"
    assert Fx(10, 1, False).cpp(rounding=False) == "ap_ufixed<10,1>"


def test_softmax_tables_cover_the_row_sum_range() -> None:
    tables = softmax_tables(4, 8, 5, N_JETS, ATT_TYPES)
    assert tables.exp[0] == 1.0  # the row maximum weighs exactly 1, so a row with a valid key sums to >= 1
    assert np.all(np.diff(tables.exp) <= 0)
    assert tables.inv_size == (N_JETS - 1) * 32 + 1
    assert tables.inv[0] == quantize(1 / (1 + 0.5 / 32), ATT_TYPES["inv"])


def _masks(rng: np.random.Generator, events: int) -> np.ndarray:
    n = rng.integers(0, N_JETS + 1, events)
    return (np.arange(N_JETS)[None] < n[:, None]).astype(np.float32)


def _weights(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]],
             scale: float) -> dict[str, np.ndarray]:
    return {k: quantize(rng.normal(0, scale, s), B_T if k.startswith("bias") else W_T)
            for k, s in shapes.items()}


def test_attention_reference_is_close_to_float_attention() -> None:
    """The table softmax is an approximation of the real one: a few per cent on the context vectors."""
    rng = np.random.default_rng(1)
    mask = _masks(rng, 200)
    mask[:, 0] = 1
    x = quantize(rng.normal(0, 1, (200, N_JETS, D)), ACT) * mask[..., None]
    shapes = {"kernel_q": (D, 8), "bias_q": (8,), "kernel_k": (D, 8), "bias_k": (8,), "kernel_v": (D, 8),
              "bias_v": (8,), "kernel_o": (8, D), "bias_o": (D,)}
    w = _weights(rng, shapes, 0.3)
    tables = softmax_tables(4, 8, 5, N_JETS, ATT_TYPES)
    fixed = attention_ref(x, mask, w, ATT_TYPES, tables)
    q, k, v = (x @ w[f"kernel_{c}"] + w[f"bias_{c}"] for c in "qkv")
    s = np.where(mask[:, None, :] > 0, q @ np.swapaxes(k, 1, 2), -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    exact = x + (a @ v) @ w["kernel_o"] + w["bias_o"]
    scale = np.abs(exact - x).mean()
    assert np.abs(fixed - exact).mean() < 0.1 * scale


def test_triplet_scores_are_symmetric_and_argmax_valid() -> None:
    rng = np.random.default_rng(2)
    mask = _masks(rng, 300)
    x = quantize(rng.normal(0, 1, (300, N_JETS, D)), ACT)
    shapes = {"kernel_b": (2, D, 4), "bias_b": (2, 4), "kernel_p": (2, D, 4), "bias_p": (2, 4)}
    w = _weights(rng, shapes, 0.5)
    scores = triplet_scores_ref(x, w, TRI_TYPES)
    np.testing.assert_array_equal(scores, np.swapaxes(scores, -1, -2))
    out = triplet_argmax_ref(x, mask, w, TRI_TYPES).reshape(-1, 2, 4)
    n_real = mask.sum(1).astype(int)
    for e in range(300):
        if n_real[e] < 3:
            assert np.all(out[e, :, :3] == -1)
            assert np.all(out[e, :, 3] == TRI_TYPES["score"].min)
            continue
        ok = valid_triplets(mask[e:e + 1])[0]
        best = [scores[e, t][ok].max() for t in range(2)]
        winner = 1 if best[1] > best[0] else 0
        assert out[e, winner, 3] == best[winner]  # the better top keeps its own best triplet
        assert out[e, 1 - winner, 3] <= best[1 - winner]
        for t in range(2):
            b, q1, q2 = (int(v) for v in out[e, t, :3])
            assert len({b, q1, q2}) == 3
            assert q1 < q2
            assert max(b, q2) < n_real[e]
            assert scores[e, t, b, q1, q2] == out[e, t, 3]
        if n_real[e] >= 6:  # room for two disjoint triplets: the tops share no jet
            assert not set(out[e, 0, :3].tolist()) & set(out[e, 1, :3].tolist())


# ------------------------------------------------------------------------------------- C simulation


def _keras_model(layers: str, rng: np.random.Generator) -> Any:
    from tensorflow import keras

    from trigger.hls_ext.layers import FxDense, FxSelfAttention, FxTripletArgmax

    jets = keras.Input((N_JETS, N_FEAT if layers.startswith("dense") else D), name="jets")
    mask = keras.Input((N_JETS,), name="mask")
    h, inputs, built = jets, [jets], []
    for kind in layers.split("+"):
        if kind == "dense":
            layer = FxDense(D, True, {"in": IN_T, "out": Fx(16, 6, False), "weight": W_T, "bias": B_T},
                            name=f"fx_dense{len(built)}")
            h = layer(h)
        elif kind == "attention":
            types = {**ATT_TYPES, "in": Fx(16, 6, False) if built else ACT}
            layer = FxSelfAttention(8, types, name=f"fx_attention{len(built)}")
            h = layer([h, mask])
        else:
            layer = FxTripletArgmax(4, TRI_TYPES, name=f"fx_triplets{len(built)}")
            h = layer([h, mask])
        built.append(layer)
    if any(not isinstance(layer, FxDense) for layer in built):
        inputs.append(mask)
    model = keras.Model(inputs, h)
    for layer in built:
        layer.set_weights([quantize(rng.normal(0, 0.5, w.shape), layer.fx_types["bias" if "bias" in w.name
                                                                                    else "weight"])
                           for w in layer.weights])
        layer.check_grid()
    return model


def _csim(model: Any, x: list[np.ndarray], out_dir: Path) -> np.ndarray:
    import hls4ml

    from trigger.hls_ext.hls import register

    register()
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    for name in model.input_names:
        config["LayerName"][name]["Precision"] = {"result": "ap_fixed<16,6>"}
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, output_dir=str(out_dir), backend="Vitis", io_type="io_parallel",
        part="xcvu13p-flga2577-2-e")
    hls_model.compile()
    arrays = [np.ascontiguousarray(v, dtype=np.float64) for v in x]
    return np.asarray(hls_model.predict(arrays if len(arrays) > 1 else arrays[0]))


def _inputs(rng: np.random.Generator, events: int, width: int) -> list[np.ndarray]:
    mask = _masks(rng, events)
    x = rng.normal(0, 2, (events, N_JETS, width))
    x[: events // 10] *= 40  # saturate some inputs and intermediates
    return [(quantize(x, IN_T) * mask[..., None]).astype(np.float32), mask]


@pytest.mark.parametrize(("layers", "events"), [("dense", 2000), ("attention", 2000), ("triplets", 2000),
                                                 ("dense+attention+dense+triplets", 10000)])
def test_csim_is_bit_exact_with_the_python_reference(tmp_path: Path, layers: str, events: int) -> None:
    rng = np.random.default_rng(len(layers))
    model = _keras_model(layers, rng)
    x = _inputs(rng, events, model.inputs[0].shape[-1])
    x_in = x if len(model.inputs) == 2 else x[:1]
    reference = model.predict(x_in, batch_size=4096, verbose=0)
    sim = _csim(model, x_in, tmp_path / "prj").reshape(reference.shape)
    exact = np.all(sim.reshape(events, -1) == reference.reshape(events, -1), axis=1)
    assert exact.mean() == 1.0, f"{(~exact).sum()} of {events} events differ"
    assert np.unique(reference).size > 50  # the outputs are not trivially constant


def test_latency_estimate_of_the_extension_layers(tmp_path: Path) -> None:
    import hls4ml

    from trigger.estimate import estimate_model
    from trigger.hls_ext.hls import register

    register()
    model = _keras_model("dense+attention+dense+triplets", np.random.default_rng(7))
    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, output_dir=str(tmp_path / "prj"), backend="Vitis", io_type="io_parallel",
        part="xcvu13p-flga2577-2-e")
    est = estimate_model(hls_model, clock_period_ns=5.0)
    layers = {layer.class_name: layer for layer in est.layers}
    assert not est.unsupported
    for cls in ("FxDenseHLS", "FxSelfAttentionHLS", "FxTripletArgmaxHLS"):
        assert layers[cls].latency_cycles > 0
        assert layers[cls].lut > 0
        assert "extension estimator" in layers[cls].notes
    # the softmax table reads alone take two registered cycles each
    assert layers["FxSelfAttentionHLS"].latency_cycles > layers["FxDenseHLS"].latency_cycles + 4
    assert est.totals["latency_cycles"] == sum(layer.latency_cycles for layer in est.layers)
