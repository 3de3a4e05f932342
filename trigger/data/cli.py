"""The `trigger data generate` command (wired into the main CLI by `add_data_commands`)."""

from __future__ import annotations

import argparse
import sys
import time

from trigger.data.generation import DATASET_NAMES, DATASET_OPTIONS, generate


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `data generate DATASET --events N --seed S [--out FILE] [--workers W | --scheduler ADDRESS] [--quiet]`,
    the zerobias options `--pileup MU --library N --signal-fraction F` and the ttbar b-tag working point
    `--btag-efficiency P --c-mistag P --light-mistag P`."""
    data = subparsers.add_parser("data", help="generate the physics datasets (Pythia 8 + FastJet)")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    gen = commands.add_parser(
        "generate", help="generate a dataset into an HDF5 file",
        description="Generate one of the datasets (" + ", ".join(DATASET_NAMES) + ") with Pythia 8 and "
                    "FastJet. The same seed gives a bit-identical file, whatever the number of workers and "
                    "wherever they run.")
    # DATASET is validated by the handler (not argparse `choices`) so a bad name gives a one-line error
    gen.add_argument("dataset", metavar="DATASET", help="jets | ttbar | l1 | zerobias")
    gen.add_argument("--events", type=int, required=True, metavar="N",
                     help="rows to write: jets for `jets`, events for `ttbar` and `l1`, crossings for `zerobias`")
    gen.add_argument("--seed", type=int, required=True, metavar="S", help="master random seed")
    gen.add_argument("--out", default=None, metavar="FILE",
                     help="output HDF5 file (default: data/DATASET.h5)")
    where = gen.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1, metavar="W", help="local worker processes (default 1)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the chunks on the Dask cluster at ADDRESS (tcp://host:8786) instead")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    zb = gen.add_argument_group("zerobias", "options of the zerobias dataset (docs/data.md)")
    zb.add_argument("--pileup", type=float, metavar="MU", help="mean inelastic collisions per crossing (60)")
    zb.add_argument("--library", type=int, metavar="N", help="minimum-bias library events per chunk (2000)")
    zb.add_argument("--signal-fraction", type=float, metavar="F",
                    help="fraction of crossings carrying a signal, split over the five signals (0)")
    tt = gen.add_argument_group("ttbar", "options of the ttbar dataset: the b-tag working point (docs/data.md)")
    tt.add_argument("--btag-efficiency", type=float, metavar="P", help="P(tag | b jet) (0.70)")
    tt.add_argument("--c-mistag", type=float, metavar="P", help="P(tag | c jet) (0.10)")
    tt.add_argument("--light-mistag", type=float, metavar="P", help="P(tag | light jet) (0.01)")
    gen.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    """Handler of `data generate`; errors propagate as TriggerError for the main CLI to report."""
    start = time.perf_counter()
    options = {key: value for keys in DATASET_OPTIONS.values() for key in keys
               if (value := getattr(args, key)) is not None}
    out = generate(args.dataset, args.events, args.seed, args.out, workers=args.workers, scheduler=args.scheduler,
                   progress=not args.quiet, options=options)
    seconds = time.perf_counter() - start
    if not args.quiet:
        print(f"wrote {out} ({args.events} {'jets' if args.dataset == 'jets' else 'events'}, "
              f"{out.stat().st_size / 1e6:.1f} MB) in {seconds:.0f} s", file=sys.stderr)
    return 0

