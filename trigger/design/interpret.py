"""The design's interpreter: exact, vectorised, chunked, on both cores. It is the oracle every backend's output
(C simulation, Verilated RTL) is asserted equal to.

Each op kind has one kernel, `kernel(op, args, arg_types) -> values`, where `args` are (events, *shape)
float64 arrays of exact values and `arg_types` their fixed-point types. A kernel reproduces the C++ of the
firmware step by step (products cast to the accumulator, bias cast, sums, the result cast), and takes a fast
path only where the types prove the slow one changes nothing. Float64 holds every intermediate exactly while
its integer code stays below 2^53; `exact_in_float64` checks that from the types, and kernels fall back to
an int64 path otherwise (or refuse, naming the op, rather than approximate).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from trigger.design.fixed import Fx, quantize
from trigger.errors import InputError

if TYPE_CHECKING:
    from trigger.design.graph import Design, Op

Kernel = Callable[["Op", list[np.ndarray], list[Fx]], np.ndarray]
KERNELS: dict[str, Kernel] = {}
FLOAT64_EXACT = 2.0 ** 53
FLOAT32_EXACT = 2.0 ** 23  # one bit below float32's 24: a half-LSB added in rounding stays exact too
FLOAT32_KERNELS = {"dense", "relu", "cast"}  # kernels that keep float32 where the types prove it exact
DEFAULT_CHUNK = 16384  # rows per chunk: measured fastest for dense designs (L2-resident activations)


def kernel(kind: str) -> Callable[[Kernel], Kernel]:
    """Register the interpreter kernel of an op kind."""

    def register(fn: Kernel) -> Kernel:
        KERNELS[kind] = fn
        return fn

    return register


def magnitude(t: Fx) -> float:
    """The largest |value| of a type."""
    return max(abs(t.min), abs(t.max))


def exact_in_float64(bound: float, frac: int) -> bool:
    """True when every value up to `bound` on a grid of `frac` fractional bits is exact in float64."""
    return bound * 2.0 ** frac < FLOAT64_EXACT


def exact_in_float32(bound: float, frac: int) -> bool:
    """True when every value up to `bound` on a grid of `frac` fractional bits, and the half-LSB steps of its
    rounding, are exact in float32 (single precision halves the memory traffic and doubles BLAS throughput)."""
    return bound * 2.0 ** frac < FLOAT32_EXACT


def cast(x: np.ndarray, x_t: Fx, t: Fx) -> np.ndarray:
    """`x` (values of `x_t`) cast to `t`, in float32 when `x` is float32 and the cast is exact in it: `t`'s codes
    and `x`'s scaled values below 2^23. Accumulator types are often wider than their values (the weights bound
    the sums), so a type that does not prove it is checked on the data (two reductions, cheaper than float64)."""
    if x.dtype == np.float32 and exact_in_float32(magnitude(t), t.frac):
        frac = max(x_t.frac, t.frac)
        bound = magnitude(x_t)
        if not exact_in_float32(bound, frac) and x.size:
            bound = max(-float(x.min()), float(x.max()))
        if exact_in_float32(bound, frac):
            return quantize(x, t, np.float32)
    return quantize(x, t)


def require_exact(op: Op, bound: float, frac: int) -> None:
    """Refuse, naming the op, a step whose values would not be exact in float64 (never approximate)."""
    if not exact_in_float64(bound, frac):
        raise InputError(f"{op.source or op.name}: its values need more than 53 significant bits; the exact "
                         "interpreter cannot run it")


# ---------------------------------------------------------------------------------------------------- dot


def dot_accumulate(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, x_t: Fx, w_t: Fx, acc_t: Fx,
                   what: str) -> np.ndarray:
    """sum_i x[..., i] * w[i, j] (+ bias[j]) as hls4ml's dense/dot templates compute it in `acc_t`.

    The C++ casts every product to `acc_t`, initialises the accumulator with the bias cast to `acc_t`, and adds
    the products in input order, each addition cast to `acc_t`. When the types prove the products and bias
    fit `acc_t`, the products' casts are identities; with a wrapping accumulator the sum's wraps then collapse
    into one wrap of the exact sum (addition modulo 2^width is associative), which is one BLAS matmul.
    """
    n_in = w.shape[0]
    prod_frac = x_t.frac + w_t.frac
    x_max = magnitude(x_t)
    w_max = float(np.max(np.abs(w))) if w.size else 0.0
    prod_max = x_max * w_max
    products_fit = acc_t.holds(-prod_max, prod_max, prod_frac)
    bias_fits = bias is None or bool(np.array_equal(quantize(bias, acc_t), bias))
    # The largest |partial sum| in any order: per output, the input bound times its weights' |sum|, plus |bias|.
    col = x_max * np.abs(w).sum(axis=0) + (np.abs(bias) if bias is not None else 0.0)
    total = float(np.max(col, initial=0.0))
    frac = max(prod_frac, acc_t.frac)
    if products_fit and bias_fits and (acc_t.overflow == "WRAP" or acc_t.holds(-total, total, prod_frac)):
        if x.dtype == np.float32 and exact_in_float32(total, frac):  # every partial sum exact in float32
            w, bias = w.astype(np.float32), None if bias is None else bias.astype(np.float32)
        elif exact_in_float64(total, frac):
            x = x.astype(np.float64, copy=False)
        if exact_in_float64(total, frac):
            acc = x @ w if bias is None else x @ w + bias
            return acc if acc_t.holds(-total, total, prod_frac) else quantize(acc, acc_t)
        return _integer_accumulate(x, w, bias, x_t=x_t, w_t=w_t, acc_t=acc_t, frac=frac, what=what)
    # The general path: every product cast, every addition cast, in the C++'s order.
    if not (exact_in_float64(prod_max, prod_frac) and acc_t.width <= 52):
        raise InputError(f"{what}: products or accumulator too wide for the exact interpreter")
    acc = np.broadcast_to(quantize(bias, acc_t) if bias is not None else 0.0,
                          (*x.shape[:-1], w.shape[1])).copy()
    for i in range(n_in):
        acc = quantize(acc + quantize(x[..., i, None] * w[i], acc_t), acc_t)
    return acc


def _integer_accumulate(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, x_t: Fx, w_t: Fx, acc_t: Fx,
                        frac: int, what: str) -> np.ndarray:
    """The same sum in int64 codes when the types allow sums float64 cannot hold: exact up to 2^62, then the
    accumulator's wrap, and a check on the data that every result fits float64 again (else the op is refused)."""
    shift = 2 ** (frac - x_t.frac - w_t.frac)
    total = float(np.abs(x).max(initial=0.0)) * 2.0 ** x_t.frac * float(np.abs(w).sum(axis=0).max(initial=0.0)) \
        * 2.0 ** w_t.frac * shift
    if total >= 2.0 ** 62:
        raise InputError(f"{what}: sums beyond 62 bits; the exact interpreter cannot run this op")
    codes = (np.rint(x * 2.0 ** x_t.frac).astype(np.int64) @ np.rint(w * 2.0 ** w_t.frac).astype(np.int64)) * shift
    if bias is not None:
        codes = codes + np.rint(bias * 2.0 ** frac).astype(np.int64)
    step = frac - acc_t.frac  # >= 0: the products fit the accumulator's grid
    codes = codes >> step  # exact: every code is a multiple of 2^step
    span, low = 1 << acc_t.width, acc_t.min_code
    codes = np.mod(codes - low, span) + low  # the accumulator's wrap (the caller allows no other overflow mode)
    if np.abs(codes).max(initial=0) >= 2 ** 53:
        raise InputError(f"{what}: accumulated values need more than 53 significant bits on these events; the "
                         "exact interpreter cannot run this op")
    return codes.astype(np.float64) * 2.0 ** -acc_t.frac


