"""Stage: event-by-event comparison of the C simulation with the Keras model it was compiled from.

A QKeras model must come out bit for bit equal (the promise of the product); a float model cannot, and
is judged by argmax agreement and the largest difference. Both figures are always reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trigger.errors import CheckFailed


def _as_matrix(outputs: np.ndarray | list[np.ndarray]) -> np.ndarray:
    arrays = outputs if isinstance(outputs, list) else [outputs]
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in arrays], axis=1)


def compare(reference: np.ndarray | list[np.ndarray], csim: np.ndarray | list[np.ndarray]) -> dict[str, Any]:
    """Per-event comparison: an event is bit-exact when every one of its outputs is equal."""
    ref, sim = _as_matrix(reference), _as_matrix(csim)
    if ref.shape != sim.shape:
        raise CheckFailed(f"C simulation output shape {sim.shape} differs from the model's {ref.shape}")
    diff = np.abs(ref - sim)
    exact = np.all(diff == 0, axis=1)
    result: dict[str, Any] = {
        "events": len(ref),
        "bit_exact_fraction": float(exact.mean()),
        "bit_exact_events": int(exact.sum()),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "first_mismatches": [int(i) for i in np.flatnonzero(~exact)[:10]],
    }
    if ref.shape[1] > 1:
        result["argmax_agreement"] = float(np.mean(ref.argmax(axis=1) == sim.argmax(axis=1)))
    return result


def verdict(result: dict[str, Any], *, mode: str, required_fraction: float, required_argmax: float) -> str | None:
    """None when the check passes, else a one-line reason."""
    testbench = result.get("testbench") or {}
    if testbench.get("passed") is False:
        return f"exported test bench failed its golden vectors: {testbench.get('summary') or testbench.get('reason')}"
    if mode == "bit_exact":
        if result["bit_exact_fraction"] < required_fraction:
            return (f"C simulation is bit-exact on {result['bit_exact_fraction']:.4%} of {result['events']} events "
                    f"(required {required_fraction:.2%}; largest difference {result['max_abs_diff']:.3g})")
        return None
    agreement = result.get("argmax_agreement", result["bit_exact_fraction"])
    if agreement < required_argmax:
        return (f"C simulation agrees with the float model's argmax on {agreement:.4%} of events "
                f"(required {required_argmax:.2%}; largest difference {result['max_abs_diff']:.3g})")
    return None
