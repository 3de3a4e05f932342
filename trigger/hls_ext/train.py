"""Trainable twins of the SPA-Net extension layers: float, or quantization-aware (straight-through rounding).

They compute what `FxSelfAttention`, `FxMassPrior` and `FxTripletArgmax` compute, except that the softmax is
exact and the triplet head returns all masked logits for the loss instead of their argmax. With `types` set, weights and
the intermediate tensors are rounded to their fixed-point grids in the forward pass (gradients pass
straight through), so the trained weights suit the firmware. They are not tfmot-prunable: the pipeline
prunes only the shared dense layers around them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow import keras

from trigger.design.fixed import Fx
from trigger.design.spanet import (
    ATTENTION_WEIGHTS,
    MINKOWSKI,
    TRIPLET_WEIGHTS,
    attention_shapes,
    config_spec,
    scan_flat,
    scan_jets,
)

NEG = -1.0e9  # logit of an invalid key or triplet


def fake_quant(x: tf.Tensor, t: Fx | None) -> tf.Tensor:
    """Round to nearest and saturate to `t` going forward, identity gradient; identity if `t` is None.

    The TensorFlow twin of `trigger.design.fixed.quantize` for declared (AP_RND, AP_SAT) types, needed in
    the graph for its gradient; it shapes training only, the firmware model runs the design's kernels.
    """
    if t is None:
        return x
    scale = 2.0 ** t.frac
    q = tf.clip_by_value(tf.floor(x * scale + 0.5), t.min * scale, t.max * scale) / scale
    return x + tf.stop_gradient(q - x)


class _QuantAware(keras.layers.Layer):
    def __init__(self, types: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fx_types = {k: Fx.declared(v) for k, v in (types or {}).items()}

    def q(self, x: tf.Tensor, name: str) -> tf.Tensor:
        return fake_quant(x, self.fx_types.get(name))

    def qw(self, w: tf.Variable) -> tf.Tensor:
        return self.q(w, "bias" if "bias" in w.name else "weight")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "types": {k: config_spec(v) for k, v in self.fx_types.items()} or None}


class SelfAttention(_QuantAware):
    """[(B, n, d), (B, n)] -> (B, n, d): x + Wo concat_h(softmax_masked(q_h k_h^T) v_h), `heads` heads of width
    `head_dim`."""

    def __init__(self, head_dim: int, types: dict[str, Any] | None = None, *, heads: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(types, **kwargs)
        self.head_dim = head_dim
        self.heads = heads

    def build(self, input_shape: Any) -> None:
        shapes = attention_shapes(int(input_shape[0][-1]), self.head_dim, self.heads)
        self.w = {k: self.add_weight(name=k, shape=shapes[k],
                                     initializer="zeros" if k.startswith("bias") else "glorot_uniform")
                  for k in ATTENTION_WEIGHTS}
        super().build(input_shape)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        x, mask = inputs
        n, heads, width = x.shape[1], self.heads, self.heads * self.head_dim
        w = {k: self.qw(v) for k, v in self.w.items()}

        def project(c: str) -> tf.Tensor:  # (B, n, heads * h) -> (B, head, n, h)
            t = self.q(x @ w[f"kernel_{c}"] + w[f"bias_{c}"], "qkv")
            return tf.transpose(tf.reshape(t, (-1, n, heads, self.head_dim)), (0, 2, 1, 3))

        q, k, v = (project(c) for c in "qkv")
        keys = mask[:, None, None, :]
        scores = self.q(tf.matmul(q, k, transpose_b=True), "score")  # (B, head, query, key)
        scores += (1.0 - keys) * NEG
        attn = self.q(tf.nn.softmax(scores, axis=-1) * keys, "attn")
        ctx = tf.reshape(tf.transpose(self.q(attn @ v, "ctx"), (0, 2, 1, 3)), (-1, n, width))
        return self.q(x + ctx @ w["kernel_o"] + w["bias_o"], "out")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "head_dim": self.head_dim, "heads": self.heads}


def triplet_mask(mask: tf.Tensor) -> tf.Tensor:
    """(B, n) -> (B, n, n, n) float: real jets, b distinct from both quarks, q index below q' index."""
    n = mask.shape[-1]
    idx = np.arange(n)
    static = ((idx[:, None, None] != idx[None, :, None]) & (idx[:, None, None] != idx[None, None, :])
              & (idx[None, :, None] < idx[None, None, :])).astype(np.float32)
    return mask[:, :, None, None] * mask[:, None, :, None] * mask[:, None, None, :] * static[None]


