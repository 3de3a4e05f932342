"""Bit-exact Python references of the SPA-Net extension layers' fixed-point arithmetic.

Every function here is the specification the C++ in `nnet_spanet.h` must match bit for bit. Values are
carried as float64 holding exact dyadic rationals: every intermediate stays below 53 significant bits, so
sums and products are exact and only the explicit `quantize` calls round, exactly where the C++ casts to an
`ap_fixed<W, I, AP_RND, AP_SAT>` type. Accumulators in the C++ are sized to be exact (`exact_sum_type`),
which is why the references never round inside a sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Fx:
    """An `ap_fixed<width, integer>` (or `ap_ufixed` when not signed) with round-to-nearest and saturation."""

    width: int
    integer: int
    signed: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.width <= 48:
            raise ValueError(f"fixed-point width must be 1..48 to stay exact in float64, got {self.width}")

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac

    @property
    def min(self) -> float:
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def max(self) -> float:
        top = self.integer - 1 if self.signed else self.integer
        return 2.0 ** top - self.lsb

    def cpp(self, rounding: bool = True) -> str:
        """The C++ type; accumulators (`rounding=False`) use the default truncate/wrap modes."""
        base = "ap_fixed" if self.signed else "ap_ufixed"
        modes = ",AP_RND,AP_SAT" if rounding else ""
        return f"{base}<{self.width},{self.integer}{modes}>"

    def to_list(self) -> list[Any]:
        return [self.width, self.integer, self.signed]

    @classmethod
    def of(cls, spec: Any) -> Fx:
        """From `[width, integer, signed]` (layer configs) or an `Fx`."""
        if isinstance(spec, Fx):
            return spec
        width, integer, *rest = spec
        return cls(int(width), int(integer), bool(rest[0]) if rest else True)


def quantize(x: np.ndarray | float, t: Fx) -> np.ndarray:
    """Cast to `t` as `ap_fixed<.., AP_RND, AP_SAT>` does: round half towards +inf, then saturate."""
    scaled = np.floor(np.asarray(x, dtype=np.float64) * 2.0 ** t.frac + 0.5)
    lo = t.min * 2.0 ** t.frac
    hi = t.max * 2.0 ** t.frac
    return np.clip(scaled, lo, hi) * 2.0 ** -t.frac


def exact_sum_type(a: Fx, b: Fx, terms: int, extra: Fx | None = None) -> Fx:
    """A type holding a sum of `terms` products a*b (plus one `extra` value) without rounding or overflow."""
    frac = a.frac + b.frac
    integer = a.integer + b.integer + max(1, math.ceil(math.log2(terms + 1))) + 1
    if extra is not None:
        frac = max(frac, extra.frac)
        integer = max(integer, extra.integer) + 1
    return Fx(integer + frac, integer, True)


# ---------------------------------------------------------------------------------------------------------
# FxDense: a dense layer shared over jets (a kernel-1 convolution).


def dense_ref(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, types: dict[str, Fx],
              relu: bool) -> np.ndarray:
    """(..., n, d_in) -> (..., n, d_out): quantize(relu(x_q @ W + b)) with an exact accumulator."""
    acc = quantize(x, types["in"]) @ kernel.astype(np.float64) + bias.astype(np.float64)
    if relu:
        acc = np.maximum(acc, 0.0)
    return quantize(acc, types["out"])


# ---------------------------------------------------------------------------------------------------------
# FxSelfAttention: one-head masked self-attention with a table softmax and a residual connection.


@dataclass(frozen=True)
class SoftmaxTables:
    """The exp and reciprocal look-up tables of the fixed-point softmax.

    exp: entry i is exp(-i / 2^exp_frac) for the distance of a score below its row maximum, so the maximum
    maps to exactly 1 and the row sum is >= 1 whenever a key is valid. inv: entry k is 1 / (1 + (k + 1/2) /
    2^inv_frac) for row sums in [1, n_keys]; both are quantized to their types once, here and in the C++.
    """

    exp_frac: int
    exp_size: int
    inv_frac: int
    inv_size: int
    exp: np.ndarray
    inv: np.ndarray


def softmax_tables(exp_frac: int, exp_range: int, inv_frac: int, n_keys: int,
                   types: dict[str, Fx]) -> SoftmaxTables:
    exp_size = exp_range * 2 ** exp_frac
    exp_table = quantize(np.exp(-np.arange(exp_size) / 2.0 ** exp_frac), types["exp"])
    inv_size = (n_keys - 1) * 2 ** inv_frac + 1
    inv_table = quantize(1.0 / (1.0 + (np.arange(inv_size) + 0.5) / 2.0 ** inv_frac), types["inv"])
    return SoftmaxTables(exp_frac, exp_size, inv_frac, inv_size, exp_table, inv_table)


def attention_ref(x: np.ndarray, mask: np.ndarray, w: dict[str, np.ndarray], types: dict[str, Fx],
                  tables: SoftmaxTables) -> np.ndarray:
    """(B, n, d) x (B, n) -> (B, n, d): x + Wo . softmax_masked(q k^T) v, every step on its declared type.

    `w` has kernel_q/k/v (d, h), kernel_o (h, d) and the biases; there is no 1/sqrt(h) scale (training learns
    it into kernel_q). `types` has in, qkv, score, exp, inv, attn, ctx and out.
    """
    f64 = {k: v.astype(np.float64) for k, v in w.items()}
    xq = quantize(x, types["in"])
    valid = np.asarray(mask) > 0
    q = quantize(xq @ f64["kernel_q"] + f64["bias_q"], types["qkv"])
    k = quantize(xq @ f64["kernel_k"] + f64["bias_k"], types["qkv"])
    v = quantize(xq @ f64["kernel_v"] + f64["bias_v"], types["qkv"])
    scores = quantize(q @ np.swapaxes(k, -1, -2), types["score"])  # (B, n_query, n_key)
    key_ok = valid[:, None, :]
    row_max = np.where(key_ok, scores, -np.inf).max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    dist = np.floor((row_max - scores) * 2.0 ** tables.exp_frac).astype(np.int64)
    e = np.where(key_ok, tables.exp[np.clip(dist, 0, tables.exp_size - 1)], 0.0)  # invalid keys: any index
    total = e.sum(axis=-1, keepdims=True)
    inv_index = np.where(total < 1.0, 0, np.floor((total - 1.0) * 2.0 ** tables.inv_frac)).astype(np.int64)
    inv = tables.inv[np.minimum(inv_index, tables.inv_size - 1)]
    attn = quantize(e * inv, types["attn"])
    ctx = quantize(attn @ v, types["ctx"])
    return quantize(xq + ctx @ f64["kernel_o"] + f64["bias_o"], types["out"])


# ---------------------------------------------------------------------------------------------------------
# FxTripletArgmax: symmetric tensor attention per top and the argmax over valid, distinct (b, q, q') triplets.


def triplet_scores_ref(x: np.ndarray, w: dict[str, np.ndarray], types: dict[str, Fx]) -> np.ndarray:
    """(B, n, d) -> (B, 2, n, n, n) scores S[t, i, j, k] = sum_r u[t,i,r] * quantize(v[t,j,r] * v[t,k,r]).

    `w` has kernel_b/kernel_p (2, d, r) and bias_b/bias_p (2, r); the same partner factors v score q and q',
    so S is symmetric under j <-> k by construction. `types` has in, factor, pair and score.
    """
    xq = quantize(x, types["in"])
    u = quantize(np.einsum("bnd,tdr->btnr", xq, w["kernel_b"].astype(np.float64))
                 + w["bias_b"].astype(np.float64)[None, :, None, :], types["factor"])
    v = quantize(np.einsum("bnd,tdr->btnr", xq, w["kernel_p"].astype(np.float64))
                 + w["bias_p"].astype(np.float64)[None, :, None, :], types["factor"])
    pair = quantize(v[:, :, :, None, :] * v[:, :, None, :, :], types["pair"])  # (B, 2, n, n, r)
    return quantize(np.einsum("btir,btjkr->btijk", u, pair), types["score"])


def valid_triplets(mask: np.ndarray) -> np.ndarray:
    """(B, n) -> (B, n, n, n): i, j, k all real jets, b distinct from both quarks, and j < k (q <-> q')."""
    valid = np.asarray(mask) > 0
    n = valid.shape[-1]
    idx = np.arange(n)
    distinct = (idx[:, None, None] != idx[None, :, None]) & (idx[:, None, None] != idx[None, None, :])
    ordered = idx[None, :, None] < idx[None, None, :]
    return (valid[:, :, None, None] & valid[:, None, :, None] & valid[:, None, None, :]
            & (distinct & ordered)[None])


def first_argmax(scores: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, M) scores, (B, M) allowed -> flat index of the first maximum among allowed entries (-1 if none)
    and its score; "first" in flat (b, q, q') lexicographic order, as a strict `>` scan in the C++."""
    masked = np.where(ok, scores, -np.inf)
    best = masked.argmax(axis=-1)
    found = ok.any(axis=-1)
    return np.where(found, best, -1), np.take_along_axis(masked, best[:, None], axis=-1)[:, 0]


def greedy_assign(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B, 2, n, n, n) scores -> (B, 2) flat triplet per top, the two tops sharing no jet when possible.

    Each top takes its best valid triplet; the top with the higher score (top 1 on a tie) keeps it and the
    other takes its best triplet among those disjoint from it, or keeps its own when there is none (fewer
    than six jets). This is SPA-Net's greedy decoding of the two tops, with raw scores as the ranking.
    """
    events, _, n = scores.shape[:3]
    ok = valid_triplets(mask).reshape(events, 1, n ** 3)
    flat = scores.reshape(events, 2, n ** 3)
    firsts = [first_argmax(flat[:, t], ok[:, 0]) for t in range(2)]
    (best0, score0), (best1, score1) = firsts
    winner = np.where((best1 >= 0) & ((best0 < 0) | (score1 > score0)), 1, 0)
    won = np.where(winner == 1, best1, best0)
    idx = np.arange(n ** 3)
    jets_of = np.stack([idx // (n * n), (idx // n) % n, idx % n], axis=-1)  # (M, 3)
    won_jets = jets_of[np.maximum(won, 0)]  # (B, 3)
    disjoint = ~np.any(jets_of[None, :, :, None] == won_jets[:, None, None, :], axis=(-1, -2))
    loser_scores = np.where(winner[:, None] == 1, flat[:, 0], flat[:, 1])
    second, _ = first_argmax(loser_scores, ok[:, 0] & disjoint)
    lost = np.where(second >= 0, second, np.where(winner == 1, best0, best1))
    return np.where(winner[:, None] == 1, np.stack([lost, won], 1), np.stack([won, lost], 1))


def triplet_argmax_ref(x: np.ndarray, mask: np.ndarray, w: dict[str, np.ndarray], types: dict[str, Fx]
                       ) -> np.ndarray:
    """(B, n, d) x (B, n) -> (B, 8) = (b, q, q', score) per top, decoded by `greedy_assign`.

    An event without a valid triplet gives indices -1 and the most negative score.
    """
    scores = triplet_scores_ref(x, w, types)
    events, n = scores.shape[0], scores.shape[-1]
    chosen = greedy_assign(scores, mask)
    flat = scores.reshape(events, 2, n ** 3)
    found = chosen >= 0
    safe = np.maximum(chosen, 0)
    score = np.where(found, np.take_along_axis(flat, safe[..., None], axis=-1)[..., 0], types["score"].min)
    b, q1, q2 = safe // (n * n), (safe // n) % n, safe % n
    out = np.stack([np.where(found, b, -1), np.where(found, q1, -1), np.where(found, q2, -1), score], axis=-1)
    return out.astype(np.float64).reshape(events, 8)
