"""Measure the estimator against real synthesis results and write bench/results/estimator_calibration.json.

The points (trigger/estimate/calibration/hls4ml_baselines.json) are csynth results that hls4ml keeps in
its repository for its test models, plus the published pruned 3-layer jet tagger. This script rebuilds
each model as hls4ml's tests define it, converts it with the installed hls4ml (no compile, no vendor
tool), estimates it and compares, separately for the training and the held-out points.

    python bench/calibrate_estimator.py [--out bench/results/estimator_calibration.json]
                                        [--user-report hls_projects/<name>/report.json ...]

`--user-report` adds designs measured by `trigger report` (report.json holding both `estimate` and
`measured`) as a third group, so users' own synthesis results show the estimator's error on their designs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

POINTS = ROOT / "trigger" / "estimate" / "calibration" / "hls4ml_baselines.json"
SHARED_MODELS = ROOT.parent / "shared" / "models"
METRICS = ("latency_cycles", "ii", "dsp", "lut", "ff", "bram")


def build_keras(name: str) -> tuple[Any, dict[str, Any]]:
    """The Keras model of calibration point `name` and the hls4ml config_from_keras_model arguments,
    as hls4ml's test/pytest/test_keras_api.py defines them (random weights: seeded here)."""
    import tensorflow as tf
    from tensorflow.keras import layers

    tf.keras.utils.set_random_seed(1234)
    cfg_args: dict[str, Any] = {}
    if name == "dense2_elu":
        model = tf.keras.Sequential(
            [
                layers.Dense(
                    2,
                    input_shape=(1,),
                    name="Dense",
                    kernel_initializer=tf.keras.initializers.RandomUniform(minval=1, maxval=10),
                    bias_initializer="zeros",
                ),
                layers.Activation("elu", name="Activation"),
            ]
        )
    elif name.startswith("dense64_"):
        act = {
            "relu": layers.Activation("relu", name="relu"),
            "leaky_relu": layers.LeakyReLU(alpha=1.0),
            "prelu": layers.PReLU(alpha_initializer="zeros"),
            "elu": layers.ELU(alpha=1.0),
            "sigmoid": layers.Activation("sigmoid", name="sigmoid"),
        }[name.removeprefix("dense64_")]
        model = tf.keras.Sequential(
            [layers.Dense(64, input_shape=(1,), name="Dense", kernel_initializer="lecun_uniform"), act]
        )
    elif name == "conv2d_same":
        model = tf.keras.Sequential(
            [
                layers.Conv2D(
                    32,
                    (4, 4),
                    strides=(4, 4),
                    padding="same",
                    input_shape=(28, 28, 3),
                    kernel_initializer="normal",
                    use_bias=False,
                )
            ]
        )
    elif name == "depthwise1d":
        model = tf.keras.Sequential([layers.DepthwiseConv1D(kernel_size=3, input_shape=(32, 3))])
        cfg_args = {"granularity": "name"}
    elif name == "depthwise2d":
        model = tf.keras.Sequential([layers.DepthwiseConv2D(kernel_size=(3, 3), input_shape=(32, 32, 3))])
        cfg_args = {"granularity": "name", "default_precision": "fixed<32,12>"}
    elif name.startswith("maxpool"):
        two_d = "2d" in name
        pool = layers.MaxPooling2D if two_d else layers.MaxPooling1D
        model = tf.keras.Sequential(
            [pool(padding=name.rsplit("_", 1)[1], input_shape=(18, 15, 3) if two_d else (121, 3))]
        )
    elif name == "keras_3layer_70pruned":
        model = tf.keras.models.model_from_json((SHARED_MODELS / "KERAS_3layer.json").read_text())
        model.load_weights(str(SHARED_MODELS / "KERAS_3layer_70pruned_retrained_weights.h5"))
        cfg_args = {"granularity": "model", "default_precision": "ap_fixed<16,6>"}
    else:
        raise ValueError(f"unknown calibration model {name!r}")
    return model, cfg_args


