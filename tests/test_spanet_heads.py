"""Multi-head attention and up to three attention blocks in SPA-Net (issue 12).

`model.architecture.heads` splits the q, k, v projections into heads of `head_dim` columns, each with its own
masked table softmax; the concatenated contexts go through the one output projection. Tested here: the C
simulation of a small random two-head, three-block SPA-Net equals the design interpreter and the Keras firmware
model bit for bit (one compile, about 20 s on 2 cores); the heads' column layout; one head gives the single-head
results (a digest of the kernel's outputs before heads existed) and a design saved without `heads` still runs;
the estimate counts every head's products and honours the reuse factor; the RTL trace equals the interpreter;
config errors name the field; the trainable twin takes a training step with two heads.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import on_input_port, spanet_csim_matches

from trigger.config import Config, load_config, parse_config
from trigger.design import Design, Fx, Tensor, quantize, run
from trigger.design.spanet import MASK, attention_op, fx_attention, softmax_tables
from trigger.errors import ConfigError, InputError
from trigger.families.spanet import SpaNet, triplet_targets

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"max_jets": 6, "embed": [8, 8], "head_dim": 4, "heads": 2, "attention_blocks": 3, "rank": 3,
         "mass_prior": False, "candidates": 0, "shared_head": False}
EVENTS = 2000

N, D, H = 6, 8, 4  # the op-level tests: jets, model width, head width
W_T, B_T = Fx.declared([8, 2]), Fx.declared([10, 4])
ACT, SOFT = Fx.declared([16, 6]), Fx.declared([10, 1, False])
ATT_TYPES = {"in": ACT, "qkv": Fx.declared([14, 6]), "score": Fx.declared([14, 7]), "exp": SOFT, "inv": SOFT,
             "attn": SOFT, "ctx": Fx.declared([14, 6]), "out": ACT, "weight": W_T, "bias": B_T}
# sha256 of the outputs of `_attention(np.random.default_rng(21), 1)` on `_events(np.random.default_rng(22))`,
# computed with the single-head kernel before heads existed (commit f31fe8e)
SINGLE_HEAD_DIGEST = "39c058e6bcbe26ef533c56f4faee37aef1a5f859959c81444b857fce0319ead3"


def _config(**architecture: Any) -> Config:
    """The shipped config with the small architecture, every layer at reuse 1 unless set per layer."""
    raw = load_config(ROOT / "configs" / "spanet_ttbar.yaml").raw
    arch = {**raw["model"]["architecture"], **SMALL, **architecture}
    return parse_config({**raw, "model": {**raw["model"], "architecture": arch},
                         "hls": {**raw["hls"], "reuse_factor": 1}})


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(("field", "value", "message"), [
    ("heads", 0, r"^model\.architecture\.heads: must be >= 1, got 0$"),
    ("heads", 1.5, r"^model\.architecture\.heads: must be an integer"),
    ("attention_blocks", 4, r"^model\.architecture\.attention_blocks: must be <= 3, got 4$"),
    ("attention_blocks", 0, r"^model\.architecture\.attention_blocks: must be >= 1, got 0$"),
])
def test_bad_heads_or_blocks_are_one_line_config_errors(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        SpaNet(_config(**{field: value}))
    assert "\n" not in str(info.value)


def test_three_blocks_name_their_layers() -> None:
    family = SpaNet(_config(reuse_factor={"attention2": 2, "ffn2": 4}))
    assert [name for name, _ in family._layer_names()] == [
        "embed0", "embed1", "attention0", "ffn0", "attention1", "ffn1", "attention2", "ffn2", "triplets"]
    assert family.reuse_factors == {"attention2": 2, "ffn2": 4}
    assert family.heads == 2
    assert SpaNet(load_config(ROOT / "configs" / "spanet_ttbar.yaml")).heads == 1  # the default: one head


# ---------------------------------------------------------------------------------------- design kernel


def _weights(rng: np.random.Generator, heads: int) -> dict[str, np.ndarray]:
    c = heads * H
    shapes = {"kernel_q": (D, c), "bias_q": (c,), "kernel_k": (D, c), "bias_k": (c,), "kernel_v": (D, c),
              "bias_v": (c,), "kernel_o": (c, D), "bias_o": (D,)}
    return {k: quantize(rng.normal(0, 0.5, s), B_T if k.startswith("bias") else W_T) for k, s in shapes.items()}


def _op(w: dict[str, np.ndarray], heads: int, reuse: int = 1) -> Any:
    exp, inv = softmax_tables(4, 8, 5, N, exp_t=SOFT, inv_t=SOFT)
    spec = {k: (v, B_T if k.startswith("bias") else W_T) for k, v in w.items()}
    return attention_op("att", ["x", "mask"], Tensor("att", (N, D), ACT), ATT_TYPES,
                        {**spec, "exp_table": (exp, SOFT), "inv_table": (inv, SOFT)}, exp_frac=4, inv_frac=5,
                        heads=heads, reuse=reuse)


def _attention(rng: np.random.Generator, heads: int) -> Any:
    return _op(_weights(rng, heads), heads)


def _events(rng: np.random.Generator, events: int = 3000) -> list[np.ndarray]:
    mask = (rng.random((events, N)) < 0.7).astype(np.float64)
    mask[:20] = 0.0  # no valid key
    x = rng.normal(0, 3, (events, N, D))
    x[: events // 10] *= 30  # saturate
    return [quantize(x, ACT), mask]


def _digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


def test_one_head_gives_the_single_head_results() -> None:
    """The same outputs, bit for bit, as the kernel had before heads existed; and a design saved then (its
    attention op has no `heads` attribute) runs as one head."""
    op = _attention(np.random.default_rng(21), 1)
    x = _events(np.random.default_rng(22))
    out = fx_attention(op, x, [ACT, MASK])
    assert _digest(out) == SINGLE_HEAD_DIGEST
    assert op.attrs["heads"] == 1
    assert op.weights["kernel_q"].shape == (D, H)  # the single-head weights layout
    del op.attrs["heads"]
    np.testing.assert_array_equal(fx_attention(op, x, [ACT, MASK]), out)


@pytest.mark.parametrize("silent", [0, 1])
def test_each_head_reads_its_own_columns(silent: int) -> None:
    """Two heads whose second (or first) head's output-projection rows are zero equal one head on the other
    head's columns: head h owns columns h*head_dim..(h+1)*head_dim of q, k, v and those rows of Wo."""
    w = _weights(np.random.default_rng(5), 2)
    w["kernel_o"][silent * H:(silent + 1) * H] = 0.0
    live = slice((1 - silent) * H, (2 - silent) * H)
    one = {**{f"{p}_{c}": w[f"{p}_{c}"][..., live] for p in ("kernel", "bias") for c in "qkv"},
           "kernel_o": w["kernel_o"][live], "bias_o": w["bias_o"]}
    x = _events(np.random.default_rng(6))
    two_heads = fx_attention(_op(w, 2), x, [ACT, MASK])
    np.testing.assert_array_equal(two_heads, fx_attention(_op(one, 1), x, [ACT, MASK]))
    assert np.unique(two_heads).size > 1000


