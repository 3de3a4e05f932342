"""Rate calibration of a one-score trigger: thresholds at a target rate, efficiencies, ROC AUC, saturation.

A Level-1 trigger sees every bunch crossing, so a target rate R (kHz) out of the collision rate C (MHz)
is a background false-positive rate R / (1000 C): 1 kHz of 40 MHz is 2.5e-5. The threshold is chosen on
background scores, and for the firmware those must be the bit-exact emulation's (C simulation) scores:
the float model's threshold is not a value the firmware can compare against. The trigger fires when
`score > threshold`, so with `threshold` equal to a background score the rate never exceeds the target
(ties cannot push it over) and the threshold is itself a value of the score's fixed-point type.

A rate measured from k of N background crossings and an efficiency from k of N signal events are binomial
fractions: each comes with its central 68 % Clopper-Pearson interval, which never under-covers. A threshold
set on a sample and its rate measured on the same sample are correlated (the threshold is placed on that
sample's fluctuation), so `calibrate` sets the thresholds on all the background and verifies the procedure
two-fold: a threshold set on one half counted on the other half, and the other way round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import beta
from sklearn.metrics import roc_auc_score

from trigger.config import FixedType
from trigger.fixed_point import type_range

ONE_SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827: the "68 %" of a central interval
MIN_CALIBRATION_PASS = 50  # background passing a threshold: fewer leave it uncertain by more than 1/sqrt(50)
MAX_DESIGN_EFFECT = 2.0  # above this, passing crossings cluster by group more than independence allows
MIN_GROUPS = 20  # fewer groups leave the over-dispersion unmeasured (a chi-square of under 19 degrees of freedom)


def clopper_pearson(k: Any, n: Any, cl: float = ONE_SIGMA) -> tuple[Any, Any]:
    """Central Clopper-Pearson interval at confidence `cl` on a binomial fraction k / n (exact: it covers the
    true fraction at least `cl` of the time); k and n may be effective (non-integer) counts, and arrays
    (elementwise, e.g. the band of an efficiency curve)."""
    k_arr, n_arr = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if np.any((k_arr < 0) | (k_arr > n_arr) | (n_arr <= 0)):
        raise ValueError(f"need 0 <= k <= n and n > 0, got k = {k}, n = {n}")
    tail = (1.0 - cl) / 2
    with np.errstate(invalid="ignore"):  # the Beta parameter 0 at k = 0 or k = n: those ends are 0 and 1
        low = np.where(k_arr == 0, 0.0, beta.ppf(tail, k_arr, n_arr - k_arr + 1))
        high = np.where(k_arr == n_arr, 1.0, beta.ppf(1.0 - tail, k_arr + 1, n_arr - k_arr))
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def rate_interval_khz(k: float, n: float, collision_mhz: float) -> tuple[float, float]:
    """The 68 % interval on the rate (kHz) of a trigger that fires on k of n background crossings."""
    low, high = clopper_pearson(k, n)
    return low * collision_mhz * 1e3, high * collision_mhz * 1e3


def design_effect(passed: np.ndarray, groups: np.ndarray) -> float:
    """Over-dispersion of the passing count across `groups` (Pearson chi-square per degree of freedom of the
    per-group counts, at least 1): about 1 for independent events, about r when events come in groups of r
    that pass together, e.g. crossings that share one hard pileup collision drawn r times from a library."""
    _, group = np.unique(groups, return_inverse=True)
    n_g = np.bincount(group)
    k_g = np.bincount(group, weights=passed)
    p = k_g.sum() / n_g.sum()
    if len(n_g) < 2 or p in (0.0, 1.0):
        return 1.0
    chi2 = np.sum((k_g - n_g * p) ** 2 / (n_g * p * (1 - p)))
    return max(1.0, float(chi2 / (len(n_g) - 1)))


def split_halves(n: int, seed: int, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Masks of two disjoint halves of n events drawn with `seed`: the same seed gives the same halves. With
    `groups`, whole groups go to one half (half the groups each), so the halves share no group."""
    rng = np.random.default_rng(seed)
    if groups is None:
        first = np.zeros(n, dtype=bool)
        first[rng.permutation(n)[: n // 2]] = True
        return first, ~first
    names = np.unique(groups)
    if len(names) < 2:
        raise ValueError(f"cannot split {len(names)} group(s) into two halves")
    first = np.isin(groups, names[rng.permutation(len(names))[: len(names) // 2]])
    return first, ~first


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


def _cross_verify(bkg: np.ndarray, halves: tuple[np.ndarray, np.ndarray], rate_khz: float, collision_mhz: float,
                  groups: np.ndarray | None) -> dict[str, Any]:
    """Two-fold verification of the threshold procedure at `rate_khz`: a threshold set on each half of the
    background fires on crossings of the other half only; the two counts together measure, on every crossing
    once, the rate of a threshold the crossings it is measured on did not set. With `groups` (at least
    `MIN_GROUPS` of them), also the design effect of the passing crossings' clustering and the interval
    widened by it."""
    passed = np.zeros(bkg.size, dtype=bool)
    folds = []
    for setting, checking in (halves, halves[::-1]):
        t = threshold_at_rate(bkg[setting], rate_khz, collision_mhz)
        passed[checking] = bkg[checking] > t.value
        folds.append({"threshold": t.value, "n_calibration": t.n_background, "calibration_pass": t.n_pass,
                      "n_verification": int(np.count_nonzero(checking)),
                      "verification_pass": int(np.count_nonzero(passed[checking]))})
    k, n = int(np.count_nonzero(passed)), int(bkg.size)
    low, high = rate_interval_khz(k, n, collision_mhz)
    out: dict[str, Any] = {"method": "two-fold: each half's threshold counted on the other half",
                           "folds": folds, "n_background": n, "background_pass": k,
                           "rate_khz": k / n * collision_mhz * 1e3, "rate_interval_khz": [low, high],
                           "target_in_interval": bool(low <= rate_khz <= high)}
    n_groups = 0 if groups is None else len(np.unique(groups))
    out["groups"] = n_groups or None
    if n_groups >= MIN_GROUPS:
        d = design_effect(passed, groups)
        low, high = rate_interval_khz(k / d, n / d, collision_mhz)
        out.update(design_effect=d, rate_interval_khz_clustered=[low, high],
                   target_in_clustered_interval=bool(low <= rate_khz <= high))
    return out


def calibrate(scores: np.ndarray, labels: np.ndarray, *, class_names: list[str], rates_khz: list[float],
              collision_mhz: float, score_type: ScoreType, verify_seed: int | None = None,
              groups: np.ndarray | None = None) -> dict[str, Any]:
    """Thresholds on background (label 0) at each rate, each signal's efficiency there, AUCs and ranges; every
    rate and efficiency with its 68 % Clopper-Pearson interval.

    Works on any one model's scores; thresholds get their raw firmware integer only when the scores are
    values of `score_type` (quantized and C-simulated models), since only those are firmware thresholds.

    Thresholds are set on all the background. With `verify_seed`, the background is also split into two
    halves (drawn with that seed) and each rate is verified two-fold, with its interval: a threshold set on
    one half is counted on the other, and the other way round (`_cross_verify`). `groups` (one per event,
    e.g. the `zerobias` pileup library of each crossing) keeps each group in one half, so that the halves
    share no pileup collision, and measures how much the passing crossings cluster by group. A threshold
    passed by fewer than 50 background events is flagged `low_statistics` and named in `warnings` (the
    pipeline prints them and puts them in report.json).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores for {labels.size} labels")
    if groups is not None and np.shape(groups) != scores.shape:
        raise ValueError(f"{np.size(groups)} groups for {scores.size} scores")
    bkg = scores[labels == 0]
    bkg_groups = None if groups is None else np.asarray(groups).ravel()[labels == 0]
    signals = {name: scores[labels == i] for i, name in enumerate(class_names)
               if i > 0 and np.any(labels == i)}
    classes = {"background": bkg, **signals}
    on_grid = score_type.on_grid(scores)
    halves = None if verify_seed is None else split_halves(bkg.size, verify_seed, bkg_groups)
    thresholds = {f"{r:g}kHz": threshold_at_rate(bkg, r, collision_mhz) for r in rates_khz}
    top_ok = all(t.value < score_type.top for t in thresholds.values())
    warnings = [f"{key}: {t.n_pass} of {t.n_background} background events pass the threshold "
                f"(fewer than {MIN_CALIBRATION_PASS}): its rate is uncertain by more than "
                f"{1 / math.sqrt(MIN_CALIBRATION_PASS):.0%}" for key, t in thresholds.items()
                if t.n_pass < MIN_CALIBRATION_PASS]
    checks = {key: None if halves is None else _cross_verify(bkg, halves, t.rate_khz, collision_mhz, bkg_groups)
              for key, t in thresholds.items()}
    warnings += [f"{key}: the verification background passing clusters by group (design effect "
                 f"{c['design_effect']:.1f}): the crossings share pileup collisions; use the clustered interval"
                 for key, c in checks.items() if c is not None and c.get("design_effect", 1.0) > MAX_DESIGN_EFFECT]
    return {
        "n_background": int(bkg.size),
        "calibration": {"verify_seed": verify_seed, "split_by_group": bkg_groups is not None,
                        "halves": None if halves is None else [int(np.count_nonzero(h)) for h in halves]},
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
                "rate_interval_khz": list(rate_interval_khz(t.n_pass, t.n_background, collision_mhz)),
                "low_statistics": t.n_pass < MIN_CALIBRATION_PASS,
                "verification": checks[key],
            }
            for key, t in thresholds.items()
        },
        "efficiency": {name: {key: efficiency(s, t.value) for key, t in thresholds.items()}
                       for name, s in signals.items()},
        "efficiency_interval": {name: {key: list(clopper_pearson(int(np.count_nonzero(s > t.value)), s.size))
                                       for key, t in thresholds.items()} for name, s in signals.items()},
        "roc_auc": {name: roc_auc(bkg, s) for name, s in signals.items()},
        "range": {name: [float(v.min()), float(v.max())] for name, v in classes.items()},
        "saturated": {name: score_type.saturated(v) for name, v in classes.items()},
        # a clipped score still fires when every threshold is below the top code: saturation costs nothing
        "thresholds_below_top": top_ok,
        "warnings": warnings,
    }
