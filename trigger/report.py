"""Stage: the report, `report.json` for machines and `report.md` (with PNG plots) for people.

`report.json` is a stable schema that CI pipelines read (documented in docs/report.md, version in
`schema_version`); additions are backwards compatible, removals bump the version.
"""

from __future__ import annotations

import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2  # 2: equivalence.legs, metrics.emulator (the design and its emulator)
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


def _strict(value: Any) -> Any:
    """The value with NumPy scalars as Python numbers and non-finite floats as None: report.json is strict
    JSON (a bare NaN is not JSON, and most readers outside Python reject it); null reads as "n/a"."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # NumPy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(report: dict[str, Any]) -> str:
    """report.json's text; `allow_nan=False` makes any non-finite number that slipped through an error."""
    return json.dumps(_strict(report), indent=2, allow_nan=False) + "\n"


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.write_text(dumps(report))


CHANCE_MARGIN = 0.1  # a figure within this of the random-guess value is "near chance"


def chance_level(metrics: dict[str, Any], user_model: bool) -> str | None:
    """A one-line warning when the firmware model's headline figure is hardly better than guessing, else None.

    Headline figures: a classifier's accuracy (chance 1 / classes) and mean AUC (chance 0.5), an anomaly
    score's AUC for every signal (0.5); "near" is within `CHANCE_MARGIN`. An imported model near chance
    usually saw differently preprocessed features in its own training (other scaling, order or units), so
    the warning says so."""
    m = metrics.get("csim") or {}
    figure = None
    if "accuracy" in m and isinstance(m.get("auc"), dict) and m["auc"]:
        chance = 1.0 / len(m["auc"])
        if m["accuracy"] <= chance + CHANCE_MARGIN or (m.get("mean_auc") or 0.5) <= 0.5 + CHANCE_MARGIN:
            figure = f"accuracy {m['accuracy']:.3f} (chance {chance:.3f}), mean AUC {_fmt(m.get('mean_auc'), 3)}"
    elif isinstance(m.get("roc_auc"), dict) and m["roc_auc"]:
        aucs = [v for v in m["roc_auc"].values() if v is not None]
        if aucs and max(abs(v - 0.5) for v in aucs) <= CHANCE_MARGIN:
            figure = f"AUC {', '.join(f'{v:.3f}' for v in aucs)} for every signal (chance 0.5)"
    if figure is None:
        return None
    cause = ("a model trained on differently preprocessed features than model.preprocessing gives is the usual "
             "cause" if user_model else "the model did not learn; check the data and the training settings")
    return f"the firmware model is near chance level: {figure}; {cause}"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if 0 < abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.{digits}f}"
    return str(value)


BASIS = {"estimate": "the trigger estimator (no vendor tool was run)",
         "vendor": "the vendor tool's reports (`trigger report`)"}


def budget_verdict(budget: dict[str, Any]) -> str:
    """One phrase for the summary line: the verdict, which basis decided it, and whether it survives the
    estimator's measured error (an estimated pass that does not is only as good as the estimate)."""
    if budget.get("pass") is None:
        return "no budget set"
    basis = budget.get("basis", "estimate")
    if budget["pass"] is False:
        failed = [c["constraint"].upper() if c["unit"] == "%" else c["constraint"]
                  for c in budget.get("checks", []) if not c["pass"]]
        return f"budget FAIL ({basis}: {', '.join(failed)})"
    if basis == "estimate" and budget.get("pass_with_margin") is False:
        return "budget pass (estimate; fails with the estimator's measured error)"
    return f"budget pass ({basis}" + (", also with its measured error)" if basis == "estimate" else ")")