def test_heads_that_do_not_divide_the_projections_are_refused() -> None:
    w = _weights(np.random.default_rng(7), 2)
    with pytest.raises(InputError, match=r"att: 8 projection columns and 8 output-projection rows do not split "
                                         r"into 3 heads"):
        _op(w, 3)
    with pytest.raises(InputError, match=r"att: heads must be an integer >= 1, got 0"):
        _op(w, 0)


def test_estimate_counts_every_head_and_honours_reuse() -> None:
    from trigger.estimate import load_params
    from trigger.hls_ext.estimate import estimate_attention

    design = SimpleNamespace(meta={"backend": "Vitis", "clock_uncertainty": "27%"})
    rng = np.random.default_rng(9)
    one, two = _weights(rng, 1), _weights(rng, 2)
    p = load_params()
    est = {(heads, reuse): estimate_attention(_op(w, heads, reuse), design, p, 5.0)
           for heads, w in ((1, one), (2, two)) for reuse in (1, 2)}
    for reuse in (1, 2):
        assert est[2, reuse].dsp > est[1, reuse].dsp  # twice the score and context products
        assert est[2, reuse].lut > est[1, reuse].lut  # and twice the softmax tables
        assert est[2, reuse].ii == reuse
    assert est[2, 2].dsp < est[2, 1].dsp  # shared over two cycles
    assert est[2, 2].latency_cycles > est[2, 1].latency_cycles
    assert "2 heads of width 4" in est[2, 1].notes


