"""Rate calibration on constructed score arrays: thresholds, ties, efficiencies, AUC, fixed-point values,
and the statistics: Clopper-Pearson intervals and their coverage, the calibration / verification split,
the low-statistics warning and the clustering of crossings that share pileup."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trigger.rate import (
    ONE_SIGMA,
    ScoreType,
    calibrate,
    clopper_pearson,
    design_effect,
    efficiency,
    efficiency_vs_rate,
    false_positive_rate,
    rate_interval_khz,
    roc_auc,
    split_halves,
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


# --- statistics ----------------------------------------------------------------------------------------

def test_clopper_pearson_limits_symmetry_and_large_k() -> None:
    assert clopper_pearson(0, 10)[0] == 0.0
    assert clopper_pearson(10, 10)[1] == 1.0
    low, high = clopper_pearson(3, 10)
    mirror = clopper_pearson(7, 10)
    assert (low, high) == pytest.approx((1 - mirror[1], 1 - mirror[0]))
    # k = 10^4 of 10^6: the normal approximation p +- sqrt(p (1 - p) / n)
    low, high = clopper_pearson(10_000, 1_000_000)
    sigma = math.sqrt(0.01 * 0.99 / 1e6)
    assert (low, high) == pytest.approx((0.01 - sigma, 0.01 + sigma), rel=2e-3)
    assert pytest.approx(0.6827, abs=1e-4) == ONE_SIGMA
    assert rate_interval_khz(5, 200_000, 40.0) == pytest.approx(tuple(40e3 * x for x in clopper_pearson(5, 200_000)))
    for bad in ((-1, 10), (11, 10), (0, 0)):
        with pytest.raises(ValueError, match="need 0 <= k <= n"):
            clopper_pearson(*bad)


def test_verified_rate_interval_covers_the_true_rate_68_percent_of_the_time() -> None:
    """2000 toys of the whole procedure: exponential background scores (true rate of a threshold t is
    40 MHz x exp(-t)), a threshold set on each half and counted on the other. The two counts together
    estimate the mean true rate of the two half-thresholds; about 800 events pass, where Clopper-Pearson
    over-covers only slightly."""
    rng = np.random.default_rng(20260)
    n, rate_khz, collision_mhz = 20_000, 1600.0, 40.0  # 4 % of each 10 000-event half may fire
    covered = 0
    toys = 2000
    for toy in range(toys):
        scores = rng.exponential(1.0, n)
        m = calibrate(scores, np.zeros(n, dtype=int), class_names=["background"], rates_khz=[rate_khz],
                      collision_mhz=collision_mhz, score_type=ScoreType(16, 10), verify_seed=toy)
        check = m["thresholds"]["1600kHz"]["verification"]
        low, high = check["rate_interval_khz"]
        true = np.mean([collision_mhz * 1e3 * math.exp(-f["threshold"]) for f in check["folds"]])
        covered += low <= true <= high
    assert covered / toys == pytest.approx(0.68, abs=0.03)


def test_half_split_is_reproducible_disjoint_and_keeps_groups_whole() -> None:
    a1, b1 = split_halves(1001, 7)
    a2, _ = split_halves(1001, 7)
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, split_halves(1001, 8)[0])
    assert np.count_nonzero(a1) == 500
    assert not np.any(a1 & b1)
    assert np.all(a1 | b1)
    groups = np.repeat(np.arange(40), 25)
    first, second = split_halves(groups.size, 3, groups)
    assert set(groups[first]).isdisjoint(groups[second])
    assert len(set(groups[first])) == 20
    with pytest.raises(ValueError, match="group"):
        split_halves(10, 1, np.zeros(10))
    # calibrate: the same seed gives the same thresholds and verification, another seed other ones
    rng = np.random.default_rng(4)
    scores, labels = rng.exponential(1.0, 50_000), np.zeros(50_000, dtype=int)
    args = {"class_names": ["background"], "rates_khz": [400.0], "collision_mhz": 40.0,
            "score_type": ScoreType(16, 10)}
    one, again, other = (calibrate(scores, labels, verify_seed=s, **args)["thresholds"]["400kHz"]
                         for s in (11, 11, 12))
    assert one == again
    assert one["value"] == other["value"]  # set on all the background
    assert one["verification"]["folds"] != other["verification"]["folds"]
    assert one["verification"]["n_background"] == 50_000
    assert [f["n_verification"] for f in one["verification"]["folds"]] == [25_000, 25_000]


def test_fewer_than_50_passing_calibration_events_warn() -> None:
    """The warning is returned with the figures (the pipeline prints it and puts it in report.json)."""
    rng = np.random.default_rng(5)
    scores, labels = rng.exponential(1.0, 200_000), np.zeros(200_000, dtype=int)
    args = {"class_names": ["background"], "collision_mhz": 40.0, "score_type": ScoreType(16, 10)}
    m = calibrate(scores, labels, rates_khz=[1.0, 100.0], verify_seed=1, **args)
    low, high = m["thresholds"]["1kHz"], m["thresholds"]["100kHz"]
    assert low["background_pass"] < 50  # 2.5e-5 x 200 000 events allows 5
    assert low["low_statistics"] is True
    assert high["low_statistics"] is False
    assert len(m["warnings"]) == 1
    assert m["warnings"][0].startswith("1kHz: ")
    assert "\n" not in m["warnings"][0]
    assert calibrate(scores, labels, rates_khz=[100.0], **args)["warnings"] == []


def test_every_efficiency_has_its_binomial_interval() -> None:
    rng = np.random.default_rng(6)
    bkg, sig = rng.exponential(1.0, 100_000), rng.exponential(4.0, 3_000)
    m = calibrate(np.concatenate([bkg, sig]), np.repeat([0, 1], [bkg.size, sig.size]), class_names=["background", "s"],
                  rates_khz=[100.0, 1000.0], collision_mhz=40.0, score_type=ScoreType(16, 10))
    for key in ("100kHz", "1000kHz"):
        eff = m["efficiency"]["s"][key]
        k = round(eff * sig.size)
        assert m["efficiency_interval"]["s"][key] == list(clopper_pearson(k, sig.size))
        assert m["efficiency_interval"]["s"][key][0] < eff < m["efficiency_interval"]["s"][key][1]
    t = m["thresholds"]["100kHz"]
    assert t["verification"] is None  # no split asked for
    assert t["rate_interval_khz"] == list(rate_interval_khz(t["background_pass"], 100_000, 40.0))


def test_crossings_sharing_pileup_show_a_design_effect() -> None:
    """Groups of 100 crossings: independent passes give a design effect near 1; passes that come whole groups
    at a time (one hard library collision reused by every crossing of its group) give about 100, and the
    clustered interval widens by about sqrt(100)."""
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(2000), 100)
    independent = rng.random(groups.size) < 0.01
    assert design_effect(independent, groups) == pytest.approx(1.0, abs=0.15)
    hard = rng.random(2000) < 0.01
    clustered = np.repeat(hard, 100)
    assert design_effect(clustered, groups) == pytest.approx(100, rel=0.1)
    # the shared hard collision sets the score of every crossing of its group
    scores = np.repeat(np.where(hard, 10.0 + rng.random(2000), 0.0), 100) + 1e-3 * rng.random(groups.size)
    m = calibrate(scores, np.zeros(groups.size, dtype=int), class_names=["background"], rates_khz=[100.0],
                  collision_mhz=40.0, score_type=ScoreType(16, 10), verify_seed=2, groups=groups)
    check = m["thresholds"]["100kHz"]["verification"]
    assert check["design_effect"] > 50
    low, high = check["rate_interval_khz"]
    wide_low, wide_high = check["rate_interval_khz_clustered"]
    assert (wide_high - wide_low) > 5 * (high - low)
    assert any("design effect" in w for w in m["warnings"])
