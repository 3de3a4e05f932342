"""The vendor round trip: detect Vivado/Vitis tools, parse their reports, and `trigger report`.

Vendor tools cannot run in CI, so `trigger compile` only estimates. A user who has the tools runs
vivado_scripts/<name>/run.sh, then `trigger report hls_projects/<name>` reads the real csynth.xml (and
vivado_synth.rpt when Vivado synthesis was run), puts the measured numbers next to the estimate in
report.json, reruns the budget check on them, and keeps the pair so the estimator can be recalibrated.
Nothing here ever fabricates a vendor number: a missing report is an error that says how to make it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from trigger.errors import InputError

VENDOR_TOOLS = ("vitis_hls", "vivado_hls", "vivado")
RESOURCE_TAGS = {
    "lut": ("LUT",),
    "ff": ("FF",),
    "dsp": ("DSP", "DSP48E"),
    "bram": ("BRAM_18K",),
    "uram": ("URAM",),
}


def detect_vendor_tools() -> dict[str, str | None]:
    """Path of each vendor executable on PATH, or None."""
    return {tool: shutil.which(tool) for tool in VENDOR_TOOLS}


def missing_tools_message(tools: dict[str, str | None] | None = None) -> str | None:
    """One line naming the missing tools, or None when an HLS tool and Vivado are both present."""
    tools = detect_vendor_tools() if tools is None else tools
    missing = []
    if not (tools.get("vitis_hls") or tools.get("vivado_hls")):
        missing.append("vitis_hls/vivado_hls (C synthesis)")
    if not tools.get("vivado"):
        missing.append("vivado (logic synthesis)")
    if not missing:
        return None
    return "vendor tools not on PATH: " + ", ".join(missing) + "; reports are estimates only"


def _text(node: ET.Element, path: str, file: Path) -> str:
    found = node.find(path)
    if found is None or found.text is None:
        raise InputError(f"{file}: not a csynth report, missing <{path}>")
    return found.text.strip()


def _float(value: str, file: Path, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise InputError(f"{file}: {what} is not a number ({value!r})")
    return number


def _int(value: str, file: Path, what: str) -> int:
    return int(_float(value, file, what))


def parse_csynth_xml(path: Path) -> dict[str, Any]:
    """Latency, interval and resources of the top function from a Vivado/Vitis HLS csynth.xml.

    Latency is the worst case (the budget must hold for every event); Vivado HLS names DSPs `DSP48E`,
    Vitis HLS `DSP`."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"{path}: cannot parse csynth report ({exc})") from exc
    perf = root.find("PerformanceEstimates")
    area = root.find("AreaEstimates/Resources")
    if perf is None or area is None:
        raise InputError(f"{path}: not a csynth report, missing <PerformanceEstimates> or <AreaEstimates>")
    latency = perf.find("SummaryOfOverallLatency")
    if latency is None:
        raise InputError(f"{path}: not a csynth report, missing <SummaryOfOverallLatency>")
    worst = _text(latency, "Worst-caseLatency", path)
    if worst.lower() in ("undef", "?"):
        raise InputError(
            f"{path}: latency is undefined (a loop without a trip count); cannot check the budget"
        )
    period = _float(_text(root, "UserAssignments/TargetClockPeriod", path), path, "TargetClockPeriod")
    out: dict[str, Any] = {
        "tool_version": (root.findtext("ReportVersion/Version") or "").strip() or None,
        "part": (root.findtext("UserAssignments/Part") or "").strip() or None,
        "top": (root.findtext("UserAssignments/TopModelName") or "").strip() or None,
        "clock_period_ns": period,
        "estimated_clock_ns": _float(_text(perf, "SummaryOfTimingAnalysis/EstimatedClockPeriod", path), path,
                                     "EstimatedClockPeriod"),
        "best_latency_cycles": _int(_text(latency, "Best-caseLatency", path), path, "Best-caseLatency"),
        "latency_cycles": _int(worst, path, "Worst-caseLatency"),
        "ii": _int(_text(latency, "Interval-max", path), path, "Interval-max"),
    }
    out["latency_ns"] = round(out["latency_cycles"] * period, 3)
    available = root.find("AreaEstimates/AvailableResources")
    out["available"] = {}
    for key, tags in RESOURCE_TAGS.items():
        value = next((area.findtext(t) for t in tags if area.find(t) is not None), None)
        if value is None and key != "uram":
            raise InputError(f"{path}: not a csynth report, missing <{tags[0]}> in <Resources>")
        out[key] = _int(value, path, tags[0]) if value is not None else 0
        if available is not None:
            avail = next((available.findtext(t) for t in tags if available.find(t) is not None), None)
            if avail is not None:
                out["available"][key] = _int(avail, path, f"Available {tags[0]}")
    return out


