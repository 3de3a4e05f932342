"""Tracers of the SPA-Net extension ops (`trigger.design.spanet`): FxDense, FxSelfAttention, FxTripletArgmax.

Each replays its interpreter kernel step by step. The attention's softmax tables become da4ml lookup tables
addressed by the clamped table index, its masks select with sign-bit muxes, and its products of two
variables (q k^T, the softmax weights, attn v) are da4ml multipliers; each attention head is traced on its
own q, k, v columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from da4ml.trace import FixedVariable

from trigger.design.spanet import C_INT, attention_heads
from trigger.errors import InputError
from trigger.rtl.trace import Value, _array, accumulate, cast, cast1, lookup, maximum, rebased, select, tracer

if TYPE_CHECKING:
    from trigger.design.fixed import Fx
    from trigger.design.graph import Op


def _map(x: Value, fn: object) -> Value:
    return _array([fn(v) for v in x._vars.ravel()], x.shape)  # type: ignore[operator]


def _project(op: Op, x: Value, c: str, result: str) -> Value:
    """`fx_project`: result(b + sum_i x_i w_i) in the projection accumulator."""
    acc = accumulate(x, op.weights[f"kernel_{c}"], op.weights[f"bias_{c}"], x_t=op.types["in"],
                     w_t=op.weight_types[f"kernel_{c}"], acc_t=op.types["proj_acc"])
    return cast(acc, op.types[result])


@tracer("fx_dense")
def _fx_dense(op: Op, args: list[Value], types: list[Fx]) -> Value:
    t = op.types
    x = cast(args[0], t["in"])
    acc = accumulate(x, op.weights["kernel"], op.weights["bias"], x_t=t["in"], w_t=op.weight_types["kernel"],
                     acc_t=t["acc"])
    if op.attrs["relu"]:
        acc = acc.relu()
    return cast(cast(acc, t["out"]), op.output.type)


def _table_index(x: Value, scale: float, size: int) -> Value:
    """min(to_int(x * scale), size - 1), never below 0: the C++'s table address of an x >= 0 (and of an x
    in (-1/scale, 0), which the C++ never looks up)."""
    idx = cast(x * scale, C_INT)
    return _map(idx, lambda v: v.min_of(size - 1).max_of(0))


@tracer("fx_attention")
def _fx_attention(op: Op, args: list[Value], types: list[Fx]) -> Value:
    """Each head's scores, table softmax and context on its own q, k, v columns, the contexts concatenated
    (head 0 first) into the one output projection, as `spanet.fx_attention`."""
    t, w, a = op.types, op.weights, op.attrs
    n, h = a["n_items"], a["n_head"]
    x = cast(args[0], t["in"])
    mask = list(args[1]._vars)
    q, k, v = (_project(op, x, c, "qkv") for c in "qkv")
    floor = float(t["score"].min)  # below or at every valid score: an invalid key's stand-in in the row maximum
    any_valid = maximum(mask)
    contexts = []
    for g in range(attention_heads(a, op.source or op.name)):
        cols = slice(g * h, (g + 1) * h)
        scores = cast(rebased(q[:, cols]) @ rebased(k[:, cols]).T, t["score"])  # (query, key)
        row_max = [select(any_valid, maximum([select(mask[j], scores._vars[i, j], floor) for j in range(n)]), 0.0)
                   for i in range(n)]
        dist = cast(_array([row_max[i] - scores._vars[i, j] for i in range(n) for j in range(n)], (n, n)),
                    t["dist"])
        index = _table_index(dist, 2.0 ** a["exp_frac"], a["exp_size"])
        entries = lookup(index, lambda i: w["exp_table"][i.astype(np.int64)])
        e = [[select(mask[j], entries._vars[i, j], 0.0) for j in range(n)] for i in range(n)]
        total = _array([np.sum(_array(row, (n,))) for row in e], (n,))
        inv_index = _table_index(total - 1.0, 2.0 ** a["inv_frac"], a["inv_size"])
        inverse = lookup(inv_index, lambda i: w["inv_table"][i.astype(np.int64)])
        attn = cast(_array([e[i][j] * inverse._vars[i] for i in range(n) for j in range(n)], (n, n)), t["attn"])
        contexts.append(cast(rebased(attn) @ rebased(v[:, cols]), t["ctx"])._vars)
    ctx = _array(np.concatenate(contexts, axis=1).ravel(), (n, len(contexts) * h))
    out = accumulate(ctx, w["kernel_o"], None, x_t=t["ctx"], w_t=op.weight_types["kernel_o"], acc_t=t["out_acc"])
    return cast(cast(out + x + w["bias_o"], t["out"]), op.output.type)


def _tournament(scores: list[FixedVariable], indices: list[int], lsb: float) -> tuple[FixedVariable, FixedVariable]:
    """The first maximum and its index, as `spanet.first_argmax`: a tree in which the earlier candidate wins
    a tie (its left side always precedes its right side)."""
    if len(scores) == 1:
        return scores[0], FixedVariable.from_const(float(indices[0]), scores[0].hwconf)
    half = len(scores) // 2
    sl, il = _tournament(scores[:half], indices[:half], lsb)
    sr, ir = _tournament(scores[half:], indices[half:], lsb)
    right = sr - sl - lsb / 2  # > 0 exactly when the right side is larger (never zero: both on the lsb grid)
    return select(right, sr, sl), select(right, ir, il)


@tracer("fx_triplet_argmax")
def _fx_triplet_argmax(op: Op, args: list[Value], types: list[Fx]) -> Value:
    """Triplet scores of both tops, each's first argmax over valid triplets, SPA-Net's greedy decoding of the
    two and the (b, q, q', score) outputs, as `spanet.fx_triplet_argmax`. Only the n (n-1)(n-2)/2 triplets
    that can ever be valid are scored (b distinct from q < q'; the masks decide the rest at run time); an
    invalid triplet's score is replaced by one step below the score type, so it never wins against a valid one."""
    t, w = op.types, op.weights
    n = op.attrs["n_items"]
    if op.attrs.get("candidates", 0) or len(args) > 2:
        raise InputError(f"{op.source or op.name}: the RTL backend traces the greedy decoding without a mass "
                         "prior only (model.architecture.candidates 0, no mass_prior); use backends: [hls]")
    score_t, out_t = t["score"], op.output.type
    lsb, sentinel = score_t.lsb, score_t.min - score_t.lsb
    x = cast(args[0], t["in"])
    mask = list(args[1]._vars)

    def project(kernel: str, bias: str, top: int) -> Value:
        acc = accumulate(x, w[kernel][top], w[bias][top], x_t=t["in"], w_t=op.weight_types[kernel],
                         acc_t=t["proj_acc"])
        return cast(acc, t["factor"])

    triplets = [(i, j, k) for i in range(n) for j in range(n) for k in range(j + 1, n) if i not in (j, k)]
    flat = [i * n * n + j * n + k for i, j, k in triplets]
    valid = [mask[i].min_of(mask[j]).min_of(mask[k]) for i, j, k in triplets]
    scores = []
    for head in range(len(w["kernel_b"])):  # 2 score heads, or 1 shared by both tops
        u, v = rebased(project("kernel_b", "bias_b", head)), rebased(project("kernel_p", "bias_p", head))
        pair = {(j, k): rebased(cast(v[j] * v[k], t["pair"])) for j in range(n) for k in range(j + 1, n)}
        s = cast(_array([np.sum(u[i] * pair[j, k]) for i, j, k in triplets], (len(triplets),)), score_t)
        scores.append([select(ok, sc, sentinel) for ok, sc in zip(valid, s._vars, strict=True)])
    argmaxes = [_tournament(head, flat, lsb) for head in scores]
    if len(scores) == 1:  # a shared head: both tops read its scores and its argmax
        scores, argmaxes = scores * 2, argmaxes * 2
    (s0, i0), (s1, i1) = argmaxes
    found = s0 - (sentinel + lsb / 2)  # > 0: some triplet is valid (then for both tops)
    top1_wins = s1 - s0 - lsb / 2
    won = select(top1_wins, i1, i0)
    used = lookup(_array([won], (1,)), lambda f: sum(2.0 ** (f // n ** e % n) for e in (2, 1, 0))
                  * np.isin(f, flat))._vars[0]  # the won triplet's jets as a bit mask (0: no triplet)
    bits = [used.quantize(0, m + 1, -m) * 2.0 ** -m for m in range(n)]  # bit m: jet m is taken
    free = [select(bits[i] + bits[j] + bits[k], 0.0, ok) for (i, j, k), ok in zip(triplets, valid, strict=True)]
    loser = [select(top1_wins, a, b) for a, b in zip(scores[0], scores[1], strict=True)]
    s2, i2 = _tournament([select(ok, sc, sentinel) for ok, sc in zip(free, loser, strict=True)], flat, lsb)
    found2 = s2 - (sentinel + lsb / 2)
    lost = select(found2, i2, select(top1_wins, i0, i1))
    lost_score = [select(found2, s2, own) for own in (s0, s1)]
    chosen = [select(top1_wins, lost, won), select(top1_wins, won, lost)]
    best = [select(top1_wins, lost_score[0], s0), select(top1_wins, s1, lost_score[1])]
    lowest = (out_t.min_code if out_t.signed else 2 ** (out_t.width - 1)) * out_t.lsb
    out = []
    for top in (0, 1):
        key = _array([chosen[top]], (1,))
        for e in (2, 1, 0):
            jet = lookup(key, lambda f, e=e: f // n ** e % n)._vars[0]
            out.append(cast1(select(found, jet, -1.0), out_t))
        out.append(select(found, cast1(best[top], out_t), lowest))
    return _array(out, (8,))
