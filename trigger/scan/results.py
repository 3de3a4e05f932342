"""A scan's results: one row per finished point from its report.json, the Pareto fronts, plots, report.md.

Rows are rebuilt from the points' own reports on every run, so the table of a resumed scan is the table of an
uninterrupted one. The fronts trade the family's headline figure (maximised) against LUT-equivalents and
against latency (minimised); only points whose compile passed every check are candidates.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from trigger.scan.config import ScanConfig
from trigger.scan.run import RunSummary, point_dir, read_result, write_atomic

LUT_PER_DSP = 55  # LUT-equivalents = LUT + 55 x DSP: a DSP slice counted as 55 LUTs, a common convention
FRONTS = {"pareto_lut": "lut_equivalents", "pareto_latency": "latency_ns"}
RESOURCE_KEYS = ("latency_cycles", "latency_ns", "lut", "ff", "dsp", "bram")
FIGURES = ("headline", "headline_source", "bit_exact_fraction", "bit_exact", "budget_pass", *RESOURCE_KEYS,
           "lut_equivalents", "sparsity")
WALL_COLUMNS = ("wall_s",)  # differ from run to run; everything else is reproducible


def headline(family: str, metrics: dict[str, Any]) -> tuple[str, float | None]:
    """The one figure a scan maximises, per family, and its name."""
    match family:
        case "jet_tagger":
            return "accuracy", metrics.get("accuracy")
        case "autoencoder" | "vae":
            signal, by_rate = next(iter(metrics["efficiency"].items()))
            rate, value = next(iter(by_rate.items()))
            return f"{signal} efficiency at {rate}", value
        case "spanet":
            return "full-event efficiency, 6-jet events", metrics["by_multiplicity"]["6"]["event"]
    raise ValueError(f"no headline figure for family {family!r}")


def collect(scan: ScanConfig, root: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Rows of the finished points in the scan's point order, marked for the fronts; and the headline name."""
    rows = []
    label = None
    for point in scan.points:
        result = read_result(point_dir(root, point))
        if result is None:
            continue
        report_path = point_dir(root, point) / result["report"] if result["report"] else None
        report = json.loads(report_path.read_text()) if report_path and report_path.is_file() else {}
        row, name = _row(scan.family, result, report)
        label = label or name
        rows.append(row)
    for column, cost in FRONTS.items():
        front = pareto(rows, cost)
        for i, row in enumerate(rows):
            row[column] = i in front
    for row in rows:
        row["pareto"] = any(row[c] for c in FRONTS)
    return rows, label