_ROW = re.compile(r"^\|\s*([^|]+?)\s*\|\s*([0-9.]+)\s*\|")
_SECTION = re.compile(r"^(\d+)\.\s+(\S.*)$")


def parse_vivado_synth_report(path: Path) -> dict[str, Any]:
    """LUT/FF/BRAM18/DSP/URAM from a Vivado `report_utilization` file (UltraScale 'CLB' or 7-series
    'Slice' names). Vivado counts block RAM in 36 Kb tiles; they are converted to 18 Kb blocks."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read Vivado utilisation report ({exc})") from exc
    section = ""
    found: dict[str, float] = {}
    device = None
    for line in lines:
        if line.startswith("| Device"):
            device = line.split(":", 1)[1].strip()
        m = _SECTION.match(line)
        if m:
            section = m.group(2).strip().upper()
            continue
        row = _ROW.match(line)
        if not row:
            continue
        name, value = row.group(1).rstrip("*").strip(), float(row.group(2))
        if section in ("CLB LOGIC", "SLICE LOGIC"):
            if name in ("CLB LUTs", "Slice LUTs"):
                found["lut"] = value
            elif name in ("CLB Registers", "Slice Registers"):
                found["ff"] = value
        elif section in ("BLOCKRAM", "MEMORY"):
            if name == "Block RAM Tile":
                found["bram"] = value * 2
            elif name == "URAM":
                found["uram"] = value
        elif section in ("ARITHMETIC", "DSP") and name == "DSPs":
            found["dsp"] = value
    missing = [k for k in ("lut", "ff", "dsp", "bram") if k not in found]
    if missing:
        raise InputError(f"{path}: not a Vivado utilisation report, no {', '.join(missing)} row found")
    out: dict[str, Any] = {k: round(v) for k, v in found.items()}
    out.setdefault("uram", 0)
    out["device"] = device
    return out


# --------------------------------------------------------------------------------------- trigger report


def find_reports(project_dir: Path, project_name: str | None) -> dict[str, Path]:
    """csynth.xml (<prj>_prj/solution*/syn/report/) and vivado_synth.rpt inside an hls4ml project."""
    found: dict[str, Path] = {}
    candidates = sorted(project_dir.glob("*_prj/solution*/syn/report/*csynth.xml"))
    preferred = [c for c in candidates if project_name and c.name == f"{project_name}_csynth.xml"]
    top = [c for c in candidates if c.name == "csynth.xml"]
    if preferred or top:
        found["csynth"] = (preferred or top)[0]
    rpt = project_dir / "vivado_synth.rpt"
    if rpt.is_file():
        found["vivado_synth"] = rpt
    return found


def _scripts_hint(project_dir: Path, name: str) -> str:
    scripts = project_dir.parent.parent / "vivado_scripts" / name / "run.sh"
    return str(scripts) if scripts.exists() else f"vivado_scripts/{name}/run.sh"


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    from trigger.report import dumps

    text = dumps(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def measured_section(project_dir: Path, reports: dict[str, Path]) -> dict[str, Any]:
    """Merge csynth (latency, II, HLS resource estimate) and Vivado synthesis (post-synthesis resources,
    preferred when present) into report.json's `measured` section."""
    measured: dict[str, Any] = {"kind": "measured", "source_files": {}}
    if "csynth" in reports:
        cs = parse_csynth_xml(reports["csynth"])
        measured["source_files"]["csynth"] = str(reports["csynth"].relative_to(project_dir))
        measured["tool_version"] = cs["tool_version"]
        measured["clock_period_ns"] = cs["clock_period_ns"]
        measured["estimated_clock_ns"] = cs["estimated_clock_ns"]
        for key in ("latency_cycles", "latency_ns", "ii", "dsp", "lut", "ff", "bram"):
            measured[key] = cs[key]
        measured["resources_from"] = "csynth"
        measured["csynth_resources"] = {k: cs[k] for k in ("dsp", "lut", "ff", "bram")}
    if "vivado_synth" in reports:
        vs = parse_vivado_synth_report(reports["vivado_synth"])
        measured["source_files"]["vivado_synth"] = str(reports["vivado_synth"].relative_to(project_dir))
        for key in ("dsp", "lut", "ff", "bram"):
            measured[key] = vs[key]
        measured["resources_from"] = "vivado_synth"
    return measured


