"""Rate calibration on constructed score arrays: thresholds, ties, efficiencies, AUC, fixed-point values."""

from __future__ import annotations

import numpy as np
import pytest

from trigger.rate import (
    ScoreType,
    calibrate,
    efficiency,
    efficiency_vs_rate,
    false_positive_rate,
    roc_auc,
    threshold_at_rate,
)


def test_false_positive_rate_of_one_khz_at_40_mhz() -> None:
    assert false_positive_rate(1.0, 40.0) == pytest.approx(2.5e-5)
    assert false_positive_rate(10.0, 40.0) == pytest.approx(2.5e-4)
    for bad in (0.0, -1.0, 40_000.0):
        with pytest.raises(ValueError, match="kHz"):
            false_positive_rate(bad, 40.0)


def test_threshold_lets_exactly_the_allowed_background_fire() -> None:
    bkg = np.random.default_rng(0).permutation(np.arange(1, 200_001, dtype=np.float64))
    t = threshold_at_rate(bkg, 1.0, 40.0)
    assert t.allowed == 5  # floor(2.5e-5 * 200000)
    assert t.value == 199_995.0  # the 6th highest: the 5 above it fire
    assert t.n_pass == 5
    assert t.achieved_rate_khz == pytest.approx(1.0)
    t10 = threshold_at_rate(bkg, 10.0, 40.0)
    assert (t10.allowed, t10.n_pass, t10.value) == (50, 50, 199_950.0)


def test_ties_never_push_the_rate_over_the_target() -> None:
    # 10 background events share the top score: letting any of them fire would let all ten fire.
    bkg = np.concatenate([np.full(10, 7.0), np.full(199_990, 1.0)])
    t = threshold_at_rate(bkg, 1.0, 40.0)
    assert t.value == 7.0
    assert t.n_pass == 0
    assert t.n_pass <= t.allowed


def test_too_little_background_gives_an_upper_limit() -> None:
    t = threshold_at_rate(np.array([0.5, 2.0, 1.0]), 1.0, 40.0)
    assert (t.allowed, t.value, t.n_pass) == (0, 2.0, 0)
    with pytest.raises(ValueError, match="no background"):
        threshold_at_rate(np.array([]), 1.0, 40.0)


def test_efficiency_counts_strictly_above() -> None:
    assert efficiency(np.array([1.0, 2.0, 3.0, 4.0]), 2.0) == 0.5
    assert np.isnan(efficiency(np.array([]), 2.0))


def test_roc_auc_limits_and_ties() -> None:
    assert roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5


def test_efficiency_vs_rate_agrees_with_threshold_and_efficiency() -> None:
    rng = np.random.default_rng(1)
    bkg, sig = rng.exponential(1.0, 100_000), rng.exponential(3.0, 5_000)
    rate, eff = efficiency_vs_rate(bkg, sig, 40.0)
    assert np.all(np.diff(rate) <= 0)  # thresholds ascend
    assert np.all(np.diff(eff) <= 0)
    t = threshold_at_rate(bkg, 10.0, 40.0)
    point = np.argmin(np.abs(rate - t.achieved_rate_khz))
    assert rate[point] == pytest.approx(t.achieved_rate_khz)
    assert eff[point] == pytest.approx(efficiency(sig, t.value))


def test_score_type_grid_top_and_raw() -> None:
    st = ScoreType(16, 10)  # ap_ufixed<16,10>: LSB 2^-6, top 1024 - 2^-6
    assert st.step == 2.0**-6
    assert st.top == 1024 - 2.0**-6
    assert st.hls() == "ap_ufixed<16,10,AP_RND_CONV,AP_SAT>"
    assert st.raw(3.25) == 208
    assert st.raw(st.top) == 2**16 - 1
    with pytest.raises(ValueError, match="not a value"):
        st.raw(0.001)
    assert st.on_grid(np.array([0.0, 3.25, st.top]))
    assert not st.on_grid(np.array([0.001]))
    assert not st.on_grid(np.array([st.top + st.step]))
    assert st.saturated(np.array([1.0, st.top, 2000.0])) == 2


def test_calibrate_reports_fixed_point_thresholds_efficiencies_and_saturation() -> None:
    st = ScoreType(12, 8)  # LSB 1/16, top 255.9375
    rng = np.random.default_rng(2)
    bkg = np.floor(rng.exponential(2.0, 120_000) * 16) / 16
    sig_a = np.floor(rng.exponential(20.0, 4_000) * 16) / 16
    scores = np.minimum(np.concatenate([bkg, sig_a, np.full(3, 300.0), np.full(5, 0.0)]), st.top)
    labels = np.concatenate([np.zeros(bkg.size), np.ones(sig_a.size), np.full(3, 2), np.full(5, 3)])
    m = calibrate(scores, labels, class_names=["background", "a", "b", "c", "absent"], rates_khz=[1, 10],
                  collision_mhz=40.0, score_type=st)
    assert m["on_grid"] is True
    assert m["n_background"] == 120_000
    assert m["n_signal"] == {"a": 4_000, "b": 3, "c": 5}  # classes without events are left out
    t1 = m["thresholds"]["1kHz"]
    assert t1["allowed_background"] == 3
    assert t1["background_pass"] <= 3
    assert t1["raw"] == round(t1["value"] * 16)
    expected = threshold_at_rate(bkg, 1.0, 40.0)
    assert t1["value"] == expected.value
    assert m["efficiency"]["a"]["1kHz"] == efficiency(sig_a, expected.value)
    assert m["efficiency"]["b"] == {"1kHz": 1.0, "10kHz": 1.0}
    assert m["efficiency"]["c"]["10kHz"] == 0.0
    assert m["roc_auc"]["b"] == 1.0
    assert m["saturated"] == {"background": 0, "a": int(np.count_nonzero(sig_a >= st.top)), "b": 3, "c": 0}
    assert m["range"]["b"] == [st.top, st.top]
    assert m["thresholds_below_top"] is True


def test_calibrate_float_scores_have_no_raw_threshold() -> None:
    rng = np.random.default_rng(3)
    scores = rng.exponential(1.0, 50_000)
    labels = (np.arange(scores.size) % 10 == 0).astype(int)
    m = calibrate(scores, labels, class_names=["background", "s"], rates_khz=[10], collision_mhz=40.0,
                  score_type=ScoreType(16, 10))
    assert m["on_grid"] is False
    assert m["thresholds"]["10kHz"]["raw"] is None
    with pytest.raises(ValueError, match="scores for"):
        calibrate(scores, labels[:-1], class_names=["background", "s"], rates_khz=[10], collision_mhz=40.0,
                  score_type=ScoreType(16, 10))
