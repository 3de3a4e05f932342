"""The SPA-Net extension ops of the design: FxDense, FxSelfAttention, FxMassPrior and FxTripletArgmax.

This module is the one definition of their fixed-point arithmetic. The interpreter runs these kernels; the
Keras layers' forward passes (`trigger.hls_ext.layers`) call the same kernels on ops built from the layers'
configs; the hls4ml templates (`trigger.hls_ext.hls`) write the types derived here into the C++ config
structs; `nnet_spanet.h` must match the kernels bit for bit. Each kernel follows the C++ step by step: every
rounding is a `quantize` to a declared result type (`AP_RND, AP_SAT`), every sum is formed in an accumulator
that `sum_type`/`union_type` size to be exact (a kernel refuses a design whose accumulator could round or
wrap, rather than approximate it), and a table address is a C `int` (`to_int()` truncates towards zero).

No TensorFlow or hls4ml here: a saved design runs without them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from trigger.design.fixed import Fx, quantize, sum_type, union_type
from trigger.design.graph import Op, Tensor
from trigger.design.interpret import dot_accumulate, kernel, magnitude, require_exact
from trigger.design.lower import Context, lowering
from trigger.errors import InputError

DENSE_TYPES = ("in", "out", "weight", "bias")
ATTENTION_TYPES = ("in", "qkv", "score", "exp", "inv", "attn", "ctx", "out", "weight", "bias")
TRIPLET_TYPES = ("in", "factor", "pair", "score", "weight", "bias")
DENSE_WEIGHTS = ("kernel", "bias")
ATTENTION_WEIGHTS = ("kernel_q", "bias_q", "kernel_k", "bias_k", "kernel_v", "bias_v", "kernel_o", "bias_o")
TABLES = ("exp_table", "inv_table")
TRIPLET_WEIGHTS = ("kernel_b", "bias_b", "kernel_p", "bias_p")
MASS_PRIOR_TYPES = ("in", "prior")
MASS_PRIOR_TABLES = ("pair_table", "triplet_table")
MINKOWSKI = np.array([1.0, -1.0, -1.0, -1.0])  # metric of the (E, px, py, pz) columns
MASK = Fx(1, 1, False)  # the mask input: 1 for a real jet, 0 for padding
C_INT = Fx(32, 32, True, "TRN_ZERO", "WRAP")  # a C++ int, as ap_fixed's to_int() gives it
TRIPLET_BLOCK = 1024  # events per block of the triplet kernel: its scores are n^3 per event (2 tops, q < q')

WeightSpec = Mapping[str, tuple[np.ndarray, Fx]]


def _count(value: Any, where: str, what: str, minimum: int = 1) -> int:
    """An integer attribute >= `minimum` of an op, or one line naming it (a design file may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{where}: {what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def reuse_factor(value: Any, where: str) -> int:
    """An op's reuse factor, validated: the C++ shares each multiplying stage's multipliers over that many
    cycles (its interval); it changes no arithmetic, so the kernels ignore it and only the estimate reads it."""
    return _count(value, where, "reuse_factor")


def attention_heads(attrs: Mapping[str, Any], where: str) -> int:
    """An attention op's number of heads, validated; designs saved before multi-head attention have no
    `heads` attribute and one head."""
    return _count(attrs.get("heads", 1), where, "heads")


def split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(..., n, heads * h) -> (..., heads, n, h): each head's columns, as the C++ indexes them."""
    *lead, n, columns = x.shape
    return np.moveaxis(x.reshape(*lead, n, heads, columns // heads), -2, -3)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(..., heads, n, h) -> (..., n, heads * h): the heads' contexts concatenated, head 0 first."""
    *lead, heads, n, h = x.shape
    return np.moveaxis(x, -3, -2).reshape(*lead, n, heads * h)


def attention_shapes(d: int, head_dim: int, heads: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the attention weights: q, k, v hold `heads` blocks of `head_dim` columns (head h's are
    columns h*head_dim to (h+1)*head_dim), Wo the same rows; one head is the single-head layout."""
    h = heads * head_dim
    return {"kernel_q": (d, h), "bias_q": (h,), "kernel_k": (d, h), "bias_k": (h,), "kernel_v": (d, h),
            "bias_v": (h,), "kernel_o": (h, d), "bias_o": (d,)}


def config_spec(t: Fx) -> list[Any]:
    """A declared type as the extension layers' Keras configs store it, `[width, integer, signed]`."""
    if (t.rounding, t.overflow) != ("RND", "SAT"):
        raise ValueError(f"{t.cpp()}: the extension layers declare only AP_RND, AP_SAT result types")
    return [t.width, t.integer, t.signed]


# ------------------------------------------------------------------------------------------------ types


def dense_types(declared: Mapping[str, Fx], n_in: int) -> dict[str, Fx]:
    """The declared types plus the C++'s exact accumulator `acc` (the bias and `n_in` products)."""
    d = declared
    return {**{k: d[k] for k in DENSE_TYPES}, "acc": sum_type(d["in"], d["weight"], n_in, d["bias"])}


def attention_types(declared: Mapping[str, Fx], n_items: int, n_in: int, n_head: int,
                    heads: int = 1) -> dict[str, Fx]:
    """The declared types plus the C++'s exact accumulators: projections, scores and context (per head of
    width `n_head`), output (bias, residual and the context products of all `heads`), distances below the row
    maximum and row sums of exp-table entries."""
    d = declared
    log_n = math.ceil(math.log2(n_items))
    score, exp = d["score"], d["exp"]
    return {**{k: d[k] for k in ATTENTION_TYPES},
            "proj_acc": sum_type(d["in"], d["weight"], n_in, d["bias"]),
            "score_acc": sum_type(d["qkv"], d["qkv"], n_head),
            "ctx_acc": sum_type(d["attn"], d["qkv"], n_items),
            "out_acc": sum_type(d["ctx"], d["weight"], heads * n_head, union_type(d["in"], d["bias"])),
            "dist": Fx(score.width + 1, score.integer + 1, False),
            "sum": Fx(exp.width + log_n + 1, exp.integer + log_n + 1, False)}


def triplet_types(declared: Mapping[str, Fx], n_in: int, rank: int) -> dict[str, Fx]:
    """The declared types plus the C++'s exact accumulators of the projections and of the scores; with a
    mass prior (declared `prior`, the type of the third input) the score accumulator also holds it."""
    d = declared
    prior = {"prior": d["prior"]} if "prior" in d else {}
    return {**{k: d[k] for k in TRIPLET_TYPES}, **prior,
            "proj_acc": sum_type(d["in"], d["weight"], n_in, d["bias"]),
            "score_acc": sum_type(d["factor"], d["pair"], rank, d.get("prior"))}


def _widened(t: Fx, bits: int) -> Fx:
    return Fx(t.width + bits, t.integer + bits, True)


def mass_prior_types(declared: Mapping[str, Fx]) -> dict[str, Fx]:
    """The declared types (input, table entries) plus the C++'s exact ones: the Minkowski products of two
    jets (four products), a pair's mass squared (three of them, one doubled: 4 x the bound), a triplet's excess
    over its pair's (two pairs' less three jets' own: 11 x, within 16 x) and the sum of the two table entries,
    the op's output."""
    d = declared
    gram = sum_type(d["in"], d["in"], 4)
    return {**{k: d[k] for k in MASS_PRIOR_TYPES}, "gram": gram, "pair_m2": _widened(gram, 2),
            "excess_m2": _widened(gram, 4),
            "out": Fx.declared([d["prior"].width + 1, d["prior"].integer + 1])}  # exact, declared for the head


def softmax_tables(exp_frac: int, exp_range: int, inv_frac: int, n_keys: int, *, exp_t: Fx,
                   inv_t: Fx) -> tuple[np.ndarray, np.ndarray]:
    """The exp and reciprocal tables of the fixed-point softmax, on their types.

    exp: entry i is exp(-i / 2^exp_frac) for the distance of a score below its row maximum, so the maximum
    maps to exactly 1 and the row sum is >= 1 whenever a key is valid. inv: entry k is 1 / (1 + (k + 1/2) /
    2^inv_frac) for row sums in [1, n_keys]. They are computed once, here, and written into the project.
    """
    exp_table = quantize(np.exp(-np.arange(exp_range * 2 ** exp_frac) / 2.0 ** exp_frac), exp_t)
    inv_size = (n_keys - 1) * 2 ** inv_frac + 1
    inv_table = quantize(1.0 / (1.0 + (np.arange(inv_size) + 0.5) / 2.0 ** inv_frac), inv_t)
    return exp_table, inv_table


def table_index(value: np.ndarray, frac: int, size: int) -> np.ndarray:
    """The address of a mass table: floor(value 2^frac) clamped to [0, size - 1], as the C++ computes it
    (a negative mass squared, from the input grid's rounding, reads entry 0)."""
    return np.clip(np.floor(value * 2.0 ** frac), 0, size - 1).astype(np.int64)


# -------------------------------------------------------------------------------------------------- ops


def _weights(weights: WeightSpec) -> tuple[dict[str, np.ndarray], dict[str, Fx]]:
    """Exact weights on their types (as the C++ casts the written literals), and the types."""
    values = {k: quantize(np.asarray(v, dtype=np.float64), t) for k, (v, t) in weights.items()}
    return values, {k: t for k, (_, t) in weights.items()}


def dense_op(name: str, inputs: list[str], output: Tensor, declared: Mapping[str, Fx], weights: WeightSpec, *,
             relu: bool, reuse: int = 1, source: str = "") -> Op:
    """A dense layer shared over items: (n_items, n_in) -> (n_items, n_out) = out(relu?(x W + b))."""
    values, types = _weights(weights)
    n_in, n_out = values["kernel"].shape
    return Op("fx_dense", name, list(inputs), output, types=dense_types(declared, n_in), weights=values,
              weight_types=types, attrs={"n_items": output.shape[0], "n_in": n_in, "n_out": n_out,
                                         "relu": bool(relu), "reuse_factor": reuse_factor(reuse, source or name)},
              source=source)


def attention_op(name: str, inputs: list[str], output: Tensor, declared: Mapping[str, Fx], weights: WeightSpec,
                 *, exp_frac: int, inv_frac: int, heads: int = 1, reuse: int = 1, source: str = "") -> Op:
    """Masked multi-head self-attention with a table softmax and a residual: [(n, d), (n,)] -> (n, d).
    `weights` holds the projections (q, k, v: `heads` blocks of columns, head h's are columns h*n_head to
    (h+1)*n_head; Wo: the same rows) and the two softmax tables. `n_head` is the width of one head."""
    values, types = _weights(weights)
    n_items, n_in = output.shape
    where = source or name
    heads = _count(heads, where, "heads")
    columns = values["kernel_q"].shape[1]
    if columns % heads or values["kernel_o"].shape[0] != columns:
        raise InputError(f"{where}: {columns} projection columns and {values['kernel_o'].shape[0]} output-"
                         f"projection rows do not split into {heads} heads")
    n_head = columns // heads
    return Op("fx_attention", name, list(inputs), output,
              types=attention_types(declared, n_items, n_in, n_head, heads), weights=values, weight_types=types,
              attrs={"n_items": n_items, "n_in": n_in, "n_head": n_head, "heads": heads,
                     "exp_frac": int(exp_frac), "exp_size": len(values["exp_table"]), "inv_frac": int(inv_frac),
                     "inv_size": len(values["inv_table"]), "reuse_factor": reuse_factor(reuse, where)},
              source=source)


def mass_prior_op(name: str, inputs: list[str], output: Tensor, declared: Mapping[str, Fx], weights: WeightSpec,
                  *, n_items: int, column: int, pair_frac: int, triplet_frac: int, reuse: int = 1,
                  source: str = "") -> Op:
    """The learned mass prior of every triplet of `scan_order`: (n, F) -> (M,) = pair_table[m^2(q, q')] +
    triplet_table[m^2(b, q, q') - m^2(q, q')], the masses squared formed exactly from the input's (E, px, py,
    pz) columns `column` to `column + 3`; `weights` holds the two tables."""
    where = source or name
    if n_items < 3:
        raise InputError(f"{where}: a triplet needs 3 items, the op has {n_items}")
    values, types = _weights(weights)
    return Op("fx_mass_prior", name, list(inputs), output, types=mass_prior_types(declared), weights=values,
              weight_types=types,
              attrs={"n_items": int(n_items), "column": _count(column, where, "column", 0),
                     "pair_frac": int(pair_frac), "pair_size": len(values["pair_table"]),
                     "triplet_frac": int(triplet_frac), "triplet_size": len(values["triplet_table"]),
                     "reuse_factor": reuse_factor(reuse, where)}, source=source)


def triplet_op(name: str, inputs: list[str], output: Tensor, declared: Mapping[str, Fx], weights: WeightSpec,
               *, n_items: int, candidates: int = 0, reuse: int = 1, source: str = "") -> Op:
    """Symmetric triplet scores of two tops and their decoded argmax: [(n, d), (n,)(, (M,) prior)] -> (8,); a
    third input (a mass prior in `scan_order`, of the declared type `prior`) is added to both tops' scores.
    `candidates` 0 decodes greedily, k >= 1 searches k candidates per top (`decode_positions`). The weights'
    leading axis is the number of score heads: 2 (one per top) or 1 (both tops scored by one head)."""
    where = source or name
    if n_items < 3:
        raise InputError(f"{where}: a triplet needs 3 items, the op has {n_items}")
    values, types = _weights(weights)
    heads, n_in, rank = values["kernel_b"].shape
    if heads not in (1, 2) or any(values[k].shape[0] != heads for k in TRIPLET_WEIGHTS):
        raise InputError(f"{where}: the triplet weights need one leading row per score head (1 or 2), got "
                         + ", ".join(f"{k} {values[k].shape}" for k in TRIPLET_WEIGHTS))
    return Op("fx_triplet_argmax", name, list(inputs), output, types=triplet_types(declared, n_in, rank),
              weights=values, weight_types=types,
              attrs={"n_items": int(n_items), "n_in": n_in, "rank": rank,
                     "candidates": _count(candidates, where, "candidates", 0),
                     "reuse_factor": reuse_factor(reuse, where)}, source=source)


# ---------------------------------------------------------------------------------------------- kernels


def _require_exact_sum(op: Op, acc: str, bound: float, frac: int, *, signed: bool = True) -> None:
    """Refuse sums up to `bound` in magnitude (non-negative ones unless `signed`) that float64 or the
    accumulator `acc` could not hold exactly: the kernels sum exactly, as the C++ does in the accumulators
    derived above; a narrower one (a hand-edited design) is not approximated."""
    require_exact(op, bound, frac)
    t = op.types[acc]
    if not t.holds(-bound if signed else 0.0, bound, frac):
        raise InputError(f"{op.source or op.name}: accumulator {acc} {t.cpp()} cannot hold its sums exactly")


def _project(op: Op, x: np.ndarray, kernel_: str, bias: str, result: str, *, top: int | None = None) -> np.ndarray:
    """`fx_project` of the C++: result(b + sum_i x_i w_i) over the last axis, in the projection accumulator."""
    w, b = op.weights[kernel_], op.weights[bias]
    if top is not None:
        w, b = w[top], b[top]
    acc = dot_accumulate(x, w, b, x_t=op.types["in"], w_t=op.weight_types[kernel_], acc_t=op.types["proj_acc"],
                         what=op.name)
    return quantize(acc, op.types[result])


@kernel("fx_dense")
def fx_dense(op: Op, args: list[np.ndarray], arg_types: list[Fx]) -> np.ndarray:
    """(B, n, d_in) -> (B, n, d_out): out(relu?(b + sum in(x) w)), the accumulator as the C++'s."""
    t = op.types
    x = quantize(args[0], t["in"])
    acc = dot_accumulate(x, op.weights["kernel"], op.weights["bias"], x_t=t["in"], w_t=op.weight_types["kernel"],
                         acc_t=t["acc"], what=op.name)
    if op.attrs["relu"]:
        acc = np.maximum(acc, 0.0)
    return quantize(quantize(acc, t["out"]), op.output.type)


@kernel("fx_attention")
def fx_attention(op: Op, args: list[np.ndarray], arg_types: list[Fx]) -> np.ndarray:
    """(B, n, d) x (B, n) -> (B, n, d): x + Wo . concat_h(softmax_masked(q_h k_h^T) v_h) + bo, every step on
    its type; each head h has its own q, k, v columns and its own table softmax.

    No 1/sqrt(h) scale (training learns it into kernel_q). A query row without a valid key has the row
    maximum 0 and attends to nothing.
    """
    t, w, a = op.types, op.weights, op.attrs
    qkv, score_t, attn_t, ctx_t = t["qkv"], t["score"], t["attn"], t["ctx"]
    exp_t, inv_t = op.weight_types["exp_table"], op.weight_types["inv_table"]
    wo_t, bo_t = op.weight_types["kernel_o"], op.weight_types["bias_o"]
    n, h, heads = a["n_items"], a["n_head"], attention_heads(a, op.source or op.name)
    _require_exact_sum(op, "score_acc", h * magnitude(qkv) ** 2, 2 * qkv.frac)
    require_exact(op, 2 * magnitude(score_t), score_t.frac)  # distances below the row maximum
    _require_exact_sum(op, "sum", n * magnitude(exp_t), exp_t.frac, signed=False)
    require_exact(op, magnitude(exp_t) * magnitude(inv_t), exp_t.frac + inv_t.frac)
    _require_exact_sum(op, "ctx_acc", n * magnitude(attn_t) * magnitude(qkv), attn_t.frac + qkv.frac)
    _require_exact_sum(op, "out_acc", heads * h * magnitude(ctx_t) * magnitude(wo_t) + magnitude(t["in"])
                       + magnitude(bo_t), max(ctx_t.frac + wo_t.frac, t["in"].frac, bo_t.frac))
    x = quantize(args[0], t["in"])
    key_ok = (args[1] > 0)[:, None, None, :]  # (B, head, query, key)
    q, k, v = (split_heads(_project(op, x, f"kernel_{c}", f"bias_{c}", "qkv"), heads) for c in "qkv")
    scores = quantize(q @ np.swapaxes(k, -1, -2), score_t)  # (B, head, query, key)
    row_max = np.where(key_ok, scores, -np.inf).max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    dist = quantize(row_max - scores, t["dist"])  # wraps for invalid keys, whose weight is 0 anyway
    index = np.minimum(quantize(dist * 2.0 ** a["exp_frac"], C_INT), a["exp_size"] - 1)
    e = np.where(key_ok, w["exp_table"][index.astype(np.int64)], 0.0)
    total = e.sum(axis=-1, keepdims=True)
    inv_index = np.where(total >= 1.0, np.minimum(quantize((total - 1.0) * 2.0 ** a["inv_frac"], C_INT),
                                                  a["inv_size"] - 1), 0.0)
    attn = quantize(e * w["inv_table"][inv_index.astype(np.int64)], attn_t)
    ctx = merge_heads(quantize(attn @ v, ctx_t))
    out = quantize(w["bias_o"] + x + ctx @ w["kernel_o"], t["out"])
    return quantize(out, op.output.type)


def scan_order(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b, q, q') of the triplets the C++ scores and scans, in its order (b, then q, then q'): b distinct from
    both quarks and q < q', since a score is symmetric in q <-> q'."""
    q, q2 = np.triu_indices(n, 1)
    b = np.repeat(np.arange(n), len(q))
    q, q2 = np.tile(q, n), np.tile(q2, n)
    keep = (b != q) & (b != q2)
    return b[keep], q[keep], q2[keep]


def scan_flat(n: int) -> np.ndarray:
    """The flat index b n^2 + q n + q' (a trained model's logits, the training targets) of each `scan_order`
    triplet."""
    b, q, q2 = scan_order(n)
    return b * n * n + q * n + q2


def scan_jets(n: int) -> np.ndarray:
    """Each `scan_order` triplet's jets as a bit set: two triplets share no jet when their sets' AND is 0."""
    b, q, q2 = scan_order(n)
    return (1 << b) | (1 << q) | (1 << q2)


@kernel("fx_mass_prior")
def fx_mass_prior(op: Op, args: list[np.ndarray], arg_types: list[Fx]) -> np.ndarray:
    """(B, n, F) -> (B, M): each `scan_order` triplet's pair_table[m^2(q, q')] + triplet_table[m^2(b, q, q') -
    m^2(q, q')].

    The triplet table reads the top candidate's mass squared in excess of its W candidate's, m_b^2 + 2 p_b.(p_q +
    p_q'), not m^2(b, q, q') itself: a common mismeasurement of the two light jets moves it less, as m_bqq' - m_qq'
    is the sharper top-mass variable of the analyses (1.8 points at 6 jets in the float twin, docs/spanet.md).
    With G the Minkowski products of the jets' four-momenta, m^2(i, j) = G_ii + G_jj + 2 G_ij and the excess
    = m^2(b, q) + m^2(b, q') - G_bb - G_qq - G_q'q', all exact (sums of products of input codes).
    """
    t, a = op.types, op.attrs
    in_t = t["in"]
    for name, products in (("gram", 4), ("pair_m2", 16), ("excess_m2", 44)):  # bounds of the C++ sums
        _require_exact_sum(op, name, products * magnitude(in_t) ** 2, 2 * in_t.frac)
    x = quantize(args[0], in_t)
    p = x[..., a["column"]:a["column"] + 4]
    gram = np.einsum("bic,bjc->bij", p * MINKOWSKI, p)
    own = np.diagonal(gram, axis1=1, axis2=2)
    pair_m2 = own[:, :, None] + own[:, None, :] + 2.0 * gram
    b, q, q2 = scan_order(a["n_items"])
    excess_m2 = pair_m2[:, b, q] + pair_m2[:, b, q2] - own[:, b] - own[:, q] - own[:, q2]
    w = op.weights
    prior = (w["pair_table"][table_index(pair_m2[:, q, q2], a["pair_frac"], a["pair_size"])]
             + w["triplet_table"][table_index(excess_m2, a["triplet_frac"], a["triplet_size"])])
    return quantize(quantize(prior, t["out"]), op.output.type)


def triplet_scores(op: Op, x: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """(B, n, d) -> (B, H, M): per score head (H 2, one per top, or 1 shared by both), the score of each triplet
    of `scan_order`, S[t, (b, q, q')] = score(prior[(b, q, q')] + sum_r u[t,b,r] * pair(v[t,q,r] * v[t,q',r])),
    the prior (B, M) zero without one.

    The same partner factors v score q and q', so S is symmetric under q <-> q' by construction.
    """
    t = op.types
    factor, pair_t = t["factor"], t["pair"]
    require_exact(op, magnitude(factor) ** 2, 2 * factor.frac)
    prior_bound = magnitude(t["prior"]) if prior is not None else 0.0
    _require_exact_sum(op, "score_acc", op.attrs["rank"] * magnitude(factor) * magnitude(pair_t) + prior_bound,
                       max(factor.frac + pair_t.frac, t["prior"].frac if prior is not None else 0))
    xq = quantize(x, t["in"])
    heads = range(len(op.weights["kernel_b"]))
    u = np.stack([_project(op, xq, "kernel_b", "bias_b", "factor", top=top) for top in heads], axis=1)
    v = np.stack([_project(op, xq, "kernel_p", "bias_p", "factor", top=top) for top in heads], axis=1)
    events, _, n, _ = u.shape
    q, q2 = np.triu_indices(n, 1)
    pair = quantize(v[:, :, q, :] * v[:, :, q2, :], pair_t)  # (B, H, pairs, r)
    scores = u @ np.swapaxes(pair, -1, -2)  # (B, H, n, pairs): every b with every pair, in scan order
    keep = ((np.arange(n)[:, None] != q) & (np.arange(n)[:, None] != q2)).ravel()
    scores = scores.reshape(events, len(heads), -1)[:, :, keep]
    if prior is not None:
        scores = scores + quantize(prior, t["prior"])[:, None, :]
    return quantize(scores, t["score"])


def first_argmax(scores: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, M) scores, (B, M) allowed -> position of the first maximum among allowed entries (-1 if none)
    and its score; "first" as a strict `>` scan in the C++."""
    masked = np.where(ok, scores, -np.inf)
    best = masked.argmax(axis=-1)
    found = ok.any(axis=-1)
    return np.where(found, best, -1), np.take_along_axis(masked, best[:, None], axis=-1)[:, 0]


def _top_scores(scores: np.ndarray) -> np.ndarray:
    """(B, H, M) scores of H = 2 heads (one per top) or of one head shared by both -> (B, 2, M), per top."""
    if scores.shape[1] not in (1, 2):
        raise ValueError(f"scores of 1 or 2 heads, got {scores.shape[1]}")
    return scores if scores.shape[1] == 2 else np.repeat(scores, 2, axis=1)


def greedy_positions(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B, H, M) scores of the `scan_order` triplets (`_top_scores`) -> (B, 2) position of each top's triplet
    (-1 if none), the two tops sharing no jet when possible.

    Only triplets of real jets compete. Each top takes its best; the top with the higher score (top 1 on a
    tie) keeps it and the other takes its best triplet among those disjoint from it, or keeps its own when
    there is none (fewer than six jets). This is SPA-Net's greedy decoding of the two tops, with raw scores
    as the ranking.
    """
    scores = _top_scores(scores)
    b, q, q2 = scan_order(np.shape(mask)[-1])
    valid = np.asarray(mask) > 0
    ok = valid[:, b] & valid[:, q] & valid[:, q2]  # (B, M)
    (best0, score0), (best1, score1) = (first_argmax(scores[:, top], ok) for top in range(2))
    winner = np.where((best1 >= 0) & ((best0 < 0) | (score1 > score0)), 1, 0)
    won = np.where(winner == 1, best1, best0)
    jets = scan_jets(np.shape(mask)[-1])
    disjoint = (jets[None, :] & jets[np.maximum(won, 0)][:, None]) == 0
    loser_scores = np.where(winner[:, None] == 1, scores[:, 0], scores[:, 1])
    second, _ = first_argmax(loser_scores, ok & disjoint)
    lost = np.where(second >= 0, second, np.where(winner == 1, best0, best1))
    return np.where(winner[:, None] == 1, np.stack([lost, won], 1), np.stack([won, lost], 1))


def joint_positions(scores: np.ndarray, mask: np.ndarray, candidates: int) -> np.ndarray:
    """(B, H, M) scores of the `scan_order` triplets (`_top_scores`) -> (B, 2) position of each top's triplet
    (-1 if none): the disjoint pair of triplets with the highest summed score among `candidates` per top.

    For each top h (0, then 1) in turn, its `candidates` best valid triplets are taken in order (repeated first
    maxima); each is paired with the other top's best triplet sharing no jet with it; the pair with the strictly
    highest sum wins (the first in that order on a tie). With no such pair (fewer than six jets) each top keeps its
    own best. Greedy decoding (`greedy_positions`) misses the best pair whenever the better top's first choice
    steals a jet of the other; with 4 candidates the search matches the full search over all disjoint pairs on
    the chi-square's 6-jet events (docs/spanet.md). With one head shared by both tops (H = 1) the pass of top 1
    is skipped: it would pair the same candidates with the same partners, and a tie never wins.
    """
    heads = scores.shape[1]
    scores = _top_scores(scores)
    b, q, q2 = scan_order(np.shape(mask)[-1])
    valid = np.asarray(mask) > 0
    ok = valid[:, b] & valid[:, q] & valid[:, q2]
    jets = scan_jets(np.shape(mask)[-1])
    rows = np.arange(len(ok))
    own = np.stack([first_argmax(scores[:, top], ok)[0] for top in range(2)], axis=1)
    chosen, best, have = own.copy(), np.zeros(len(ok)), np.zeros(len(ok), dtype=bool)
    for top in range(heads):
        left = ok.copy()
        for _ in range(candidates):
            pos, score = first_argmax(scores[:, top], left)
            exists = pos >= 0
            safe = np.maximum(pos, 0)
            left[rows[exists], pos[exists]] = False
            disjoint = (jets[None, :] & jets[safe][:, None]) == 0
            partner, partner_score = first_argmax(scores[:, 1 - top], ok & disjoint)
            total = score + partner_score
            better = exists & (partner >= 0) & (~have | (total > best))
            best, have = np.where(better, total, best), have | better
            chosen[better, top], chosen[better, 1 - top] = pos[better], partner[better]
    return chosen


def decode_positions(scores: np.ndarray, mask: np.ndarray, candidates: int) -> np.ndarray:
    """The on-chip decoding of the two tops: greedy with `candidates` 0, else the joint search."""
    return joint_positions(scores, mask, candidates) if candidates else greedy_positions(scores, mask)


def assign_from_scores(scores: np.ndarray, mask: np.ndarray, candidates: int = 0) -> np.ndarray:
    """(B, H, n, n, n) scores (a trained model's logits, H 2 or 1 for a shared head) -> (B, 2) flat triplet
    b n^2 + q n + q' per top (-1 if none), decoded as on chip (`decode_positions`)."""
    events, heads, n = scores.shape[:3]
    flat = scan_flat(n)
    chosen = decode_positions(scores.reshape(events, heads, n ** 3)[:, :, flat], mask, candidates)
    return np.where(chosen >= 0, flat[np.maximum(chosen, 0)], -1)


def _triplet_block(op: Op, x: np.ndarray, mask: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    scores = triplet_scores(op, x, prior)
    events = len(scores)
    chosen = decode_positions(scores, mask, _count(op.attrs.get("candidates", 0), op.source or op.name,
                                                   "candidates", 0))
    found = chosen >= 0
    safe = np.maximum(chosen, 0)
    best = np.take_along_axis(scores, safe[..., None], axis=-1)[..., 0]
    jets = [np.where(found, part[safe], -1) for part in scan_order(op.attrs["n_items"])]
    out_t = op.output.type
    out = quantize(np.stack([*jets, best], axis=-1).astype(np.float64), out_t)  # ints and scores to res_T
    lowest = (out_t.min_code if out_t.signed else 2 ** (out_t.width - 1)) * out_t.lsb  # only the top bit set
    out[..., 3] = np.where(found, out[..., 3], lowest)
    return out.reshape(events, 8)


@kernel("fx_triplet_argmax")
def fx_triplet_argmax(op: Op, args: list[np.ndarray], arg_types: list[Fx]) -> np.ndarray:
    """(B, n, d) x (B, n) (x (B, M) prior) -> (B, 8) = (b, q, q', score) per top, decoded by
    `decode_positions`, in blocks of events to bound the memory of the scores. An event without a valid
    triplet gives indices -1 and the output type's lowest value (only its top bit set)."""
    x, mask, *rest = args
    prior = rest[0] if rest else None
    blocks = [slice(s, s + TRIPLET_BLOCK) for s in range(0, max(len(x), 1), TRIPLET_BLOCK)]
    return np.concatenate([_triplet_block(op, x[s], mask[s], None if prior is None else prior[s])
                           for s in blocks])


# -------------------------------------------------------------------------------------------- lowerings


def _declared(layer: Any) -> dict[str, Fx]:
    return {k: Fx.declared(v) for k, v in layer.get_attr("types").items()}


def _source(layer: Any) -> str:
    return f"{layer.class_name} {layer.name!r}"


def _reuse(layer: Any) -> int:
    """The layer's reuse factor as hls4ml set it (`LayerName.<name>.ReuseFactor`, else the model's)."""
    return reuse_factor(layer.get_attr("reuse_factor"), _source(layer))


@lowering("FxDenseHLS")
def _lower_dense(layer: Any, ctx: Context) -> Op:
    return dense_op(layer.name, ctx.inputs(layer), ctx.output(layer), _declared(layer),
                    {k: ctx.weight(layer, k) for k in DENSE_WEIGHTS}, relu=bool(layer.get_attr("relu")),
                    reuse=_reuse(layer), source=_source(layer))


@lowering("FxSelfAttentionHLS")
def _lower_attention(layer: Any, ctx: Context) -> Op:
    return attention_op(layer.name, ctx.inputs(layer), ctx.output(layer), _declared(layer),
                        {k: ctx.weight(layer, k) for k in (*ATTENTION_WEIGHTS, *TABLES)},
                        exp_frac=int(layer.get_attr("exp_frac")), inv_frac=int(layer.get_attr("inv_frac")),
                        heads=layer.get_attr("heads"), reuse=_reuse(layer), source=_source(layer))


@lowering("FxMassPriorHLS")
def _lower_mass_prior(layer: Any, ctx: Context) -> Op:
    return mass_prior_op(layer.name, ctx.inputs(layer), ctx.output(layer), _declared(layer),
                         {k: ctx.weight(layer, k) for k in MASS_PRIOR_TABLES}, n_items=int(layer.get_attr("n_items")),
                         column=int(layer.get_attr("column")), pair_frac=int(layer.get_attr("pair_frac")),
                         triplet_frac=int(layer.get_attr("triplet_frac")), reuse=_reuse(layer),
                         source=_source(layer))


@lowering("FxTripletArgmaxHLS")
def _lower_triplets(layer: Any, ctx: Context) -> Op:
    return triplet_op(layer.name, ctx.inputs(layer), ctx.output(layer), _declared(layer),
                      {k: ctx.weight(layer, k) for k in TRIPLET_WEIGHTS}, n_items=int(layer.get_attr("n_items")),
                      candidates=int(layer.get_attr("candidates", 0)), reuse=_reuse(layer), source=_source(layer))