def _table(estimate: dict[str, Any], measured: dict[str, Any]) -> str:
    keys = ("latency_cycles", "latency_ns", "ii", "dsp", "lut", "ff", "bram")
    lines = [f"{'':16s}{'estimated':>12s}{'measured':>12s}{'meas/est':>10s}"]
    for key in keys:
        est, meas = estimate.get(key), measured.get(key)
        if meas is None:
            continue
        ratio = f"{meas / est:.2f}" if isinstance(est, (int, float)) and est else "-"
        est_s = f"{est:g}" if isinstance(est, (int, float)) else "-"
        lines.append(f"{key:16s}{est_s:>12s}{meas:>12g}{ratio:>10s}")
    return "\n".join(lines)


def _read_report(path: Path) -> dict[str, Any]:
    """report.json as a mapping, or one line saying why it cannot be read."""
    if not path.is_file():
        raise InputError(f"{path}: not found; run `trigger compile` first")
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(report, dict):
        raise InputError(f"{path}: not a trigger report (a JSON {type(report).__name__}, not an object)")
    return report


def _section(report: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = report.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{path}: {key} must be an object, got {value!r}")
    return value


def report_command(args: argparse.Namespace) -> int:
    """`trigger report PROJECT_DIR`: measured numbers into report.json and through the budget check."""
    from trigger.estimate import check_budget

    project_dir = Path(args.project_dir)
    report_path = project_dir / "report.json"
    report = _read_report(report_path)
    name = str(report.get("name") or project_dir.name)
    hls = _section(report, "hls", report_path)
    budget = _section(report, "budget", report_path)
    project_name = hls.get("project_name") or name
    reports = find_reports(project_dir, project_name)
    if "csynth" not in reports:
        tools = missing_tools_message()
        print(
            f"error: no csynth.xml under {project_dir}/*_prj/solution1/syn/report/; produce it with "
            f"{_scripts_hint(project_dir, name)} csynth" + (f" ({tools})" if tools else ""),
            file=sys.stderr,
        )
        return 2
    part = budget.get("part") or hls.get("part")
    if not isinstance(part, str) or not part:
        raise InputError(f"{report_path}: budget.part is missing")
    latency_ns = budget.get("latency_ns")
    if latency_ns is not None and (isinstance(latency_ns, bool) or not isinstance(latency_ns, (int, float))):
        raise InputError(f"{report_path}: budget.latency_ns must be a number or null, got {latency_ns!r}")
    caps = budget.get("resources_pct") or {}
    if not isinstance(caps, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in caps.values() if v is not None):
        raise InputError(f"{report_path}: budget.resources_pct must map resources to numbers, got {caps!r}")
    measured = measured_section(project_dir, reports)
    result = check_budget(measured, latency_ns=latency_ns, resources_pct=caps, part=part)
    measured["budget"] = result.as_dict()
    report["measured"] = measured
    # The vendor's numbers now decide the verdict; the estimate's verdict is kept under `estimate`.
    limits = {k: budget.get(k) for k in ("latency_ns", "resources_pct", "part")}
    estimated = budget.get("estimate") if budget.get("basis") == "vendor" else {
        k: v for k, v in budget.items() if k not in limits}
    report["budget"] = {**limits, "part": part, **result.as_dict(), "basis": "vendor",
                        "measured_pass": result.passed, "estimate": estimated}
    _write_atomic(report_path, report)
    estimate = _section(report, "estimate", report_path).get("totals") or {}
    print(f"{name}: measured ({', '.join(measured['source_files'].values())}) vs estimated")
    print(_table(estimate, measured))
    if result.passed is None:
        print("budget: none set")
        return 0
    if result.passed:
        print("budget: PASS (measured)")
        return 0
    print("budget: FAIL (measured): " + "; ".join(result.reasons))
    return 1


def add_report_command(subparsers: Any) -> None:
    """Register `trigger report PROJECT_DIR` on the CLI's argparse subparsers."""
    parser = subparsers.add_parser(
        "report",
        help="read Vivado/Vitis reports of a project into report.json and recheck the budget",
        description="Parse csynth.xml (and vivado_synth.rpt) of hls_projects/<name>, record the measured "
        "numbers next to the estimate in report.json and rerun the budget check on them.",
    )
    parser.add_argument("project_dir", type=Path, help="hls_projects/<name>")
    parser.set_defaults(func=report_command)
