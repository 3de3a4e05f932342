"""The SPA-Net ops of the design without TensorFlow or hls4ml: a saved design runs in a bare process, and the
kernels refuse what they cannot run exactly. (Their bit-exactness with the C simulation is tested in
tests/test_hls_ext.py, on compiled projects.)"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from trigger.design import Design, Fx, Tensor, quantize, run
from trigger.design.spanet import (
    MASK,
    attention_op,
    config_spec,
    dense_op,
    softmax_tables,
    triplet_op,
)
from trigger.errors import InputError

N, F, D, H, R = 8, 5, 12, 4, 3
W_T, B_T = Fx.declared([8, 2]), Fx.declared([10, 4])
ACT, UACT = Fx.declared([16, 6]), Fx.declared([16, 6, False])

BARE_RUN = """
import sys
from pathlib import Path

import numpy as np

from trigger.design import Design, run

design = Design.load(Path(sys.argv[1]))
with np.load(sys.argv[2]) as x:
    np.save(sys.argv[3], run(design, [x["jets"], x["mask"]])[0])
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "hls4ml", "qkeras"})
assert not loaded, loaded
"""


def _design(rng: np.random.Generator) -> Design:
    """jets -> FxDense -> FxSelfAttention -> FxTripletArgmax, built from the ops' constructors alone."""

    def w(shape: tuple[int, ...], t: Fx) -> tuple[np.ndarray, Fx]:
        return quantize(rng.normal(0, 0.5, shape), t), t

    exp_t, inv_t = Fx.declared([10, 1, False]), Fx.declared([10, 1, False])
    exp, inv = softmax_tables(4, 8, 5, N, exp_t=exp_t, inv_t=inv_t)
    dense = dense_op("embed", ["jets"], Tensor("embed", (N, D), UACT),
                     {"in": ACT, "out": UACT, "weight": W_T, "bias": B_T},
                     {"kernel": w((F, D), W_T), "bias": w((D,), B_T)}, relu=True)
    att_types = {"in": UACT, "qkv": Fx.declared([14, 6]), "score": Fx.declared([14, 7]), "exp": exp_t,
                 "inv": inv_t, "attn": Fx.declared([10, 1, False]), "ctx": Fx.declared([14, 6]), "out": ACT,
                 "weight": W_T, "bias": B_T}
    projections = {f"{k}_{c}": w(shape, W_T if k == "kernel" else B_T)
                   for c in "qkvo" for k, shape in (("kernel", (H, D) if c == "o" else (D, H)),
                                                    ("bias", (D,) if c == "o" else (H,)))}
    attention = attention_op("attention", ["embed", "mask"], Tensor("attention", (N, D), ACT), att_types,
                             {**projections, "exp_table": (exp, exp_t), "inv_table": (inv, inv_t)},
                             exp_frac=4, inv_frac=5)
    score_t = Fx.declared([18, 10])
    triplets = triplet_op("triplets", ["attention", "mask"], Tensor("triplets", (8,), score_t),
                          {"in": ACT, "factor": Fx.declared([12, 5]), "pair": Fx.declared([14, 7]),
                           "score": score_t, "weight": W_T, "bias": B_T},
                          {"kernel_b": w((2, D, R), W_T), "bias_b": w((2, R), B_T), "kernel_p": w((2, D, R), W_T),
                           "bias_p": w((2, R), B_T)}, n_items=N)
    inputs = [Tensor("jets", (N, F), Fx(16, 6)), Tensor("mask", (N,), MASK)]
    return Design("spanet", inputs, [dense, attention, triplets], ["triplets"])


def _events(rng: np.random.Generator, events: int) -> dict[str, np.ndarray]:
    n_real = rng.integers(0, N + 1, events)
    mask = (np.arange(N)[None] < n_real[:, None]).astype(np.float64)
    jets = rng.normal(0, 2, (events, N, F)) * mask[..., None]
    jets[: events // 10] *= 40  # beyond the input port's range: wraps there, saturates inside
    return {"jets": jets, "mask": mask}


def test_saved_design_runs_without_tensorflow_or_hls4ml(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    design = _design(rng)
    x = _events(rng, 3000)
    here = run(design, [x["jets"], x["mask"]], chunk=1024)[0]
    assert np.unique(here[:, 3::4]).size > 50  # scores vary
    design.save(tmp_path / "prj")
    np.savez(tmp_path / "x.npz", **x)
    subprocess.run([sys.executable, "-c", BARE_RUN, str(tmp_path / "prj"), str(tmp_path / "x.npz"),
                    str(tmp_path / "out.npy")], check=True, cwd=Path(__file__).resolve().parents[1])
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), here)


def test_events_without_a_triplet_give_no_jets_and_the_lowest_score() -> None:
    design = _design(np.random.default_rng(5))
    x = _events(np.random.default_rng(6), 200)
    x["mask"][:50, 2:] = 0.0  # two jets: no triplet
    out = run(design, [x["jets"], x["mask"]])[0].reshape(-1, 2, 4)
    assert np.all(out[:50, :, :3] == -1)
    assert np.all(out[:50, :, 3] == design.output_tensors[0].type.min)


def test_what_float64_or_an_accumulator_cannot_hold_is_refused_by_name() -> None:
    design = _design(np.random.default_rng(7))
    attention, triplets = design.ops[1:]
    x = _events(np.random.default_rng(8), 10)
    design.ops[1] = replace(attention, types={**attention.types, "score_acc": Fx(12, 6)})
    with pytest.raises(InputError, match=r"attention: accumulator score_acc ap_fixed<12,6>"):
        run(design, [x["jets"], x["mask"]])
    design.ops[1] = attention
    design.ops[2] = replace(triplets, types={**triplets.types, "factor": Fx.declared([40, 8])})
    with pytest.raises(InputError, match=r"triplets: its values need more than 53 significant bits"):
        run(design, [x["jets"], x["mask"]])


def test_only_declared_types_go_into_layer_configs() -> None:
    assert config_spec(Fx.declared([10, 1, False])) == [10, 1, False]
    assert Fx.declared(config_spec(ACT)) == ACT
    with pytest.raises(ValueError, match="AP_RND, AP_SAT"):
        config_spec(Fx(16, 6))
