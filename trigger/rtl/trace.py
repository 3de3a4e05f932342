"""Stage: the design traced through da4ml's functional API into combinational logic.

One tracer per op kind, each replaying its interpreter kernel (`trigger.design.interpret`) on da4ml's
symbolic fixed-point variables: constant-matrix products become da4ml's shift-add trees (CMVM), variable
products its multipliers, and every cast to a design type goes through `cast`, which reproduces
`trigger.design.fixed.quantize` exactly. The traced logic therefore equals the interpreter bit for bit;
the tests and every compile with the RTL backend check it in Verilator.

The RTL's input vector is the design's inputs flattened (C order) and concatenated in design order; the
output vector likewise.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
from da4ml.trace import FixedVariable, FixedVariableArray, FixedVariableArrayInput, HWConfig, comb_trace

from trigger.design.fixed import Fx, on_grid, quantize
from trigger.design.interpret import magnitude
from trigger.errors import InputError

if TYPE_CHECKING:
    from da4ml.cmvm.types import CombLogic

    from trigger.design.graph import Design, Op

# Every adder one delay level (carry chains are not sized): device.py turns the clock into levels per stage.
HWCONF = HWConfig(adder_size=1, carry_size=-1, latency_cutoff=-1)
# CMVM adder trees at most two levels deeper than the shallowest: da4ml's converter default, which trades a
# little latency for fewer adders.
SOLVER = {"hard_dc": 2}

Value = FixedVariableArray
Tracer = Callable[["Op", list[Value], list[Fx]], Value]
TRACERS: dict[str, Tracer] = {}


def tracer(kind: str) -> Callable[[Tracer], Tracer]:
    """Register the tracer of an op kind."""

    def register(fn: Tracer) -> Tracer:
        TRACERS[kind] = fn
        return fn

    return register


def _array(variables: list[FixedVariable] | np.ndarray, shape: tuple[int, ...]) -> Value:
    out = np.empty(len(variables), dtype=object)
    out[:] = list(variables)
    return FixedVariableArray(out.reshape(shape), SOLVER)


# -------------------------------------------------------------------------------------------- the cast


@functools.cache
def _da4ml_rounds_only_trn_and_rnd() -> bool:
    """True while da4ml's quantize refuses every rounding but TRN and RND (da4ml 0.5.2 asserts)."""
    probe = FixedVariable(-1.0, 1.0, 0.25, hwconf=HWCONF)
    try:
        probe.quantize(1, 0, 1, round_mode="RND_CONV")
    except AssertionError:
        return True
    return False


def _bit(v: FixedVariable, which: str, frac: int) -> FixedVariable | int:
    """A 0/1 data bit of v: its sign, or its bit of weight 2^-frac (the parity of floor(v * 2^frac))."""
    if which == "sign":
        negative = v.is_negative()
        return int(negative) if isinstance(negative, bool) else negative
    return v.quantize(0, 1 - frac, frac) * 2.0 ** frac  # k=0, one integer bit at 2^-frac: {0, 2^-frac} -> {0, 1}