class MassPrior(_QuantAware):
    """(B, n, F) -> (B, n, n, n): P[b, q, q'] = f_pair(m^2(q, q')) + f_triplet(m^2(b, q, q') - m^2(q, q')), the
    masses squared from the (E, px, py, pz) columns `column..column+3`, each f a table of `size` bins of width
    2^-frac (the triplet's read at its excess over the pair, as `trigger.design.spanet.fx_mass_prior` says why).

    Each table is a small MLP of the bin's mass (`hidden` tanh units), evaluated at the bin centres, so
    neighbouring bins share their statistics; the firmware keeps only the tables (`tables()`), rounded onto
    the `prior` type. This is the learned, b-tag-free half of the chi-square (W and top masses) that a
    low-rank product of per-jet factors cannot form; the triplet head adds the rest.
    """

    def __init__(self, *, column: int, pair_frac: int, pair_size: int, triplet_frac: int, triplet_size: int,
                 hidden: int = 16, types: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(types, **kwargs)
        self.column, self.hidden = column, hidden
        self.geometry = {"pair": (pair_frac, pair_size), "triplet": (triplet_frac, triplet_size)}

    def build(self, input_shape: Any) -> None:
        # Weights of the layer itself, uniquely named: Dense sublayers built here would all save as "kernel:0",
        # which an h5 file cannot hold twice.
        self.mlps = {name: [self.add_weight(name=f"{name}_{part}", shape=shape,
                                            initializer="zeros" if part.endswith("bias") else "glorot_uniform")
                            for part, shape in (("hidden_kernel", (1, self.hidden)), ("hidden_bias", (self.hidden,)),
                                                ("out_kernel", (self.hidden, 1)), ("out_bias", (1,)))]
                     for name in self.geometry}
        super().build(input_shape)

    def table(self, name: str) -> tf.Tensor:
        frac, size = self.geometry[name]
        mass = tf.constant(np.sqrt((np.arange(size, dtype=np.float32) + 0.5) / 2.0 ** frac)[:, None])
        hidden_kernel, hidden_bias, out_kernel, out_bias = self.mlps[name]
        return self.q((tf.tanh(mass @ hidden_kernel + hidden_bias) @ out_kernel + out_bias)[:, 0], "prior")

    def tables(self) -> dict[str, np.ndarray]:
        """The firmware's tables, `pair_table` and `triplet_table` (on the `prior` grid when quantized)."""
        return {f"{name}_table": self.table(name).numpy() for name in self.geometry}

    def call(self, x: tf.Tensor) -> tf.Tensor:
        p = self.q(x, "in")[..., self.column:self.column + 4]
        gram = tf.einsum("bic,bjc->bij", p * MINKOWSKI.astype(np.float32), p)
        own = tf.linalg.diag_part(gram)
        pair = own[:, :, None] + own[:, None, :] + 2.0 * gram  # m^2(i, j)
        excess = (pair[:, :, :, None] + pair[:, :, None, :]
                  - own[:, :, None, None] - own[:, None, :, None] - own[:, None, None, :])  # m^2(b, q, q') - m^2(q, q')

        def lookup(name: str, m2: tf.Tensor) -> tf.Tensor:  # the TensorFlow twin of `table_index`
            frac, size = self.geometry[name]
            index = tf.clip_by_value(tf.cast(tf.floor(m2 * 2.0 ** frac), tf.int32), 0, size - 1)
            return tf.gather(self.table(name), index)

        return lookup("pair", pair)[:, None, :, :] + lookup("triplet", excess)

    def get_config(self) -> dict[str, Any]:
        (pair_frac, pair_size), (triplet_frac, triplet_size) = self.geometry["pair"], self.geometry["triplet"]
        return {**super().get_config(), "column": self.column, "pair_frac": pair_frac, "pair_size": pair_size,
                "triplet_frac": triplet_frac, "triplet_size": triplet_size, "hidden": self.hidden}


class TripletScores(_QuantAware):
    """[(B, n, d), (B, n)(, (B, n, n, n) prior)] -> (B, 2, n^3) masked logits
    S[t, (i, j, k)] = prior[i, j, k] + sum_r u[t,i,r] v[t,j,r] v[t,k,r].

    With `shared_head` both tops are scored by one head (t is 0 for both; the logits are repeated per top),
    trained with `shared_pair_loss`: the head learns "is a top" for two tops that nothing on chip tells apart,
    and the joint decoding picks the disjoint pair.
    """

    def __init__(self, rank: int, types: dict[str, Any] | None = None, *, shared_head: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(types, **kwargs)
        self.rank, self.shared_head = rank, shared_head

    def build(self, input_shape: Any) -> None:
        d, r, t = int(input_shape[0][-1]), self.rank, 1 if self.shared_head else 2
        shapes = {"kernel_b": (t, d, r), "bias_b": (t, r), "kernel_p": (t, d, r), "bias_p": (t, r)}
        self.w = {k: self.add_weight(name=k, shape=shapes[k],
                                     initializer="zeros" if k.startswith("bias") else "glorot_uniform")
                  for k in TRIPLET_WEIGHTS}
        super().build(input_shape)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        x, mask, *prior = inputs
        n = x.shape[1]
        w = {k: self.qw(v) for k, v in self.w.items()}
        u = self.q(tf.einsum("bnd,tdr->btnr", x, w["kernel_b"]) + w["bias_b"][None, :, None, :], "factor")
        v = self.q(tf.einsum("bnd,tdr->btnr", x, w["kernel_p"]) + w["bias_p"][None, :, None, :], "factor")
        pair = self.q(v[:, :, :, None, :] * v[:, :, None, :, :], "pair")
        scores = tf.einsum("btir,btjkr->btijk", u, pair)
        if prior:
            scores += self.q(prior[0], "prior")[:, None]
        scores = self.q(scores, "score")
        valid = triplet_mask(mask)[:, None]
        logits = scores * valid + (1.0 - valid) * NEG
        logits = tf.reshape(logits, (-1, logits.shape[1], n * n * n))
        return tf.repeat(logits, 2, axis=1) if self.shared_head else logits

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rank": self.rank, "shared_head": self.shared_head}


def symmetric_triplet_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Cross-entropy of the tops' true triplets, minimised over the t <-> tbar swap of the heads.

    y_true is (B, 2): flat index b*n^2 + q*n + q' (q < q') of each top's triplet, -1 for a top that is not
    fully matched (it does not contribute); y_pred are the logits.
    """
    logp = tf.nn.log_softmax(y_pred, axis=-1)
    valid = tf.cast(y_true >= 0, logp.dtype)
    target = tf.cast(tf.maximum(y_true, 0), tf.int32)
    direct = tf.gather(logp, target, axis=2, batch_dims=1)  # (B, head, top)
    straight = -(direct[:, 0, 0] * valid[:, 0] + direct[:, 1, 1] * valid[:, 1])
    swapped = -(direct[:, 0, 1] * valid[:, 1] + direct[:, 1, 0] * valid[:, 0])
    return tf.minimum(straight, swapped)


def shared_pair_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """The loss of a shared head (both rows of y_pred the same, y_true as `symmetric_triplet_loss`): for an event
    with both tops matched, -log of the probability of the true pair when the head's softmax picks one top and
    then the other among the triplets sharing no jet with it, averaged over the two orders; for an event with
    one, the cross-entropy of that top.

    This is the pair the joint decoding searches for. The plain cross-entropy of both tops under one softmax
    also penalises the second top's probability when the first is right, where the decoding only asks that the
    second beat the triplets disjoint from the first. At 12 float epochs the pair loss bought 0.1 / 0.5 / 1.6
    points at 6 / 7 / >= 8 jets (docs/spanet.md).
    """
    n = round(int(y_pred.shape[-1]) ** (1 / 3))
    flat, jets = scan_flat(n), scan_jets(n)
    position = np.zeros(n ** 3, np.int64)
    position[flat] = np.arange(len(flat))
    overlap = tf.constant(np.where((jets[:, None] & jets[None, :]) == 0, 0.0, NEG).astype(np.float32))
    scores = tf.gather(y_pred[:, 0], flat, axis=1)  # (B, M) in scan order
    valid = tf.cast(y_true >= 0, scores.dtype)
    true = tf.gather(tf.constant(position), tf.maximum(tf.cast(y_true, tf.int64), 0))  # (B, 2) positions
    first = tf.gather(tf.nn.log_softmax(scores), true, axis=1, batch_dims=1)  # (B, 2)

    def second(top: int) -> tf.Tensor:  # log p of the other top's triplet among those disjoint from `top`'s
        rest = tf.nn.log_softmax(scores + tf.gather(overlap, true[:, top]))
        return tf.gather(rest, true[:, 1 - top : 2 - top], axis=1, batch_dims=1)[:, 0]

    both = -0.5 * (first[:, 0] + second(0) + first[:, 1] + second(1))
    return tf.where(valid[:, 0] * valid[:, 1] > 0, both, -tf.reduce_sum(first * valid, axis=1))


def top_accuracy(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Per event, the fraction of its matched tops whose triplet is a head's argmax (better head order)."""
    best = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
    target = tf.cast(y_true, tf.int32)
    hit = tf.cast(best[:, :, None] == target[:, None, :], tf.float32)  # (B, head, top); -1 never hits
    right = tf.maximum(hit[:, 0, 0] + hit[:, 1, 1], hit[:, 0, 1] + hit[:, 1, 0])
    return right / tf.maximum(tf.reduce_sum(tf.cast(target >= 0, tf.float32), axis=1), 1.0)


def shared_top_accuracy(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """`top_accuracy` of a shared head (both rows of y_pred the same): the fraction of an event's matched tops
    whose triplet is one of the head's two best."""
    best = tf.math.top_k(y_pred[:, 0], 2).indices  # (B, 2)
    target = tf.cast(y_true, tf.int32)
    hit = tf.reduce_any(best[:, :, None] == target[:, None, :], axis=1)  # (B, top); -1 never hits
    return (tf.reduce_sum(tf.cast(hit, tf.float32), axis=1)
            / tf.maximum(tf.reduce_sum(tf.cast(target >= 0, tf.float32), axis=1), 1.0))


TRAIN_OBJECTS: dict[str, Any] = {
    "SelfAttention": SelfAttention, "MassPrior": MassPrior, "TripletScores": TripletScores,
    "symmetric_triplet_loss": symmetric_triplet_loss, "shared_pair_loss": shared_pair_loss,
    "top_accuracy": top_accuracy, "shared_top_accuracy": shared_top_accuracy,
}
