"""TCL + shell scripts that run the vendor flow on a written hls4ml project (vivado_scripts/<name>/).

The scripts find the project by a path relative to themselves, so the tree can be written in a temporary
folder and moved into place as long as hls_projects/<name>/ and vivado_scripts/<name>/ keep their relative
placement. run.sh picks vitis_hls or vivado_hls (the backend's own tool first), and says in one line which
tool is missing instead of producing anything.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from trigger.errors import InputError

STEPS = ("csim", "csynth", "cosim", "export", "vsynth")
CLOCK_UNCERTAINTY = {"Vitis": "27%", "Vivado": "12.5%"}  # hls4ml 1.3.0 backend defaults

_PROJECT_TCL = """\
# Written by trigger: shared settings of the vendor scripts for {project_name}.
# The hls4ml project is found relative to this file, never by an absolute path.
set script_dir [file dirname [file normalize [info script]]]
set project_dir [file normalize [file join $script_dir {rel_path}]]
set project_name {project_name}
set part {part}
set clock_period {clock_period}
# hls4ml's default for the backend; the estimator schedules against the same margin.
set clock_uncertainty {uncertainty}
set backend {backend}
if {{![file isdirectory $project_dir]}} {{
    puts "ERROR: hls4ml project not found at $project_dir"
    exit 2
}}
cd $project_dir
"""

_OPEN_HLS = """\
source [file join [file dirname [file normalize [info script]]] project.tcl]
open_project ${project_name}_prj
set_top ${project_name}
add_files firmware/${project_name}.cpp -cflags "-std=c++0x"
add_files -tb ${project_name}_test.cpp -cflags "-std=c++0x"
add_files -tb firmware/weights
add_files -tb tb_data
if {[info exists ::env(TRIGGER_HLS_TOOL)] && $::env(TRIGGER_HLS_TOOL) eq "vitis_hls"} {
    open_solution solution1 -flow_target vivado
} else {
    open_solution solution1
}
set_part $part
create_clock -period $clock_period -name default
set_clock_uncertainty $clock_uncertainty default
"""

_STEP_BODY = {
    "csim": 'puts "trigger: C simulation of $project_name"\ncsim_design\n',
    "csynth": 'puts "trigger: C synthesis of $project_name"\ncsynth_design\n'
    'puts "trigger: report in $project_dir/${project_name}_prj/solution1/syn/report/"\n',
    "cosim": 'puts "trigger: C/RTL co-simulation of $project_name (needs csynth)"\n'
    'add_files -tb ${project_name}_test.cpp -cflags "-std=c++0x -DRTL_SIM"\n'
    "cosim_design -trace_level none\n",
    "export": 'puts "trigger: IP export of $project_name (needs csynth)"\nexport_design -format ip_catalog\n',
}

_VSYNTH_TCL = """\
# Written by trigger: Vivado logic synthesis of the HLS RTL; writes vivado_synth.rpt into the project.
source [file join [file dirname [file normalize [info script]]] project.tcl]
set rtl_dir ${project_name}_prj/solution1/syn/verilog
if {![file isdirectory $rtl_dir]} {
    puts "ERROR: no RTL in $project_dir/$rtl_dir; run csynth first"
    exit 2
}
create_project -in_memory -part $part
add_files [glob -nocomplain $rtl_dir/*.v $rtl_dir/*.sv $rtl_dir/*.dat]
foreach ip_tcl [glob -nocomplain $rtl_dir/*_ip.tcl] { source $ip_tcl }
create_clock -period $clock_period -name ap_clk [get_ports -quiet ap_clk]
synth_design -top ${project_name} -part $part -mode out_of_context
opt_design -retarget -propconst -sweep -bram_power_opt -shift_register_opt
report_utilization -file vivado_synth.rpt
report_timing_summary -file vivado_timing.rpt
puts "trigger: wrote $project_dir/vivado_synth.rpt"
"""

_RUN_SH = """\
#!/usr/bin/env bash
# Written by trigger: run the vendor flow for {project_name}.
#   ./run.sh                    C simulation + C synthesis
#   ./run.sh csynth cosim       any of: {steps} (vsynth = Vivado synthesis -> vivado_synth.rpt)
# then: trigger report <path to hls_projects/{project_name}>
set -euo pipefail
here="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
steps=("$@")
[ ${{#steps[@]}} -eq 0 ] && steps=(csim csynth)
preferred={preferred}
hls_tool=""
for t in "$preferred" {fallback}; do
    if command -v "$t" >/dev/null 2>&1; then hls_tool="$t"; break; fi
done
for step in "${{steps[@]}}"; do
    case "$step" in
        csim|csynth|cosim|export)
            if [ -z "$hls_tool" ]; then
                echo "missing vendor tool: neither $preferred nor {fallback} is on PATH" \
                     "(source the Xilinx settings64.sh); nothing was run" >&2
                exit 2
            fi
            echo "trigger: $hls_tool $step"
            TRIGGER_HLS_TOOL="$hls_tool" "$hls_tool" -f "$here/$step.tcl"
            ;;
        vsynth)
            if ! command -v vivado >/dev/null 2>&1; then
                echo "missing vendor tool: vivado is not on PATH" \
                     "(source the Xilinx settings64.sh); Vivado synthesis was not run" >&2
                exit 2
            fi
            vivado -mode batch -nojournal -nolog -source "$here/vsynth.tcl"
            ;;
        *)
            echo "unknown step '$step'; use: {steps}" >&2
            exit 2
            ;;
    esac
done
"""

_TCL_WORD = re.compile(r"^[A-Za-z0-9_.\-+/]+$")


def _tcl_word(value: str, what: str) -> str:
    """Values are written unquoted into TCL; refuse anything that could break or inject into a script."""
    if not _TCL_WORD.match(value):
        raise InputError(f"{what}: {value!r} contains characters that cannot go into a TCL script")
    return value


def write_vivado_scripts(
    project_dir: Path,
    scripts_dir: Path,
    *,
    project_name: str,
    backend: str,
    part: str,
    clock_period_ns: float,
) -> list[Path]:
    """Write project.tcl, one TCL per step (csim, csynth, cosim, export, vsynth) and run.sh into
    scripts_dir; return the written paths."""
    if backend not in ("Vivado", "Vitis"):
        raise InputError(f"hls.backend: vendor scripts exist for Vivado and Vitis, got {backend!r}")
    if clock_period_ns <= 0:
        raise InputError(f"hls.clock_period_ns: must be > 0, got {clock_period_ns}")
    scripts_dir.mkdir(parents=True, exist_ok=True)
    rel = Path(os.path.relpath(Path(project_dir).resolve(), scripts_dir.resolve())).as_posix()
    tool = "vitis_hls" if backend == "Vitis" else "vivado_hls"
    fallback = "vivado_hls" if backend == "Vitis" else "vitis_hls"
    files = {
        "project.tcl": _PROJECT_TCL.format(
            project_name=_tcl_word(project_name, "project_name"),
            rel_path=_tcl_word(rel, "project path"),
            part=_tcl_word(part, "hls.part"),
            clock_period=f"{clock_period_ns:g}",
            uncertainty=CLOCK_UNCERTAINTY[backend],
            backend=backend.lower(),
        ),
        "vsynth.tcl": _VSYNTH_TCL,
        "run.sh": _RUN_SH.format(
            project_name=project_name, steps=" ".join(STEPS), preferred=tool, fallback=fallback
        ),
    }
    for step, body in _STEP_BODY.items():
        header = f"# Written by trigger: {step} step for {project_name}.\n"
        files[f"{step}.tcl"] = header + _OPEN_HLS + body + "exit\n"
    written = []
    for name, text in files.items():
        path = scripts_dir / name
        path.write_text(text)
        written.append(path)
    run = scripts_dir / "run.sh"
    run.chmod(run.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return written
