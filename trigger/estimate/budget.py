"""The budget check: an estimate (or a measurement) against the config's latency and resource caps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trigger.errors import ConfigError, InputError
from trigger.estimate.model import Estimate
from trigger.estimate.params import Params, load_params

RESOURCE_KEYS = ("lut", "ff", "dsp", "bram")


@dataclass
class BudgetResult:
    """`passed` is None when the config sets no budget at all; `reasons` name every cap exceeded; `checks`
    hold every constraint with its value and limit, passed or not, so a report can say which one failed."""

    passed: bool | None
    reasons: list[str] = field(default_factory=list)
    utilisation_pct: dict[str, float] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pass": self.passed,
            "reasons": list(self.reasons),
            "utilisation_pct": dict(self.utilisation_pct),
            "checks": [dict(c) for c in self.checks],
        }


def part_resources(part: str, params: Params | None = None) -> dict[str, int]:
    """Available LUT/FF/DSP/BRAM18 of `part`, matched by the longest known family prefix."""
    p = params if params is not None else load_params()
    parts: dict[str, dict[str, int]] = p("parts")
    key = part.strip().lower()
    matches = [name for name in parts if key.startswith(name)]
    if not matches:
        raise ConfigError("hls.part", f"unknown FPGA part {part!r}; the estimator knows the families "
                                      f"{', '.join(sorted(parts))} (trigger/estimate/params.yaml)")
    return {k: int(v) for k, v in parts[max(matches, key=len)].items()}


def check_budget(
    totals: dict[str, Any], *, latency_ns: float | None, resources_pct: dict[str, float], part: str
) -> BudgetResult:
    """Compare totals (estimated or measured) with the latency budget in ns and the resource caps in %."""
    available = part_resources(part)
    utilisation = {k: round(100.0 * float(totals.get(k, 0)) / available[k], 3) for k in RESOURCE_KEYS}
    caps = {k: v for k, v in (resources_pct or {}).items() if v is not None}
    unknown = sorted(set(caps) - set(RESOURCE_KEYS))
    if unknown:
        raise InputError(
            f"budget.resources_pct.{unknown[0]}: unknown resource; use {', '.join(RESOURCE_KEYS)}"
        )
    if latency_ns is None and not caps:
        return BudgetResult(None, [], utilisation)
    checks = []
    if latency_ns is not None:
        checks.append({"constraint": "latency", "metric": "latency_cycles", "value": float(totals["latency_ns"]),
                       "limit": float(latency_ns), "unit": "ns"})
    checks += [{"constraint": key, "metric": key, "value": utilisation[key], "limit": float(cap), "unit": "%"}
               for key, cap in caps.items()]
    for check in checks:
        check["pass"] = check["value"] <= check["limit"]
    reasons = [f"latency {c['value']:g} ns > budget {c['limit']:g} ns" if c["unit"] == "ns"
               else f"{c['constraint'].upper()} {c['value']:.2f} % of {part} > budget {c['limit']:g} %"
               for c in checks if not c["pass"]]
    return BudgetResult(not reasons, reasons, utilisation, checks)


def with_margin(result: BudgetResult, margin: dict[str, float]) -> bool | None:
    """Whether every constraint still holds when each estimated figure is raised by the estimator's
    measured error on held-out designs (`margin[metric]`: the largest measured/estimated - 1 seen): a pass
    that does not survive this is a pass only as far as the estimate can tell. Each check gets its
    `margin`, `value_with_margin` and `pass_with_margin`."""
    if result.passed is None:
        return None
    for check in result.checks:
        check["margin"] = margin.get(check["metric"], 0.0)
        check["value_with_margin"] = check["value"] * (1.0 + check["margin"])
        check["pass_with_margin"] = check["value_with_margin"] <= check["limit"]
    return all(check["pass_with_margin"] for check in result.checks)


def estimate_margin(params: Params | None = None) -> dict[str, Any]:
    """The estimator's measured error on held-out designs, as params.yaml records it from
    bench/calibrate_estimator.py: per metric the largest measured/estimated - 1 (how far low it was)."""
    p = params if params is not None else load_params()
    error = p("calibration")
    return {"by_metric": {k: float(v) for k, v in error["holdout_largest_underestimate"].items()},
            "points": int(error["holdout_points"]), "source": str(error["source"])}


def budget_table(est: Estimate) -> str:
    """Per-layer plain-text table, so an over-budget user sees which layer to shrink."""
    header = ("layer", "class", "cycles", "II", "DSP", "LUT", "FF", "BRAM")
    rows = [
        (
            layer.name,
            layer.class_name,
            str(layer.latency_cycles),
            str(layer.ii),
            str(layer.dsp),
            str(layer.lut),
            str(layer.ff),
            str(layer.bram),
        )
        for layer in est.layers
    ]
    t = est.totals
    rows.append(
        (
            "TOTAL (estimate)",
            "",
            str(t["latency_cycles"]),
            str(t["ii"]),
            str(t["dsp"]),
            str(t["lut"]),
            str(t["ff"]),
            str(t["bram"]),
        )
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    lines = [
        f"Estimate ({est.version}; not a synthesis result), clock {est.clock_period_ns:g} ns, "
        f"latency {t['latency_ns']:g} ns",
        fmt(header),
        fmt(tuple("-" * w for w in widths)),
    ]
    lines += [fmt(r) for r in rows[:-1]]
    lines += [fmt(tuple("-" * w for w in widths)), fmt(rows[-1])]
    return "\n".join(lines)
