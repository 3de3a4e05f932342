"""Measure the estimator against real synthesis results and write bench/results/estimator_calibration.json.

The points (trigger/estimate/calibration/hls4ml_baselines.json) are csynth results that hls4ml keeps in
its repository for its test models, plus the published pruned 3-layer jet tagger. This script rebuilds
each model as hls4ml's tests define it, converts and writes it with the installed hls4ml (no compile, no
vendor tool), lowers it to a design (`design_of`), estimates that and compares, separately for the training
and the held-out points.

    python bench/calibrate_estimator.py [--fit] [--out bench/results/estimator_calibration.json]
                                        [--user-report hls_projects/<name>/report.json ...]

The split is by architecture: every point of a held-out model is held out, under every tool version, and
the script refuses a points file where one model has points on both sides. `--fit` first fits the
resource-cost parameters in `FITTED` (LUT and FF prices) on the training points, by a coordinate search
that minimises the squared log error of LUT and FF, and writes them into params.yaml; every other parameter
(timing above all: the training points' latencies of 0-4 cycles could not constrain them) is set by hand.
Every run then measures the training and held-out errors and writes the held-out error into params.yaml's
`calibration` section, which the budget check reports as the margin of an estimated verdict.

`--user-report` adds designs measured by `trigger report` (report.json holding both `estimate` and
`measured`) as a third group, so users' own synthesis results show the estimator's error on their designs.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

POINTS = ROOT / "trigger" / "estimate" / "calibration" / "hls4ml_baselines.json"
PARAMS = ROOT / "trigger" / "estimate" / "params.yaml"
SHARED_MODELS = ROOT.parent / "shared" / "models"
METRICS = ("latency_cycles", "ii", "dsp", "lut", "ff", "bram")
# Parameters `--fit` fits on the training points (params.yaml paths), and the metrics they are fitted to:
# the glue around the datapath (DSP glue, table indexing, pooling compare/mux, stream FIFOs and handshakes).
# The datapath's own prices stay physical (an adder bit is one LUT and its carry, a ReLU bit a compare and a
# mux): fitted freely on 14 points they absorb the glue, double every adder tree elsewhere and did not lower
# the held-out error (docs/estimator.md).
FITTED = (
    ("multiplier", "lut_per_dsp_mult"),
    ("activation", "lut_table_index_per_elem"),
    ("pooling", "lut_per_bit_compare"),
    ("registers", "lut_per_stream_bit"),
    ("registers", "ff_per_stream_layer"),
)
FIT_METRICS = ("lut", "ff")
FIT_STEPS = (0.5, 0.7, 0.85, 0.95, 1.05, 1.2, 1.4, 2.0)  # factors tried per parameter and round


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


# hls4ml activation names -> the estimator's op kinds (the keys of params.yaml's activation prices)
ACTIVATION_KINDS = {"elu": "elu", "sigmoid": "sigmoid", "leakyrelu": "leaky_relu", "prelu": "prelu"}


def _calibration_op(layer: Any, ctx: Any) -> Any:
    """The op of a layer kind that only the calibration has, in the estimator's op kinds, or None for a
    layer `trigger.design` lowers. trigger compiles none of these, so its designs never hold them (and the
    interpreter cannot run them), but hls4ml's synthesis baselines measure them."""
    from trigger.design import Op

    cls = layer.class_name
    common = {"name": layer.name, "inputs": ctx.inputs(layer), "output": ctx.output(layer),
              "source": f"{cls} {layer.name!r}"}
    if cls in ("Activation", "ParametrizedActivation", "PReLU"):
        function = str(layer.get_attr("activation")).lower()
        if function not in ACTIVATION_KINDS:
            return None
        return Op(ACTIVATION_KINDS[function], **common, types={"table": ctx.fx(layer.get_attr("table_t"))},
                  attrs={"table_size": int(layer.get_attr("table_size"))})
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D"):
        (kernel, kernel_t), (bias, bias_t) = ctx.weight(layer, "weight"), ctx.weight(layer, "bias")
        return Op("depthwise_conv", **common, types={"accum": ctx.fx(layer.get_attr("accum_t"))},
                  weights={"kernel": kernel, "bias": bias}, weight_types={"kernel": kernel_t, "bias": bias_t})
    if cls in ("Pooling1D", "Pooling2D"):
        pool = ["pool_height", "pool_width"] if cls == "Pooling2D" else ["pool_width"]
        return Op("pooling", **common, attrs={"op": str(layer.get_attr("pool_op")).lower(),
                                              "pool": [int(layer.get_attr(k)) for k in pool]})
    return None