def estimate_point(point: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import hls4ml

    from trigger.estimate import estimate_model

    model, cfg_args = build_keras(point["model"])
    config = hls4ml.utils.config_from_keras_model(model, backend=point["backend"], **cfg_args)
    config["Model"]["Strategy"] = point["strategy"]
    hls_model = hls4ml.converters.convert_from_keras_model(
        model,
        hls_config=config,
        output_dir=str(workdir / point["id"]),
        backend=point["backend"],
        io_type=point["io_type"],
        part=point["part"],
        clock_period=point["clock_period_ns"],
    )
    return estimate_model(hls_model).as_dict()


def errors(est: dict[str, Any], measured: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    out = {}
    for key in METRICS:
        if key not in measured:
            continue
        m, e = float(measured[key]), float(est[key])
        out[key] = {
            "measured": m,
            "estimated": e,
            "abs_error": e - m,
            "rel_error": None if m == 0 else round((e - m) / m, 4),
        }
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean |relative error| per resource (points with measured 0 excluded) and mean |cycle error|."""
    summary: dict[str, Any] = {"points": len(rows)}
    for key in METRICS:
        errs = [r["errors"][key] for r in rows if key in r["errors"]]
        rel = [abs(e["rel_error"]) for e in errs if e["rel_error"] is not None]
        summary[key] = {
            "n": len(errs),
            "mean_abs_error": round(sum(abs(e["abs_error"]) for e in errs) / len(errs), 3) if errs else None,
            "mean_abs_rel_error": round(sum(rel) / len(rel), 4) if rel else None,
            "n_with_nonzero_measurement": len(rel),
        }
    return summary


def user_row(path: Path) -> dict[str, Any]:
    """Estimate vs measurement of one user design, straight from its report.json (no rebuild needed)."""
    report = json.loads(path.read_text())
    if "measured" not in report or "estimate" not in report:
        raise SystemExit(
            f"{path}: needs both 'estimate' and 'measured' sections (run `trigger report` first)"
        )
    measured = {k: report["measured"][k] for k in METRICS if report["measured"].get(k) is not None}
    return {
        "id": report.get("name", str(path)),
        "split": "user",
        "tool": report["measured"].get("tool_version"),
        "source": {"report": str(path), "estimator": report["estimate"].get("model")},
        "errors": errors(report["estimate"]["totals"], measured),
        "estimate": report["estimate"]["totals"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "estimator_calibration.json")
    parser.add_argument(
        "--user-report",
        type=Path,
        nargs="*",
        default=[],
        help="report.json files that `trigger report` filled with measured numbers",
    )
    args = parser.parse_args(argv)

    from trigger.estimate import load_params

    points = json.loads(POINTS.read_text())["points"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for point in points:
            est = estimate_point(point, Path(tmp))
            row = {
                "id": point["id"],
                "split": point["split"],
                "tool": point["tool"],
                "source": point["source"],
                "errors": errors(est["totals"], point["measured"]),
                "estimate": est["totals"],
            }
            rows.append(row)
            cells = " ".join(f"{k}={v['estimated']:g}/{v['measured']:g}" for k, v in row["errors"].items())
            print(f"{point['split']:8s} {point['id']:34s} {cells}")
    user_rows = [user_row(path) for path in args.user_report]
    result = {
        "estimator": load_params()("model_version"),
        "points_file": str(POINTS.relative_to(ROOT)),
        "note": "estimated/measured per metric; measured values are real csynth results cited per point",
        "train": summarise([r for r in rows if r["split"] == "train"]),
        "holdout": summarise([r for r in rows if r["split"] == "holdout"]),
        "rows": rows,
    }
    if user_rows:
        result["user"] = summarise(user_rows)
        result["user_rows"] = user_rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for split in ("train", "holdout"):
        s = result[split]
        parts = [
            f"{k}: {s[k]['mean_abs_rel_error']}" for k in METRICS if s[k]["mean_abs_rel_error"] is not None
        ]
        print(
            f"{split}: mean |rel. error| "
            + ", ".join(parts)
            + f"; latency mean |cycle error| {s['latency_cycles']['mean_abs_error']}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
