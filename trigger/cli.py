"""The `trigger` command line: `compile`, `data generate`, `report`.

Exit codes: 0 ok, 1 a check failed (not bit-exact, over budget), 2 bad input. Errors are one line.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from trigger import __version__
from trigger.errors import Terminated, TriggerError


def _compile(args: argparse.Namespace) -> int:
    from trigger.pipeline import CompileOptions, compile_config
    from trigger.report import budget_verdict

    report = compile_config(args.config, CompileOptions(
        model_file=args.model, weights_file=args.weights, out_root=args.out, seed=args.seed, quiet=args.quiet,
        synth=args.synth))
    eq = report["equivalence"]
    est = report["estimate"]
    latency = (f"{est['latency_cycles']} cycles / {est['latency_ns']:.0f} ns (estimate)"
               if est.get("latency_cycles") is not None else "no estimate")
    if report.get("rtl"):
        rtl = report["rtl"]
        latency = f"{rtl['latency_cycles']} cycles / {rtl['latency_ns']:.0f} ns (RTL pipeline; HLS {latency})"
    check = (f"bit-exact {eq['bit_exact_fraction']:.4%}" if eq["mode"] == "bit_exact"
             else f"float model, argmax agreement {eq['argmax_agreement']:.4%}")
    print(f"{report['name']}: {check} of {eq['events']} events, {latency}, {budget_verdict(report['budget'])}"
          f" -> {report['outputs']['project_dir']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from trigger.data.cli import add_data_commands
    from trigger.vendor import add_report_command

    parser = argparse.ArgumentParser(prog="trigger", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"trigger {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    comp = sub.add_parser("compile", help="train, prune, convert, verify, estimate and report one config",
                          description="From one YAML config to a verified HLS project, its vendor scripts and "
                                      "its report (hls_projects/<name>/report.md).")
    comp.add_argument("config", type=Path, help="the YAML config (configs/*.yaml)")
    comp.add_argument("--model", type=Path, help="compile this trained Keras/QKeras model (.h5, or .json with "
                                                  "weights beside it) instead of training one")
    comp.add_argument("--weights", type=Path, help="weights .h5 for a --model .json, when not beside it")
    comp.add_argument("--out", type=Path, help="write hls_projects/ and vivado_scripts/ under this folder "
                                               "(default: the config's output section)")
    comp.add_argument("--seed", type=int, help="override training.seed")
    comp.add_argument("--synth", action="store_true", help="also run yosys synth_xilinx on the RTL backend's "
                                                           "Verilog (minutes; needs backends: [hls, rtl])")
    comp.add_argument("--quiet", action="store_true", help="no progress messages (warnings and errors still print)")
    comp.set_defaults(func=_compile)

    add_data_commands(sub)
    add_report_command(sub)
    from trigger.design.cli import add_design_commands

    add_design_commands(sub)
    from trigger.scan.cli import add_scan_command

    add_scan_command(sub)
    from trigger.rtl.synth import add_synth_command

    add_synth_command(sub)
    return parser


def _quiet_libraries() -> None:
    """TensorFlow and Keras print warnings about their own internals on every run; the user cannot act on
    them, and our own messages and exit codes say what happened. Level 3 is needed: TensorFlow's C++ core
    logs the "Unable to register cuDNN/cuFFT/cuBLAS factory" lines at error level while it is imported,
    before Python logging is set up, so a one-line error would otherwise come with three more."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras\..*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (a batch system's kill, `timeout`) unwinds the stack like Ctrl-C, so the staging folder and
    every other temporary file is removed; the default action would kill the process on the spot. The
    previous handler comes back afterwards (main() also runs inside other programs, e.g. the tests)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with sigterm_unwinds():
            return args.func(args)
    except TriggerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())
