"""Estimated latency and resources of a compiled SPA-Net project whose extension layers share their multipliers
over reuse factors 1, 2, 4 and 8 (issue 12), as fractions of the part.

    python bench/spanet_reuse.py hls_projects/spanet_ttbar [--reuse 1 2 4 8] [--out bench/results/spanet_reuse.json]

The project's saved design (design.json) is estimated as `trigger compile` estimates it (the hls settings of
its config.yaml, the clock uncertainty in its design), once per reuse factor, given to every extension layer.
No training, no C simulation, no vendor tool: the figures are the estimator's (docs/estimator.md), not
synthesis results. The estimate recorded at compile time (report.json) is printed beside them when present.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from trigger.report import ESTIMATE_KEYS

ROOT = Path(__file__).resolve().parents[1]


def sweep(design: Any, cfg: Any, reuses: list[int]) -> list[dict[str, Any]]:
    """The estimate's totals of `design` under `cfg`'s hls settings for each reuse factor, with the fraction of
    the part's DSPs and LUTs they take."""
    from trigger.errors import InputError
    from trigger.estimate import estimate_design, part_resources
    from trigger.hls_ext import estimate

    if not any("reuse_factor" in op.attrs for op in design.ops):
        raise InputError(f"{design.name}: no SPA-Net extension layer in the design, nothing to share")
    estimate.register()
    available = part_resources(cfg.hls.part)
    rows = []
    for reuse in reuses:
        # The extension layers carry their own reuse factor; the built-in ops read the global one.
        ops = [replace(op, attrs={**op.attrs, "reuse_factor": reuse}) if "reuse_factor" in op.attrs else op
               for op in design.ops]
        totals = estimate_design(replace(design, ops=ops), clock_period_ns=cfg.hls.clock_period_ns,
                                 io_type=cfg.hls.io_type, strategy=cfg.hls.strategy, reuse_factor=reuse,
                                 part=cfg.hls.part, clock_uncertainty=design.meta["clock_uncertainty"]).totals
        rows.append({"reuse_factor": reuse, **{k: totals[k] for k in ESTIMATE_KEYS},
                     "dsp_fraction": totals["dsp"] / available["dsp"],
                     "lut_fraction": totals["lut"] / available["lut"]})
    return rows


def bench(project: Path, reuses: list[int]) -> dict[str, Any]:
    from trigger.config import load_config
    from trigger.design import Design

    design = Design.load(project)
    cfg = load_config(project / "config.yaml")
    report = project / "report.json"
    compiled = None
    if report.is_file():
        recorded = json.loads(report.read_text())
        compiled = {"reuse_factor": recorded["hls"]["reuse_factor"],
                    **{k: recorded["estimate"][k] for k in ESTIMATE_KEYS}}
    return {"project": str(project), "design": design.name, "part": cfg.hls.part,
            "clock_period_ns": cfg.hls.clock_period_ns, "basis": "trigger estimate (docs/estimator.md)",
            "as_compiled": compiled, "rows": sweep(design, cfg, reuses)}


def _print(result: dict[str, Any]) -> None:
    print(f"{result['design']} on {result['part']} at {result['clock_period_ns']:g} ns ({result['basis']})")
    print(f"{'reuse':>5s} {'cycles':>7s} {'ns':>8s} {'II':>4s} {'DSP':>7s} {'DSP %':>6s} {'LUT':>9s} {'LUT %':>6s} "
          f"{'FF':>8s} {'BRAM':>5s}")
    for r in result["rows"]:
        print(f"{r['reuse_factor']:5d} {r['latency_cycles']:7d} {r['latency_ns']:8.1f} {r['ii']:4d} {r['dsp']:7d} "
              f"{100 * r['dsp_fraction']:6.1f} {r['lut']:9d} {100 * r['lut_fraction']:6.1f} {r['ff']:8d} "
              f"{r['bram']:5d}")
    if result["as_compiled"]:
        c = result["as_compiled"]
        print(f"as compiled (report.json, reuse {c['reuse_factor']}): {c['latency_cycles']} cycles, "
              f"{c['dsp']} DSP, {c['lut']} LUT")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a compiled SPA-Net project, e.g. hls_projects/spanet_ttbar")
    parser.add_argument("--reuse", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "spanet_reuse.json")
    args = parser.parse_args(argv)
    result = bench(args.project, args.reuse)
    _print(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
