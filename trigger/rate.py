"""Rate calibration of a one-score trigger: thresholds at a target rate, efficiencies, ROC AUC, saturation.

A Level-1 trigger sees every bunch crossing, so a target rate R (kHz) out of the collision rate C (MHz)
is a background false-positive rate R / (1000 C): 1 kHz of 40 MHz is 2.5e-5. The threshold is chosen on
background scores, and for the firmware those must be the bit-exact emulation's (C simulation) scores:
the float model's threshold is not a value the firmware can compare against. The trigger fires when
`score > threshold`, so with `threshold` equal to a background score the rate never exceeds the target
(ties cannot push it over) and the threshold is itself a value of the score's fixed-point type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from trigger.config import FixedType
from trigger.fixed_point import type_range


def false_positive_rate(rate_khz: float, collision_mhz: float) -> float:
    """The fraction of background crossings that may fire for `rate_khz` out of `collision_mhz`."""
    if not 0 < rate_khz < collision_mhz * 1e3:
        raise ValueError(f"rate {rate_khz} kHz must be positive and below the collision rate "
                         f"{collision_mhz} MHz")
    return rate_khz / (collision_mhz * 1e3)


@dataclass(frozen=True)
class Threshold:
    """A threshold chosen on background; the trigger fires when score > value."""

    rate_khz: float  # the target
    value: float
    allowed: int  # background events the target allows to fire: floor(fpr * n_background)
    n_pass: int  # background events that do fire (<= allowed)
    n_background: int
    collision_mhz: float

    @property
    def achieved_rate_khz(self) -> float:
        return self.n_pass / self.n_background * self.collision_mhz * 1e3


def threshold_at_rate(background: np.ndarray, rate_khz: float, collision_mhz: float) -> Threshold:
    """The lowest threshold whose background rate does not exceed `rate_khz`.

    With k = floor(fpr * N) events allowed to fire, the threshold is the (k+1)-th highest background score;
    when k is 0 (too little background for the rate) it is the highest score and nothing fires.
    """
    bkg = np.sort(np.asarray(background, dtype=np.float64).ravel())[::-1]
    if bkg.size == 0:
        raise ValueError("no background events to calibrate on")
    allowed = math.floor(false_positive_rate(rate_khz, collision_mhz) * bkg.size)
    value = float(bkg[min(allowed, bkg.size - 1)])
    n_pass = int(np.count_nonzero(bkg > value))
    return Threshold(rate_khz, value, allowed, n_pass, int(bkg.size), collision_mhz)


def efficiency(signal: np.ndarray, threshold: float) -> float:
    """Fraction of signal events that fire (score > threshold)."""
    signal = np.asarray(signal).ravel()
    return float(np.count_nonzero(signal > threshold) / signal.size) if signal.size else float("nan")


def roc_auc(background: np.ndarray, signal: np.ndarray) -> float:
    """Area under the ROC curve of signal against background (ties count one half)."""
    scores = np.concatenate([np.ravel(background), np.ravel(signal)])
    labels = np.concatenate([np.zeros(np.size(background)), np.ones(np.size(signal))])
    return float(roc_auc_score(labels, scores))


def efficiency_vs_rate(background: np.ndarray, signal: np.ndarray,
                       collision_mhz: float) -> tuple[np.ndarray, np.ndarray]:
    """(rate in kHz, signal efficiency) for every distinct background score used as the threshold."""
    bkg = np.sort(np.asarray(background, dtype=np.float64).ravel())
    sig = np.sort(np.asarray(signal, dtype=np.float64).ravel())
    thresholds = np.unique(bkg)
    n_bkg = bkg.size - np.searchsorted(bkg, thresholds, side="right")
    n_sig = sig.size - np.searchsorted(sig, thresholds, side="right")
    return n_bkg / bkg.size * collision_mhz * 1e3, n_sig / max(sig.size, 1)


@dataclass(frozen=True)
class ScoreType:
    """The score's unsigned fixed-point type, `ap_ufixed<bits, integer, AP_RND_CONV, AP_SAT>` (QKeras
    quantized_relu(bits, integer)): the firmware clips scores above its top code instead of wrapping."""

    bits: int
    integer: int

    @property
    def step(self) -> float:
        return type_range(FixedType(self.bits, self.integer), signed=False)[2]

    @property
    def top(self) -> float:
        return type_range(FixedType(self.bits, self.integer), signed=False)[1]

    def hls(self) -> str:
        return f"ap_ufixed<{self.bits},{self.integer},AP_RND_CONV,AP_SAT>"

    def on_grid(self, scores: np.ndarray) -> bool:
        """True when every score is a value of this type (quantized and C-simulated scores are)."""
        codes = np.asarray(scores, dtype=np.float64) / self.step
        return bool(np.all((codes == np.round(codes)) & (scores >= 0) & (scores <= self.top)))

    def raw(self, value: float) -> int:
        """The integer the firmware holds for an on-grid `value`."""
        code = value / self.step
        if code != round(code):
            raise ValueError(f"{value} is not a value of {self.hls()}")
        return round(code)

    def saturated(self, scores: np.ndarray) -> int:
        """Events at or above the top code: clipped in the firmware (or, for float scores, would be)."""
        return int(np.count_nonzero(np.asarray(scores) >= self.top))


def calibrate(scores: np.ndarray, labels: np.ndarray, *, class_names: list[str], rates_khz: list[float],
              collision_mhz: float, score_type: ScoreType) -> dict[str, Any]:
    """Thresholds on background (label 0) at each rate, each signal's efficiency there, AUCs and ranges.

    Works on any one model's scores; thresholds get their raw firmware integer only when the scores are
    values of `score_type` (quantized and C-simulated models), since only those are firmware thresholds.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores for {labels.size} labels")
    bkg = scores[labels == 0]
    signals = {name: scores[labels == i] for i, name in enumerate(class_names)
               if i > 0 and np.any(labels == i)}
    classes = {"background": bkg, **signals}
    on_grid = score_type.on_grid(scores)
    thresholds = {f"{r:g}kHz": threshold_at_rate(bkg, r, collision_mhz) for r in rates_khz}
    top_ok = all(t.value < score_type.top for t in thresholds.values())
    return {
        "n_background": int(bkg.size),
        "n_signal": {name: int(s.size) for name, s in signals.items()},
        "score_type": score_type.hls(),
        "on_grid": on_grid,
        "thresholds": {
            key: {
                "value": t.value,
                "raw": score_type.raw(t.value) if on_grid else None,
                "allowed_background": t.allowed,
                "background_pass": t.n_pass,
                "achieved_rate_khz": t.achieved_rate_khz,
            }
            for key, t in thresholds.items()
        },
        "efficiency": {name: {key: efficiency(s, t.value) for key, t in thresholds.items()}
                       for name, s in signals.items()},
        "roc_auc": {name: roc_auc(bkg, s) for name, s in signals.items()},
        "range": {name: [float(v.min()), float(v.max())] for name, v in classes.items()},
        "saturated": {name: score_type.saturated(v) for name, v in classes.items()},
        # a clipped score still fires when every threshold is below the top code: saturation costs nothing
        "thresholds_below_top": top_ok,
    }
