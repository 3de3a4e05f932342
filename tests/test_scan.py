"""`trigger scan`: every point validated before any work, a 4-point scan on a local Dask cluster stopped after
2 points and resumed, the same scan on a separately started `dask scheduler` + 2 `dask worker` processes
giving the same table, and failing points recorded while the others go on."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import tiny_jet_config

from trigger.cli import main
from trigger.errors import ConfigError
from trigger.scan.config import parse_scan, set_dotted
from trigger.scan.results import WALL_COLUMNS, headline, pareto

GRID = {"quantization.default.weight.bits": [4, 8], "pruning.target_sparsity": [0.5, 0.8]}


def _scan_config(tmp_path: Path, name: str = "ci_scan", grid: dict | None = None, base: dict | None = None,
                 **extra: Any) -> Path:
    """A scan over a tiny jet tagger (base given as a path, as users write it)."""
    base_path = tiny_jet_config(tmp_path, **(base or {}))
    path = tmp_path / f"scan_{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": str(base_path), "grid": GRID if grid is None else grid,
                                    **extra}, sort_keys=False))
    return path


def _scan(config: Path, out: Path, *options: str) -> dict[str, Any]:
    assert main(["scan", str(config), "--out", str(out), "--quiet", *options]) == 0
    return json.loads((out / "scans" / "ci_scan" / "scan.json").read_text())


def _table(root: Path) -> list[dict[str, str]]:
    """scan.csv without its wall-time columns: the part that must be reproducible."""
    with (root / "scan.csv").open() as f:
        return [{k: v for k, v in row.items() if k not in WALL_COLUMNS} for row in csv.DictReader(f)]


# --- validation, before any work -------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "message"), [
    ({"grid": {"quantization.default.weight.bits": [4, 40]}},
     "grid.quantization.default.weight.bits: value 40: must be <= 32, got 40"),
    ({"grid": {"hls.strategy": ["Latency", "Fast"]}}, "grid.hls.strategy: value 'Fast': must be one of"),
    ({"grid": {"model.architecture.hidden": [[8], [0]]}},
     "grid.model.architecture.hidden: value [0]: must be a list of positive integers"),
    ({"grid": {"quantisation.default.weight.bits": [4]}},
     "grid.quantisation.default.weight.bits: value 4: quantisation: unknown key"),
    ({"grid": {"hls.reuse_factor": []}}, "grid.hls.reuse_factor: must be a non-empty list"),
    ({"grid": {"output.projects_dir": ["elsewhere"]}}, "grid.output.projects_dir: is set by the scan"),
    ({"grid": {"hls.reuse_factor": [1, 1]}}, "grid.hls.reuse_factor: repeats a value"),
    ({"grid": {"data.file": ["/nonexistent/jets.h5"]}}, "grid.data.file: value '/nonexistent/jets.h5': "),
    ({"grid": {}, "random": {"samples": 3, "seed": 1, "axes": {"pruning.target_sparsity": {"uniform": [0.5, 1.5]}}}},
     "random.axes.pruning.target_sparsity: value "),
    ({"grid": {}, "random": {"samples": 2, "axes": {"hls.reuse_factor": {"normal": [1, 2]}}}},
     "random.axes.hls.reuse_factor: must be a list of values"),
    ({"grid": {}}, "grid: a scan needs at least one axis"),
    ({"grid": GRID, "colour": "red"}, "colour: unknown key"),
])
def test_bad_scan_is_one_line_exit_2_and_writes_nothing(spec: dict, message: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = _scan_config(tmp_path, **spec)
    start = time.perf_counter()
    assert main(["scan", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}"), err
    assert "\n" not in err
    assert str(config) in err
    assert not (tmp_path / "out").exists()
    assert time.perf_counter() - start < 10  # before any training, cluster or TensorFlow


def test_points_are_a_reproducible_product_of_grid_and_random_draws(tmp_path: Path) -> None:
    base = yaml.safe_load(tiny_jet_config(tmp_path).read_text())
    doc = {"name": "s", "base": base, "grid": {"hls.reuse_factor": [1, 2]},
           "random": {"samples": 3, "seed": 7, "axes": {"pruning.target_sparsity": {"uniform": [0.3, 0.9]},
                                                       "quantization.default.weight.bits": {"integer": [3, 8]}}}}
    scan = parse_scan(doc)
    assert len(scan.points) == 6
    assert scan.axes == ("hls.reuse_factor", "pruning.target_sparsity", "quantization.default.weight.bits")
    assert [p.hash for p in parse_scan(doc).points] == [p.hash for p in scan.points]
    assert len({p.hash for p in scan.points}) == 6
    for point in scan.points:
        assert point.config["hls"]["reuse_factor"] == point.axes["hls.reuse_factor"]
        assert point.config["quantization"]["default"]["weight"]["bits"] in range(3, 9)
        assert 0.3 <= point.config["pruning"]["target_sparsity"] <= 0.9
        assert "output" not in point.config  # set per point, never part of the hash
    # the same draws for every grid value, others with another seed
    draws = [p.axes["pruning.target_sparsity"] for p in scan.points]
    assert draws[:3] == draws[3:]
    doc["random"]["seed"] = 8
    assert [p.axes["pruning.target_sparsity"] for p in parse_scan(doc).points][:3] != draws[:3]
    # repeated draws are dropped, and counted
    doc["random"] = {"samples": 4, "seed": 1, "axes": {"hls.strategy": ["Latency"]}}
    scan = parse_scan(doc)
    assert len(scan.points) == 2
    assert scan.repeated_draws == 6


def test_set_dotted_creates_levels_and_refuses_to_go_through_a_value() -> None:
    config: dict[str, Any] = {"quantization": None, "hls": {"reuse_factor": 1}}
    set_dotted(config, "quantization.default.weight.bits", 4)
    assert config["quantization"] == {"default": {"weight": {"bits": 4}}}
    with pytest.raises(ConfigError, match=r"hls.reuse_factor: is 1, not a mapping"):
        set_dotted(config, "hls.reuse_factor.x", 2)


def test_pareto_front_maximises_headline_and_minimises_cost() -> None:
    rows = [{"status": "ok", "headline": h, "lut_equivalents": c} for h, c in
            [(0.70, 100), (0.72, 200), (0.71, 300), (0.75, 400), (0.75, 400), (0.60, 50)]]
    rows.append({"status": "failed", "headline": 0.99, "lut_equivalents": 1})  # over budget: not a candidate
    rows.append({"status": "ok", "headline": None, "lut_equivalents": 1})
    assert pareto(rows, "lut_equivalents") == {0, 1, 3, 4, 5}


def test_headline_per_family() -> None:
    assert headline("jet_tagger", {"accuracy": 0.7}) == ("accuracy", 0.7)
    anomaly = {"efficiency": {"ttbar": {"1kHz": 0.3, "10kHz": 0.5}, "hz": {"1kHz": 0.1}}}
    assert headline("vae", anomaly) == ("ttbar efficiency at 1kHz", 0.3)
    spanet = {"by_multiplicity": {"6": {"event": 0.4}, "7": {"event": 0.2}}}
    assert headline("spanet", spanet) == ("full-event efficiency, 6-jet events", 0.4)


# --- a 4-point scan on a local cluster, stopped after 2 points and resumed -----------------------------------

@pytest.fixture(scope="module")
def local_scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict, dict[str, bytes]]:
    tmp = tmp_path_factory.mktemp("local_scan")
    config = _scan_config(tmp)
    first = _scan(config, tmp, "--limit", "2")
    root = tmp / "scans" / "ci_scan"
    results = {h: (root / "points" / h / "result.json").read_bytes() for h in first["last_run"]["computed"]}
    second = _scan(config, tmp)
    return root, first, second, results


def test_resume_computes_exactly_the_missing_points(local_scan: tuple[Path, dict, dict, dict[str, bytes]]) -> None:
    root, first, second, results = local_scan
    assert len(first["last_run"]["computed"]) == 2
    assert len(first["last_run"]["left"]) == 2
    assert first["finished"] == 2
    assert sorted(second["last_run"]["reused"]) == sorted(first["last_run"]["computed"])
    assert sorted(second["last_run"]["computed"]) == sorted(first["last_run"]["left"])
    assert second["finished"] == second["points"] == 4
    for point, content in results.items():  # finished points were not touched
        assert (root / "points" / point / "result.json").read_bytes() == content


def test_scan_writes_table_fronts_plots_and_report(local_scan: tuple[Path, dict, dict, dict[str, bytes]]) -> None:
    root, _, scan, _ = local_scan
    rows = scan["rows"]
    assert [r["status"] for r in rows] == ["ok"] * 4, [r["error"] for r in rows]
    assert [(r["quantization.default.weight.bits"], r["pruning.target_sparsity"]) for r in rows] == \
        [(4, 0.5), (4, 0.8), (8, 0.5), (8, 0.8)]
    for column in ("point", "status", "pareto", "headline", "bit_exact_fraction", "latency_cycles", "latency_ns",
                   "lut", "ff", "dsp", "bram", "lut_equivalents", "sparsity", "wall_s", "error"):
        assert column in scan["columns"], column
    for r in rows:
        assert r["headline_source"] == "emulator" or r["headline_source"] == "csim"
        assert 0.3 < r["headline"] <= 1.0  # a trained tagger: chance is 0.2
        assert r["bit_exact_fraction"] == 1.0
        assert r["sparsity"] >= r["pruning.target_sparsity"] - 0.02
        assert r["lut_equivalents"] == r["lut"] + 55 * r["dsp"]
        assert r["wall_s"] > 0
        report = json.loads((root / "points" / r["point"] / "hls_projects" / "ci_tagger" / "report.json").read_text())
        assert report["hls"]["reuse_factor"] == 1
        assert (root / "points" / r["point"] / "config.yaml").is_file()
    assert len({r["lut"] for r in rows}) > 1  # the axes change the design
    assert pareto(rows, "lut_equivalents") == {i for i, r in enumerate(rows) if r["pareto_lut"]}
    assert pareto(rows, "latency_ns") == {i for i, r in enumerate(rows) if r["pareto_latency"]}
    assert all(r["pareto"] == (r["pareto_lut"] or r["pareto_latency"]) for r in rows)
    assert any(r["pareto"] for r in rows)
    table = _table(root)
    assert [t["point"] for t in table] == [r["point"] for r in rows]
    assert [t["pareto"] for t in table] == ["true" if r["pareto"] else "false" for r in rows]
    for name in ("pareto_lut_equivalents.png", "pareto_latency_ns.png", "report.md"):
        assert (root / name).is_file(), name
    report_md = (root / "report.md").read_text()
    assert "LUT + 55 x DSP" in report_md
    assert "![pareto_lut_equivalents.png](pareto_lut_equivalents.png)" in report_md
    assert not list(root.rglob(".trigger-*"))
    assert not list(root.rglob("*.tmp"))


# --- the same scan on a separately started scheduler and 2 workers -------------------------------------------

@pytest.fixture(scope="module")
def dask_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dask scheduler` + 2 `dask worker` processes on 127.0.0.1 (one thread each), stopped afterwards."""
    tmp = tmp_path_factory.mktemp("dask")
    file = tmp / "scheduler.json"
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    logs = [(tmp / f"{name}.log").open("w") for name in ("scheduler", "worker1", "worker2")]
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--port", "0", "--scheduler-file",
                               str(file), *common], stdout=logs[0], stderr=subprocess.STDOUT, cwd=tmp)]
    try:
        deadline = time.monotonic() + 60
        while not file.is_file() or not file.read_text():
            assert time.monotonic() < deadline, (tmp / "scheduler.log").read_text()
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        for log in logs[1:]:
            procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", "--scheduler-file", str(file),
                                           "--nthreads", "1", *common], stdout=log, stderr=subprocess.STDOUT,
                                          cwd=tmp))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