def cast(x: Value, t: Fx) -> Value:
    """x assigned to the type t, as ap_fixed does and `trigger.design.fixed.quantize` computes: the
    quantization mode, then the overflow mode. The one place where the RTL backend puts a value on a type.

    Why not da4ml's `quantize` alone: it rounds only by truncation (TRN) or half up (RND) and saturates by
    SAT or SAT_SYM, while the design also holds QKeras's half-to-even (RND_CONV; about 3 % of hidden
    pre-activations are exact ties), ap_fixed's other rounding modes and SAT_ZERO. Each rounding is built
    from truncations instead: floor(x + c + b * d) on the target grid, with x's step s, the target LSB L, a
    constant c and one data bit b of x scaled by d:

    - RND: c = L/2 (da4ml's own RND does the same); RND_MIN_INF (ties down): c = L/2 - s;
    - RND_CONV: c = L/2 - s, b = the target-LSB bit of x (its parity), d = s: a tie rounds up when odd;
    - RND_ZERO: c = L/2 - s, b = the sign, d = s; RND_INF: c = L/2, b = the sign, d = -s;
    - TRN_ZERO: c = 0, b = the sign, d = L - s (a negative value rounds up).

    The overflow modes follow in `_overflow`. Note da4ml counts `i` without the sign bit: ap_fixed<16,6>
    is (k, i, f) = (1, 5, 10).
    """
    assert _da4ml_rounds_only_trn_and_rnd(), "da4ml now rounds beyond TRN/RND itself: retire the workaround in cast"
    k, i, f = int(t.signed), t.integer - int(t.signed), t.frac
    lsb = Decimal(2) ** -f
    out = []
    for value in x._vars.ravel():
        v = value
        if v.low == v.high:  # a constant: its value, cast exactly
            out.append(FixedVariable.from_const(float(quantize(float(v.low), t)), v.hwconf))
            continue
        if v.step < lsb and t.rounding != "TRN":
            s = v.step
            half = lsb / 2
            const = {"RND": half, "RND_INF": half, "TRN_ZERO": Decimal(0)}.get(t.rounding, half - s)
            bit, scale = {"RND_CONV": ("parity", s), "RND_ZERO": ("sign", s), "RND_INF": ("sign", -s),
                          "TRN_ZERO": ("sign", lsb - s)}.get(t.rounding, (None, Decimal(0)))
            if bit is not None:
                b = _bit(v, bit, f)
                v = v + b * float(scale) if isinstance(b, FixedVariable) else v + Decimal(b) * scale
            v = v + const
        out.append(_overflow(v, k, i, f, t))
    return _array(out, x.shape)


def _overflow(v: FixedVariable, k: int, i: int, f: int, t: Fx) -> FixedVariable:
    """floor(v) on the grid of t, then t's overflow mode. WRAP is da4ml's quantize. SAT, SAT_SYM and SAT_ZERO
    are two muxes built here rather than da4ml's saturation, which goes wrong when a variable's scale factor
    has fallen far below its step (see `_rebase`); their keys sit half an LSB off the bounds, so they are
    never zero (da4ml's msb_mux decides an exact zero by how the variable's sign happens to be represented),
    and the lower one takes a constant of factor 1 as its first choice, so a saturated value is rebased."""
    if t.overflow == "WRAP":
        return v.quantize(k, i, f, "WRAP", "TRN")
    vk, vi, _ = v.kif
    floor = v.quantize(vk, vi, f, "WRAP", "TRN")  # range kept, bits below 2^-f dropped
    low = -t.max if t.overflow == "SAT_SYM" and t.signed else t.min
    high, half = t.max, 2.0 ** (-f - 1)
    below, above = (0.0, 0.0) if t.overflow == "SAT_ZERO" else (low, high)
    if floor.low > high or floor.high < low:
        return FixedVariable.from_const(above if floor.low > high else below, v.hwconf)
    r = floor
    if floor.high > high:
        r = (floor - (high + half)).msb_mux(r, FixedVariable.from_const(above, v.hwconf))  # negative: in range
    if floor.low < low:
        r = (floor - (low - half)).msb_mux(FixedVariable.from_const(below, v.hwconf), r)  # negative: below it
    return r.quantize(k, i, f, "WRAP", "TRN")  # in range by now: only narrows the wires


# ------------------------------------------------------------------------------------------ products


def _fits_float32(w: np.ndarray) -> bool:
    """da4ml's CMVM solver takes the matrix as float32."""
    return bool(np.array_equal(w.astype(np.float32).astype(np.float64), w))


def accumulate(x: Value, w: np.ndarray, bias: np.ndarray | None, *, x_t: Fx, w_t: Fx, acc_t: Fx) -> Value:
    """sum_i x[..., i] w[i, j] (+ bias[j]) in acc_t, as `interpret.dot_accumulate`: when the types prove the
    C++'s per-product and per-addition casts are identities but for one wrap of the sum (the interpreter's
    own condition), one constant-matrix product (da4ml's CMVM); otherwise every product and every addition
    cast to acc_t in the C++'s order."""
    n_in = w.shape[0]
    prod_frac = x_t.frac + w_t.frac
    w_max = float(np.max(np.abs(w))) if w.size else 0.0
    b_max = float(np.max(np.abs(bias))) if bias is not None and bias.size else 0.0
    prod_max = magnitude(x_t) * w_max
    total = n_in * prod_max + b_max
    fast = (acc_t.holds(-prod_max, prod_max, prod_frac) and (bias is None or on_grid(bias, acc_t))
            and (acc_t.overflow == "WRAP" or acc_t.holds(-total, total, prod_frac)) and _fits_float32(w))
    if fast:
        acc = x @ w
        return cast(acc + bias if bias is not None else acc, acc_t)
    rows = x.reshape((-1, n_in))
    out = []
    for r in range(rows.shape[0]):
        for j in range(w.shape[1]):
            acc = cast(_array([FixedVariable.from_const(0.0 if bias is None else float(bias[j]), HWCONF)], (1,)),
                       acc_t)
            for i in range(n_in):
                acc = cast(acc + cast(rows[r, i:i + 1] * float(w[i, j]), acc_t), acc_t)
            out.append(acc._vars[0])
    return _array(out, (*x.shape[:-1], w.shape[1]))


