"""The learned mass prior and the joint decoding of SPA-Net (issue 12).

`model.architecture.mass_prior` adds, to every triplet's score, two learned tables read at the pair's mass
squared and at the triplet's in excess of it (formed exactly on chip from the jets' four-momenta);
`candidates: k` decodes the two tops jointly over k candidates each instead of greedily; `shared_head` scores
both tops with one head. Tested here: the joint search equals the brute-force best disjoint pair when every
triplet is a candidate; a shared head decodes as two heads holding its scores; the C simulation of a small
random model with both equals the design interpreter and the Keras firmware model bit for bit, with two heads,
with a shared head, and with a shared head decoded greedily (three compiles, 10 to 20 s each on 2 cores); the
twin's tables are what the firmware holds, and both read them at the excess; config errors name the field; the
RTL backend refuses both; a shared head is estimated at half the scoring; its loss is the likelihood of the true
pair of tops picked one after the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import on_input_port, spanet_csim_matches

from trigger.config import Config, load_config, parse_config
from trigger.design import run
from trigger.design.spanet import decode_positions, joint_positions, scan_order
from trigger.errors import ConfigError
from trigger.families.spanet import SpaNet

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"max_jets": 7, "embed": [8, 8], "head_dim": 4, "heads": 1, "attention_blocks": 1, "rank": 3,
         "candidates": 3, "mass_prior": {"pair_frac": 4, "pair_size": 64, "triplet_frac": 3, "triplet_size": 96}}
EVENTS = 2000


def _config(**architecture: Any) -> Config:
    raw = load_config(ROOT / "configs" / "spanet_ttbar.yaml").raw
    arch = {**raw["model"]["architecture"], **SMALL, **architecture}
    prep = {**raw["model"]["preprocessing"], "four_momentum": True}
    return parse_config({**raw, "model": {**raw["model"], "architecture": arch, "preprocessing": prep},
                         "hls": {**raw["hls"], "reuse_factor": 1}})


def test_joint_search_over_every_triplet_is_the_best_disjoint_pair() -> None:
    rng = np.random.default_rng(5)
    n, events = 7, 300
    b, q, q2 = scan_order(n)
    m = len(b)
    scores = rng.integers(-40, 40, (events, 2, m)).astype(np.float64)  # integers: ties happen
    mask = (np.arange(n)[None] < rng.integers(6, n + 1, events)[:, None]).astype(np.float64)
    chosen = joint_positions(scores, mask, m)
    jets = (1 << b) | (1 << q) | (1 << q2)
    valid = mask > 0
    ok = valid[:, b] & valid[:, q] & valid[:, q2]
    disjoint = (jets[:, None] & jets[None, :]) == 0
    total = scores[:, 0, :, None] + scores[:, 1, None, :]
    allowed = ok[:, :, None] & ok[:, None, :] & disjoint[None]
    best = np.where(allowed, total, -np.inf).reshape(events, -1).max(axis=1)
    rows = np.arange(events)
    got = scores[rows, 0, chosen[:, 0]] + scores[rows, 1, chosen[:, 1]]
    np.testing.assert_array_equal(got, best)
    assert np.all(disjoint[chosen[:, 0], chosen[:, 1]])
    # one candidate per top can miss the best pair that four or more find
    one = joint_positions(scores, mask, 1)
    assert np.mean(scores[rows, 0, one[:, 0]] + scores[rows, 1, one[:, 1]] < best) > 0.05


@pytest.mark.parametrize("candidates", [0, 1, 3])
def test_a_shared_head_decodes_as_two_heads_with_the_same_scores(candidates: int) -> None:
    """The shared head's decoding skips top 1's pass of the joint search (and its own argmax): the same pairs,
    and a tie never wins, so it must equal two heads holding the same scores, ties included."""
    rng = np.random.default_rng(8)
    n, events = 7, 400
    m = len(scan_order(n)[0])
    one = rng.integers(-6, 6, (events, 1, m)).astype(np.float64)  # few values: many ties
    mask = (np.arange(n)[None] < rng.integers(0, n + 1, events)[:, None]).astype(np.float64)
    shared = decode_positions(one, mask, candidates)
    np.testing.assert_array_equal(shared, decode_positions(np.repeat(one, 2, axis=1), mask, candidates))
    b, q, q2 = scan_order(n)
    jets = (1 << b) | (1 << q) | (1 << q2)
    six = mask.sum(axis=1) >= 6
    assert np.all(jets[shared[six, 0]] & jets[shared[six, 1]] == 0)  # two different tops, no jet shared


@pytest.mark.parametrize(("change", "message"), [
    ({"candidates": -1}, r"^model\.architecture\.candidates: must be >= 0, got -1$"),
    ({"mass_prior": {"pair_size": 0}}, r"^model\.architecture\.mass_prior\.pair_size: must be >= 1, got 0$"),
    ({"mass_prior": {"bins": 3}}, r"^model\.architecture\.mass_prior\.bins: "),
])
def test_bad_mass_prior_or_candidates_are_one_line_config_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        SpaNet(_config(**change))
    assert "\n" not in str(info.value)


def test_the_mass_prior_needs_the_four_momentum() -> None:
    raw = _config().raw
    raw["model"]["preprocessing"]["four_momentum"] = False
    with pytest.raises(ConfigError, match=r"^model\.architecture\.mass_prior: needs model\.preprocessing"):
        SpaNet(parse_config(raw))


@pytest.mark.parametrize(("shared_head", "candidates"), [(False, 3), (True, 3), (True, 0)])
def test_csim_equals_the_design_and_the_firmware_model_with_a_mass_prior_and_joint_decoding(
        tmp_path: Path, shared_head: bool, candidates: int) -> None:
    from trigger.errors import InputError
    from trigger.rtl.trace import check_traceable

    cfg = _config(shared_head=shared_head, candidates=candidates)
    family = SpaNet(cfg)
    assert [name for name, _ in family._layer_names()][-2:] == ["mass_prior", "triplets"]
    model = family.build(quantized=True)
    rng = np.random.default_rng(13)
    model.set_weights([rng.normal(0, 0.5, w.shape) * (rng.random(w.shape) > 0.3) for w in model.get_weights()])
    firmware = family.firmware_model(model)
    tables = model.get_layer("mass_prior").tables()
    np.testing.assert_array_equal(firmware.get_layer("mass_prior").get_weights()[1], tables["triplet_table"])

    n = SMALL["max_jets"]
    n_real = rng.integers(0, n + 1, EVENTS)
    n_real[EVENTS // 2:] = np.maximum(n_real[EVENTS // 2:], 6)
    mask = (np.arange(n)[None] < n_real[:, None]).astype(np.float64)
    jets = rng.normal(0, 2, (EVENTS, n, firmware.inputs[0].shape[-1]))
    jets[..., 6] = np.abs(jets[..., 6]) * 3  # energies: masses of both signs, and up to the last table bins
    jets[: EVENTS // 10] *= 20  # saturate
    jets = on_input_port(jets, cfg)  # as the pipeline feeds the model
    x = [np.ascontiguousarray(jets * mask[..., None]), mask]
    sim, design = spanet_csim_matches(firmware, cfg, family, x, tmp_path / "prj")
    prior_op = next(op for op in design.ops if op.kind == "fx_mass_prior")
    prior = run(design, x, tensors=[prior_op.output.name])[0]
    assert np.unique(prior).size > 20  # the tables are read at many addresses
    assert np.unique(sim[:, 3::4]).size > 50
    full = n_real >= 6
    assert np.all(sim[full][:, :3] >= 0)
    triplets = next(op for op in design.ops if op.kind == "fx_triplet_argmax")
    assert triplets.attrs["candidates"] == candidates
    assert len(triplets.weights["kernel_b"]) == (1 if shared_head else 2)
    if shared_head:  # one head scores both tops: they differ, and share no jet
        tops = sim[full].reshape(-1, 2, 4)[..., :3].astype(int)
        assert np.all(tops[:, 0, :, None] != tops[:, 1, None, :])
    assert len(triplets.inputs) == 3
    with pytest.raises(InputError, match=r"'fx_mass_prior' has no RTL lowering"):
        check_traceable(design)


def test_the_triplet_table_is_read_at_the_top_mass_squared_in_excess_of_the_w_candidates() -> None:
    """With ramp tables (entry i = i) the prior is the triplet table's address: floor((m^2(b, q, q') - m^2(q, q'))
    2^frac), here from summed four-vectors (the kernel uses Minkowski products) on the input grid; the
    trainable twin reads the same addresses up to float32 rounding at bin edges."""
    import tensorflow as tf

    from trigger.design.fixed import Fx, quantize
    from trigger.design.graph import Tensor
    from trigger.design.spanet import fx_mass_prior, mass_prior_op, mass_prior_types
    from trigger.hls_ext.train import MassPrior

    n, frac, size, column = 7, 4, 256, 6
    rng = np.random.default_rng(5)
    pt, eta, phi, mass = (rng.uniform(20, 200, (300, n)), rng.normal(0, 1.5, (300, n)),
                          rng.uniform(-np.pi, np.pi, (300, n)), rng.uniform(2, 30, (300, n)))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    momentum = np.stack([np.sqrt(px ** 2 + py ** 2 + pz ** 2 + mass ** 2), px, py, pz], axis=-1) / 100.0
    in_t = Fx.declared([16, 6])
    x = quantize(np.concatenate([rng.normal(0, 1, (300, n, column)), momentum], axis=-1), in_t)
    declared = {"in": in_t, "prior": Fx.declared([16, 10])}
    ramps = {"pair_table": (np.zeros(8), declared["prior"]), "triplet_table": (np.arange(size, dtype=float),
                                                                                declared["prior"])}
    op = mass_prior_op("prior", ["x"], Tensor("prior", (n * 15,), mass_prior_types(declared)["out"]), declared,
                       ramps, n_items=n, column=column, pair_frac=3, triplet_frac=frac)
    address = fx_mass_prior(op, [x], [in_t])

    def m2(p: np.ndarray) -> np.ndarray:
        return p[..., 0] ** 2 - p[..., 1] ** 2 - p[..., 2] ** 2 - p[..., 3] ** 2

    p = x[..., column:]
    b, q, q2 = scan_order(n)
    excess = m2(p[:, b] + p[:, q] + p[:, q2]) - m2(p[:, q] + p[:, q2])
    expected = np.clip(np.floor(excess * 2 ** frac), 0, size - 1)
    assert np.unique(expected).size > 200  # most addresses
    assert np.any(expected == size - 1)  # and the clamp
    np.testing.assert_array_equal(address, expected)

    twin = MassPrior(column=column, pair_frac=3, pair_size=8, triplet_frac=frac, triplet_size=size)
    twin.build((None, n, column + 4))
    twin.table = lambda name: tf.constant(np.arange(size if name == "triplet" else 8) * (name == "triplet"),
                                          tf.float32)
    read = twin(tf.constant(x, tf.float32)).numpy()[:, b, q, q2]
    assert np.mean(read == expected) > 0.999


def test_a_shared_head_is_estimated_at_half_the_scoring_and_one_search_pass() -> None:
    """The same triplet op with one head, and with two heads holding that head's weights: the shared head has
    half the multipliers (one set of factors, one score per triplet), and one pass of the joint search."""
    from trigger.design import Design, Fx, Tensor
    from trigger.design.fixed import quantize
    from trigger.design.spanet import MASK, triplet_op
    from trigger.estimate import estimate_design
    from trigger.hls_ext.estimate import register

    register()
    rng = np.random.default_rng(3)
    n, d, rank = 8, 6, 4
    act, w_t, b_t = Fx.declared([14, 6]), Fx.declared([8, 2]), Fx.declared([10, 4])
    head = {"kernel_b": rng.normal(0, 0.5, (1, d, rank)), "bias_b": rng.normal(0, 0.5, (1, rank)),
            "kernel_p": rng.normal(0, 0.5, (1, d, rank)), "bias_p": rng.normal(0, 0.5, (1, rank))}

    def estimate(heads: int) -> Any:
        weights = {k: (quantize(np.repeat(v, heads, axis=0), b_t if k.startswith("bias") else w_t),
                       b_t if k.startswith("bias") else w_t) for k, v in head.items()}
        op = triplet_op("triplets", ["x", "mask"], Tensor("triplets", (8,), Fx.declared([18, 10])),
                        {"in": act, "factor": Fx.declared([12, 5]), "pair": Fx.declared([14, 7]),
                         "score": Fx.declared([18, 10]), "weight": w_t, "bias": b_t}, weights, n_items=n,
                        candidates=4)
        design = Design("t", [Tensor("x", (n, d), act), Tensor("mask", (n,), MASK)], [op], ["triplets"],
                        meta={"backend": "Vitis", "clock_uncertainty": "27%"})
        est = estimate_design(design, clock_period_ns=5.0, io_type="io_parallel", strategy="latency",
                              reuse_factor=1, part="xcvu13p-flga2577-2-e", clock_uncertainty="27%")
        return next(layer for layer in est.layers if layer.class_name == "fx_triplet_argmax")

    one, two = estimate(1), estimate(2)
    assert two.dsp == 2 * one.dsp > 0
    assert one.lut < 0.6 * two.lut
    assert one.latency_cycles == two.latency_cycles
    assert "1 score head" in one.notes[0]
    assert "2 score heads" in two.notes[0]


def test_the_shared_head_loss_is_the_likelihood_of_the_true_pair_picked_one_top_after_the_other() -> None:
    """Against a direct count: softmax over the valid triplets, then over the valid ones disjoint from the
    first pick, both orders averaged; one matched top: its cross-entropy; padded jets never compete."""
    import tensorflow as tf

    from trigger.hls_ext.train import NEG, shared_pair_loss, triplet_mask

    rng = np.random.default_rng(4)
    n, events = 7, 50
    n_real = rng.integers(6, n + 1, events)
    mask = (np.arange(n)[None] < n_real[:, None]).astype(np.float32)
    valid = triplet_mask(tf.constant(mask)).numpy().reshape(events, -1) > 0
    logits = np.where(valid, rng.normal(0, 3, valid.shape), NEG).astype(np.float32)
    y_true = np.full((events, 2), -1, np.int64)
    for e in range(events):  # two disjoint true triplets among the real jets, the second one missing at times
        b1, q1, r1, b2, q2, r2 = rng.permutation(n_real[e])[:6]
        y_true[e] = [b1 * n * n + min(q1, r1) * n + max(q1, r1), b2 * n * n + min(q2, r2) * n + max(q2, r2)]
    y_true[::5, 1] = -1
    loss = shared_pair_loss(tf.constant(y_true), tf.constant(np.stack([logits, logits], axis=1))).numpy()

    def jets(flat: int) -> set[int]:
        return {flat // (n * n), flat // n % n, flat % n}

    def log_p(scores: np.ndarray, target: int, among: np.ndarray) -> float:
        return float(scores[target] - np.log(np.sum(np.exp(scores[among]))))

    for e in range(events):
        allowed = np.flatnonzero(valid[e])
        s = logits[e].astype(np.float64)
        t1, t2 = y_true[e]
        if t2 < 0:
            expected = -log_p(s, t1, allowed)
        else:
            after = [np.array([a for a in allowed if not jets(a) & jets(t)]) for t in (t1, t2)]
            expected = -0.5 * (log_p(s, t1, allowed) + log_p(s, t2, after[0]) + log_p(s, t2, allowed)
                               + log_p(s, t1, after[1]))
        assert loss[e] == pytest.approx(expected, rel=1e-4, abs=1e-4), e
