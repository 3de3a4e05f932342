"""Benchmark: the design's emulator against hls4ml's C simulation and QKeras `predict`, side by side in one run
on the same events, for compiled projects (by default the shipped jet tagger, autoencoder and SPA-Net).

    python bench/bench_emulator.py [hls_projects/jet_tagger ...] [--events 1000000] [--csim-events 20000]
                                   [--spanet-events 100000]

Each project's dataset events are put on the input grid as `trigger compile` does and tiled up to `--events`.
The emulator and QKeras run on all of them; the C simulation (about 10k events/s) on the first `--csim-events`,
and the three are checked equal there. Startup (loading, the C simulation's build, TensorFlow's graph tracing
on a first batch) is excluded from every rate. Figures go to bench/results/emulator_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROJECTS = ("jet_tagger", "ad_autoencoder", "spanet_ttbar")


def _tile(xs: list[np.ndarray], n: int) -> list[np.ndarray]:
    reps = -(-n // len(xs[0]))
    return [np.ascontiguousarray(np.concatenate([x] * reps)[:n]) for x in xs]


def _rate(fn: Any, events: int, repeats: int = 3) -> tuple[float, Any]:
    """Best of `repeats` runs, in events/s (the least disturbed by other jobs on the machine)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return events / best, out


def bench_project(path: Path, events: int, csim_events: int, spanet_events: int) -> dict[str, Any]:
    from trigger.design import run
    from trigger.design.cli import dataset_inputs, open_project, rebuild_csim
    from trigger.equivalence import compare

    project = open_project(path)
    if project.family.name == "spanet":  # the triplet scan is O(n_jets^3): fewer events, same side-by-side method
        events = spanet_events
    split, _ = dataset_inputs(project, ROOT / project.cfg.data.file, None)
    xs = _tile(split.x if isinstance(split.x, list) else [split.x], events)
    emu_rate, emulated = _rate(lambda: run(project.design, xs), events)

    from trigger.model_io import load_model

    model = load_model(path / "firmware_model.h5", None, project.family.custom_objects())
    keras_in = xs if len(xs) > 1 else xs[0]
    model.predict(keras_in[:16384] if len(xs) == 1 else [x[:16384] for x in xs], batch_size=16384, verbose=0)
    keras_rate, predicted = _rate(lambda: model.predict(keras_in, batch_size=16384, verbose=0), events, repeats=2)

    csim = rebuild_csim(path)
    few = [x[:csim_events] for x in xs]
    csim_in = [np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float64) for x in few]
    csim_rate, csim_out = _rate(lambda: csim.predict(csim_in if len(csim_in) > 1 else csim_in[0]), csim_events,
                                repeats=1)
    emulated_few = [e[:csim_events] for e in emulated]
    return {
        "project": str(path), "family": project.family.name, "events": events, "csim_events": csim_events,
        "emulator_events_per_s": emu_rate, "qkeras_predict_events_per_s": keras_rate,
        "csim_events_per_s": csim_rate,
        "emulator_over_qkeras": emu_rate / keras_rate, "emulator_over_csim": emu_rate / csim_rate,
        "emulator_vs_csim_bit_exact": compare(emulated_few, csim_out)["bit_exact_fraction"],
        "emulator_vs_qkeras_bit_exact": compare(emulated, predicted)["bit_exact_fraction"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="*", type=Path,
                        default=[ROOT / "hls_projects" / name for name in DEFAULT_PROJECTS])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--csim-events", type=int, default=20_000)
    parser.add_argument("--spanet-events", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "emulator_bench.json")
    args = parser.parse_args()
    rows = []
    for path in args.projects:
        if not (path / "design.json").is_file():
            print(f"{path}: not compiled (run `trigger compile` on its config first), skipped")
            continue
        row = bench_project(path, args.events, args.csim_events, args.spanet_events)
        print(json.dumps(row))
        rows.append(row)
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "processor": platform.processor()}, "results": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
