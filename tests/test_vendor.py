"""Vendor report parsing and the `trigger report` round trip, on fixture files (tests/fixtures/vendor/,
hand-written in the real report structure; their numbers are not synthesis results)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from trigger.errors import InputError
from trigger.vendor import (
    add_report_command,
    detect_vendor_tools,
    missing_tools_message,
    parse_csynth_xml,
    parse_vivado_synth_report,
)

FIXTURES = Path(__file__).parent / "fixtures" / "vendor"


def test_parse_vivado_hls_csynth():
    r = parse_csynth_xml(FIXTURES / "vivado_hls_2020.1_csynth.xml")
    assert (r["latency_cycles"], r["best_latency_cycles"], r["ii"]) == (12, 11, 1)
    assert r["latency_ns"] == 60.0
    assert r["clock_period_ns"] == 5.0
    assert r["estimated_clock_ns"] == 4.371
    assert (r["dsp"], r["lut"], r["ff"], r["bram"]) == (1021, 54321, 23456, 4)
    assert r["available"] == {"lut": 1728000, "ff": 3456000, "dsp": 12288, "bram": 5376, "uram": 1280}
    assert (r["tool_version"], r["part"], r["top"]) == ("2020.1", "xcvu13p-flga2577-2-e", "myproject")


def test_parse_vitis_hls_csynth_dsp_tag():
    r = parse_csynth_xml(FIXTURES / "vitis_hls_2023.1_csynth.xml")
    assert r["dsp"] == 998
    assert r["latency_cycles"] == 11
    assert r["tool_version"] == "2023.1"


def test_csynth_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="undefined"):
        parse_csynth_xml(FIXTURES / "csynth_undef_latency.xml")
    bad = tmp_path / "csynth.xml"
    bad.write_text("<profile><UserAssignments/></profile>")
    with pytest.raises(InputError, match=re.escape(str(bad))):
        parse_csynth_xml(bad)
    bad.write_text("not xml")
    with pytest.raises(InputError, match="cannot parse"):
        parse_csynth_xml(bad)
    with pytest.raises(InputError, match=r"missing\.xml"):
        parse_csynth_xml(tmp_path / "missing.xml")


def test_parse_vivado_synth_ultrascale():
    r = parse_vivado_synth_report(FIXTURES / "vivado_synth_ultrascale.rpt")
    assert r == {"lut": 31337, "ff": 12345, "bram": 5, "uram": 0, "dsp": 876, "device": "xcvu13pflga2577-2"}


def test_parse_vivado_synth_7series():
    r = parse_vivado_synth_report(FIXTURES / "vivado_synth_7series.rpt")
    assert (r["lut"], r["ff"], r["bram"], r["dsp"]) == (2089, 2282, 1, 2)


def test_vivado_synth_without_tables_is_rejected(tmp_path):
    bad = tmp_path / "vivado_synth.rpt"
    bad.write_text("1. CLB Logic\n| CLB LUTs | 5 | 0 |\n")
    with pytest.raises(InputError, match="no ff, dsp, bram row"):
        parse_vivado_synth_report(bad)


def test_detect_vendor_tools_without_tools(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_vendor_tools() == {"vitis_hls": None, "vivado_hls": None, "vivado": None}
    message = missing_tools_message()
    assert "\n" not in message
    assert "vitis_hls/vivado_hls" in message
    assert "vivado" in message


def test_detect_vendor_tools_finds_executables(monkeypatch, tmp_path):
    for tool in ("vitis_hls", "vivado"):
        exe = tmp_path / tool
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    tools = detect_vendor_tools()
    assert tools["vitis_hls"] == str(tmp_path / "vitis_hls")
    assert tools["vivado_hls"] is None
    assert missing_tools_message(tools) is None


# ------------------------------------------------------------------------------------- trigger report


def _cli():
    parser = argparse.ArgumentParser(prog="trigger")
    add_report_command(parser.add_subparsers(dest="command"))
    return parser


def _project(tmp_path: Path, *, latency_ns: float | None, resources_pct: dict, synth: bool = False) -> Path:
    project = tmp_path / "hls_projects" / "tagger"
    report_dir = project / "myproject_prj" / "solution1" / "syn" / "report"
    report_dir.mkdir(parents=True)
    shutil.copy(FIXTURES / "vivado_hls_2020.1_csynth.xml", report_dir / "myproject_csynth.xml")
    shutil.copy(FIXTURES / "vitis_hls_2023.1_csynth.xml", report_dir / "dense_latency_csynth.xml")
    if synth:
        shutil.copy(FIXTURES / "vivado_synth_ultrascale.rpt", project / "vivado_synth.rpt")
    report = {
        "name": "tagger",
        "family": "jet_tagger",
        "estimate": {
            "kind": "estimate",
            "model": "trigger-estimator 1",
            "totals": {
                "latency_cycles": 10,
                "latency_ns": 50.0,
                "ii": 1,
                "dsp": 1000,
                "lut": 50000,
                "ff": 20000,
                "bram": 4,
            },
        },
        "budget": {
            "latency_ns": latency_ns,
            "resources_pct": resources_pct,
            "part": "xcvu13p-flga2577-2-e",
            "pass": True,
        },
        "hls": {
            "backend": "Vivado",
            "part": "xcvu13p-flga2577-2-e",
            "clock_period_ns": 5.0,
            "project_name": "myproject",
        },
    }
    (project / "report.json").write_text(json.dumps(report))
    return project


def _run(project: Path) -> int:
    args = _cli().parse_args(["report", str(project)])
    return args.func(args)


def test_report_round_trip_pass(tmp_path, capsys):
    project = _project(tmp_path, latency_ns=100.0, resources_pct={"dsp": 10.0})
    assert _run(project) == 0
    report = json.loads((project / "report.json").read_text())
    measured = report["measured"]
    assert measured["source_files"] == {"csynth": "myproject_prj/solution1/syn/report/myproject_csynth.xml"}
    assert (measured["latency_cycles"], measured["latency_ns"], measured["dsp"]) == (12, 60.0, 1021)
    assert report["budget"]["measured_pass"] is True
    assert report["budget"]["pass"] is True
    assert report["estimate"]["totals"]["latency_cycles"] == 10
    out = capsys.readouterr().out
    assert "latency_cycles" in out
    assert "estimated" in out
    assert "measured" in out
    assert "PASS" in out
    assert not list(project.glob(".report.json.*"))


def test_report_over_budget_exits_1_and_prefers_vivado_synth(tmp_path, capsys):
    project = _project(tmp_path, latency_ns=55.0, resources_pct={"lut": 1.0}, synth=True)
    assert _run(project) == 1
    report = json.loads((project / "report.json").read_text())
    assert report["measured"]["resources_from"] == "vivado_synth"
    assert report["measured"]["lut"] == 31337
    assert report["measured"]["csynth_resources"]["lut"] == 54321
    assert report["budget"]["measured_pass"] is False
    out = capsys.readouterr().out
    assert "latency 60 ns > budget 55 ns" in out
    assert "LUT 1.81 %" in out


def test_report_without_vendor_files_exits_2(tmp_path, capsys):
    project = _project(tmp_path, latency_ns=100.0, resources_pct={})
    shutil.rmtree(project / "myproject_prj")
    before = (project / "report.json").read_text()
    assert _run(project) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "csynth.xml" in err
    assert "vivado_scripts/tagger/run.sh" in err
    assert (project / "report.json").read_text() == before


def test_report_without_report_json_is_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"report\.json"):
        _run(tmp_path / "empty")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: [r], r"not a trigger report \(a JSON list, not an object\)"),
        (lambda r: {**r, "budget": "none"}, r"budget must be an object, got 'none'"),
        (lambda r: {**r, "hls": 5}, r"hls must be an object"),
        (lambda r: {**r, "budget": {**r["budget"], "latency_ns": "fast"}}, r"budget.latency_ns must be a number"),
        (lambda r: {**r, "budget": {**r["budget"], "resources_pct": [10]}}, r"budget.resources_pct must map"),
    ],
)
def test_report_refuses_a_malformed_report_json_in_one_line(tmp_path, capsys, edit, message):
    project = _project(tmp_path, latency_ns=100.0, resources_pct={})
    path = project / "report.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    before = path.read_text()
    with pytest.raises(InputError, match=message) as err:
        _run(project)
    assert "\n" not in str(err.value)
    assert path.read_text() == before


@pytest.mark.parametrize("field", ["TargetClockPeriod", "EstimatedClockPeriod"])
def test_csynth_clock_fields_that_are_not_numbers(tmp_path, field):
    text = (FIXTURES / "vivado_hls_2020.1_csynth.xml").read_text()
    bad = tmp_path / "csynth.xml"
    bad.write_text(re.sub(rf"<{field}>[^<]*</{field}>", f"<{field}>five ns</{field}>", text))
    with pytest.raises(InputError, match=rf"{field} is not a number \('five ns'\)"):
        parse_csynth_xml(bad)
    bad.write_text(re.sub(rf"<{field}>[^<]*</{field}>", f"<{field}>nan</{field}>", text))
    with pytest.raises(InputError, match=rf"{field} is not a number"):
        parse_csynth_xml(bad)


def test_report_records_the_vendor_basis_and_keeps_the_estimate_verdict(tmp_path):
    project = _project(tmp_path, latency_ns=55.0, resources_pct={})
    assert _run(project) == 1
    report = json.loads((project / "report.json").read_text())
    budget = report["budget"]
    assert budget["basis"] == "vendor"
    assert budget["pass"] is False
    assert budget["estimate"]["pass"] is True
    assert [c["constraint"] for c in budget["checks"] if not c["pass"]] == ["latency"]
    assert _run(project) == 1  # a second run keeps the estimate's verdict, not the first run's
    assert json.loads((project / "report.json").read_text())["budget"]["estimate"]["pass"] is True


def test_trigger_report_cli_exits_2_in_one_line_on_a_list(tmp_path, capsys):
    from trigger.cli import main

    project = _project(tmp_path, latency_ns=100.0, resources_pct={})
    (project / "report.json").write_text("[]")
    assert main(["report", str(project)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {project / 'report.json'}: not a trigger report (a JSON list, not an object)"]
