"""The budget check: an estimate (or a measurement) against the config's latency and resource caps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trigger.errors import InputError
from trigger.estimate.model import Estimate
from trigger.estimate.params import Params, load_params

RESOURCE_KEYS = ("lut", "ff", "dsp", "bram")


@dataclass
class BudgetResult:
    """`passed` is None when the config sets no budget at all; `reasons` name every cap exceeded."""

    passed: bool | None
    reasons: list[str] = field(default_factory=list)
    utilisation_pct: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pass": self.passed,
            "reasons": list(self.reasons),
            "utilisation_pct": dict(self.utilisation_pct),
        }


def part_resources(part: str, params: Params | None = None) -> dict[str, int]:
    """Available LUT/FF/DSP/BRAM18 of `part`, matched by the longest known family prefix."""
    p = params if params is not None else load_params()
    parts: dict[str, dict[str, int]] = p("parts")
    key = part.strip().lower()
    matches = [name for name in parts if key.startswith(name)]
    if not matches:
        raise InputError(f"hls.part: unknown FPGA part {part!r}; known families: {', '.join(sorted(parts))}")
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
    reasons = []
    if latency_ns is not None and float(totals["latency_ns"]) > latency_ns:
        reasons.append(f"latency {float(totals['latency_ns']):g} ns > budget {latency_ns:g} ns")
    for key, cap in caps.items():
        if utilisation[key] > cap:
            reasons.append(f"{key.upper()} {utilisation[key]:.2f} % of {part} > budget {cap:g} %")
    return BudgetResult(not reasons, reasons, utilisation)


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