def _sum_products(a: Value, b: Value, a_t: Fx, b_t: Fx, acc_t: Fx) -> Value:
    """hls4ml's dot1d as `interpret._dot`: products cast to the accumulator, summed there."""
    n = a.shape[-1]
    bound = magnitude(a_t) * magnitude(b_t)
    products = product(a, b)
    if acc_t.holds(-n * bound, n * bound, a_t.frac + b_t.frac):
        return _array([np.sum(products)], (1,))
    acc = cast(_array([FixedVariable.from_const(0.0, HWCONF)], (1,)), acc_t)
    for i in range(n):
        acc = cast(acc + cast(products[i:i + 1], acc_t), acc_t)
    return acc


# -------------------------------------------------------------------------------- tables and selections

TABLE_LIMIT = 2 ** 16  # entries of one lookup table (a ROM per element): wider keys are refused, not built


def cast1(v: FixedVariable, t: Fx) -> FixedVariable:
    """`cast` of one variable."""
    return cast(_array([v], (1,)), t)._vars[0]


def lookup(x: Value, table: Callable[[np.ndarray], np.ndarray]) -> Value:
    """table(value) of every element as a da4ml lookup table (a ROM) addressed by the element: the table is
    evaluated on every value of the element's traced range, so it holds exactly the interpreter's numbers."""
    out = []
    for v in x._vars.ravel():
        n = 1 if v.low == v.high else int((v.high - v.low) / v.step) + 1
        if n > TABLE_LIMIT:
            raise InputError(f"a lookup table of {n} entries (more than {TABLE_LIMIT}): its address is too wide")
        grid = float(v.low) + float(v.step) * np.arange(n)
        out.append(v.lookup(np.asarray(table(grid), dtype=np.float64)))
    return _array(out, x.shape)


def select(key: FixedVariable, a: FixedVariable | float, b: FixedVariable | float) -> FixedVariable:
    """a where key > 0, else b. The mux key sits half a step below the key so that it is never zero: da4ml's
    msb_mux decides an exact zero by how the variable's sign happens to be represented."""
    if key.low > 0 or key.high <= 0:
        chosen = a if key.low > 0 else b
        return chosen if isinstance(chosen, FixedVariable) else FixedVariable.from_const(chosen, key.hwconf)
    return (key - key.step / 2).msb_mux(b, a)


STORED_LIMIT = 2 ** 26  # largest stored magnitude of a product's operand: two of them stay within 2^52


def _rebase(v: FixedVariable) -> FixedVariable:
    """v with da4ml's scale factor 1. da4ml keeps each variable as a stored value times a power-of-two factor
    that it carries through every op; through a few layers of constant-matrix products the factor falls to
    2^-30 and below, and a product of two such variables is then stored as an integer beyond 2^63: its
    saturation, muxes and constants come out wrong (in da4ml's own interpreter and in the Verilog). A mux
    takes the factor of its first choice, so v is passed through a mux that always picks v but whose first
    choice is a constant of factor 1; its key, v minus a constant below v's range, is declared signed and
    so has a sign bit that is always 0. One adder and one mux: done only where the factor is that small."""
    if v.low == v.high or max(abs(v.low), abs(v.high)) / abs(v._factor) <= STORED_LIMIT:
        return v
    if v._factor < 0:
        return -_rebase(-v)
    below = v.low - v.step if v.low != v.step else v.low - 2 * v.step  # nonzero: a real adder, a new variable
    key = v - below
    key.low = -key.step
    return key.msb_mux(FixedVariable.from_const(float(v.low), v.hwconf), v, (v.low, v.high, v.step))


