"""The `trigger scan` command (wired into the main CLI by `add_scan_command`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trigger.errors import InputError, Terminated


def add_scan_command(subparsers: argparse._SubParsersAction) -> None:
    """Add `scan CONFIG [--scheduler ADDRESS | --workers N] [--out DIR] [--limit N] [--retry-failed] [--quiet]`."""
    scan = subparsers.add_parser(
        "scan", help="compile every point of a design-space scan on Dask; table, Pareto fronts, report",
        description="Compile every point of a scan config (a base config plus axes) with `trigger compile` on a "
                    "Dask cluster, into scans/<name>/points/<hash>/, then write scans/<name>/scan.csv, scan.json, "
                    "the Pareto-front plots and report.md. Finished points are never recomputed: rerun the same "
                    "command to resume an interrupted scan.")
    scan.add_argument("config", type=Path, help="the scan config (configs/scan_*.yaml)")
    where = scan.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="use the running Dask cluster at ADDRESS (tcp://host:8786) instead of a local one")
    where.add_argument("--workers", type=int, default=2, metavar="N",
                       help="processes of the local cluster, one thread each (default 2)")
    scan.add_argument("--out", type=Path, help="write scans/<name>/ under this folder (default: here)")
    scan.add_argument("--limit", type=int, metavar="N", help="compute at most N missing points this run")
    scan.add_argument("--retry-failed", action="store_true", help="compute failed points again too")
    scan.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    scan.set_defaults(func=run_scan_command)


def run_scan_command(args: argparse.Namespace) -> int:
    """Validate every point, compute the missing ones, write the results (also after Ctrl-C or SIGTERM)."""
    from trigger.scan.config import load_scan
    from trigger.scan.results import write_results
    from trigger.scan.run import run_scan

    for option, value in (("--workers", args.workers), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise InputError(f"{option}: must be a positive integer, got {value}")
    scan = load_scan(args.config)
    root = (args.out or Path()) / "scans" / scan.name

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    try:
        summary = run_scan(scan, root, scheduler=args.scheduler, workers=args.workers, limit=args.limit,
                           retry_failed=args.retry_failed, progress=not args.quiet, say=say)
    except (KeyboardInterrupt, Terminated):  # Terminated: the CLI's SIGTERM, unwinding like Ctrl-C
        if write_results(scan, root, None):
            say(f"[scan] interrupted: the finished points are in {root / 'scan.csv'}; rerun to resume")
        raise
    rows = write_results(scan, root, summary)
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"scan {scan.name}: {len(rows)}/{len(scan.points)} points finished ({len(summary.computed)} computed now, "
          f"{len(summary.reused)} reused; {ok} ok, {len(rows) - ok} failed), {sum(r['pareto'] for r in rows)} on a "
          f"Pareto front, {summary.wall_s:.0f} s -> {root / 'report.md' if rows else root}")
    if summary.lost:
        print(f"error: {len(summary.lost)} points did not finish (their worker was lost: "
              f"{next(iter(summary.lost.values()))}); rerun to compute them", file=sys.stderr)
        return 1
    return 0