def test_external_scheduler_gives_the_resumed_local_table(
        dask_processes: str, local_scan: tuple[Path, dict, dict, dict[str, bytes]], tmp_path: Path) -> None:
    scan = _scan(_scan_config(tmp_path), tmp_path, "--scheduler", dask_processes)
    assert len(scan["last_run"]["computed"]) == 4
    assert {r["status"] for r in scan["rows"]} == {"ok"}
    # an uninterrupted run on other processes: the same table, wall times aside
    assert _table(tmp_path / "scans" / "ci_scan") == _table(local_scan[0])


def test_unreachable_scheduler_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import dask

    config = _scan_config(tmp_path)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(["scan", str(config), "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --scheduler: cannot connect to tcp://127.0.0.1:9")


# --- failures are results -------------------------------------------------------------------------------------

def test_failing_points_are_recorded_and_the_others_go_on(dask_processes: str, tmp_path: Path) -> None:
    # With a 1 ns budget: 500 events leave 200 held-out, fewer than equivalence.min_events, so that compile
    # raises right after loading the data; the other fails its budget check after writing its whole project.
    config = _scan_config(tmp_path, grid={"data.max_events": [500, 3000]}, base={"budget": {"latency_ns": 1}})
    scan = _scan(config, tmp_path, "--scheduler", dask_processes)
    raised, over = scan["rows"]
    assert raised["status"] == over["status"] == "failed"
    assert raised["error"].startswith("ConfigError: equivalence.min_events:"), raised["error"]
    assert raised["headline"] is None
    assert raised["lut"] is None
    assert over["error"].startswith("check failed: over budget: latency"), over["error"]
    # a failed check keeps its figures, but no failed point is on a front
    assert over["headline"] > 0.3
    assert over["lut"] > 0
    assert over["bit_exact_fraction"] == 1.0
    assert over["budget_pass"] is False
    assert not raised["pareto"]
    assert not over["pareto"]
    root = tmp_path / "scans" / "ci_scan"
    log = (root / "points" / raised["point"] / "log.txt").read_text()
    assert "Traceback" in log
    assert "min_events" in log
    assert "## Failed points" in (root / "report.md").read_text()
    # failed points are finished: a rerun computes nothing; --retry-failed computes them again
    assert _scan(config, tmp_path, "--scheduler", dask_processes)["last_run"]["computed"] == []
    again = _scan(config, tmp_path, "--scheduler", dask_processes, "--retry-failed", "--limit", "1")
    assert again["last_run"]["computed"] == [raised["point"]]
