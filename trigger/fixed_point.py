"""Fixed-point grids shared by the pipeline: putting inputs on the firmware's input type.

The C simulation sees inputs as `ap_fixed<W,I>` (truncation towards minus infinity, wrap on overflow).
Feeding the Keras model and the C simulation the same on-grid values is what makes a bit-for-bit
comparison meaningful; values outside the range are saturated here, and counted, instead of wrapping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from trigger.config import FixedType


@dataclass(frozen=True)
class GridResult:
    values: np.ndarray
    saturated: int  # how many entries were outside the type's range and were clipped


def type_range(t: FixedType, signed: bool = True) -> tuple[float, float, float]:
    """(lowest, highest, step) of a signed or unsigned type in QKeras's convention (sign not in `integer`)."""
    step = 2.0 ** -(t.bits - t.integer - (1 if signed else 0))
    if signed:
        return -(2.0 ** t.integer), 2.0 ** t.integer - step, step
    return 0.0, 2.0 ** t.integer - step, step


def to_grid(x: np.ndarray, t: FixedType) -> GridResult:
    """Truncate `x` onto the grid of signed `ap_fixed<t.bits, t.integer + 1>`, saturating at its limits."""
    low, high, step = type_range(t)
    floored = np.floor(np.asarray(x, dtype=np.float64) / step) * step
    saturated = int(np.count_nonzero((floored < low) | (floored > high)))
    return GridResult(np.clip(floored, low, high), saturated)


def hls_type(t: FixedType, signed: bool = True) -> str:
    """hls4ml's spelling of the type."""
    return f"fixed<{t.bits},{t.integer + 1}>" if signed else f"ufixed<{t.bits},{t.integer}>"


def on_input_grid(split: Any, t: FixedType) -> tuple[Any, int]:
    """A `Split` with every input array truncated onto the input grid `t` as float32 (what the Keras model,
    the emulator and the C simulation are all fed), and how many values saturated."""
    xs = split.x if isinstance(split.x, list) else [split.x]
    results = [to_grid(x, t) for x in xs]
    grid = [r.values.astype(np.float32) for r in results]
    return dataclasses.replace(split, x=grid if isinstance(split.x, list) else grid[0]), \
        sum(r.saturated for r in results)