def rebased(x: Value) -> Value:
    """x with every element's scale factor fit for a product of two variables (`_rebase`)."""
    return _array([_rebase(v) for v in x._vars.ravel()], x.shape)


def product(a: Value, b: Value) -> Value:
    """a * b elementwise with da4ml multipliers, on rebased operands; a square stays one, so da4ml still
    knows it is not negative."""
    ra = rebased(a)
    return ra * ra if b is a else ra * rebased(b)


def maximum(values: list[FixedVariable]) -> FixedVariable:
    """The largest value, exactly (a max tree)."""
    return np.max(_array(values, (len(values),)))


# ---------------------------------------------------------------------------------------------- tracers


@tracer("dense")
def _dense(op: Op, args: list[Value], types: list[Fx]) -> Value:
    acc = accumulate(args[0], op.weights["kernel"], op.weights.get("bias"), x_t=types[0],
                     w_t=op.weight_types["kernel"], acc_t=op.types["accum"])
    return cast(acc, op.output.type)


@tracer("conv")
def _conv(op: Op, args: list[Value], types: list[Fx]) -> Value:
    """Conv1D/Conv2D as da4ml's converters do it (da4ml has no conv op): the zero-padded windows extracted,
    each a constant-matrix product with the flattened kernel."""
    filt, strides = op.attrs["filter"], op.attrs["strides"]
    zero = FixedVariable.from_const(0.0, HWCONF)
    padded = np.pad(args[0]._vars, [*[tuple(p) for p in op.attrs["padding"]], (0, 0)], constant_values=zero)
    axes = tuple(range(len(filt)))
    win = np.lib.stride_tricks.sliding_window_view(padded, filt, axis=axes)  # (*pos, C, *filt)
    win = win[tuple(slice(None, None, s) for s in strides)]
    win = np.moveaxis(win, len(filt), -1)  # (*pos, *filt, C)
    positions = win.shape[:len(filt)]
    kernel_ = op.weights["kernel"]
    rows = _array(win.reshape(-1).tolist(), (math.prod(positions), math.prod(win.shape[len(filt):])))
    acc = accumulate(rows, kernel_.reshape(-1, kernel_.shape[-1]), op.weights.get("bias"), x_t=types[0],
                     w_t=op.weight_types["kernel"], acc_t=op.types["accum"])
    return cast(acc.reshape((*positions, kernel_.shape[-1])), op.output.type)


@tracer("dot")
def _dot(op: Op, args: list[Value], types: list[Fx]) -> Value:
    return cast(_sum_products(args[0], args[1], types[0], types[1], op.types["accum"]), op.output.type)


@tracer("relu")
def _relu(op: Op, args: list[Value], types: list[Fx]) -> Value:
    return cast(args[0].relu(), op.output.type)


@tracer("cast")
def _cast(op: Op, args: list[Value], types: list[Fx]) -> Value:
    return cast(args[0], op.output.type)


@tracer("reshape")
def _reshape(op: Op, args: list[Value], types: list[Fx]) -> Value:
    return cast(args[0].reshape(op.output.shape), op.output.type)


@tracer("batchnorm")
def _batchnorm(op: Op, args: list[Value], types: list[Fx]) -> Value:
    return cast(args[0] * op.weights["scale"] + op.weights["bias"], op.output.type)


_MERGE: dict[str, Callable[[Value, Value], Value]] = {
    "add": lambda a, b: a + b, "subtract": lambda a, b: a - b, "multiply": product,
    "maximum": np.maximum, "minimum": np.minimum,
}


@tracer("merge")
def _merge(op: Op, args: list[Value], types: list[Fx]) -> Value:
    return cast(_MERGE[op.attrs["op"]](args[0], args[1]), op.output.type)


@tracer("concatenate")
def _concatenate(op: Op, args: list[Value], types: list[Fx]) -> Value:
    joined = np.concatenate([a._vars for a in args], axis=op.attrs["axis"] - 1)  # the design's axis counts events
    return cast(FixedVariableArray(joined, SOLVER), op.output.type)


