"""Latency and resource estimate of a design (`trigger.design`), without vendor tools.

The model follows how Vivado/Vitis HLS schedules hls4ml's templates (docs/estimator.md):

* every op becomes a list of operations, each with a combinational delay in ns, a number of registered
  cycles (table reads, reuse) and the number of bits alive after it;
* io_parallel: the top function is one pipeline, so operations are chained across ops until a clock
  period (minus the uncertainty) is used up, then a register is inserted; the bits alive at that point
  become flip-flops;
* io_stream: every op is a dataflow process, scheduled alone and joined by FIFOs;
* a multiplication by a constant weight is removed when the weight is 0 (pruning), a wire when it is a
  power of two, shift-and-add in LUTs when it has few canonical-signed-digit digits, otherwise a DSP48.

Every width, weight and table size is read from the design, which holds exactly the firmware's types and
weights: an op that lacks a type, weight or size its cost model needs is a bug in the design, and the
estimate raises (naming the op) instead of guessing. Op kinds without a built-in model can register one
(`register_layer_estimator`), as the SPA-Net ops do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trigger.errors import InputError
from trigger.estimate.params import Params, load_params

if TYPE_CHECKING:
    from trigger.design import Design, Fx, Tensor
    from trigger.design import Op as DesignOp

IO_TYPES = ("io_parallel", "io_stream")
STRATEGIES = ("latency", "resource")


@dataclass
class LayerEstimate:
    """Estimated cost of one op (or input port); cycles are the latency it adds to the design.
    `class_name` is the op kind (`dense`, `fx_attention`, ...), `input` for an input port."""

    name: str
    class_name: str
    latency_cycles: int
    ii: int
    dsp: int
    lut: int
    ff: int
    bram: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Estimate:
    """Per-op and total estimate of one design; `as_dict` is what report.json stores."""

    model_name: str
    clock_period_ns: float
    part: str
    io_type: str
    layers: list[LayerEstimate]
    totals: dict[str, Any]
    version: str
    unsupported: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "estimate",
            "model": self.version,
            "design": self.model_name,
            "clock_period_ns": self.clock_period_ns,
            "part": self.part,
            "io_type": self.io_type,
            "totals": dict(self.totals),
            "layers": [layer.as_dict() for layer in self.layers],
            "unsupported_layers": list(self.unsupported),
        }


@dataclass
class Op:
    """One scheduled step: `delay_ns` of logic, or `cycles` > 0 for a registered step (ROM read, reuse)."""

    delay_ns: float
    live_bits: int
    cycles: int = 0


@dataclass
class LayerCost:
    """A built-in op model's output before scheduling."""

    ops: list[Op]
    ii: int = 1
    dsp: int = 0
    lut: int = 0
    ff: int = 0
    bram: int = 0
    # io_stream windowed ops (conv, pooling): cycles spent streaming pixels in, on top of the per-pixel pipeline.
    stream_cycles: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """What a cost model reads besides its op: the design (for its tensors) and the synthesis settings."""

    design: Design
    params: Params
    io_type: str
    strategy: str  # lower case: latency or resource
    reuse_factor: int


LayerEstimator = Callable[["DesignOp", "Design", Params, float], LayerEstimate]
_EXTENSIONS: dict[str, LayerEstimator] = {}


def register_layer_estimator(kind: str, fn: LayerEstimator) -> None:
    """Let an op kind (e.g. `fx_attention`) provide its own estimate, `fn(op, design, params,
    clock_period_ns) -> LayerEstimate`; it overrides any built-in model of that kind."""
    _EXTENSIONS[kind] = fn


# ------------------------------------------------------------------------- what the design must give


def _missing(op: DesignOp, what: str) -> InputError:
    return InputError(f"{op.source or op.name}: the design gives no {what}, which the estimate needs "
                      f"(it reads every width and size from the design and guesses none)")


def type_of(op: DesignOp, key: str) -> Fx:
    """The internal type `key` of `op` (an accumulator, a table...)."""
    if key not in op.types:
        raise _missing(op, f"type {key!r} for op kind {op.kind!r}")
    return op.types[key]


