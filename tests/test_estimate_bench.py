"""The calibration data, the calibration bench's bookkeeping, and its design path on two small points."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POINTS = ROOT / "trigger" / "estimate" / "calibration" / "hls4ml_baselines.json"
RESULTS = ROOT / "bench" / "results" / "estimator_calibration.json"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "calibrate_estimator", ROOT / "bench" / "calibrate_estimator.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_calibration_point_cites_its_source(bench):
    points = json.loads(POINTS.read_text())["points"]
    assert {p["split"] for p in points} == {"train", "holdout"}
    assert len({p["id"] for p in points}) == len(points)
    for point in points:
        source = point["source"]
        assert ("path" in source and len(source["commit"]) == 40) or "publication" in source, point["id"]
        assert set(point["measured"]) <= set(bench.METRICS)
        assert "latency_cycles" in point["measured"]
    published = next(p for p in points if p["id"] == "keras_3layer_70pruned")
    assert published["measured"]["latency_cycles"] == 22
    assert published["part"].startswith("xcku115")


def test_results_file_matches_the_points():
    results = json.loads(RESULTS.read_text())
    points = json.loads(POINTS.read_text())["points"]
    assert results["train"]["points"] + results["holdout"]["points"] == len(points)
    assert {row["id"] for row in results["rows"]} == {p["id"] for p in points}


def _point(point_id: str) -> dict:
    return next(p for p in json.loads(POINTS.read_text())["points"] if p["id"] == point_id)


def test_a_point_is_estimated_through_its_design(bench, tmp_path):
    """The bench converts, writes and lowers the model, and the estimate of that design is the one recorded."""
    pytest.importorskip("hls4ml")
    row = next(r for r in json.loads(RESULTS.read_text())["rows"] if r["id"] == "vivado_dense_parallel")
    est = bench.estimate_point(_point("vivado_dense_parallel"), tmp_path)
    assert [layer["class_name"] for layer in est["layers"]] == ["input", "dense", "elu"]
    assert est["totals"] == row["estimate"]


def test_a_point_with_69_bit_accumulators_is_estimated(bench, tmp_path):
    """hls4ml sizes this depthwise conv's accumulator at 69 bits: the design holds it (the estimator needs no
    exact arithmetic), and the estimate equals the recorded row."""
    pytest.importorskip("hls4ml")
    point = _point("vivado_depthwise2d_stream")
    design, _ = bench.design_point(point, tmp_path)
    assert max(op.types["accum"].width for op in design.ops if "accum" in op.types) == 69
    row = next(r for r in json.loads(RESULTS.read_text())["rows"] if r["id"] == point["id"])
    assert bench.estimate_point(point, tmp_path)["totals"] == row["estimate"]


def test_errors_and_summary(bench):
    errs = bench.errors(
        {"latency_cycles": 12, "dsp": 0, "lut": 150}, {"latency_cycles": 10, "dsp": 0, "lut": 100}
    )
    assert errs["latency_cycles"]["rel_error"] == pytest.approx(0.2)
    assert errs["dsp"]["rel_error"] is None
    summary = bench.summarise([{"errors": errs}])
    assert summary["lut"]["mean_abs_rel_error"] == pytest.approx(0.5)
    assert summary["dsp"]["n_with_nonzero_measurement"] == 0


def test_user_report_row(bench, tmp_path):
    report = {
        "name": "tagger",
        "estimate": {
            "model": "trigger-estimator 1",
            "totals": {
                "latency_cycles": 10,
                "latency_ns": 50.0,
                "ii": 1,
                "dsp": 100,
                "lut": 1000,
                "ff": 500,
                "bram": 0,
            },
        },
        "measured": {
            "tool_version": "2023.1",
            "latency_cycles": 12,
            "ii": 1,
            "dsp": 80,
            "lut": 1500,
            "ff": 400,
            "bram": 0,
        },
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    row = bench.user_row(path)
    assert row["split"] == "user"
    assert row["errors"]["dsp"]["rel_error"] == pytest.approx(0.25)
    del report["measured"]
    path.write_text(json.dumps(report))
    with pytest.raises(SystemExit, match="trigger report"):
        bench.user_row(path)
