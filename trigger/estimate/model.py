"""Latency and resource estimate of an hls4ml model graph, without vendor tools.

The model follows how Vivado/Vitis HLS schedules hls4ml's templates (docs/estimator.md):

* every layer becomes a list of operations, each with a combinational delay in ns, a number of registered
  cycles (table reads, reuse) and the number of bits alive after it;
* io_parallel: the top function is one pipeline, so operations are chained across layers until a clock
  period (minus the uncertainty) is used up, then a register is inserted; the bits alive at that point
  become flip-flops;
* io_stream: every layer is a dataflow process, scheduled alone and joined by FIFOs;
* a multiplication by a constant weight is removed when the weight is 0 (pruning), a wire when it is a
  power of two, shift-and-add in LUTs when it has few canonical-signed-digit digits, otherwise a DSP48.

Layer types without a built-in model can register one (`register_layer_estimator`), e.g. the SPA-Net
attention layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trigger.errors import InputError
from trigger.estimate.params import Params, load_params


@dataclass
class LayerEstimate:
    """Estimated cost of one layer; cycles are the latency this layer adds to the design."""

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
    """Per-layer and total estimate of one model; `as_dict` is what report.json stores."""

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
    """A built-in layer model's output before scheduling."""

    ops: list[Op]
    ii: int = 1
    dsp: int = 0
    lut: int = 0
    ff: int = 0
    bram: int = 0
    # io_stream windowed layers: cycles spent streaming pixels in, on top of the per-pixel pipeline.
    stream_cycles: int = 0
    notes: list[str] = field(default_factory=list)


LayerEstimator = Callable[[Any, Params, float], LayerEstimate]
_EXTENSIONS: dict[str, LayerEstimator] = {}


def register_layer_estimator(class_name: str, fn: LayerEstimator) -> None:
    """Let an extension layer (hls4ml class_name) provide its own estimate; it overrides any built-in."""
    _EXTENSIONS[class_name] = fn


# --------------------------------------------------------------------------------------------- helpers


def bits_of(var_type: Any, default: int = 16) -> int:
    """Width in bits of an hls4ml NamedType/precision (binary/ternary types are 1-2 bits)."""
    precision = getattr(var_type, "precision", var_type)
    width = getattr(precision, "width", None)
    return int(width) if width is not None else default


def frac_bits(var_type: Any) -> int:
    precision = getattr(var_type, "precision", var_type)
    width = getattr(precision, "width", None)
    integer = getattr(precision, "integer", None)
    if width is None or integer is None:
        return 0
    return int(width) - int(integer)


def quantized_mantissas(weight: Any) -> np.ndarray:
    """Weights as integers on their fixed-point grid (what the HLS compiler sees as constants)."""
    data = np.asarray(weight.data, dtype=np.float64)
    scale = 2.0 ** frac_bits(weight.type)
    rounding = str(getattr(getattr(weight.type, "precision", None), "rounding_mode", "TRN")).upper()
    scaled = data * scale
    return (np.round(scaled) if "RND" in rounding else np.floor(scaled)).astype(np.int64)


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


def _attr(layer: Any, key: str, default: Any = None) -> Any:
    return layer.get_attr(key, default)


def _io_type(layer: Any) -> str:
    return str(layer.model.config.get_config_value("IOType") or "io_parallel")


def _out_size(layer: Any) -> int:
    return int(np.prod(layer.get_output_variable().shape))


def _beat_bits(layer: Any) -> int:
    """Bits of one io_stream word: hls4ml streams one pixel (all channels) or one whole flat vector."""
    return int(layer.get_output_variable().shape[-1]) * _result_bits(layer)


def _result_bits(layer: Any) -> int:
    return bits_of(layer.get_output_variable().type)


def _in_bits(layer: Any) -> int:
    return bits_of(layer.get_input_variable().type)


def _accum_bits(layer: Any) -> int:
    accum = _attr(layer, "accum_t")
    return bits_of(accum, _result_bits(layer)) if accum is not None else _result_bits(layer)


# ------------------------------------------------------------------------------------ built-in models