def _row(family: str, result: dict[str, Any], report: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    metrics = report.get("metrics") or {}
    source = "emulator" if metrics.get("emulator") else "csim"
    name, value = headline(family, metrics[source]) if metrics.get(source) else (None, None)
    estimate = report.get("estimate") or {}
    equivalence = report.get("equivalence") or {}
    row: dict[str, Any] = {"point": result["point"], "status": result["status"],
                           **dict.fromkeys(("pareto", *FRONTS), False), **result["axes"],
                           "headline": _finite(value), "headline_source": source if value is not None else None,
                           "bit_exact_fraction": equivalence.get("bit_exact_fraction"),
                           "bit_exact": equivalence.get("pass"),
                           "budget_pass": (report.get("budget") or {}).get("pass"),
                           **{k: estimate.get(k) for k in RESOURCE_KEYS}}
    row["lut_equivalents"] = (row["lut"] + LUT_PER_DSP * row["dsp"]
                              if row["lut"] is not None and row["dsp"] is not None else None)
    row["sparsity"] = (report.get("sparsity") or {}).get("overall")
    rtl = (report.get("rtl") or {}).get("latency_cycles")
    if rtl is not None:
        row["rtl_latency_cycles"] = rtl
    yosys = (report.get("synthesis") or {}).get("yosys") or {}
    row.update({f"yosys_{k}": v for k, v in yosys.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    row.update(wall_s=result["wall_s"], error=result["error"])
    return row, name


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def pareto(rows: list[dict[str, Any]], cost: str) -> set[int]:
    """Indices of the ok rows that no other ok row beats: headline at least as high and `cost` at most as
    low, one of them strictly."""
    candidates = [(i, r["headline"], r[cost]) for i, r in enumerate(rows)
                  if r["status"] == "ok" and r["headline"] is not None and r[cost] is not None]
    return {i for i, h, c in candidates
            if not any(h2 >= h and c2 <= c and (h2 > h or c2 < c) for _, h2, c2 in candidates)}


def columns(scan: ScanConfig, rows: list[dict[str, Any]]) -> list[str]:
    """Fixed columns, then the optional RTL/synthesis ones that some report has, then wall time and error."""
    fixed = ["point", "status", "pareto", *FRONTS, *scan.axes, *FIGURES]
    extra = sorted({k for r in rows for k in r} - {*fixed, *WALL_COLUMNS, "error"})
    return [*fixed, *extra, *WALL_COLUMNS, "error"]


def write_results(scan: ScanConfig, root: Path, summary: RunSummary | None) -> list[dict[str, Any]]:
    """scan.csv, scan.json, the front plots and report.md under `root`; returns the rows (none written when
    no point has finished)."""
    rows, label = collect(scan, root)
    if not rows:
        return rows
    names = columns(scan, rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv(r.get(k)) for k in names} for r in rows)
    write_atomic(root / "scan.csv", buffer.getvalue())
    meta = {"scan": scan.name, "config": str(scan.source) if scan.source else None, "family": scan.family,
            "headline": label, "lut_equivalents": f"LUT + {LUT_PER_DSP} * DSP", "axes": list(scan.axes),
            "points": len(scan.points), "finished": len(rows),
            "last_run": None if summary is None else {"computed": summary.computed, "reused": summary.reused,
                                                      "lost": summary.lost, "left": summary.left,
                                                      "wall_s": round(summary.wall_s, 1)},
            "columns": names, "rows": [{k: r.get(k) for k in names} for r in rows]}
    write_atomic(root / "scan.json", json.dumps(meta, indent=2) + "\n")
    plots = [_plot(scan, rows, label, cost, root) for cost in FRONTS.values()]
    write_atomic(root / "report.md", _markdown(scan, rows, label, [p for p in plots if p], summary))
    return rows


def _csv(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else value


def short_names(keys: tuple[str, ...]) -> dict[str, str]:
    """The shortest dotted suffix that tells each axis apart (`weight.bits`, `target_sparsity`)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if sum(k == suffix or k.endswith(f".{suffix}") for k in keys) == 1:
                break
        names[key] = suffix
    return names


COST_LABELS = {"lut_equivalents": f"LUT-equivalents (LUT + {LUT_PER_DSP} x DSP, estimate)",
               "latency_ns": "latency (ns, estimate)"}  # the name before " (" titles the plot


def _plot(scan: ScanConfig, rows: list[dict[str, Any]], label: str | None, cost: str, root: Path) -> str | None:
    """headline vs `cost`: every ok point, the front as a staircase, front points labelled by their axes."""
    front_column = next(c for c, x in FRONTS.items() if x == cost)
    ok = [r for r in rows if r["status"] == "ok" and r["headline"] is not None and r[cost] is not None]
    if not ok:
        return None
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    names = short_names(scan.axes)
    front = sorted((r for r in ok if r[front_column]), key=lambda r: (r[cost], r["headline"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax.scatter([r[cost] for r in ok], [r["headline"] for r in ok], s=18, color="0.6", label="point (all checks pass)")
    ax.step([r[cost] for r in front], [r["headline"] for r in front], where="post", color="C3", lw=1.2)
    ax.scatter([r[cost] for r in front], [r["headline"] for r in front], s=30, color="C3", label="Pareto front",
               zorder=3)
    for r in front:
        ax.annotate("/".join(_short(r[k]) for k in scan.axes), (r[cost], r["headline"]), fontsize=7,
                    xytext=(4, -10), textcoords="offset points")
    ax.margins(x=0.12, y=0.08)
    ax.set_xlabel(COST_LABELS[cost])
    ax.set_ylabel(f"{label} ({ok[0]['headline_source']})")
    ax.set_title(f"scan {scan.name}: Pareto front of {label} vs {COST_LABELS[cost].split(' (')[0]}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", title="front labels: " + "/".join(names[k] for k in scan.axes),
              title_fontsize=7)
    fig.tight_layout()
    name = f"pareto_{cost}.png"
    fig.savefig(root / name, dpi=100)
    plt.close(fig)
    return name


def _short(value: Any) -> str:
    """An axis value as written: lists compact, floats without trailing zeros."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1 else f"{value:.{digits}g}"
    return str(value)


def _markdown(scan: ScanConfig, rows: list[dict[str, Any]], label: str | None, plots: list[str],
              summary: RunSummary | None) -> str:
    names = short_names(scan.axes)
    ok = sum(r["status"] == "ok" for r in rows)
    missing = len(scan.points) - len(rows)
    source = next((r["headline_source"] for r in rows if r["headline_source"]), "csim")
    lines = [
        f"# Scan `{scan.name}` ({scan.family})",
        "",
        f"Config `{scan.source}`: {len(scan.points)} points over {', '.join(f'`{a}`' for a in scan.axes)}, each one "
        f"full `trigger compile` (train, prune, convert, C simulation, equivalence, estimate) in "
        f"`points/<hash>/`. Finished: {len(rows)} ({ok} ok, {len(rows) - ok} failed)"
        + (f"; {missing} still to compute (rerun the same command)." if missing else "."),
    ]
    if summary is not None:
        lines.append(f"Last run: {len(summary.computed)} computed, {len(summary.reused)} reused, "
                     f"{summary.wall_s:.0f} s wall time.")
    lines += [
        "",
        f"Headline figure: **{label}** of the {'C simulation' if source == 'csim' else source} on the test split "
        f"(maximised). Costs (minimised): LUT-equivalents = LUT + {LUT_PER_DSP} x DSP (a DSP slice counted as "
        f"{LUT_PER_DSP} LUTs, a common convention), and latency; both are the trigger estimator's estimates. "
        "A point is on a front when no other point beats it on both figures; only points that passed every check "
        "(bit-exact, budget, sparsity) are candidates.",
        "",
    ]
    if plots:
        lines += ["## Pareto fronts", "", *[f"![{p}]({p})" for p in plots], ""]
    header = ["point", "status", "front", *[names[a] for a in scan.axes], label or "headline", "bit-exact",
              "cycles", "ns", "LUT", "FF", "DSP", "BRAM", "LUT-eq", "sparsity", "wall s"]
    lines += ["## Points", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        front = "+".join(n for c, n in (("pareto_lut", "LUT"), ("pareto_latency", "latency")) if r[c]) or ""
        exact = "n/a" if r["bit_exact_fraction"] is None else f"{r['bit_exact_fraction']:.2%}"
        cells = [f"`{r['point']}`", r["status"], front, *[_short(r[a]) for a in scan.axes], _fmt(r["headline"]),
                 exact, *[_fmt(r[k]) for k in RESOURCE_KEYS], _fmt(r["lut_equivalents"]), _fmt(r["sparsity"], 3),
                 f"{r['wall_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["", "## Failed points", "", *[f"- `{r['point']}`: {r['error']}" for r in failed]]
    return "\n".join(lines) + "\n"
