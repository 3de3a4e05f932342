"""Stage: the report, `report.json` for machines and `report.md` (with PNG plots) for people.

`report.json` is a stable schema that CI pipelines read (documented in docs/report.md, version in
`schema_version`); additions are backwards compatible, removals bump the version.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
TOOLS = ("trigger", "tensorflow", "keras", "qkeras", "tensorflow-model-optimization", "hls4ml", "numpy",
         "pythia8mc", "fastjet", "h5py")
ESTIMATE_KEYS = ("latency_cycles", "latency_ns", "ii", "dsp", "lut", "ff", "bram")


def versions() -> dict[str, str | None]:
    """Versions of the tools that made this report (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for tool in TOOLS:
        try:
            found[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            found[tool] = None
    return found


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if 0 < abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.{digits}f}"
    return str(value)


def markdown(report: dict[str, Any], family_lines: list[str]) -> str:
    """report.md: what a physicist and a firmware engineer read first."""
    eq = report["equivalence"]
    est = report["estimate"]
    budget = report["budget"]
    lines = [
        f"# {report['name']} ({report['family']})",
        "",
        f"Source: {report['source']['kind']}"
        + (f" `{report['source']['model_file']}`" if report["source"].get("model_file") else "")
        + f"; config `{report['config']}`; data `{report['data']['file']}`.",
        "",
        "## Equivalence: C simulation vs the Keras model",
        "",
        f"- check: **{eq['mode']}** on {eq['events']} held-out events, inputs on the input grid "
        f"`{report['hls']['input_type']}` ({eq['inputs_saturated']} input values saturated)",
        f"- bit-exact events: {eq['bit_exact_fraction']:.4%}; largest difference {_fmt(eq['max_abs_diff'])}",
    ]
    if eq.get("argmax_agreement") is not None:
        lines.append(f"- argmax agreement: {eq['argmax_agreement']:.4%}")
    if eq.get("softmax"):
        sm = eq["softmax"]
        lines.append(f"- softmax (kept in firmware, not bit-exact by design): argmax agreement "
                     f"{sm['argmax_agreement']:.4%}, largest difference {_fmt(sm['max_abs_diff'])}")
    lines.append(f"- verdict: **{'PASS' if eq['pass'] else 'FAIL'}**")
    lines += ["", "## Physics figures (test split)", "", *family_lines, ""]
    sp = report["sparsity"]
    if sp is not None:
        lines += ["## Sparsity", "", f"Overall {sp['overall']:.1%} of kernel weights are zero "
                  f"(target {_fmt(sp['target'])}).", "",
                  "| layer | zeros |", "|---|---|",
                  *[f"| {k} | {v:.1%} |" for k, v in sp["layers"].items()], ""]
    lines += ["## Latency and resources", ""]
    totals = est.get("totals") if est else None
    if totals:
        lines += [
            "These are **estimates** from the trigger estimator (no vendor tool was run); "
            "`trigger report` adds measured figures once Vitis/Vivado HLS has run.", "",
            f"- latency: {totals['latency_cycles']} cycles = {totals['latency_ns']:.1f} ns at "
            f"{report['hls']['clock_period_ns']} ns; II {totals['ii']}",
            f"- resources: {totals['lut']} LUT, {totals['ff']} FF, {totals['dsp']} DSP, {totals['bram']} BRAM",
            f"- budget: latency {_fmt(budget['latency_ns'], 0)} ns -> "
            f"**{'PASS' if budget['pass'] else 'FAIL' if budget['pass'] is False else 'no budget'}**",
        ]
        lines += [f"  - {r}" for r in budget.get("reasons", [])]
    else:
        lines.append("No latency or resource estimate is available for this design.")
    lines += ["", "## Firmware", "",
              f"HLS project: `{report['outputs']['project_dir']}` (top function `{report['name']}`, "
              f"{report['hls']['backend']}, {report['hls']['part']}, {report['hls']['clock_period_ns']} ns, "
              f"{report['hls']['io_type']}, {report['hls']['strategy']}, reuse {report['hls']['reuse_factor']}); "
              f"vendor scripts: `{report['outputs']['scripts_dir']}`.", ""]
    if report.get("plots"):
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]] + [""]
    lines += ["## Stage timings", "", "| stage | seconds |", "|---|---|",
              *[f"| {k} | {v:.1f} |" for k, v in report["timings_s"].items()], ""]
    return "\n".join(lines)