def _matmul(layer: Any, p: Params, weights: np.ndarray, w_bits: int) -> LayerCost:
    """The multiply-accumulate core shared by Dense and the convolutions (per output pixel).

    `weights` is (fan_in, n_out) of mantissas; outputs sum their column's non-zero products plus the
    bias. The Resource strategy (or reuse > 1) shares multipliers over `reuse` cycles."""
    n_out = weights.shape[1]
    reuse, strategy = _strategy(layer)
    in_bits = _in_bits(layer)
    accum = _accum_bits(layer)
    shared = strategy == "resource" and reuse > 1
    mult = constant_mults(weights, in_bits, w_bits, p, shared)
    if reuse > 1:
        mult.dsp = math.ceil(mult.dsp / reuse)
        mult.lut = math.ceil(mult.lut / reuse)
    bias = layer.weights.get("bias")
    has_bias = (
        np.zeros(n_out, dtype=np.int64)
        if bias is None
        else (quantized_mantissas(bias).reshape(-1)[:n_out] != 0).astype(np.int64)
    )
    terms = (weights != 0).sum(axis=0) + has_bias
    n_products = int((weights != 0).sum())
    ops = [Op(mult.delay_ns, n_products * accum)]
    if reuse > 1:
        ops.append(Op(0.0, n_products * accum // reuse, cycles=reuse - 1))
    levels, n_adders = tree_ops(terms, accum, p)
    ops += levels
    lut = mult.lut + round(n_adders * accum * p("adder", "lut_per_bit") / max(reuse, 1))
    bram = 0
    if shared:
        bram = _weight_rom_bram(weights.size, w_bits, reuse, p)
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


def _strategy(layer: Any) -> tuple[int, str]:
    reuse = int(_attr(layer, "reuse_factor", 1) or 1)
    strategy = str(_attr(layer, "strategy", "latency") or "latency").lower()
    return reuse, strategy


def dense_cost(layer: Any, p: Params) -> LayerCost:
    weight = layer.weights["weight"]
    return _matmul(
        layer, p, quantized_mantissas(weight).reshape(-1, int(_attr(layer, "n_out"))), bits_of(weight.type)
    )


def _pixels(layer: Any) -> tuple[int, int]:
    """(input pixels, output pixels) of a 1D/2D windowed layer."""
    in_px = int(_attr(layer, "in_width", _attr(layer, "n_in", 1))) * int(_attr(layer, "in_height", 1) or 1)
    out_px = int(_attr(layer, "out_width", _attr(layer, "n_out", 1))) * int(
        _attr(layer, "out_height", 1) or 1
    )
    return in_px, out_px


def _windowed(layer: Any, p: Params, kernel: LayerCost) -> LayerCost:
    """Wrap the cost of one output pixel into a whole convolution/pooling layer.

    io_parallel: hls4ml loops over output pixels (im2col), pipelined at II = reuse, so the interval is
    pixels x reuse / parallelization factor. io_stream: a line buffer takes one input pixel per cycle."""
    in_px, out_px = _pixels(layer)
    reuse = max(kernel.ii, 1)
    if _io_type(layer) == "io_stream":
        cycles = in_px * p("timing", "stream_cycles_per_pixel") * reuse
        kernel.stream_cycles = cycles + p("timing", "stream_fill_cycles")
        kernel.ii = cycles + p("timing", "stream_fill_cycles") + 1
    else:
        pf = int(_attr(layer, "parallelization_factor", 1) or 1)
        loops = math.ceil(out_px / pf)
        if loops > 1:
            kernel.dsp *= pf
            kernel.lut *= pf
            kernel.ops.insert(
                0, Op(0.0, 0, cycles=loops * reuse + p("timing", "parallel_conv_overhead_cycles") - 1)
            )
            kernel.ii = loops * reuse
        else:
            kernel.dsp *= out_px
            kernel.lut *= out_px
    return kernel


def conv_cost(layer: Any, p: Params) -> LayerCost:
    """Conv1D/2D: the kernel (taps x channels -> filters) is a Dense evaluated once per output pixel."""
    weight = layer.weights["weight"]
    per_pixel = quantized_mantissas(weight).reshape(-1, int(_attr(layer, "n_filt")))
    cost = _matmul(layer, p, per_pixel, bits_of(weight.type))
    cost.notes = [f"per output pixel: {note}" for note in cost.notes]
    return _windowed(layer, p, cost)


def depthwise_cost(layer: Any, p: Params) -> LayerCost:
    """Depthwise conv: each channel has its own taps, so a pixel is (taps -> channels x multiplier)."""
    weight = layer.weights.get("depthwise", layer.weights.get("weight"))
    data = quantized_mantissas(weight)
    per_pixel = data.reshape(-1, data.shape[-2] * data.shape[-1]) if data.ndim >= 3 else data
    cost = _matmul(layer, p, per_pixel, bits_of(weight.type))
    cost.notes = [f"per output pixel: {note}" for note in cost.notes]
    return _windowed(layer, p, cost)


def pooling_cost(layer: Any, p: Params) -> LayerCost:
    pool = int(_attr(layer, "pool_width", 1)) * int(_attr(layer, "pool_height", 1) or 1)
    n_chan = int(_attr(layer, "n_filt", _attr(layer, "n_chan", 1)))
    bits = _in_bits(layer)
    op = str(_attr(layer, "pool_op", "Max") or "Max").lower()
    if "max" in op:
        ops, n = tree_ops(np.full(n_chan, pool), bits, p, op_ns=p("timing", "compare_ns"))
        lut = n * bits * p("pooling", "lut_per_bit_compare")
    else:
        ops, n = tree_ops(np.full(n_chan, pool), bits, p)
        lut = n * bits * p("pooling", "lut_per_bit_add")
    cost = LayerCost(ops=ops, lut=round(lut))
    if _io_type(layer) == "io_parallel":
        # hls4ml's parallel pooling unrolls every output pixel in one pipeline stage.
        cost.lut *= _pixels(layer)[1]
        for op in cost.ops:
            op.live_bits *= _pixels(layer)[1]
        return cost
    return _windowed(layer, p, cost)


def global_pooling_cost(layer: Any, p: Params) -> LayerCost:
    in_px, _ = _pixels(layer)
    n_chan = int(_attr(layer, "n_filt", 1))
    bits = _in_bits(layer)
    ops, n = tree_ops(np.full(n_chan, in_px), bits, p, op_ns=p("timing", "compare_ns"))
    lut = n * bits * p("pooling", "lut_per_bit_compare")
    cost = LayerCost(ops=ops, lut=round(lut))
    if _io_type(layer) == "io_stream":
        cost.stream_cycles = in_px
        cost.ii = in_px + 1
    return cost


def _norm(name: str) -> str:
    """'LeakyReLU', 'leaky_relu' and 'leakyrelu' are the same activation."""
    return name.lower().replace("_", "")


def activation_cost(layer: Any, p: Params) -> LayerCost:
    kind = _norm(str(_attr(layer, "activation", layer.class_name) or "linear"))
    n = _out_size(layer)
    bits = _result_bits(layer)
    if kind in {_norm(k) for k in p("activation", "table_activations")}:
        return _table_cost(layer, p, n, kind)
    per_bit = {_norm(k): v for k, v in p("activation", "lut_per_bit").items()}.get(kind)
    if per_bit is None:
        cost = _table_cost(layer, p, n, kind)
        cost.notes.append(f"activation {kind!r} has no model; costed as a lookup table")
        return cost
    delay = p("timing", "select_ns") if per_bit else 0.0
    return LayerCost(ops=[Op(delay, n * bits)], lut=round(n * bits * per_bit))


def _table_bram(n_lookups: int, table_size: int, table_bits: int, p: Params) -> tuple[int, int]:
    """(BRAM18, LUT) of `n_lookups` parallel reads of one table: BRAM ports serve two reads each."""
    bits = table_size * table_bits
    if bits <= p("activation", "lutram_max_bits"):
        return 0, math.ceil(n_lookups * bits / p("activation", "lut_per_lutram_bits"))
    per_copy = math.ceil(bits / p("activation", "bram18_bits"))
    return math.ceil(n_lookups / 2) * per_copy, 0


def _table_cost(layer: Any, p: Params, n: int, kind: str) -> LayerCost:
    table_size = int(_attr(layer, "table_size", 1024) or 1024)
    table_bits = bits_of(_attr(layer, "table_t"), 18)
    bits = _result_bits(layer)
    reuse = int(_attr(layer, "reuse_factor", 1) or 1)
    lookups = math.ceil(n / reuse) if _io_type(layer) == "io_parallel" else n
    bram, lut_ram = _table_bram(lookups, table_size, table_bits, p)
    extra = {_norm(k): v for k, v in p("activation", "lut_table_extra_per_elem").items()}.get(kind, 0)
    lut = lut_ram + int(n * (p("activation", "lut_table_index_per_elem") + extra))
    index_bits = max(int(math.log2(table_size)), 1)
    ops = [
        Op(p("timing", "table_index_ns"), n * index_bits),
        Op(p("timing", "table_out_ns"), n * bits, cycles=p("timing", "table_read_cycles")),
    ]
    return LayerCost(ops=ops, lut=lut, bram=bram, ii=reuse)


def softmax_cost(layer: Any, p: Params) -> LayerCost:
    n = _out_size(layer)
    impl = str(_attr(layer, "implementation", "stable") or "stable").lower()
    if _attr(layer, "skip", False):
        return LayerCost(ops=[], notes=["softmax skipped (argmax unchanged)"])
    bits = _in_bits(layer)
    if impl == "argmax":
        ops, k = tree_ops(np.array([n]), bits, p, op_ns=p("timing", "compare_ns"))
        return LayerCost(ops=ops, lut=int(k * bits * p("pooling", "lut_per_bit_compare")))
    exp_bits = bits_of(_attr(layer, "exp_table_t"), 18)
    inv_bits = bits_of(_attr(layer, "inv_table_t"), 18)
    size = int(_attr(layer, "table_size", 1024) or 1024)
    ops: list[Op] = []
    if impl == "stable":
        max_ops, _ = tree_ops(np.array([n]), bits, p, op_ns=p("timing", "compare_ns"))
        ops += [*max_ops, Op(adder_ns(bits, p), n * bits)]
    index_bits = max(int(math.log2(size)), 1)
    ops += [
        Op(p("timing", "table_index_ns"), n * index_bits),
        Op(p("timing", "table_out_ns"), n * exp_bits, cycles=p("timing", "table_read_cycles")),
    ]
    sum_ops, _ = tree_ops(np.array([n]), exp_bits, p)
    ops += sum_ops
    ops += [
        Op(p("timing", "table_index_ns"), index_bits + n * exp_bits),
        Op(p("timing", "table_out_ns"), inv_bits + n * exp_bits, cycles=p("timing", "table_read_cycles")),
        Op(p("timing", "dsp_mult_ns"), n * bits),
    ]
    bram_exp, lut_exp = _table_bram(n, size, exp_bits, p)
    bram_inv, lut_inv = _table_bram(1, size, inv_bits, p)
    return LayerCost(
        ops=ops,
        dsp=n * dsp_count(exp_bits, inv_bits, p),
        bram=bram_exp + bram_inv,
        lut=lut_exp + lut_inv + int(n * p("softmax", "lut_per_elem")),
    )


def batchnorm_cost(layer: Any, p: Params) -> LayerCost:
    n = _out_size(layer)
    scale = layer.weights.get("scale")
    bits = _result_bits(layer)
    in_bits = _in_bits(layer)
    if scale is None:
        return LayerCost(ops=[Op(adder_ns(bits, p), n * bits)], lut=n * bits)
    m = quantized_mantissas(scale).reshape(-1)
    m = np.resize(m, n)
    mult = constant_mults(m, in_bits, bits_of(scale.type), p, shared=False)
    add_lut = int(n * bits * p("adder", "lut_per_bit"))
    return LayerCost(
        ops=[Op(mult.delay_ns, n * bits), Op(adder_ns(bits, p), n * bits)],
        dsp=mult.dsp,
        lut=mult.lut + add_lut,
    )


def merge_cost(layer: Any, p: Params) -> LayerCost:
    op = str(_attr(layer, "op", layer.class_name) or layer.class_name).lower()
    n = _out_size(layer)
    bits = _result_bits(layer)
    if op in ("concatenate", "concatenate1d", "concatenate2d", "concatenate3d"):
        return LayerCost(ops=[])
    if op == "multiply":
        return LayerCost(
            ops=[Op(p("timing", "dsp_mult_ns"), n * bits)],
            dsp=n * dsp_count(bits, bits, p),
            lut=int(n * p("multiplier", "lut_per_dsp_mult")),
        )
    if op in ("maximum", "minimum"):
        return LayerCost(
            ops=[Op(p("timing", "compare_ns"), n * bits)],
            lut=int(n * bits * p("pooling", "lut_per_bit_compare")),
        )
    return LayerCost(ops=[Op(adder_ns(bits, p), n * bits)], lut=int(n * bits * p("adder", "lut_per_bit")))


def dot_cost(layer: Any, p: Params) -> LayerCost:
    """Dot product of two variable vectors (e.g. a squared norm): n products, then an adder tree."""
    n = int(np.prod(layer.get_input_variable().shape))
    in_bits = _in_bits(layer)
    bits = _accum_bits(layer)
    if in_bits >= p("multiplier", "dsp_min_bits"):
        dsp, lut = n * dsp_count(in_bits, in_bits, p), n * p("multiplier", "lut_per_dsp_mult")
        mult_ns = p("timing", "dsp_mult_ns")
    else:  # a narrow array multiplier: about one LUT per partial-product bit, log-depth reduction
        dsp, lut = 0, n * in_bits * in_bits * p("multiplier", "lut_per_csd_adder_bit")
        mult_ns = math.ceil(math.log2(max(in_bits, 2))) * p("timing", "lut_mult_ns_per_adder")
    levels, n_adders = tree_ops(np.array([n]), bits, p)
    lut += n_adders * bits * p("adder", "lut_per_bit")
    return LayerCost(ops=[Op(mult_ns, n * bits), *levels], dsp=dsp, lut=round(lut))


def free_cost(layer: Any, p: Params) -> LayerCost:
    """Layers that only rename or re-index wires (reshape, flatten, padding, transpose)."""
    return LayerCost(ops=[])


def input_cost(layer: Any, p: Params) -> LayerCost:
    """io_parallel registers the top function's input bus (one FF per input bit)."""
    registered = _io_type(layer) == "io_parallel" and p("registers", "register_inputs_parallel")
    bits = _out_size(layer) * _result_bits(layer) if registered else 0
    return LayerCost(ops=[], ff=int(bits * p("registers", "ff_per_bit")))


BUILTIN: dict[str, Callable[[Any, Params], LayerCost]] = {
    "Input": input_cost,
    "InputLayer": input_cost,
    "Reshape": free_cost,
    "Flatten": free_cost,
    "Transpose": free_cost,
    "ZeroPadding1D": free_cost,
    "ZeroPadding2D": free_cost,
    "Cropping1D": free_cost,
    "Cropping2D": free_cost,
    "Dense": dense_cost,
    "QDense": dense_cost,
    "PointwiseConv1D": conv_cost,
    "PointwiseConv2D": conv_cost,
    "Conv1D": conv_cost,
    "Conv2D": conv_cost,
    "QConv1D": conv_cost,
    "QConv2D": conv_cost,
    "DepthwiseConv1D": depthwise_cost,
    "DepthwiseConv2D": depthwise_cost,
    "Pooling1D": pooling_cost,
    "Pooling2D": pooling_cost,
    "MaxPooling1D": pooling_cost,
    "MaxPooling2D": pooling_cost,
    "AveragePooling1D": pooling_cost,
    "AveragePooling2D": pooling_cost,
    "GlobalPooling1D": global_pooling_cost,
    "GlobalPooling2D": global_pooling_cost,
    "Activation": activation_cost,
    "ParametrizedActivation": activation_cost,
    "LeakyReLU": activation_cost,
    "ThresholdedReLU": activation_cost,
    "ELU": activation_cost,
    "PReLU": activation_cost,
    "HardActivation": activation_cost,
    "TernaryTanh": activation_cost,
    "BinaryTanh": activation_cost,
    "Softmax": softmax_cost,
    "BatchNormalization": batchnorm_cost,
    "ApplyAlpha": batchnorm_cost,
    "Merge": merge_cost,
    "Concatenate": merge_cost,
    "Add": merge_cost,
    "Subtract": merge_cost,
    "Dot": dot_cost,
    "Multiply": merge_cost,
    "Average": merge_cost,
    "Maximum": merge_cost,
    "Minimum": merge_cost,
}


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


def _uncertainty(hls_model: Any, p: Params) -> float:
    value = hls_model.config.get_config_value("ClockUncertainty")
    if value is None:
        return float(p("timing", "clock_uncertainty"))
    text = str(value).strip()
    if text.endswith("%"):
        return float(text[:-1]) / 100.0
    return float(text) / float(hls_model.config.get_config_value("ClockPeriod") or 5)


def estimate_model(
    hls_model: Any, clock_period_ns: float | None = None, params: Params | None = None
) -> Estimate:
    """Estimate latency, interval and resources of a converted (not necessarily compiled) hls4ml model."""
    p = params if params is not None else load_params()
    config = hls_model.config
    period = float(
        clock_period_ns if clock_period_ns is not None else config.get_config_value("ClockPeriod") or 5
    )
    if period <= 0:
        raise InputError(f"clock_period_ns: must be > 0, got {period}")
    io_type = str(config.get_config_value("IOType") or "io_parallel")
    part = str(config.get_config_value("Part") or "")
    usable = period * (1.0 - _uncertainty(hls_model, p))
    ff_per_bit = float(p("registers", "ff_per_bit"))
    layers: list[LayerEstimate] = []
    unsupported: list[str] = []
    sched = _Schedule(usable, ff_per_bit)
    stream = io_type == "io_stream"
    model_ii = 1
    for layer in hls_model.get_layers():
        cls = layer.class_name
        if cls in _EXTENSIONS:
            est = _EXTENSIONS[cls](layer, p, period)
            if stream or est.latency_cycles:
                sched.cycles += est.latency_cycles
                sched.t = 0.0
                sched.live_bits = 0
            est.notes = [*list(est.notes), "extension estimator"]
            layers.append(est)
            model_ii = max(model_ii, est.ii)
            continue
        builder = BUILTIN.get(cls)
        if builder is None:
            unsupported.append(layer.name)
            layers.append(
                LayerEstimate(
                    layer.name, cls, 0, 1, 0, 0, 0, 0, [f"no estimator for {cls}: counted as 0, register one"]
                )
            )
            continue
        cost = builder(layer, p)
        start_cycles, start_ff = sched.cycles, sched.ff
        process = stream and cls not in ("Input", "InputLayer")
        if process:
            # A dataflow process starts from registered FIFO data and ends in a FIFO write.
            sched.t, sched.live_bits = 0.0, 0
        for op in cost.ops:
            sched.run(op)
        if process:
            sched.cycles += int(p("timing", "stream_hop_cycles")) + cost.stream_cycles
            sched.ff += p("registers", "ff_per_stream_layer")
            sched.t = 0.0
            cost.lut += _beat_bits(layer) * p("registers", "lut_per_stream_bit")
        est = LayerEstimate(
            name=layer.name,
            class_name=cls,
            latency_cycles=sched.cycles - start_cycles,
            ii=max(int(cost.ii), 1),
            dsp=int(cost.dsp),
            lut=round(cost.lut),
            ff=round(sched.ff - start_ff + cost.ff),
            bram=int(cost.bram),
            notes=cost.notes,
        )
        model_ii = max(model_ii, est.ii)
        layers.append(est)
    control = int(p("registers", "ff_control"))
    latency = sum(layer.latency_cycles for layer in layers)
    totals = {
        "latency_cycles": int(latency),
        "latency_ns": round(latency * period, 3),
        "ii": int(model_ii),
        "dsp": int(sum(layer.dsp for layer in layers)),
        "lut": int(sum(layer.lut for layer in layers)),
        "ff": int(sum(layer.ff for layer in layers) + control),
        "bram": int(sum(layer.bram for layer in layers)),
    }
    return Estimate(
        model_name=str(
            config.get_project_name()
            if hasattr(config, "get_project_name")
            else config.get_config_value("ProjectName")
        ),
        clock_period_ns=period,
        part=part,
        io_type=io_type,
        layers=layers,
        totals=totals,
        version=str(p("model_version")),
        unsupported=unsupported,
    )