def _address_key(x: Value, t: Fx, size: int) -> tuple[Value, Callable[[np.ndarray], np.ndarray]]:
    """hls4ml's table address of values of t (`softmax_idx_from_real_val`: the top ceil(log2 size) bits of
    the bit pattern) as a truncation of x to those bits, and the map from its values to the address."""
    bits = math.ceil(math.log2(size))
    key_t = Fx(bits, t.integer, t.signed)  # the top bits of t: t truncated, never wrapped (x is a value of t)
    return cast(x, key_t), lambda v: np.mod(np.rint(v * 2.0 ** key_t.frac), 2 ** bits).astype(np.int64)


def _adder_tree(values: list[FixedVariable], t: Fx) -> FixedVariable:
    """`nnet::reduce` with `Op_add<t>` as `design.softmax.adder_tree`: its split, every partial sum cast."""
    n = len(values)
    if n == 1:
        return values[0]
    if n == 2:
        return cast1(values[0] + values[1], t)
    left = 2 ** math.floor(math.log2(n - 1))
    return cast1(_adder_tree(values[:left], t) + _adder_tree(values[left:], t), t)


@tracer("softmax")
def _softmax(op: Op, args: list[Value], types: list[Fx]) -> Value:
    """hls4ml's table softmax (stable or latency) as `design.softmax`: both tables as lookup tables."""
    x, size, t = args[0], op.attrs["table_size"], op.types
    if op.attrs["implementation"] == "stable":
        top = maximum(list(x._vars))
        keyed, key_t = cast(_array([top - v for v in x._vars], x.shape), t["inp_norm"]), t["inp_norm"]
    else:
        keyed, key_t = x, types[0]
    key, address = _address_key(keyed, key_t, size)
    exp_res = lookup(key, lambda v: quantize(op.weights["exp_table"][address(v)], t["accum"]))
    total = cast1(_adder_tree(list(exp_res._vars), t["accum"]), t["inv_inp"])
    inv_key, inv_address = _address_key(_array([total], (1,)), t["inv_inp"], size)
    inverse = lookup(inv_key, lambda v: op.weights["inv_table"][inv_address(v)])._vars[0]
    return cast(_array([e * inverse for e in exp_res._vars], x.shape), op.output.type)


# -------------------------------------------------------------------------------------------------- run


@dataclass
class Traced:
    """The design as da4ml combinational logic, and how long tracing took."""

    logic: CombLogic
    seconds: float

    @property
    def n_ops(self) -> int:
        return len(self.logic.ops)


def check_traceable(design: Design) -> None:
    """Refuse, naming the op, a design with an op kind the RTL backend cannot trace."""
    for op in design.ops:
        if op.kind not in TRACERS:
            raise InputError(f"{op.source or op.name}: op kind {op.kind!r} has no RTL lowering "
                             f"(the RTL backend traces {', '.join(sorted(TRACERS))})")


def trace(design: Design) -> Traced:
    """Trace every op of the design, in order, into one da4ml combinational logic."""
    check_traceable(design)
    start = time.perf_counter()
    ports = [FixedVariableArrayInput(t.shape, hwconf=HWCONF, solver_options=SOLVER) for t in design.inputs]
    env: dict[str, Value] = {}
    types: dict[str, Fx] = {}
    for t, port in zip(design.inputs, ports, strict=True):
        # The ports carry values of the input type; the interpreter's input cast changes none of them.
        env[t.name] = port.quantize(int(t.type.signed), t.type.integer - int(t.type.signed), t.type.frac)
        types[t.name] = t.type
    for op in design.ops:
        out = TRACERS[op.kind](op, [env[n] for n in op.inputs], [types[n] for n in op.inputs])
        if tuple(out.shape) != tuple(op.output.shape):
            raise InputError(f"{op.source or op.name}: traced shape {out.shape}, the design says {op.output.shape}")
        env[op.output.name], types[op.output.name] = out, op.output.type
    inputs = [v for port in ports for v in port._vars.ravel()]
    outputs = [v for name in design.outputs for v in env[name]._vars.ravel()]
    logic = comb_trace(inputs, outputs)
    return Traced(logic, time.perf_counter() - start)


from trigger.rtl import trace_spanet  # noqa: E402, F401  (registers the SPA-Net tracers; it imports this module)
