"""Stage: event-by-event equivalence of the model, the design's emulator and the backends built from it.

Each check is a leg between two implementations of the same design, run on the same held-out events:
- `model_vs_emulator`: the quantized Keras model against the design's interpreter (is the lowering right?);
- `emulator_vs_csim`: the interpreter against hls4ml's C simulation (is the HLS backend right?);
- `emulator_vs_rtl`: the interpreter against the Verilated RTL, when the RTL backend is on.
A QKeras model must come out bit for bit equal in every leg (the promise of the product). A float model
cannot match its firmware: its model leg is judged by argmax agreement, while the backend legs stay exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trigger.errors import CheckFailed

LEG_WORDS = {
    "model_vs_emulator": "the design's emulator differs from the model (lowering)",
    "emulator_vs_csim": "the C simulation differs from the design's emulator (HLS backend)",
    "emulator_vs_rtl": "the Verilated RTL differs from the design's emulator (RTL backend)",
    "emulator_vs_csim_calibration": "the C simulation differs from the design's emulator on the calibration "
                                    "crossings (HLS backend)",
    "model_vs_emulator_calibration": "the design's emulator differs from the model on the calibration crossings "
                                     "(lowering)",
}


def _as_matrix(outputs: np.ndarray | list[np.ndarray]) -> np.ndarray:
    arrays = outputs if isinstance(outputs, list) else [outputs]
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in arrays], axis=1)


def exact_events(reference: np.ndarray | list[np.ndarray], other: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """(events,) True where every output of the event is equal."""
    ref, sim = _as_matrix(reference), _as_matrix(other)
    if ref.shape != sim.shape:
        raise CheckFailed(f"output shape {sim.shape} differs from the reference's {ref.shape}")
    return np.all(ref == sim, axis=1)


def compare(reference: np.ndarray | list[np.ndarray], other: np.ndarray | list[np.ndarray]) -> dict[str, Any]:
    """Per-event comparison: an event is bit-exact when every one of its outputs is equal."""
    ref, sim = _as_matrix(reference), _as_matrix(other)
    exact = exact_events(ref, sim)
    diff = np.abs(ref - sim)
    result: dict[str, Any] = {
        "events": len(ref),
        "bit_exact_fraction": float(exact.mean()) if len(ref) else 1.0,
        "bit_exact_events": int(exact.sum()),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "first_mismatches": [int(i) for i in np.flatnonzero(~exact)[:10]],
    }
    if ref.shape[1] > 1:
        result["argmax_agreement"] = float(np.mean(ref.argmax(axis=1) == sim.argmax(axis=1)))
    return result


def combine(legs: dict[str, dict[str, Any]], exact: dict[str, np.ndarray]) -> dict[str, Any]:
    """The overall figures over all legs: an event is bit-exact when it is so in every leg."""
    every = np.logical_and.reduce(list(exact.values()))
    first = legs["model_vs_emulator"]
    result: dict[str, Any] = {
        "events": first["events"],
        "bit_exact_fraction": float(every.mean()) if every.size else 1.0,
        "bit_exact_events": int(every.sum()),
        "max_abs_diff": max(leg["max_abs_diff"] for leg in legs.values()),
        "first_mismatches": [int(i) for i in np.flatnonzero(~every)[:10]],
        "legs": legs,
    }
    if "argmax_agreement" in first:
        result["argmax_agreement"] = first["argmax_agreement"]
    return result


def verdict(result: dict[str, Any], *, mode: str, required_fraction: float, required_argmax: float) -> str | None:
    """None when every leg passes, else a one-line reason naming the first leg that failed."""
    testbench = result.get("testbench") or {}
    if testbench.get("passed") is False:
        return f"exported test bench failed its golden vectors: {testbench.get('summary') or testbench.get('reason')}"
    for name, leg in result["legs"].items():
        if name == "model_vs_emulator" and mode != "bit_exact":
            agreement = leg.get("argmax_agreement", leg["bit_exact_fraction"])
            if agreement < required_argmax:
                return (f"the firmware agrees with the float model's argmax on {agreement:.4%} of "
                        f"{leg['events']} events (required {required_argmax:.2%}; largest difference "
                        f"{leg['max_abs_diff']:.3g})")
            continue
        if leg["bit_exact_fraction"] < required_fraction:
            return (f"{LEG_WORDS[name]}: bit-exact on {leg['bit_exact_fraction']:.4%} of {leg['events']} events "
                    f"(required {required_fraction:.2%}; largest difference {leg['max_abs_diff']:.3g}; "
                    f"first events {leg['first_mismatches'][:5]})")
    softmax = result.get("softmax")
    if softmax and softmax.get("argmax_agreement") is not None and softmax["argmax_agreement"] < required_argmax:
        return (f"the firmware's table softmax agrees with the model's argmax on {softmax['argmax_agreement']:.4%} "
                f"of events (required {required_argmax:.2%})")
    return None