def attr_of(op: DesignOp, key: str) -> Any:
    if key not in op.attrs:
        raise _missing(op, f"attribute {key!r} for op kind {op.kind!r}")
    return op.attrs[key]


def weight_of(op: DesignOp, key: str) -> tuple[np.ndarray, Fx]:
    """The exact values of the weight `key` of `op` and their type."""
    if key not in op.weights or key not in op.weight_types:
        raise _missing(op, f"weight {key!r} (values and type) for op kind {op.kind!r}")
    return op.weights[key], op.weight_types[key]


def input_of(op: DesignOp, design: Design, index: int = 0) -> Tensor:
    """The `index`-th input tensor of `op`, with its type."""
    if index >= len(op.inputs):
        raise _missing(op, f"input {index}")
    try:
        return design.tensor(op.inputs[index])
    except KeyError:
        raise _missing(op, f"tensor {op.inputs[index]!r} (input {index})") from None


def mantissas(values: np.ndarray, t: Fx) -> np.ndarray:
    """Weights as integers on their fixed-point grid (the constants the HLS compiler sees). Design weights
    are exact values of their type, so this is exact; a value off the grid is a corrupt design."""
    scaled = np.asarray(values, dtype=np.float64) * 2.0 ** t.frac
    codes = np.rint(scaled)
    if not np.array_equal(codes, scaled):
        raise InputError(f"weights off the grid of their type {t.cpp()}: the design is corrupt")
    return codes.astype(np.int64)


# --------------------------------------------------------------------------------------------- helpers


def csd_digits(m: np.ndarray) -> np.ndarray:
    """Non-zero digits of each integer in canonical signed-digit (non-adjacent) form."""
    a = np.abs(m).astype(np.int64)
    x = (a ^ (3 * a)) >> 1
    count = np.zeros_like(a)
    while np.any(x):
        count += x & 1
        x >>= 1
    return count


def significant_bits(m: np.ndarray) -> np.ndarray:
    """Bits of |m| between its lowest and highest set bit, plus a sign bit."""
    a = np.abs(m).astype(np.int64)
    out = np.zeros_like(a)
    for i, value in enumerate(a.flat):
        v = int(value)
        if v:
            v >>= (v & -v).bit_length() - 1
            out.flat[i] = v.bit_length() + 1
    return out


def dsp_count(a_bits: int, b_bits: int, p: Params) -> int:
    """DSP48 slices for one a x b multiplication (operands split over 27 x 18 ports)."""
    pa, pb = p("multiplier", "dsp_port_a"), p("multiplier", "dsp_port_b")
    return min(
        math.ceil(a_bits / pa) * math.ceil(b_bits / pb), math.ceil(b_bits / pa) * math.ceil(a_bits / pb)
    )


def adder_ns(bits: int, p: Params) -> float:
    return p("timing", "add_ns") + p("timing", "add_ns_per_bit") * bits


def shared_operators(count: float, reuse: int) -> int:
    """Operators (DSPs, LUTs) left of `count` when they are shared over `reuse` cycles: HLS pipelines the
    op at an interval of `reuse` and issues each shared operator once a cycle."""
    return math.ceil(count / reuse)


