"""Stage: the traced logic cut into pipeline stages at the configured clock, and the firmware engineer's RTL
project written: hls_projects/<name>/rtl/ (da4ml's Verilog, metadata, timing constraints and Vivado/Quartus
project scripts, plus a README with the ports, their fixed-point formats, the latency and the II)."""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trigger import __version__
from trigger.rtl.device import CLOCK_UNCERTAINTY, Family, family_of

if TYPE_CHECKING:
    from da4ml.cmvm.types import Pipeline

    from trigger.design.graph import Design, Tensor
    from trigger.rtl.trace import Traced

# Sources a firmware engineer needs; the Verilator build products stay in the temporary build folder.
BUILD_PRODUCTS = ("obj_dir", "lib*.so", "*.o", "*.a")


@dataclass
class Pipelined:
    """The design as a da4ml pipeline (II = 1) at a clock, and how its stage count was derived."""

    pipeline: Pipeline
    family: Family
    clock_period_ns: float
    levels_per_stage: int
    depth: float  # da4ml delay levels of the deepest input-to-output path
    seconds: float

    @property
    def stages(self) -> int:
        return len(self.pipeline.solutions)

    @property
    def latency_ns(self) -> float:
        return round(self.stages * self.clock_period_ns, 6)

    def derivation(self) -> str:
        return (f"{self.stages} cycles = ceil({self.depth:g} levels on the deepest path / "
                f"{self.levels_per_stage} levels per stage), one register rank per stage boundary; "
                f"{self.family.derivation(self.clock_period_ns)}")

    def estimate(self) -> dict[str, float]:
        """da4ml's own resource estimate: LUTs of the adders and muxes, FFs of the stage registers."""
        return {"lut": round(float(self.pipeline.cost)), "ff": int(self.pipeline.reg_bits)}


def pipeline(traced: Traced, clock_period_ns: float, part: str) -> Pipelined:
    """Cut the logic into stages of at most the levels that fit one clock period (device.py), then let
    da4ml retime them to balance the stages without adding one."""
    from da4ml.trace import to_pipeline

    start = time.perf_counter()
    family = family_of(part)
    levels = family.levels_per_stage(clock_period_ns)
    pipe = to_pipeline(traced.logic, levels, retiming=True, verbose=False)
    depth = float(traced.logic.latency[1])
    expected = max(1, math.ceil(depth / levels))
    if len(pipe.solutions) != expected:
        raise AssertionError(f"da4ml cut {len(pipe.solutions)} stages, the derivation says {expected}")
    return Pipelined(pipe, family, clock_period_ns, levels, depth, time.perf_counter() - start)


def write_project(p: Pipelined, design: Design, folder: Path, part: str) -> None:
    """da4ml's RTL project: src/ (Verilog, table memories, XDC/SDC), model/, sim/ (Verilator binder),
    build_vivado_prj.tcl and build_quartus_prj.tcl, metadata.json."""
    from da4ml.codegen import RTLModel

    model = RTLModel(p.pipeline, design.name, folder, flavor="verilog", part_name=part,
                     clock_period=p.clock_period_ns, clock_uncertainty=CLOCK_UNCERTAINTY)
    model.write(metadata={"design": design.name, "generator": f"trigger {__version__}", "part": part,
                          "family": p.family.yosys, "clock_period_ns": p.clock_period_ns,
                          "latency_cycles": p.stages, "latency_ns": p.latency_ns, "ii": 1,
                          "levels_per_stage": p.levels_per_stage, "latency_derivation": p.derivation()})


def port_layout(qints: list[Any], tensors: list[Tensor]) -> list[dict[str, Any]]:
    """Each element of a packed port: its design tensor and index, bit range and fixed-point format.

    da4ml gives every element the narrowest format that holds its traced range, so an element can be
    narrower than its design type (its values are the same) and a constant-zero element has no bits."""
    from da4ml.cmvm.types import minimal_kif

    names = [f"{t.name}[{','.join(map(str, idx))}]" for t in tensors for idx in np.ndindex(*t.shape)]
    rows, low = [], 0
    for name, qint in zip(names, qints, strict=True):
        k, i, f = (int(v) for v in minimal_kif(qint))
        width = k + i + f
        fmt = "constant 0" if width == 0 else (f"ap_fixed<{width},{k + i}>" if k else f"ap_ufixed<{width},{i}>")
        rows.append({"element": name, "low": low, "high": low + width - 1, "width": width, "format": fmt})
        low += width
    return rows


