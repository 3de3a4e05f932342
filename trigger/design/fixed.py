"""The fixed-point type of the design and its one quantization rule.

`Fx` is an `ap_fixed<width, integer, rounding, overflow>` (`ap_ufixed` when not signed), `integer` counting the
sign bit as ap_fixed does. `quantize` is the only place in the project where a value is put on a type: the
interpreter, the SPA-Net layers' Keras forward pass, the table generators and the RTL lowering all call it, so
a rounding or overflow rule cannot drift between two copies.

Values are carried as float64 holding exact dyadic rationals. A type may be wider than float64's 53-bit
mantissa (hls4ml sizes some accumulators generously); what must fit is every value the interpreter forms, and
each kernel checks that from its operands' types before it adds or multiplies (see `trigger.design.interpret`),
refusing the op otherwise. Only `quantize` changes a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ROUNDING = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
OVERFLOW = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
MAX_WIDTH = 1024  # ap_fixed allows wide types; kernels check that the values they form stay exact


@dataclass(frozen=True)
class Fx:
    """`ap_fixed<width, integer, rounding, overflow>`; `integer` includes the sign bit of a signed type."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"

    def __post_init__(self) -> None:
        if not 1 <= self.width <= MAX_WIDTH:
            raise ValueError(f"fixed-point width must be 1..{MAX_WIDTH}, got {self.width}")
        if self.rounding not in ROUNDING:
            raise ValueError(f"unknown rounding mode {self.rounding!r}")
        if self.overflow not in OVERFLOW:
            raise ValueError(f"unknown overflow mode {self.overflow!r}")

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac

    @property
    def min_code(self) -> int:
        return -(2 ** (self.width - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return 2 ** (self.width - 1) - 1 if self.signed else 2 ** self.width - 1

    @property
    def min(self) -> float:
        return self.min_code * self.lsb

    @property
    def max(self) -> float:
        return self.max_code * self.lsb

    def with_modes(self, rounding: str = "TRN", overflow: str = "WRAP") -> Fx:
        return Fx(self.width, self.integer, self.signed, rounding, overflow)

    def cpp(self) -> str:
        """The C++ spelling; default modes (TRN, WRAP) are left out, as hls4ml writes them."""
        base = "ap_fixed" if self.signed else "ap_ufixed"
        modes = "" if (self.rounding, self.overflow) == ("TRN", "WRAP") else f",AP_{self.rounding},AP_{self.overflow}"
        return f"{base}<{self.width},{self.integer}{modes}>"

    def holds(self, low: float, high: float, frac: int) -> bool:
        """True when every value in [low, high] on a grid of `frac` fractional bits is a value of this type,
        so that a cast to it changes nothing."""
        return frac <= self.frac and self.min <= low and high <= self.max

    def to_json(self) -> list[Any]:
        return [self.width, self.integer, self.signed, self.rounding, self.overflow]

    @classmethod
    def from_json(cls, spec: Any) -> Fx:
        width, integer, signed, rounding, overflow = spec
        return cls(int(width), int(integer), bool(signed), str(rounding), str(overflow))

    @classmethod
    def declared(cls, spec: Any) -> Fx:
        """A result type declared by an extension layer's config, `[width, integer(, signed)]`, or an `Fx`:
        declared results round to nearest and saturate (`AP_RND, AP_SAT`)."""
        if isinstance(spec, Fx):
            return spec
        width, integer, *rest = spec
        return cls(int(width), int(integer), bool(rest[0]) if rest else True, "RND", "SAT")

    @classmethod
    def from_hls(cls, precision: Any) -> Fx:
        """From hls4ml's `FixedPrecisionType` (or an `IntegerPrecisionType`, an integer fixed type)."""
        width = int(precision.width)
        integer = int(getattr(precision, "integer", width))
        rounding = str(getattr(precision, "rounding_mode", "TRN") or "TRN")
        overflow = str(getattr(precision, "saturation_mode", "WRAP") or "WRAP")
        if int(getattr(precision, "saturation_bits", 0) or 0):
            raise ValueError(f"saturation bits are not supported ({precision})")
        return cls(width, integer, bool(precision.signed), rounding, overflow)


def _half_up(s: np.ndarray) -> np.ndarray:
    s += 0.5
    return np.floor(s, out=s)


_ROUND = {  # integer codes from exact scaled values (a fresh array, rounded in place), by ap_fixed's modes
    "TRN": lambda s: np.floor(s, out=s),
    "TRN_ZERO": lambda s: np.trunc(s, out=s),
    "RND": _half_up,  # half towards +inf
    "RND_MIN_INF": lambda s: np.ceil(s - 0.5),  # half towards -inf
    "RND_ZERO": lambda s: np.sign(s) * np.ceil(np.abs(s) - 0.5),  # half towards zero
    "RND_INF": lambda s: np.sign(s) * np.floor(np.abs(s) + 0.5),  # half away from zero
    "RND_CONV": lambda s: np.rint(s, out=s),  # half to even
}


def quantize_codes(x: np.ndarray | float, t: Fx, dtype: type = np.float64) -> np.ndarray:
    """The integer codes (value / lsb) of `x` cast to `t`, as float64 (or float32, which the caller may ask for
    only when its types prove every scaled value and code below 2^23: then float32 is exact too)."""
    scaled = np.multiply(x, 2.0 ** t.frac, dtype=dtype, out=np.empty(np.shape(x), dtype))  # an array, even for a scalar
    codes = _ROUND[t.rounding](scaled)
    lo, hi = float(t.min_code), float(t.max_code)
    if t.overflow == "SAT" or (t.overflow == "SAT_SYM" and not t.signed):
        return np.clip(codes, lo, hi, out=codes)
    if t.overflow == "SAT_SYM":
        return np.clip(codes, -hi, hi, out=codes)
    if codes.size == 0 or (codes.min() >= lo and codes.max() <= hi):
        return codes
    outside = (codes < lo) | (codes > hi)
    if t.overflow == "SAT_ZERO":
        return np.where(outside, 0.0, codes)
    # WRAP: only out-of-range codes are wrapped; shifting every code by 2^(width-1) would round away the low
    # bits of a type wider than float64's mantissa.
    codes = codes.astype(np.float64, copy=False)  # the wrap's offset codes may need more than float32's 24 bits
    return np.where(outside, np.mod(codes - lo, 2.0 ** t.width) + lo, codes)


def quantize(x: np.ndarray | float, t: Fx, dtype: type = np.float64) -> np.ndarray:
    """Cast exact values to `t` as the ap_fixed assignment does: quantization mode, then overflow mode."""
    codes = quantize_codes(x, t, dtype)
    codes *= 2.0 ** -t.frac
    return codes


def on_grid(values: np.ndarray, t: Fx) -> bool:
    """True when every value is a value of `t` (a cast to `t` leaves it unchanged)."""
    v = np.asarray(values, dtype=np.float64)
    return bool(np.array_equal(quantize(v, t), v))


def raw_bits(values: np.ndarray, t: Fx) -> np.ndarray:
    """The two's-complement bit pattern of on-grid values as unsigned integers (ap_fixed's `range()`)."""
    if t.width > 63:
        raise ValueError(f"{t.cpp()}: bit patterns wider than 63 bits are not supported")
    codes = np.asarray(values, dtype=np.float64) * 2.0 ** t.frac
    return np.mod(codes.astype(np.int64), 2 ** t.width)


def sum_type(a: Fx, b: Fx, terms: int, extra: Fx | None = None) -> Fx:
    """A signed type holding any sum of `terms` products a*b (plus one `extra` value) without rounding or
    overflow: the exact accumulator of a dot product, sized from its operands."""
    frac = a.frac + b.frac
    integer = a.integer + b.integer + max(1, math.ceil(math.log2(terms + 1))) + 1
    if extra is not None:
        frac = max(frac, extra.frac)
        integer = max(integer, extra.integer) + 1
    return Fx(integer + frac, integer, True)


def union_type(a: Fx, b: Fx) -> Fx:
    """A signed type holding every value of `a` and of `b`."""
    frac = max(a.frac, b.frac)
    integer = max(a.integer, b.integer) + 1
    return Fx(integer + frac, integer)
