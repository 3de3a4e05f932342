"""Benchmark of `trigger compile` on the jet tagger: seconds per stage, and C-simulation throughput.

Throughput is measured side by side in one run on the same held-out events, so the figures are
ratios on one machine: the trigger's C-simulation call (float64 inputs, hls4ml's double interface),
plain hls4ml `predict` as its documentation shows it (float32 inputs), and Keras `predict` of the
same QKeras model. Writes bench/results/compile_bench.json; this is not a test and asserts nothing.

    python bench/bench_compile.py [--config configs/jet_tagger.yaml] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def best_rate(fn: object, n_events: int, repeats: int) -> float:
    """Events per second of the fastest of `repeats` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n_events / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/jet_tagger.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/compile_bench.json"))
    args = parser.parse_args()

    import hls4ml

    from trigger.pipeline import CompileOptions, compile_config

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = compile_config(args.config, CompileOptions(out_root=Path(tmp), quiet=True))
        total = time.perf_counter() - start
        project = Path(tmp) / "hls_projects" / report["name"]

        # Reload the exported model and convert it as a plain hls4ml user would (model-level config, no
        # trigger type derivation), then time the same events three ways.
        from trigger.model_io import load_model

        model = load_model(project / "firmware_model.h5")
        hls_config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
        hls_model = hls4ml.converters.convert_from_keras_model(
            model, hls_config=hls_config, output_dir=str(Path(tmp) / "plain_hls4ml"), backend="Vitis",
            io_type="io_parallel")
        hls_model.compile()
        x = np.loadtxt(project / "tb_data" / "tb_input_features.dat")
        x = np.tile(x, (max(1, 20000 // len(x)), 1))
        x64, x32 = np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(x, dtype=np.float32)
        rates = {
            "trigger_csim_float64": best_rate(lambda: hls_model.predict(x64), len(x), args.repeats),
            "hls4ml_predict_float32": best_rate(lambda: hls_model.predict(x32), len(x), args.repeats),
            "keras_predict": best_rate(lambda: model.predict(x32, batch_size=4096, verbose=0), len(x), args.repeats),
        }

    result = {
        "config": str(args.config),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "total_compile_s": round(total, 2),
        "stages_s": {k: round(v, 2) for k, v in report["timings_s"].items()},
        "csim_events_per_s": {k: round(v) for k, v in rates.items()},
        "ratios": {
            "trigger_csim_vs_hls4ml_predict": round(rates["trigger_csim_float64"] / rates["hls4ml_predict_float32"], 3),
            "trigger_csim_vs_keras_predict": round(rates["trigger_csim_float64"] / rates["keras_predict"], 3),
        },
        "equivalence": {k: report["equivalence"][k] for k in ("events", "bit_exact_fraction", "max_abs_diff")},
        "events_timed": len(x),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
