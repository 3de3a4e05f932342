"""report.json is strict JSON, the budget verdict says which constraint and which basis decided it with the
estimator's measured error as margin, chance-level models are flagged, and the exported test bench is
patched loudly or not at all (issue 9)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from trigger import report
from trigger.convert import add_golden_check
from trigger.errors import CheckFailed
from trigger.estimate import check_budget, estimate_margin, with_margin
from trigger.estimate.params import load_params

PART = "xcvu13p-flga2577-2-e"


def _strict_loads(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in report.json")

    return json.loads(text, parse_constant=refuse)


def test_report_json_is_strict_json() -> None:
    content = {"a": math.nan, "b": [np.float32(1.5), math.inf, {"c": -math.inf}], "d": np.int64(3)}
    loaded = _strict_loads(report.dumps(content))
    assert loaded == {"a": None, "b": [1.5, None, {"c": None}], "d": 3}


def _budget(totals: dict, **kwargs: object) -> dict:
    result = check_budget(totals, part=PART, **kwargs)
    margin = estimate_margin()
    pass_with_margin = with_margin(result, margin["by_metric"])
    return {**result.as_dict(), "basis": "estimate", "margin": margin, "pass_with_margin": pass_with_margin}


TOTALS = {"latency_ns": 50.0, "latency_cycles": 10, "dsp": 3000, "lut": 1000, "ff": 1000, "bram": 0}


def test_budget_names_the_constraint_that_failed() -> None:
    budget = _budget(TOTALS, latency_ns=150.0, resources_pct={"dsp": 20.0, "lut": 20.0})
    assert budget["pass"] is False
    assert [(c["constraint"], c["pass"]) for c in budget["checks"]] == [("latency", True), ("dsp", False),
                                                                          ("lut", True)]
    assert report.budget_verdict(budget) == "budget FAIL (estimate: DSP)"
    lines = "\n".join(report.budget_lines(budget))
    assert "| latency | 50 ns | 150 ns | pass |" in lines
    assert "| dsp | 24.41 % | 20 % | **FAIL** |" in lines
    assert "latency 150 ns -> FAIL" not in lines


def test_estimated_pass_carries_the_estimators_measured_error() -> None:
    margin = estimate_margin()["by_metric"]
    assert margin["latency_cycles"] > 0.4  # the deep-MLP point: the estimate was 41 % low
    close = _budget(TOTALS, latency_ns=60.0, resources_pct={})
    assert close["pass"] is True
    assert close["pass_with_margin"] is False
    assert report.budget_verdict(close) == "budget pass (estimate; fails with the estimator's measured error)"
    roomy = _budget(TOTALS, latency_ns=50.0 * (1 + margin["latency_cycles"]) + 1, resources_pct={})
    assert roomy["pass_with_margin"] is True
    assert report.budget_verdict(roomy) == "budget pass (estimate, also with its measured error)"
    lines = "\n".join(report.budget_lines(close))
    assert "decided on the trigger estimator" in lines
    assert f"+{100 * margin['latency_cycles']:.0f} %" in lines
    assert report.budget_verdict(_budget(TOTALS, latency_ns=None, resources_pct={})) == "no budget set"


def test_margin_comes_from_the_calibration_results(root: Path) -> None:
    """params.yaml's calibration section is what bench/calibrate_estimator.py measured, not a number set by
    hand, and the points file is split by architecture."""
    results = json.loads((root / "bench" / "results" / "estimator_calibration.json").read_text())
    calibration = load_params()("calibration")
    assert calibration["holdout_points"] == results["holdout"]["points"]
    assert calibration["train_points"] == results["train"]["points"]
    for metric, value in calibration["holdout_largest_underestimate"].items():
        assert value == pytest.approx(results["holdout"][metric]["largest_underestimate"], abs=1e-4)
    points = json.loads((root / "trigger" / "estimate" / "calibration" / "hls4ml_baselines.json").read_text())
    sides: dict[str, set[str]] = {}
    for point in points["points"]:
        sides.setdefault(point["model"], set()).add(point["split"])
    assert all(len(split) == 1 for split in sides.values()), sides


@pytest.mark.parametrize(("metrics", "flagged"), [
    ({"csim": {"accuracy": 0.21, "mean_auc": 0.5, "auc": dict.fromkeys("qgWZt", 0.5)}}, True),
    ({"csim": {"accuracy": 0.66, "mean_auc": 0.90, "auc": dict.fromkeys("qgWZt", 0.9)}}, False),
    ({"csim": {"accuracy": 0.60, "mean_auc": 0.52, "auc": dict.fromkeys("qgWZt", 0.52)}}, True),
    ({"csim": {"accuracy": 0.259, "mean_auc": 0.563, "auc": dict.fromkeys("qgWZt", 0.56)}}, True),  # KERAS_3layer
    ({"csim": {"accuracy": 0.349, "mean_auc": 0.701, "auc": dict.fromkeys("qgWZt", 0.7)}}, False),  # CI tagger
    ({"csim": {"roc_auc": {"Zprime_ll": 0.58, "h_tautau": 0.45}}}, True),
    ({"csim": {"roc_auc": {"Zprime_ll": 0.95, "h_tautau": 0.52}}}, False),
    ({"csim": {"by_multiplicity": {}}}, False),
])
def test_chance_level_is_flagged(metrics: dict, flagged: bool) -> None:
    warning = report.chance_level(metrics, user_model=True)
    assert (warning is not None) == flagged
    if flagged:
        assert "differently preprocessed features" in warning
        assert "\n" not in warning


# ------------------------------------------------------------------------------------- test bench patch


def _written_bench(tmp_path: Path) -> Path:
    """hls4ml's template as its writer leaves it for a one-input, one-output model."""
    import hls4ml

    template = Path(hls4ml.__file__).parent / "templates" / "vivado" / "myproject_test.cpp"
    text = template.read_text().replace(
        "// hls-fpga-machine-learning insert data",
        "nnet::copy_data<float, input_t, 0, 16>(in, inputs);", 1).replace(
        "// hls-fpga-machine-learning insert predictions",
        "for(int i = 0; i < 5; i++) {\n  std::cout << pr[i] << \" \";\n}", 1)
    bench = tmp_path / "myproject_test.cpp"
    bench.write_text(text)
    return bench


FAKE_MODEL = SimpleNamespace(get_output_variables=lambda: [SimpleNamespace(name="layer5_out", size=lambda: 5)])


def test_golden_check_is_added(tmp_path: Path) -> None:
    bench = _written_bench(tmp_path)
    add_golden_check(bench, FAKE_MODEL)
    text = bench.read_text()
    assert "std::vector<double> tb_in;" in text
    assert "copy_data<double, input_t, 0, 16>(tb_in, " in text
    assert "if ((double)layer5_out[i] != tb_pr[0 + i])" in text
    assert "return 1;" in text


@pytest.mark.parametrize("snippet", ["std::vector<float> in;", "std::vector<float> pr;", "in.push_back(",
                                     "nnet::copy_data<float,", "std::cout << pr[i]", "    std::string iline;",
                                     "// hls-fpga-machine-learning insert tb-output", "    return 0;\n}"])
def test_golden_check_fails_loudly_when_the_template_changed(tmp_path: Path, snippet: str) -> None:
    bench = _written_bench(tmp_path)
    before = bench.read_text().replace(snippet, "/* changed upstream */")
    bench.write_text(before)
    with pytest.raises(CheckFailed, match="hls4ml's test bench template changed"):
        add_golden_check(bench, FAKE_MODEL)
    assert bench.read_text() == before  # not half patched