@kernel("dense")
def _dense(op: Op, args: list[np.ndarray], types: list[Fx]) -> np.ndarray:
    acc_t = op.types["accum"]
    acc = dot_accumulate(args[0], op.weights["kernel"], op.weights.get("bias"), x_t=types[0],
                         w_t=op.weight_types["kernel"], acc_t=acc_t, what=op.name)
    # hls4ml often gives the result the accumulator's own type: then the cast is an identity.
    return acc if op.output.type.holds(acc_t.min, acc_t.max, acc_t.frac) else cast(acc, acc_t, op.output.type)


def _windows(x: np.ndarray, op: Op) -> np.ndarray:
    """Zero-padded sliding windows of a channels-last image: (B, *out_spatial, *filter, C)."""
    pads = [(0, 0), *[tuple(p) for p in op.attrs["padding"]], (0, 0)]
    x = np.pad(x, pads)
    filt, strides = op.attrs["filter"], op.attrs["strides"]
    axes = tuple(range(1, 1 + len(filt)))
    win = np.lib.stride_tricks.sliding_window_view(x, filt, axis=axes)  # (B, *pos, C, *filt)
    win = win[(slice(None), *[slice(None, None, s) for s in strides])]
    return np.moveaxis(win, -len(filt) - 1, -1)  # (B, *pos, *filt, C)