def design_of(hls_model: Any) -> Any:
    """The written hls4ml model as a design: each layer lowered by `trigger.design`, or by `_calibration_op`
    for the kinds trigger does not compile (such a design is only estimated, never run)."""
    from trigger.design import Design
    from trigger.design.lower import LOWERINGS, Context

    ctx = Context(Path(hls_model.config.get_output_dir()))
    inputs, ops = [], []
    for layer in hls_model.get_layers():
        if layer.class_name == "Input":
            inputs.append(ctx.output(layer))
        else:
            ops.append(_calibration_op(layer, ctx) or LOWERINGS[layer.class_name](layer, ctx))
    return Design(hls_model.config.get_project_name(), inputs, ops, [ops[-1].output.name])


def design_point(point: dict[str, Any], workdir: Path) -> tuple[Any, dict[str, Any]]:
    """The point's design and the synthesis settings it is estimated with."""
    import hls4ml

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
    hls_model.write()
    return design_of(hls_model), {
        "clock_period_ns": point["clock_period_ns"],
        "io_type": point["io_type"],
        "strategy": point["strategy"],
        "reuse_factor": int(config["Model"]["ReuseFactor"]),
        "part": point["part"],
        "clock_uncertainty": hls_model.config.get_config_value("ClockUncertainty"),
    }


def estimate_point(point: dict[str, Any], workdir: Path, params: Any = None) -> dict[str, Any]:
    from trigger.estimate import estimate_design

    design, settings = design_point(point, workdir)
    return estimate_design(design, **settings, params=params).as_dict()


def check_split(points: list[dict[str, Any]]) -> None:
    """Held out by architecture: no model may have points on both sides (another tool version of a
    training architecture is not a test of the estimator on an architecture it has not seen)."""
    sides: dict[str, set[str]] = {}
    for point in points:
        sides.setdefault(point["model"], set()).add(point["split"])
    both = sorted(model for model, split in sides.items() if len(split) > 1)
    if both:
        raise SystemExit(f"{POINTS}: models {', '.join(both)} have points in both splits; hold out by architecture")


def _get(params: dict[str, Any], path: tuple[str, ...]) -> float:
    node: Any = params
    for key in path:
        node = node[key]
    return float(node)


def _set(params: dict[str, Any], path: tuple[str, ...], value: float) -> None:
    node: Any = params
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def fit_loss(designs: list[tuple[Any, dict[str, Any], dict[str, Any]]], params: Any) -> float:
    """Squared log error of the fitted metrics over the training designs (+1 keeps zeros finite)."""
    from trigger.estimate import estimate_design

    loss = 0.0
    for design, settings, measured in designs:
        totals = estimate_design(design, **settings, params=params).totals
        loss += sum(math.log((float(totals[k]) + 1) / (float(measured[k]) + 1)) ** 2
                    for k in FIT_METRICS if k in measured)
    return loss