def test_rtl_trace_of_two_heads_equals_the_interpreter() -> None:
    pytest.importorskip("da4ml")
    from trigger.rtl import trace

    n, d, h, heads = 4, 4, 2, 2
    rng = np.random.default_rng(11)
    act = Fx.declared([14, 6])
    exp, inv = softmax_tables(4, 8, 5, n, exp_t=SOFT, inv_t=SOFT)

    def w(*shape: int, t: Fx = W_T) -> tuple[np.ndarray, Fx]:
        return quantize(rng.normal(scale=0.5, size=shape), t), t

    attention = attention_op(
        "attention", ["jets", "mask"], Tensor("attention", (n, d), act), {**ATT_TYPES, "in": act, "out": act},
        {**{f"kernel_{c}": w(d, heads * h) for c in "qkv"}, **{f"bias_{c}": w(heads * h, t=B_T) for c in "qkv"},
         "kernel_o": w(heads * h, d), "bias_o": w(d, t=B_T), "exp_table": (exp, SOFT), "inv_table": (inv, SOFT)},
        exp_frac=4, inv_frac=5, heads=heads)
    design = Design("heads", [Tensor("jets", (n, d), act), Tensor("mask", (n,), MASK)], [attention], ["attention"])
    events = 2000
    jets = quantize(rng.normal(0, 4, (events, n, d)), act)
    mask = (rng.random((events, n)) < 0.75).astype(np.float64)
    mask[:5], mask[5:10] = 0.0, 1.0
    want = run(design, [jets, mask])[0].reshape(events, -1)
    got = trace.trace(design).logic.predict(np.concatenate([jets.reshape(events, -1), mask], axis=1))
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------ family end to end


def test_csim_equals_the_design_and_the_firmware_model_with_two_heads_and_three_blocks(tmp_path: Path) -> None:
    """One compile: hls.reuse_factor 1, attention1 at reuse 2 (its pipelined stages over both heads)."""
    cfg = _config(reuse_factor={"attention1": 2})
    family = SpaNet(cfg)
    model = family.build(quantized=True)
    attention = model.get_layer("attention0")
    assert attention.get_weights()[0].shape == (8, 8)  # (model width, heads x head_dim)
    rng = np.random.default_rng(12)
    model.set_weights([rng.normal(0, 0.4, w.shape) * (rng.random(w.shape) > 0.3) for w in model.get_weights()])
    firmware = family.firmware_model(model)
    assert firmware.get_layer("attention2").get_config()["heads"] == 2

    n_real = rng.integers(0, SMALL["max_jets"] + 1, EVENTS)
    mask = (np.arange(SMALL["max_jets"])[None] < n_real[:, None]).astype(np.float64)
    jets = rng.normal(0, 2, (EVENTS, SMALL["max_jets"], firmware.inputs[0].shape[-1]))
    jets[: EVENTS // 10] *= 20  # saturate some intermediates
    jets = on_input_port(jets, cfg)  # as the pipeline feeds the model
    x = [np.ascontiguousarray(jets * mask[..., None]), mask]
    sim, design = spanet_csim_matches(firmware, cfg, family, x, tmp_path / "prj")
    assert np.unique(sim[:, 3::4]).size > 50  # the scores are not trivially constant
    assert np.any(sim[:, :3] >= 0)  # and triplets are found

    attentions = [op for op in design.ops if op.kind == "fx_attention"]
    assert [(op.name, op.attrs["heads"], op.attrs["n_head"], op.attrs["reuse_factor"]) for op in attentions] == [
        ("attention0", 2, 4, 1), ("attention1", 2, 4, 2), ("attention2", 2, 4, 1)]
    params = (tmp_path / "prj" / "firmware" / "parameters.h").read_text()
    assert re.findall(r"unsigned heads = (\d+);", params) == ["2"] * 3  # the attention heads
    assert re.findall(r"score_heads = (\d+);", params) == ["2"]
    design.save(tmp_path / "saved")
    np.testing.assert_array_equal(run(Design.load(tmp_path / "saved"), x)[0], sim)  # sim = the interpreter


def test_a_training_step_of_the_twin_with_two_heads() -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    family = SpaNet(_config())
    rng = np.random.default_rng(4)
    events, n = 256, SMALL["max_jets"]
    mask = (np.arange(n)[None] < rng.integers(6, n + 1, events)[:, None]).astype(np.float32)
    jets = (rng.normal(0, 1, (events, n, len(family.features))) * mask[..., None]).astype(np.float32)
    y = triplet_targets(np.tile(np.arange(6), (events, 1)), n).astype(np.float32)
    for quantized in (False, True):
        model = family.build(quantized=quantized)
        assert model.get_layer("attention2").heads == 2
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), **family.compile_args())
        history = model.fit([jets, mask], y, epochs=3, batch_size=64, verbose=0)
        losses = history.history["loss"]
        assert all(np.isfinite(losses))
        assert losses[-1] < losses[0]