@kernel("conv")
def _conv(op: Op, args: list[np.ndarray], types: list[Fx]) -> np.ndarray:
    """Conv1D / Conv2D, channels last: the windows times the kernel, accumulated as in `dot_accumulate`."""
    win = _windows(args[0], op)
    kernel_ = op.weights["kernel"]  # (*filter, C, F)
    flat = win.reshape(*win.shape[:-1 - len(op.attrs["filter"])], -1)
    acc = dot_accumulate(np.ascontiguousarray(flat), kernel_.reshape(-1, kernel_.shape[-1]), op.weights.get("bias"),
                         x_t=types[0], w_t=op.weight_types["kernel"], acc_t=op.types["accum"], what=op.name)
    return quantize(acc, op.output.type)


@kernel("dot")
def _dot(op: Op, args: list[np.ndarray], types: list[Fx]) -> np.ndarray:
    """hls4ml's dot1d: products of two vectors cast to the accumulator, summed there."""
    a, b = args
    acc_t = op.types["accum"]
    prod_frac = types[0].frac + types[1].frac
    bound = magnitude(types[0]) * magnitude(types[1])
    n = a.shape[-1]
    if acc_t.holds(-n * bound, n * bound, prod_frac) and exact_in_float64(n * bound, prod_frac):
        acc = np.einsum("...i,...i->...", a, b)[..., None]
    else:
        if not exact_in_float64(bound, prod_frac):
            raise InputError(f"{op.name}: products too wide for the exact interpreter")
        acc = np.zeros((*a.shape[:-1], 1))
        for i in range(n):
            acc = quantize(acc + quantize(a[..., i, None] * b[..., i, None], acc_t), acc_t)
    return quantize(acc, op.output.type)


# ---------------------------------------------------------------------------------------------- elementwise


@kernel("relu")
def _relu(op: Op, args: list[np.ndarray], types: list[Fx]) -> np.ndarray:
    out = op.output.type
    if not out.signed and out.overflow == "SAT":  # the cast's clip at 0 is the ReLU itself (one pass fewer)
        return cast(args[0], types[0], out)
    return cast(np.maximum(args[0], 0.0), types[0], out)


@kernel("cast")
def _cast(op: Op, args: list[np.ndarray], types: list[Fx]) -> np.ndarray:
    """A linear activation or a type change: the assignment to the result type."""
    return cast(args[0], types[0], op.output.type)


@kernel("reshape")
def _reshape(op: Op, args: list[np.ndarray], types: list[Fx]) -> np.ndarray:
    return quantize(args[0].reshape(len(args[0]), *op.output.shape), op.output.type)


@kernel("batchnorm")
def _batchnorm(op: Op, args: list[np.ndarray], types: list[Fx]) -> np.ndarray:
    """x * scale + bias in full precision (ap_fixed's product and sum types), then the result cast."""
    scale, bias = op.weights["scale"], op.weights["bias"]
    scale_t, bias_t = op.weight_types["scale"], op.weight_types["bias"]
    bound = magnitude(types[0]) * float(np.max(np.abs(scale), initial=0.0)) + float(np.max(np.abs(bias), initial=0.0))
    require_exact(op, bound, max(types[0].frac + scale_t.frac, bias_t.frac))
    return quantize(args[0] * scale + bias, op.output.type)


