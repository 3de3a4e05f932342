"""Latency/resource estimators of the SPA-Net ops of a design for `trigger.estimate` (io_parallel).

Each layer is described as the chain of operations on its critical path (constant multiplications by the
weights, variable x variable products, balanced adder and comparator trees, registered table reads) and
the count of every operator, costed with the estimator's own parameters (`trigger/estimate/params.yaml`)
so the extension layers are estimated on the same basis as hls4ml's built-in ones. Every width and size is
read from the design op (`trigger.design.spanet`). HLS schedules against the clock period minus the clock
uncertainty, which is read from the design's meta as hls4ml stores it.

The op's `reuse_factor` R shares the multipliers of every multiplying stage of `nnet_spanet.h` (and the
adder tree that sums their products) over R cycles, as for hls4ml's Dense (`trigger.estimate.model`): those
DSPs and LUTs are divided by R, each such stage adds R - 1 cycles, and the layer's interval is R. Tables,
comparisons and the softmax's sums stay parallel. An attention op's heads (`heads`, of width `n_head`) work
side by side: its per-head stages count the products and tables of all heads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trigger.design.spanet import ATTENTION_WEIGHTS, TRIPLET_WEIGHTS, attention_heads, reuse_factor
from trigger.errors import InputError
from trigger.vivado_scripts import CLOCK_UNCERTAINTY

try:
    from trigger.estimate import LayerEstimate, Op, register_layer_estimator
    from trigger.estimate.model import (
        adder_ns,
        attr_of,
        constant_mults,
        dsp_count,
        mantissas,
        reuse_steps,
        shared_operators,
        type_of,
        weight_of,
    )
except ImportError:  # the estimator is optional: without it the layers simply carry no estimate
    register_layer_estimator = None


def clock_uncertainty_ns(design: Any, period_ns: float) -> float:
    """The design's clock uncertainty in ns (`meta["clock_uncertainty"]`, else its backend's default): hls4ml
    keeps it as a percentage of the period (`'27%'`) or in ns (a number), and writes it into the HLS script
    as `set_clock_uncertainty`."""
    value = design.meta.get("clock_uncertainty")
    if value is None:
        value = CLOCK_UNCERTAINTY[design.meta["backend"]]  # hls4ml's default for the backend, as the scripts use
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        number = float(text[:-1] if percent else text)
    except ValueError:
        raise InputError(f"ClockUncertainty {value!r}: neither a percentage nor a number of ns") from None
    ns = period_ns * number / 100.0 if percent else number
    if not 0.0 <= ns < period_ns:
        raise InputError(f"ClockUncertainty {value!r}: must be >= 0 and below the clock period ({period_ns:g} ns)")
    return ns


class _Cost:
    """Critical path (as estimator `Op`s) plus operator counts of one layer whose multiplying stages share
    their operators over `op.attrs["reuse_factor"]` cycles."""

    def __init__(self, p: Any, op: Any) -> None:
        self.p = p
        self.reuse = reuse_factor(attr_of(op, "reuse_factor"), op.source or op.name)
        self.ops: list[Op] = []
        self.dsp = 0
        self.lut = 0.0
        self.bram = 0
        self.notes: list[str] = []

    def _stage(self, dsp: float, lut: float, step: Op, product_bits: int) -> None:
        """One multiplying stage (`step`, `product_bits` of products): its multipliers shared over the
        reuse factor, and the further cycles that takes."""
        self.dsp += shared_operators(dsp, self.reuse)
        self.lut += shared_operators(lut, self.reuse)
        self.ops += [step, *reuse_steps(product_bits, self.reuse)]

    def const_mults(self, weights: list[tuple[Any, Any]], in_bits: int, copies: int) -> None:
        """Every input of `copies` items times its column of constant weights, given as (values, type)
        (zeros are free): one stage."""
        delay, dsp, lut, product_bits = 0.0, 0, 0, 0
        for values, t in weights:
            m = mantissas(values, t).ravel()
            cost = constant_mults(m, in_bits, t.width, self.p, shared=False)
            dsp += cost.dsp * copies
            lut += cost.lut * copies
            product_bits += int(np.count_nonzero(m)) * copies * (in_bits + t.width)
            delay = max(delay, cost.delay_ns)
        self._stage(dsp, lut, Op(delay, 0), product_bits)

    def var_mults(self, count: int, a_bits: int, b_bits: int) -> None:
        """`count` products of two variables: one stage."""
        p = self.p
        if min(a_bits, b_bits) >= p("multiplier", "dsp_min_bits"):
            dsp = count * dsp_count(a_bits, b_bits, p)
            lut = count * p("multiplier", "lut_per_dsp_mult")
            delay = p("timing", "dsp_mult_ns")
        else:
            dsp, lut = 0, count * a_bits * b_bits * p("multiplier", "lut_per_csd_adder_bit") / 2
            delay = min(a_bits, b_bits) * p("timing", "lut_mult_ns_per_adder")
        bits = count * (a_bits + b_bits)
        self._stage(dsp, lut, Op(delay, bits), bits)

    def tree(self, outputs: int, terms: int, bits: int, *, compare: bool = False, products: bool = False) -> None:
        """`outputs` balanced reductions of `terms` operands each (adders, or compare-and-select); the adders
        that sum a stage's `products` are shared with its multipliers."""
        p = self.p
        if terms <= 1:
            return
        delay = p("timing", "compare_ns") if compare else adder_ns(bits, p)
        per_bit = p("pooling", "lut_per_bit_compare") if compare else p("adder", "lut_per_bit")
        self.lut += outputs * (terms - 1) * bits * per_bit / (self.reuse if products else 1)
        self.ops += [Op(delay, outputs * bits)] * math.ceil(math.log2(terms))

    def add(self, count: int, bits: int) -> None:
        self.lut += count * bits * self.p("adder", "lut_per_bit")
        self.ops.append(Op(adder_ns(bits, self.p), count * bits))

    def table(self, lookups: int, size: int, bits: int) -> None:
        """`lookups` parallel reads of one ROM: LUTRAM copies when small, else BRAM18 with two ports each."""
        p = self.p
        total = size * bits
        if total <= p("activation", "lutram_max_bits"):
            self.lut += math.ceil(lookups * total / p("activation", "lut_per_lutram_bits"))
        else:
            self.bram += math.ceil(lookups / 2) * math.ceil(total / p("activation", "bram18_bits"))
        self.lut += lookups * p("activation", "lut_table_index_per_elem")
        self.ops += [Op(p("timing", "table_index_ns"), lookups * max(1, int(math.log2(size)))),
                     Op(p("timing", "table_out_ns"), lookups * bits, cycles=p("timing", "table_read_cycles"))]

    def estimate(self, layer: Any, design: Any, period_ns: float) -> LayerEstimate:
        """Chain the ops into clock cycles as an HLS pipeline does (a register when the next op overflows);
        `layer` is the design op."""
        p = self.p
        usable = period_ns - clock_uncertainty_ns(design, period_ns)
        cycles, t, ff = 0, 0.0, 0.0
        for op in self.ops:
            if op.cycles:
                cycles += op.cycles
                ff += op.live_bits * p("registers", "ff_per_bit")
                t = op.delay_ns
            elif t > 0 and t + op.delay_ns > usable:
                cycles += 1
                ff += op.live_bits * p("registers", "ff_per_bit")
                t = op.delay_ns
            else:
                t += op.delay_ns
        cycles += 1 if t > 0 else 0
        if self.reuse > 1:
            self.notes.append(f"multipliers of each stage shared over {self.reuse} cycles")
        return LayerEstimate(name=layer.name, class_name=layer.kind, latency_cycles=cycles, ii=self.reuse,
                             dsp=int(self.dsp), lut=round(self.lut), ff=round(ff),
                             bram=self.bram, notes=self.notes)