def _port_table(port: str, rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"| `{port}` bits | element | format |", "|---|---|---|"]
    for r in rows:
        bits = "none" if r["width"] == 0 else f"[{r['high']}:{r['low']}]"
        lines.append(f"| {bits} | `{r['element']}` | `{r['format']}` |")
    return lines


def write_readme(folder: Path, p: Pipelined, design: Design, part: str, equivalence: dict[str, Any]) -> None:
    """README.md for the firmware engineer: what to instantiate, the ports, the timing, how it was checked."""
    inputs = port_layout(p.pipeline.inp_qint, design.inputs)
    outputs = port_layout(p.pipeline.out_qint, design.output_tensors)
    n = design.name
    est = p.estimate()
    lines = [
        f"# {n}: RTL generated from the design by da4ml", "",
        f"Generated by trigger {__version__} from `design.json` (the typed fixed-point design the HLS project "
        "is built from) through da4ml's functional tracing API: constant-matrix products as shift-add trees, "
        "every cast with the design's own rounding and overflow.", "",
        "## Interface", "",
        f"- top module `{n}` (`src/{n}.v`, stages in `src/{n}_stage*.v`, primitives in `src/static/`): "
        f"`input clk`, `input [{max(1, sum(r['width'] for r in inputs)) - 1}:0] model_inp`, "
        f"`output reg [{max(1, sum(r['width'] for r in outputs)) - 1}:0] model_out`; no reset, no handshake.",
        f"- fully pipelined: **II = 1** (a new event every clock), **latency {p.stages} cycles = {p.latency_ns:g} ns** "
        f"at {p.clock_period_ns:g} ns: `model_out` holds the result of the `model_inp` sampled {p.stages} rising "
        "edges earlier.",
        f"- `{n}_wrapper` (`src/{n}_wrapper.v`) re-spaces the ports to one fixed width per element (sign-extended "
        "outputs); it is what the Verilator test bench drives.",
        "- values are two's complement (`ap_fixed`) or unsigned (`ap_ufixed`) bit patterns, C-order elements of "
        "the design's tensors, packed from bit 0 upwards in the order below.", "",
        "### Inputs", "", *_port_table("model_inp", inputs), "",
        "### Outputs", "", *_port_table("model_out", outputs), "",
        "## Timing", "",
        f"{p.derivation()}.", "",
        "The cycle count is exact for this RTL (the Verilator check below reads every event's outputs exactly "
        "that many cycles after its inputs, one event per cycle). Whether every stage meets the clock after "
        f"place and route is not proven here: run Vivado (`src/{n}.xdc` constrains `clk` at "
        f"{p.clock_period_ns:g} ns with {CLOCK_UNCERTAINTY:.0%} uncertainty).", "",
        "## Resources", "",
        f"da4ml's estimate: {est['lut']} LUT, {est['ff']} FF (adders as LUT bits, stage registers as FF bits). "
        "`trigger synth` adds yosys `synth_xilinx` counts to the project's report; yosys is not Vivado, so "
        "take Vivado's utilisation report as the figure that decides.", "",
        "## Verification", "",
        f"The Verilated model equals the design's exact interpreter (the emulator) on "
        f"{equivalence['bit_exact_fraction']:.4%} of {equivalence['events']} held-out events "
        f"(largest difference {equivalence['max_abs_diff']:g}).", "",
        "## Vendor tools", "",
        f"- Vivado: `vivado -mode batch -source build_vivado_prj.tcl` (part `{part}`; out-of-context synthesis, "
        f"place and route, reports under `output_{n}/reports/`).",
        "- Quartus: `quartus_sh -t build_quartus_prj.tcl` after setting `device` at its top to an Intel part.",
        "- `metadata.json`: da4ml's cost and latency with trigger's clock, part and latency derivation; "
        "`model/pipeline.json`: the pipeline da4ml generated the Verilog from.", "",
    ]
    (folder / "README.md").write_text("\n".join(lines))


def install(src: Path, dest: Path) -> None:
    """Copy the finished project from the build folder to `dest` without build products; a reader of
    `dest` never sees half of it (copied beside it, then renamed into place)."""
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(src, partial, ignore=shutil.ignore_patterns(*BUILD_PRODUCTS))
        if dest.exists():
            shutil.rmtree(dest)
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