def budget_lines(budget: dict[str, Any]) -> list[str]:
    """report.md's budget table: every constraint, its value against its limit, and (for an estimate) the
    value raised by the estimator's measured held-out error."""
    if budget.get("pass") is None:
        return ["- budget: none set"]
    basis = budget.get("basis", "estimate")
    margin = basis == "estimate" and budget.get("pass_with_margin") is not None
    lines = [f"Budget, decided on {BASIS.get(basis, basis)}"
             + (f"; margin: the estimator's largest under-estimate on {budget['margin']['points']} held-out "
                "synthesis results (docs/estimator.md)" if margin else "") + ":", "",
             "| constraint | value | limit | verdict |" + (" with margin | verdict |" if margin else ""),
             "|---|---|---|---|" + ("---|---|" if margin else "")]
    for c in budget.get("checks", []):
        unit = " ns" if c["unit"] == "ns" else " %"
        row = (f"| {c['constraint']} | {c['value']:.4g}{unit} | {c['limit']:g}{unit} | "
               f"{'pass' if c['pass'] else '**FAIL**'} |")
        if margin:
            row += (f" {c['value_with_margin']:.4g}{unit} (+{100 * c['margin']:.0f} %) | "
                    f"{'pass' if c['pass_with_margin'] else 'fail'} |")
        lines.append(row)
    lines += ["", f"- verdict: **{budget_verdict(budget)}**"]
    return lines


def rtl_lines(report: dict[str, Any]) -> list[str]:
    """report.md's RTL backend block: the RTL pipeline's exact latency and da4ml's and yosys's resources next to
    the HLS estimate. `trigger synth` later replaces the yosys line in place."""
    from trigger.rtl.synth import md_line, yosys_row

    rtl, totals = report["rtl"], (report.get("estimate") or {}).get("totals") or {}
    hls = (f"| HLS estimate (trigger estimator) | {totals['latency_cycles']} cycles = {totals['latency_ns']:.1f} ns "
           f"| {totals['ii']} | {totals['lut']} | {totals['ff']} | {totals['dsp']} |") if totals else None
    da4ml = rtl.get("da4ml_estimate") or {}
    yosys = (report.get("synthesis") or {}).get("yosys")
    return [
        "### RTL backend (da4ml -> Verilog, Verilated)", "",
        "| source | latency | II | LUT | FF | DSP |", "|---|---|---|---|---|---|",
        *([hls] if hls else []),
        f"| RTL pipeline (da4ml's estimate for resources) | {rtl['latency_cycles']} cycles = "
        f"{rtl['latency_ns']:.1f} ns | {rtl['ii']} | {da4ml.get('lut', '-')} | {da4ml.get('ff', '-')} | - |",
        *([yosys_row(yosys)] if yosys else []),
        "",
        f"- RTL latency: {rtl['latency_derivation']}; exact in cycles for the generated Verilog (meeting the "
        "clock after place and route is not proven here)",
        md_line(yosys, rtl) if yosys else
        "- yosys synth_xilinx: not run; `trigger synth <project>` (or `compile --synth`) adds LUT/FF/CARRY/DSP/BRAM "
        "(yosys is not Vivado)",
    ]


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
        "## Equivalence: the model, the design's emulator and the C simulation",
        "",
        f"- check: **{eq['mode']}** on {eq['events']} held-out events, inputs on the input grid "
        f"`{report['hls']['input_type']}` ({eq['inputs_saturated']} input values saturated)",
        f"- bit-exact events over all legs: {eq['bit_exact_fraction']:.4%}; largest difference "
        f"{_fmt(eq['max_abs_diff'])}",
        "",
        "| leg | events | bit-exact | largest difference |",
        "|---|---|---|---|",
        *[f"| {name} | {leg['events']} | {leg['bit_exact_fraction']:.4%} | {_fmt(leg['max_abs_diff'])} |"
          for name, leg in eq.get("legs", {}).items()],
        "",
    ]
    if eq.get("argmax_agreement") is not None:
        lines.append(f"- argmax agreement: {eq['argmax_agreement']:.4%}")
    if eq.get("softmax"):
        sm = eq["softmax"]
        lines.append(f"- softmax (kept in firmware, not bit-exact by design): argmax agreement "
                     f"{sm['argmax_agreement']:.4%}, largest difference {_fmt(sm['max_abs_diff'])}")
    lines.append(f"- verdict: **{'PASS' if eq['pass'] else 'FAIL'}**")
    if report.get("warnings"):
        lines += ["", "## Warnings", "", *[f"- {w}" for w in report["warnings"]]]
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
            "",
            *budget_lines(budget),
        ]
    else:
        lines.append("No latency or resource estimate is available for this design.")
    if report.get("rtl"):
        lines += ["", *rtl_lines(report)]
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