def _bits(op: Any, name: str) -> int:
    return type_of(op, name).width


def estimate_dense(op: Any, design: Any, p: Any, period_ns: float) -> LayerEstimate:
    n, d_in, d_out = (int(attr_of(op, k)) for k in ("n_items", "n_in", "n_out"))
    c = _Cost(p, op)
    in_bits, acc_bits = _bits(op, "in"), _bits(op, "in") + _bits(op, "weight") + 4
    c.const_mults([weight_of(op, "kernel")], in_bits, n)
    c.tree(n * d_out, d_in + 1, acc_bits, products=True)
    c.add(n * d_out, _bits(op, "out"))  # ReLU select and rounding
    return c.estimate(op, design, period_ns)


def estimate_attention(op: Any, design: Any, p: Any, period_ns: float) -> LayerEstimate:
    """The `heads` heads side by side: q, k, v of all heads in one projection each, every per-head stage
    (scores, softmax, context) `heads` times wider, one output projection of the concatenated contexts."""
    n, d, h = (int(attr_of(op, k)) for k in ("n_items", "n_in", "n_head"))
    g = attention_heads(op.attrs, op.source or op.name)
    b = {k: _bits(op, k) for k in ("in", "qkv", "score", "exp", "inv", "attn", "ctx", "out", "weight")}
    c = _Cost(p, op)
    c.const_mults([weight_of(op, k) for k in ATTENTION_WEIGHTS[:6:2]], b["in"], n)  # q, k, v in parallel
    c.tree(3 * n * g * h, d + 1, b["in"] + b["weight"] + 4, products=True)
    c.var_mults(g * n * n * h, b["qkv"], b["qkv"])  # q . k
    c.tree(g * n * n, h, 2 * b["qkv"], products=True)
    c.tree(g * n, n, b["score"], compare=True)  # row maximum
    c.add(g * n * n, b["score"] + 1)  # distance below the maximum
    c.table(g * n * n, int(attr_of(op, "exp_size")), b["exp"])
    c.tree(g * n, n, b["exp"] + 4)  # row sum
    c.table(g * n, int(attr_of(op, "inv_size")), b["inv"])
    c.var_mults(g * n * n, b["exp"], b["inv"])
    c.var_mults(g * n * n * h, b["attn"], b["qkv"])  # attention-weighted values
    c.tree(g * n * h, n, b["attn"] + b["qkv"] + 4, products=True)
    c.const_mults([weight_of(op, "kernel_o")], b["ctx"], n)
    c.tree(n * d, g * h + 2, b["ctx"] + b["weight"] + 4, products=True)  # + bias + residual
    if g > 1:
        c.notes.append(f"{g} heads of width {h}")
    return c.estimate(op, design, period_ns)