def fit(designs: list[tuple[Any, dict[str, Any], dict[str, Any]]], params: Any, rounds: int = 3) -> dict[str, float]:
    """Coordinate search over `FITTED`: each parameter in turn takes the factor of `FIT_STEPS` that lowers
    the loss most, for a few rounds. Returns the fitted values (two significant digits past the point)."""
    from trigger.estimate.params import Params

    best = Params(copy.deepcopy(dict(params)))
    best_loss = fit_loss(designs, best)
    print(f"fit: start loss {best_loss:.3f} on {len(designs)} training points")
    for _ in range(rounds):
        for path in FITTED:
            base = _get(best, path)
            for factor in FIT_STEPS:
                trial = Params(copy.deepcopy(dict(best)))
                _set(trial, path, round(base * factor, 3))
                loss = fit_loss(designs, trial)
                if loss < best_loss - 1e-9:
                    best, best_loss = trial, loss
            print(f"fit: {'.'.join(path)} = {_get(best, path):g} (loss {best_loss:.3f})")
    return {".".join(path): _get(best, path) for path in FITTED}


def write_params(values: dict[str, float], calibration: dict[str, Any]) -> None:
    """Put fitted values and the `calibration` section into params.yaml, keeping its comments."""
    lines = PARAMS.read_text().splitlines()
    for dotted, value in values.items():
        path, start, indent = dotted.split("."), 0, -1
        for key in path:  # walk down the nested mapping by indentation
            for i in range(start, len(lines)):
                m = re.match(rf"^( *){re.escape(key)}:(.*)$", lines[i])
                if m and len(m.group(1)) > indent:
                    start, indent, found = i + 1, len(m.group(1)), i
                    break
            else:
                raise SystemExit(f"{PARAMS}: no {dotted}")
        comment = lines[found].split("#", 1)[1] if "#" in lines[found] else None
        lines[found] = f"{' ' * indent}{path[-1]}: {value:g}" + (f"  #{comment}" if comment else "")
    text = "\n".join(lines) + "\n"
    text = text[:text.index(CALIBRATION_HEADER)] if CALIBRATION_HEADER in text else text.rstrip("\n") + "\n\n"
    PARAMS.write_text(text + CALIBRATION_HEADER + json_yaml(calibration))


CALIBRATION_HEADER = """\
# Written by bench/calibrate_estimator.py (do not edit by hand). `fitted`: the parameters its --fit set on
# the training points (every other value above is set by hand); `holdout_largest_underestimate`: per metric
# the largest measured / estimated - 1 on the held-out points (how far low the estimate was), which the
# budget check reports as the margin of an estimated verdict.
"""


def json_yaml(calibration: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump({"calibration": calibration}, sort_keys=False, default_flow_style=None, width=110)


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
        low = [e["measured"] / e["estimated"] - 1 for e in errs if e["estimated"] > 0]
        summary[key] = {
            "n": len(errs),
            "mean_abs_error": round(sum(abs(e["abs_error"]) for e in errs) / len(errs), 3) if errs else None,
            "mean_abs_rel_error": round(sum(rel) / len(rel), 4) if rel else None,
            "n_with_nonzero_measurement": len(rel),
            # how far low the estimate was at worst (measured / estimated - 1, 0 if never low)
            "largest_underestimate": round(max([0.0, *low]), 4),
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
    parser.add_argument("--fit", action="store_true",
                        help="fit the FITTED parameters on the training points and write them into params.yaml")
    args = parser.parse_args(argv)

    from trigger.estimate import estimate_design, load_params

    points = json.loads(POINTS.read_text())["points"]
    check_split(points)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        designs = {point["id"]: design_point(point, Path(tmp)) for point in points}
        params = load_params()
        fitted = sorted(".".join(p) for p in FITTED)
        if args.fit:
            train = [(*designs[p["id"]], p["measured"]) for p in points if p["split"] == "train"]
            write_params(fit(train, params), {"fitted": fitted})  # the measured errors follow below
            load_params.cache_clear()
            params = load_params()
        for point in points:
            design, settings = designs[point["id"]]
            est = estimate_design(design, **settings, params=params).as_dict()
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
    write_params({}, {
        "source": str(args.out.relative_to(ROOT)) if args.out.is_relative_to(ROOT) else str(args.out),
        "fitted": params("calibration", "fitted"),
        "train_points": result["train"]["points"],
        "holdout_points": result["holdout"]["points"],
        "holdout_largest_underestimate": {k: result["holdout"][k]["largest_underestimate"] for k in METRICS},
    })
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