_MERGE = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply,
    "maximum": np.maximum, "minimum": np.minimum,
}


@kernel("merge")
def _merge(op: Op, args: list[np.ndarray], types: list[Fx]) -> np.ndarray:
    """Two inputs combined in full precision (ap_fixed arithmetic is exact), then cast."""
    a, b = types
    if op.attrs["op"] == "multiply":
        require_exact(op, magnitude(a) * magnitude(b), a.frac + b.frac)
    else:
        require_exact(op, magnitude(a) + magnitude(b), max(a.frac, b.frac))
    return quantize(_MERGE[op.attrs["op"]](args[0], args[1]), op.output.type)


@kernel("concatenate")
def _concatenate(op: Op, args: list[np.ndarray], types: list[Fx]) -> np.ndarray:
    return quantize(np.concatenate(args, axis=op.attrs["axis"]), op.output.type)


# ---------------------------------------------------------------------------------------------------- runner


def _last_uses(design: Design) -> dict[str, int]:
    last: dict[str, int] = {}
    for i, op in enumerate(design.ops):
        for name in op.inputs:
            last[name] = i
    return last


def run_chunk(design: Design, xs: list[np.ndarray], wanted: list[str] | None = None) -> list[np.ndarray]:
    """One chunk of events through the design: inputs cast onto the input ports' types, then every op; returns
    the tensors named in `wanted` (default: the design's outputs)."""
    env: dict[str, np.ndarray] = {}
    for t, x in zip(design.inputs, xs, strict=True):
        values = quantize(np.asarray(x, dtype=np.float64).reshape(len(x), *t.shape), t.type)
        env[t.name] = values.astype(np.float32) if exact_in_float32(magnitude(t.type), t.type.frac) else values
    types = {t.name: t.type for t in design.inputs}
    wanted = wanted or design.outputs
    keep = set(wanted)
    last = _last_uses(design)
    for i, op in enumerate(design.ops):
        fn = KERNELS[op.kind]
        args = [env[n] if op.kind in FLOAT32_KERNELS else env[n].astype(np.float64, copy=False) for n in op.inputs]
        env[op.output.name] = fn(op, args, [types[n] for n in op.inputs])
        types[op.output.name] = op.output.type
        for name in set(op.inputs):
            if last[name] == i and name not in keep:
                del env[name]
    return [env[n].astype(np.float64, copy=False) for n in wanted]


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def check_runnable(design: Design) -> None:
    """Refuse, naming the op, a design with an op kind the interpreter has no kernel for."""
    for op in design.ops:
        if op.kind not in KERNELS:
            raise InputError(f"{op.source or op.name}: op kind {op.kind!r} has no exact interpreter kernel")


def run(design: Design, inputs: np.ndarray | list[np.ndarray], *, chunk: int = DEFAULT_CHUNK,
        workers: int | None = None, progress: Callable[[int], None] | None = None,
        tensors: list[str] | None = None) -> list[np.ndarray]:
    """All events through the design, in chunks of `chunk` rows on `workers` threads (numpy and BLAS release
    the GIL; BLAS is held to one thread per worker so the two do not fight over the cores). Memory stays
    bounded by a few chunks' activations. `progress(n)` is called with the events done per chunk. Returns the
    design's outputs, or the named `tensors` (e.g. the logits before a softmax)."""
    from threadpoolctl import threadpool_limits

    check_runnable(design)
    xs = inputs if isinstance(inputs, list) else [inputs]
    if len(xs) != len(design.inputs):
        raise InputError(f"design {design.name} has {len(design.inputs)} inputs, got {len(xs)} arrays")
    n = len(xs[0])
    workers = workers or min(2, os.cpu_count() or 1)
    slices = list(_chunks(n, chunk))

    def one(s: slice) -> list[np.ndarray]:
        out = run_chunk(design, [x[s] for x in xs], tensors)
        if progress is not None:
            progress(s.stop - s.start)
        return out

    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1 or len(slices) == 1:
            parts = [one(s) for s in slices]
        else:
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(one, slices))
    names = tensors or design.outputs
    if not parts:
        return [np.zeros((0, *design.tensor(n).shape)) for n in names]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(names))]