def estimate_mass_prior(op: Any, design: Any, p: Any, period_ns: float) -> LayerEstimate:
    """Minkowski products of every jet pair (4 variable products each), the pairs' masses squared and the
    triplets' excesses over them (adders), one table read per pair and per triplet and the sum of the two reads."""
    n = int(attr_of(op, "n_items"))
    b = {k: _bits(op, k) for k in ("in", "gram", "pair_m2", "excess_m2", "prior", "out")}
    pairs, triplets = n * (n - 1) // 2, n * (n - 1) * (n - 2) // 2
    c = _Cost(p, op)
    c.var_mults(4 * (pairs + n), b["in"], b["in"])
    c.tree(pairs + n, 4, b["gram"], products=True)
    c.tree(pairs, 3, b["pair_m2"])
    c.tree(triplets, 5, b["excess_m2"])
    c.table(pairs, int(attr_of(op, "pair_size")), b["prior"])
    c.table(triplets, int(attr_of(op, "triplet_size")), b["prior"])
    c.add(triplets, b["out"])
    c.notes.append(f"{pairs} pair masses and {triplets} triplet excesses, one table read each")
    return c.estimate(op, design, period_ns)


def estimate_triplets(op: Any, design: Any, p: Any, period_ns: float) -> LayerEstimate:
    """Per score head (2, one per top, or 1 shared by both): its factors, pair and triplet products, score sums
    and own argmax; then the decoding (nnet_spanet.h), greedy or the joint search's candidate and partner scans."""
    n, d, r = (int(attr_of(op, k)) for k in ("n_items", "n_in", "rank"))
    h = len(weight_of(op, "kernel_b")[0])
    b = {k: _bits(op, k) for k in ("in", "factor", "pair", "score", "weight")}
    pairs = n * (n - 1) // 2
    triplets = n * (n - 1) * (n - 2) // 2
    c = _Cost(p, op)
    c.const_mults([weight_of(op, k) for k in TRIPLET_WEIGHTS[::2]], b["in"], n)  # u and v of every head
    c.tree(2 * h * n * r, d + 1, b["in"] + b["weight"] + 4, products=True)
    c.var_mults(h * pairs * r, b["factor"], b["factor"])  # v_q v_q'
    c.var_mults(h * triplets * r, b["factor"], b["pair"])  # u_b (v_q v_q')
    c.tree(h * triplets, r + (1 if "prior" in op.types else 0), b["factor"] + b["pair"] + 4, products=True)
    c.tree(h, triplets, b["score"] + 12, compare=True)  # each head's argmax, carrying the three indices
    k = int(op.attrs.get("candidates", 0))
    for _ in range(k):  # joint decoding, per pass (one per head): each candidate excludes the ones before it
        c.tree(h, triplets, b["score"] + 12, compare=True)
    if k:
        c.tree(h * k, triplets, b["score"] + 12, compare=True)  # the candidates' disjoint partners
        c.tree(1, h * k, b["score"] + 13, compare=True)  # the best summed pair
    else:
        c.tree(1, triplets, b["score"] + 12, compare=True)  # greedy: the other top's disjoint re-choice
    c.notes.append(f"{h * triplets} triplets scored (rank {r}, {h} score head{'s' if h > 1 else ''}); "
                   + (f"joint decoding over {k} candidates per pass" if k else "greedy decoding"))
    return c.estimate(op, design, period_ns)


def register() -> bool:
    """Register the estimators of the design's SPA-Net op kinds with `trigger.estimate` when it is installed;
    True when registered."""
    if register_layer_estimator is None:
        return False
    for kind, fn in (("fx_dense", estimate_dense), ("fx_attention", estimate_attention),
                     ("fx_mass_prior", estimate_mass_prior), ("fx_triplet_argmax", estimate_triplets)):
        register_layer_estimator(kind, fn)
    return True