def reuse_steps(live_bits: int, reuse: int) -> list[Op]:
    """The `reuse - 1` cycles that operations shared over `reuse` cycles take after the first issue, with a
    `reuse`-th of their `live_bits` of results registered each cycle; none at reuse 1."""
    return [Op(0.0, live_bits // reuse, cycles=reuse - 1)] if reuse > 1 else []


def tree_ops(terms: np.ndarray, bits: int, p: Params, op_ns: float | None = None) -> tuple[list[Op], int]:
    """A balanced reduction over `terms[j]` operands per output: one op per tree level, and the number of
    two-input operators. Vivado/Vitis HLS balance unrolled accumulations (expression balancing)."""
    terms = np.maximum(np.asarray(terms, dtype=np.int64), 1)
    delay = adder_ns(bits, p) if op_ns is None else op_ns
    ops = []
    remaining = terms.copy()
    while remaining.max() > 1:
        remaining = (remaining + 1) // 2
        ops.append(Op(delay, int(remaining.sum()) * bits))
    return ops, int((terms - 1).sum())


@dataclass
class MultCost:
    dsp: int = 0
    lut: int = 0
    n_dsp_mults: int = 0
    n_lut_mults: int = 0
    n_zero: int = 0
    delay_ns: float = 0.0


def constant_mults(m: np.ndarray, in_bits: int, w_bits: int, p: Params, shared: bool) -> MultCost:
    """Cost of multiplying one input by each weight mantissa in `m`.

    `shared` means the weights are not per-multiplier constants (Resource strategy with reuse > 1), so
    every non-zero weight needs a full multiplier."""
    cost = MultCost()
    nz = m != 0
    cost.n_zero = int((~nz).sum())
    if not nz.any():
        return cost
    digits = csd_digits(m[nz])
    widths = significant_bits(m[nz])
    negative = m[nz] < 0
    lut_max = p("multiplier", "lut_max_csd_digits")
    dsp_min = p("multiplier", "dsp_min_bits")
    if shared:
        lut_mult = (
            np.zeros(digits.shape, dtype=bool)
            if min(in_bits, w_bits) >= dsp_min
            else np.ones(digits.shape, dtype=bool)
        )
        widths = np.full(digits.shape, w_bits)
    else:
        lut_mult = (digits <= lut_max) | (widths < dsp_min) | (in_bits < dsp_min)
    n_dsp = int((~lut_mult).sum())
    cost.n_dsp_mults = n_dsp
    cost.n_lut_mults = int(lut_mult.sum())
    if n_dsp:
        cost.dsp = sum(dsp_count(in_bits, int(w), p) for w in widths[~lut_mult])
        cost.lut += round(n_dsp * p("multiplier", "lut_per_dsp_mult"))
        cost.delay_ns = p("timing", "dsp_mult_ns")
    if cost.n_lut_mults:
        adders = np.maximum(digits[lut_mult] - 1, 0)
        out_bits = in_bits + widths[lut_mult]
        cost.lut += round(float((adders * out_bits).sum()) * p("multiplier", "lut_per_csd_adder_bit"))
        cost.lut += round(
            float((negative[lut_mult] & (adders == 0)).sum())
            * in_bits
            * p("multiplier", "lut_per_negation_bit")
        )
        cost.delay_ns = max(cost.delay_ns, float(adders.max()) * p("timing", "lut_mult_ns_per_adder"))
    return cost


def _in_bits(op: DesignOp, t: Target, index: int = 0) -> int:
    return input_of(op, t.design, index).type.width


def _beat_bits(op: DesignOp) -> int:
    """Bits of one io_stream word: hls4ml streams one pixel (all channels) or one whole flat vector."""
    return int(op.output.shape[-1]) * op.output.type.width


def _pixels(op: DesignOp, t: Target) -> tuple[int, int]:
    """(input pixels, output pixels) of a channels-last 1D/2D windowed op."""
    return int(np.prod(input_of(op, t.design).shape[:-1])), int(np.prod(op.output.shape[:-1]))


# ------------------------------------------------------------------------------------ built-in models


def _matmul(op: DesignOp, t: Target, weights: np.ndarray, w_bits: int) -> LayerCost:
    """The multiply-accumulate core shared by dense and the convolutions (per output pixel).

    `weights` is (fan_in, n_out) of mantissas; outputs sum their column's non-zero products plus the
    bias. The Resource strategy (or reuse > 1) shares multipliers over `reuse` cycles."""
    p = t.params
    n_out = weights.shape[1]
    reuse = t.reuse_factor
    in_bits = _in_bits(op, t)
    accum = type_of(op, "accum").width
    shared = t.strategy == "resource" and reuse > 1
    mult = constant_mults(weights, in_bits, w_bits, p, shared)
    mult.dsp, mult.lut = shared_operators(mult.dsp, reuse), shared_operators(mult.lut, reuse)
    has_bias = np.zeros(n_out, dtype=np.int64)
    if "bias" in op.weights:
        bias = mantissas(*weight_of(op, "bias")).reshape(-1)[:n_out]
        has_bias = (bias != 0).astype(np.int64)
    terms = (weights != 0).sum(axis=0) + has_bias
    n_products = int((weights != 0).sum())
    ops = [Op(mult.delay_ns, n_products * accum), *reuse_steps(n_products * accum, reuse)]
    levels, n_adders = tree_ops(terms, accum, p)
    ops += levels
    lut = mult.lut + round(n_adders * accum * p("adder", "lut_per_bit") / reuse)
    bram = _weight_rom_bram(weights.size, w_bits, reuse, p) if shared else 0
    cost = LayerCost(ops=ops, ii=reuse, dsp=mult.dsp, lut=lut, bram=bram)
    if mult.n_zero:
        cost.notes.append(f"{mult.n_zero}/{weights.size} zero weights removed")
    cost.notes.append(f"{mult.n_dsp_mults} DSP / {mult.n_lut_mults} LUT multiplications")
    return cost


def _weight_rom_bram(n_weights: int, w_bits: int, reuse: int, p: Params) -> int:
    """Resource strategy stores the weights reshaped to `reuse` words; deep ROMs go to BRAM."""
    block = math.ceil(n_weights / reuse)
    total_bits = n_weights * w_bits
    if total_bits <= p("activation", "lutram_max_bits") or reuse < 64:
        return 0
    return math.ceil(block * w_bits / 36) * math.ceil(reuse / 512)


def dense_cost(op: DesignOp, t: Target) -> LayerCost:
    """Dense: kernel (n_in, n_out)."""
    kernel, kernel_t = weight_of(op, "kernel")
    return _matmul(op, t, mantissas(kernel, kernel_t), kernel_t.width)


def _windowed(op: DesignOp, t: Target, kernel: LayerCost) -> LayerCost:
    """Wrap the cost of one output pixel into a whole convolution/pooling op.

    io_parallel: hls4ml loops over output pixels (im2col), pipelined at II = reuse, so the interval is
    pixels x reuse. io_stream: a line buffer takes one input pixel per cycle."""
    p = t.params
    in_px, out_px = _pixels(op, t)
    reuse = max(kernel.ii, 1)
    if t.io_type == "io_stream":
        cycles = in_px * p("timing", "stream_cycles_per_pixel") * reuse
        kernel.stream_cycles = cycles + p("timing", "stream_fill_cycles")
        kernel.ii = cycles + p("timing", "stream_fill_cycles") + 1
    elif out_px > 1:
        kernel.ops.insert(0, Op(0.0, 0, cycles=out_px * reuse + p("timing", "parallel_conv_overhead_cycles") - 1))
        kernel.ii = out_px * reuse
    return kernel


def conv_cost(op: DesignOp, t: Target) -> LayerCost:
    """Conv1D/2D: the kernel (*filter, channels, filters) is a dense evaluated once per output pixel."""
    kernel, kernel_t = weight_of(op, "kernel")
    cost = _matmul(op, t, mantissas(kernel, kernel_t).reshape(-1, kernel.shape[-1]), kernel_t.width)
    cost.notes = [f"per output pixel: {note}" for note in cost.notes]
    return _windowed(op, t, cost)


def depthwise_cost(op: DesignOp, t: Target) -> LayerCost:
    """Depthwise conv, kernel (*filter, channels, multiplier): each channel has its own taps, so a pixel
    is (taps -> channels x multiplier)."""
    kernel, kernel_t = weight_of(op, "kernel")
    per_pixel = mantissas(kernel, kernel_t).reshape(-1, kernel.shape[-2] * kernel.shape[-1])
    cost = _matmul(op, t, per_pixel, kernel_t.width)
    cost.notes = [f"per output pixel: {note}" for note in cost.notes]
    return _windowed(op, t, cost)


def pooling_cost(op: DesignOp, t: Target) -> LayerCost:
    """Max or average pooling over `attrs["pool"]` windows, channels last."""
    p = t.params
    pool = int(np.prod(attr_of(op, "pool")))
    n_chan = int(op.output.shape[-1])
    bits = _in_bits(op, t)
    if attr_of(op, "op") == "max":
        ops, n = tree_ops(np.full(n_chan, pool), bits, p, op_ns=p("timing", "compare_ns"))
        lut = n * bits * p("pooling", "lut_per_bit_compare")
    else:
        ops, n = tree_ops(np.full(n_chan, pool), bits, p)
        lut = n * bits * p("pooling", "lut_per_bit_add")
    cost = LayerCost(ops=ops, lut=round(lut))
    if t.io_type == "io_parallel":
        # hls4ml's parallel pooling unrolls every output pixel in one pipeline stage.
        out_px = _pixels(op, t)[1]
        cost.lut *= out_px
        for step in cost.ops:
            step.live_bits *= out_px
        return cost
    return _windowed(op, t, cost)


def activation_cost(op: DesignOp, t: Target) -> LayerCost:
    """Element-wise activations: a select (ReLU-like) costed per bit, or a table lookup. `cast` (a linear
    activation or quantizer) is the `linear` activation: wires."""
    p = t.params
    function = "linear" if op.kind == "cast" else op.kind
    if function in p("activation", "table_activations"):
        return _table_cost(op, t, function)
    n, bits = op.output.size, op.output.type.width
    per_bit = p("activation", "lut_per_bit")[function]
    delay = p("timing", "select_ns") if per_bit else 0.0
    return LayerCost(ops=[Op(delay, n * bits)], lut=round(n * bits * per_bit))


def _table_bram(n_lookups: int, table_size: int, table_bits: int, p: Params) -> tuple[int, int]:
    """(BRAM18, LUT) of `n_lookups` parallel reads of one table: BRAM ports serve two reads each."""
    bits = table_size * table_bits
    if bits <= p("activation", "lutram_max_bits"):
        return 0, math.ceil(n_lookups * bits / p("activation", "lut_per_lutram_bits"))
    per_copy = math.ceil(bits / p("activation", "bram18_bits"))
    return math.ceil(n_lookups / 2) * per_copy, 0


def _table_cost(op: DesignOp, t: Target, function: str) -> LayerCost:
    """A table activation: `types["table"]` and `attrs["table_size"]` give the ROM."""
    p = t.params
    n, bits = op.output.size, op.output.type.width
    table_size = int(attr_of(op, "table_size"))
    table_bits = type_of(op, "table").width
    reuse = t.reuse_factor
    lookups = math.ceil(n / reuse) if t.io_type == "io_parallel" else n
    bram, lut_ram = _table_bram(lookups, table_size, table_bits, p)
    extra = p("activation", "lut_table_extra_per_elem").get(function, 0)
    lut = lut_ram + int(n * (p("activation", "lut_table_index_per_elem") + extra))
    index_bits = max(int(math.log2(table_size)), 1)
    ops = [
        Op(p("timing", "table_index_ns"), n * index_bits),
        Op(p("timing", "table_out_ns"), n * bits, cycles=p("timing", "table_read_cycles")),
    ]
    return LayerCost(ops=ops, lut=lut, bram=bram, ii=reuse)


def softmax_cost(op: DesignOp, t: Target) -> LayerCost:
    """hls4ml's table softmax: (`stable` only) max tree and subtraction, exp table, sum tree, inverse
    table, one multiplication per element. The tables are weights of the op, typed `exp_table`/`inv_table`."""
    p = t.params
    n = op.output.size
    bits = _in_bits(op, t)
    exp_bits = type_of(op, "exp_table").width
    inv_bits = type_of(op, "inv_table").width
    exp_size = weight_of(op, "exp_table")[0].size
    inv_size = weight_of(op, "inv_table")[0].size
    ops: list[Op] = []
    if attr_of(op, "implementation") == "stable":
        max_ops, _ = tree_ops(np.array([n]), bits, p, op_ns=p("timing", "compare_ns"))
        ops += [*max_ops, Op(adder_ns(bits, p), n * bits)]
    exp_index, inv_index = max(int(math.log2(exp_size)), 1), max(int(math.log2(inv_size)), 1)
    ops += [
        Op(p("timing", "table_index_ns"), n * exp_index),
        Op(p("timing", "table_out_ns"), n * exp_bits, cycles=p("timing", "table_read_cycles")),
    ]
    sum_ops, _ = tree_ops(np.array([n]), exp_bits, p)
    ops += sum_ops
    ops += [
        Op(p("timing", "table_index_ns"), inv_index + n * exp_bits),
        Op(p("timing", "table_out_ns"), inv_bits + n * exp_bits, cycles=p("timing", "table_read_cycles")),
        Op(p("timing", "dsp_mult_ns"), n * bits),
    ]
    bram_exp, lut_exp = _table_bram(n, exp_size, exp_bits, p)
    bram_inv, lut_inv = _table_bram(1, inv_size, inv_bits, p)
    return LayerCost(
        ops=ops,
        dsp=n * dsp_count(exp_bits, inv_bits, p),
        bram=bram_exp + bram_inv,
        lut=lut_exp + lut_inv + int(n * p("softmax", "lut_per_elem")),
    )


def batchnorm_cost(op: DesignOp, t: Target) -> LayerCost:
    """x * scale + bias per channel: constant multiplications, then one adder per element."""
    p = t.params
    n, bits = op.output.size, op.output.type.width
    scale, scale_t = weight_of(op, "scale")
    m = np.resize(mantissas(scale, scale_t).reshape(-1), n)
    mult = constant_mults(m, _in_bits(op, t), scale_t.width, p, shared=False)
    add_lut = int(n * bits * p("adder", "lut_per_bit"))
    return LayerCost(
        ops=[Op(mult.delay_ns, n * bits), Op(adder_ns(bits, p), n * bits)],
        dsp=mult.dsp,
        lut=mult.lut + add_lut,
    )


def merge_cost(op: DesignOp, t: Target) -> LayerCost:
    """Two tensors combined element-wise: one operator per element (a multiplier for `multiply`)."""
    p = t.params
    kind = attr_of(op, "op")
    n, bits = op.output.size, op.output.type.width
    if kind == "multiply":
        return LayerCost(
            ops=[Op(p("timing", "dsp_mult_ns"), n * bits)],
            dsp=n * dsp_count(_in_bits(op, t, 0), _in_bits(op, t, 1), p),
            lut=int(n * p("multiplier", "lut_per_dsp_mult")),
        )
    if kind in ("maximum", "minimum"):
        return LayerCost(
            ops=[Op(p("timing", "compare_ns"), n * bits)],
            lut=int(n * bits * p("pooling", "lut_per_bit_compare")),
        )
    return LayerCost(ops=[Op(adder_ns(bits, p), n * bits)], lut=int(n * bits * p("adder", "lut_per_bit")))


def dot_cost(op: DesignOp, t: Target) -> LayerCost:
    """Dot product of two variable vectors (e.g. a squared norm): n products, then an adder tree."""
    p = t.params
    n = input_of(op, t.design).size
    a_bits, b_bits = _in_bits(op, t, 0), _in_bits(op, t, 1)
    bits = type_of(op, "accum").width
    if min(a_bits, b_bits) >= p("multiplier", "dsp_min_bits"):
        dsp, lut = n * dsp_count(a_bits, b_bits, p), n * p("multiplier", "lut_per_dsp_mult")
        mult_ns = p("timing", "dsp_mult_ns")
    else:  # a narrow array multiplier: about one LUT per partial-product bit, log-depth reduction
        dsp, lut = 0, n * a_bits * b_bits * p("multiplier", "lut_per_csd_adder_bit")
        mult_ns = math.ceil(math.log2(max(min(a_bits, b_bits), 2))) * p("timing", "lut_mult_ns_per_adder")
    levels, n_adders = tree_ops(np.array([n]), bits, p)
    lut += n_adders * bits * p("adder", "lut_per_bit")
    return LayerCost(ops=[Op(mult_ns, n * bits), *levels], dsp=dsp, lut=round(lut))


def free_cost(op: DesignOp, t: Target) -> LayerCost:
    """Ops that only rename or re-index wires (reshape, concatenate)."""
    return LayerCost(ops=[])


def input_cost(tensor: Tensor, t: Target) -> LayerCost:
    """io_parallel registers the top function's input bus (one FF per input bit)."""
    p = t.params
    registered = t.io_type == "io_parallel" and p("registers", "register_inputs_parallel")
    bits = tensor.size * tensor.type.width if registered else 0
    return LayerCost(ops=[], ff=int(bits * p("registers", "ff_per_bit")))


# `depthwise_conv` and `pooling` (and the activations other than relu) are op kinds of the calibration
# designs only (bench/calibrate_estimator.py): trigger compiles no such layer, but hls4ml's synthesis
# baselines measure them, and the parameters they set are shared with the kinds trigger compiles.
BUILTIN: dict[str, Callable[[DesignOp, Target], LayerCost]] = {
    "dense": dense_cost,
    "conv": conv_cost,
    "depthwise_conv": depthwise_cost,
    "pooling": pooling_cost,
    "relu": activation_cost,
    "cast": activation_cost,
    "softmax": softmax_cost,
    "batchnorm": batchnorm_cost,
    "merge": merge_cost,
    "dot": dot_cost,
    "reshape": free_cost,
    "concatenate": free_cost,
}


def _cost_model(kind: str, p: Params) -> Callable[[DesignOp, Target], LayerCost] | None:
    """The built-in model of an op kind: the table above, or an activation that params.yaml prices."""
    if kind in BUILTIN:
        return BUILTIN[kind]
    if kind in p("activation", "lut_per_bit") or kind in p("activation", "table_activations"):
        return activation_cost
    return None


# ------------------------------------------------------------------------------------------ scheduler


class _Schedule:
    """Chains operations into clock cycles the way an HLS pipeline does, counting pipeline registers."""

    def __init__(self, usable_ns: float, ff_per_bit: float) -> None:
        self.usable = usable_ns
        self.ff_per_bit = ff_per_bit
        self.cycles = 0
        self.t = 0.0
        self.live_bits = 0
        self.ff = 0.0

    def register(self) -> None:
        self.cycles += 1
        self.ff += self.live_bits * self.ff_per_bit
        self.t = 0.0

    def run(self, op: Op) -> None:
        if op.cycles:
            if self.t > 0 or self.live_bits:
                self.ff += self.live_bits * self.ff_per_bit
            self.cycles += op.cycles
            self.ff += op.live_bits * self.ff_per_bit * max(op.cycles - 1, 0)
            self.t = op.delay_ns
        else:
            if self.t > 0 and self.t + op.delay_ns > self.usable:
                self.register()
            self.t += op.delay_ns
            while self.t > self.usable:
                self.cycles += 1
                self.ff += op.live_bits * self.ff_per_bit
                self.t -= self.usable
        self.live_bits = op.live_bits

    def layer(self, name: str, kind: str, cost: LayerCost, t: Target, beat_bits: int | None) -> LayerEstimate:
        """Schedule one op's cost; `beat_bits` (io_stream) makes it a dataflow process behind a FIFO."""
        p = t.params
        start_cycles, start_ff = self.cycles, self.ff
        if beat_bits is not None:  # a dataflow process starts from registered FIFO data
            self.t, self.live_bits = 0.0, 0
        for step in cost.ops:
            self.run(step)
        if beat_bits is not None:  # ... and ends in a FIFO write
            self.cycles += int(p("timing", "stream_hop_cycles")) + cost.stream_cycles
            self.ff += p("registers", "ff_per_stream_layer")
            self.t = 0.0
            cost.lut += beat_bits * p("registers", "lut_per_stream_bit")
        return LayerEstimate(name=name, class_name=kind, latency_cycles=self.cycles - start_cycles,
                             ii=max(int(cost.ii), 1), dsp=int(cost.dsp), lut=round(cost.lut),
                             ff=round(self.ff - start_ff + cost.ff), bram=int(cost.bram), notes=cost.notes)


def _uncertainty(value: float | str | None, p: Params) -> float:
    """The clock uncertainty as a fraction of the period: a fraction, a percentage as hls4ml and the
    vendor scripts spell it (`"27%"`), or params.yaml's default when not given."""
    if value is None:
        return float(p("timing", "clock_uncertainty"))
    text = str(value).strip()
    try:
        fraction = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise InputError(f"clock_uncertainty: {value!r} is neither a fraction nor a percentage") from None
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"clock_uncertainty: must be a fraction of the period in [0, 1), got {value!r}")
    return fraction


def estimate_design(
    design: Design,
    *,
    clock_period_ns: float,
    io_type: str,
    strategy: str,
    reuse_factor: int,
    part: str,
    clock_uncertainty: float | str | None = None,
    params: Params | None = None,
) -> Estimate:
    """Estimate latency, interval and resources of `design` when synthesised with these settings.

    `clock_uncertainty` is a fraction of the period or a percentage (`"27%"`); HLS schedules against the
    period minus it. `params` defaults to params.yaml (the calibration passes its own)."""
    p = params if params is not None else load_params()
    period = float(clock_period_ns)
    if period <= 0:
        raise InputError(f"clock_period_ns: must be > 0, got {clock_period_ns}")
    if io_type not in IO_TYPES:
        raise InputError(f"io_type: {io_type!r} is not one of {', '.join(IO_TYPES)}")
    if str(strategy).lower() not in STRATEGIES:
        raise InputError(f"strategy: {strategy!r} is not one of Latency, Resource")
    if int(reuse_factor) < 1:
        raise InputError(f"reuse_factor: must be >= 1, got {reuse_factor}")
    target = Target(design, p, io_type, str(strategy).lower(), int(reuse_factor))
    sched = _Schedule(period * (1.0 - _uncertainty(clock_uncertainty, p)), float(p("registers", "ff_per_bit")))
    stream = io_type == "io_stream"
    layers = [sched.layer(tensor.name, "input", input_cost(tensor, target), target, None)
              for tensor in design.inputs]
    unsupported: list[str] = []
    for op in design.ops:
        if op.kind in _EXTENSIONS:
            est = _EXTENSIONS[op.kind](op, design, p, period)
            if stream or est.latency_cycles:
                sched.cycles += est.latency_cycles
                sched.t = 0.0
                sched.live_bits = 0
            est.notes = [*list(est.notes), "extension estimator"]
            layers.append(est)
            continue
        builder = _cost_model(op.kind, p)
        if builder is None:
            unsupported.append(op.name)
            layers.append(LayerEstimate(op.name, op.kind, 0, 1, 0, 0, 0, 0,
                                        [f"no estimator for op kind {op.kind!r}: counted as 0, register one"]))
            continue
        layers.append(sched.layer(op.name, op.kind, builder(op, target), target,
                                  _beat_bits(op) if stream else None))
    latency = sum(layer.latency_cycles for layer in layers)
    totals = {
        "latency_cycles": int(latency),
        "latency_ns": round(latency * period, 3),
        "ii": int(max([1, *(layer.ii for layer in layers)])),
        "dsp": int(sum(layer.dsp for layer in layers)),
        "lut": int(sum(layer.lut for layer in layers)),
        "ff": int(sum(layer.ff for layer in layers) + int(p("registers", "ff_control"))),
        "bram": int(sum(layer.bram for layer in layers)),
    }
    return Estimate(model_name=design.name, clock_period_ns=period, part=part, io_type=io_type, layers=layers,
                    totals=totals, version=str(p("model_version")), unsupported=unsupported)
