"""Stage: hls4ml conversion of the firmware model into an HLS project, and its C simulation library.

Types are derived, not guessed: weights, biases and activations take their widths from the QKeras
quantizers (hls4ml reads them with `granularity="name"`), accumulators and Dense results are left
`auto` so hls4ml's precision inference sizes them from their operands (no truncation, no wrap), and the
input layer takes the config's input grid. Per-layer overrides from `hls.precision.layers` come last:
they are the user's explicit choice. Float layers (a user's float Keras model) take the default precision.

The exported test bench is patched to read inputs and golden outputs as doubles and to compare every
output exactly, so csim and C/RTL cosim in the vendor tools fail on the first mismatch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trigger.config import PRECISION_RE, Config
from trigger.errors import CheckFailed, ConfigError, InputError
from trigger.fixed_point import hls_type

if TYPE_CHECKING:
    from hls4ml.model import ModelGraph
    from tensorflow import keras

    from trigger.families.base import ModelFamily

QUANTIZED_LAYERS = ("QDense", "QConv1D", "QConv2D", "QActivation", "QBatchNormalization")
RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")


def _layer_names(model: keras.Model) -> set[str]:
    return {layer.name for layer in model.layers}


def check_supported(model: keras.Model, source: str, family: ModelFamily) -> None:
    """Fail before any training or conversion, naming the layer, when the firmware model has a layer that
    hls4ml has no converter for, or a recurrent layer (hls4ml converts some, but trigger's type derivation
    and bit-exact check do not handle state carried across time steps); and when `hls.precision.layers`
    names a layer the model does not have (a typo would silently leave the default type)."""
    import hls4ml

    supported = set(hls4ml.converters.get_supported_keras_layers()) | set(family.custom_objects())
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in RECURRENT_LAYERS or kind.lstrip("Q") in RECURRENT_LAYERS:
            raise InputError(f"{source}: layer {layer.name!r} of type {kind} is recurrent; trigger compiles "
                             "feed-forward models only (Dense, Conv, activations, merges)")
        if kind not in supported:
            raise InputError(f"{source}: layer {layer.name!r} of type {kind} is not supported by hls4ml")
    names = _layer_names(model)
    for name in family.cfg.hls.layer_precision:
        if name not in names:
            raise ConfigError(f"hls.precision.layers.{name}",
                              f"no such layer in the model (layers: {', '.join(sorted(names))})")


def profile_ranges(model: keras.Model, x: np.ndarray | list[np.ndarray]) -> dict[str, float]:
    """Largest |value| every layer reaches on `x`: the range a float model's fixed-point types must hold.

    hls4ml splits a layer with a built-in activation into the layer (pre-activation values, keyed by the
    layer's name) and an activation layer `<name>_<activation>` (keyed so); both are profiled.
    """
    from tensorflow import keras

    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]

    def largest() -> list[float]:
        probe = keras.Model(model.inputs, [layer.output for layer in layers])
        outputs = probe.predict(x, batch_size=4096, verbose=0)
        return [float(np.max(np.abs(o))) for o in (outputs if isinstance(outputs, list) else [outputs])]

    post = largest()
    built_in = {layer.name: layer.activation for layer in layers
                if type(layer).__name__ != "Activation" and getattr(layer, "activation", None) is not None}
    try:
        for layer in layers:
            if layer.name in built_in:
                layer.activation = keras.activations.linear
        pre = largest() if any(a is not keras.activations.linear for a in built_in.values()) else post
    finally:
        for layer in layers:
            if layer.name in built_in:
                layer.activation = built_in[layer.name]
    ranges = {}
    for layer, before, after in zip(layers, pre, post, strict=True):
        ranges[layer.name] = before
        if layer.name in built_in:
            ranges[f"{layer.name}_{built_in[layer.name].__name__}"] = after
    return ranges


def _ranged_type(default: str, largest: float) -> str:
    """The default precision's fractional bits, with integer bits for `largest` plus sign and one spare;
    rounding to nearest, so truncation errors do not pile up in one direction through the layers."""
    match = PRECISION_RE.match(default)
    width, integer = int(match.group(2)), int(match.group(3))
    needed = max(1, int(np.ceil(np.log2(largest + 2.0 ** -(width - integer)))) + 2)
    return f"fixed<{width - integer + needed},{needed},RND,SAT>"


def _rounding(default: str) -> str:
    """The default precision, rounding to nearest and saturating (float weights are rounded, not floored)."""
    match = PRECISION_RE.match(default)
    return f"fixed<{match.group(2)},{match.group(3)},RND,SAT>"


def hls_config(model: keras.Model, cfg: Config, family: ModelFamily, trace_layers: list[str] | None = None,
               profile_x: np.ndarray | list[np.ndarray] | None = None) -> dict[str, Any]:
    """The hls4ml configuration dictionary for `model` under `cfg`; `trace_layers` can be read by `trace()`.
    A float model's result types are sized from the ranges its layers reach on `profile_x` (training
    events): the default precision's fractional bits, integer bits so nothing wraps; its accumulators
    stay `auto` (exact), so rounding happens once per layer, not once per product."""
    import hls4ml

    conf = hls4ml.utils.config_from_keras_model(
        model, granularity="name", backend=cfg.hls.backend,
        default_precision=cfg.hls.default_precision, default_reuse_factor=cfg.hls.reuse_factor)
    conf["Model"]["Strategy"] = cfg.hls.strategy
    layers = conf["LayerName"]
    quantized = any(type(layer).__name__ in QUANTIZED_LAYERS for layer in model.layers)
    ranges = profile_ranges(model, profile_x) if not quantized and profile_x is not None else {}
    if not quantized:
        default = conf["Model"]["Precision"]["default"]
        for name, entry in layers.items():
            precision = entry.setdefault("Precision", {})
            for key, value in list(precision.items()):
                if key == "accum" or not (value == "auto" or (key in ("weight", "bias") and value == default)):
                    continue  # accumulators stay exact (sized from their operands); explicit types stay
                precision[key] = _ranged_type(cfg.hls.default_precision, ranges[name]) \
                    if key == "result" and name in ranges else _rounding(cfg.hls.default_precision)
    for layer in model.layers:
        entry = layers.get(layer.name)
        if entry is None:
            continue
        kind = type(layer).__name__
        precision = entry.setdefault("Precision", {})
        if kind == "InputLayer":
            precision["result"] = hls_type(cfg.quantization.input)
        if kind == "Activation" and layer.get_config().get("activation") == "softmax":
            # `exp_table`/`inv_table` entries are ignored by hls4ml 1.3.0; the `_t` keys are honoured.
            entry["exp_table_t"] = precision.pop("exp_table", "ap_fixed<18,8,AP_RND,AP_SAT>")
            entry["inv_table_t"] = precision.pop("inv_table", "ap_fixed<18,8,AP_RND,AP_SAT>")
    _keep_linear_quantizers(model, layers)
    names = _layer_names(model)
    for name, overrides in cfg.hls.layer_precision.items():
        if name not in names:
            raise ConfigError(f"hls.precision.layers.{name}",
                              f"no such layer in the model (layers: {', '.join(sorted(names))})")
        layers.setdefault(name, {}).setdefault("Precision", {}).update(overrides)
    for name in trace_layers or []:
        layers[name]["Trace"] = True
    family.configure_hls(conf, model)
    return conf


def _keep_linear_quantizers(model: keras.Model, layers: dict[str, Any]) -> None:
    """hls4ml 1.3.0 folds a linear `QActivation(quantized_bits)` into the `auto`-typed QDense/QConv before it
    and drops the quantizer's rounding; giving that layer (and the `<name>_linear` hls4ml adds after it) the
    quantizer's own type puts the rounding back where it happens in QKeras."""
    for layer in model.layers:
        if type(layer).__name__ != "QActivation" or type(layer.activation).__name__ != "quantized_bits":
            continue
        inbound = layer._inbound_nodes[0].inbound_layers
        if type(inbound).__name__ not in ("QDense", "QConv1D", "QConv2D"):
            continue
        if getattr(getattr(inbound, "activation", None), "__name__", "linear") != "linear":
            continue  # a built-in non-linear activation: hls4ml keeps the QActivation after it
        rounding = layers.get(layer.name, {}).get("Precision", {}).get("result")
        if rounding:
            for node in (inbound.name, f"{inbound.name}_linear"):
                layers.setdefault(node, {}).setdefault("Precision", {})["result"] = rounding


def _flatten(arrays: np.ndarray | list[np.ndarray]) -> np.ndarray:
    arrays = arrays if isinstance(arrays, list) else [arrays]
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in arrays], axis=1)


def write_dat(path: Path, arrays: np.ndarray | list[np.ndarray]) -> None:
    """One event per line, every value in Python's round-trip repr (exact for fixed-point values)."""
    rows = _flatten(arrays)
    with path.open("w") as f:
        for row in rows:
            f.write(" ".join(repr(float(v)) for v in row) + "\n")


def convert(model: keras.Model, cfg: Config, family: ModelFamily, output_dir: Path, *,
            tb_inputs: np.ndarray | list[np.ndarray], tb_outputs: np.ndarray | list[np.ndarray],
            trace_layers: list[str] | None = None,
            profile_x: np.ndarray | list[np.ndarray] | None = None) -> ModelGraph:
    """Convert `model` into an HLS project in `output_dir` whose test bench holds the golden vectors."""
    import hls4ml

    conf = hls_config(model, cfg, family, trace_layers, profile_x)
    output_dir.mkdir(parents=True, exist_ok=True)
    # hls4ml copies these into tb_data/ each time it writes the project; they live beside the project.
    tb_in = output_dir.parent / f".{cfg.name}_tb_input.dat"
    tb_out = output_dir.parent / f".{cfg.name}_tb_output.dat"
    write_dat(tb_in, tb_inputs)
    write_dat(tb_out, tb_outputs)
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=conf, output_dir=str(output_dir), project_name=cfg.name, backend=cfg.hls.backend,
        part=cfg.hls.part, clock_period=cfg.hls.clock_period_ns, io_type=cfg.hls.io_type,
        input_data_tb=str(tb_in), output_data_tb=str(tb_out))


class _Template:
    """hls4ml's test bench text, edited only where the expected code is found: a bench that silently kept
    hls4ml's own (non-comparing) code would exit 0 and "pass" whatever the outputs, so an edit that does not
    apply stops the compile instead."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text()

    def _missing(self, snippet: str, found: int, expected: int | None) -> CheckFailed:
        return CheckFailed(f"{self.path}: hls4ml's test bench template changed ({snippet!r} found {found} "
                           f"times, expected {expected or 'at least 1'}); the golden-vector check cannot be added")

    def replace(self, old: str, new: str, *, count: int | None = None, regex: bool = False) -> None:
        found = len(re.findall(old, self.text)) if regex else self.text.count(old)
        if found == 0 or (count is not None and found != count):
            raise self._missing(old, found, count)
        self.text = re.sub(old, new, self.text) if regex else self.text.replace(old, new)

    def index(self, snippet: str, start: int = 0) -> int:
        at = self.text.find(snippet, start)
        if at < 0:
            raise self._missing(snippet, 0, None)
        return at


def add_golden_check(test_bench: Path, hls_model: ModelGraph) -> None:
    """Make hls4ml's test bench compare every output with the golden file and exit 1 on a mismatch."""
    tb = _Template(test_bench)
    # Read as doubles (exact for every fixed-point value), under names no layer can take: hls4ml's `in`
    # and `pr` collide with a model input named `in`.
    tb.replace("std::vector<float> in;", "std::vector<double> tb_in;", count=1)
    tb.replace("in.push_back(", "tb_in.push_back(")
    tb.replace(r"nnet::copy_data<float, (\w+), ([^,]+), ([^>]+)>\(in, ",
               r"nnet::copy_data<double, \1, \2, \3>(tb_in, ", regex=True)
    tb.replace("std::vector<float> pr;", "std::vector<double> tb_pr;", count=1)
    tb.replace("pr.push_back(", "tb_pr.push_back(")
    tb.replace("std::cout << pr[i]", "std::cout << tb_pr[i]")
    compare = []
    offset = 0
    for out in hls_model.get_output_variables():
        size = out.size()
        compare.append(
            f"            for (int i = 0; i < {size}; i++) {{\n"
            f"                if ((double){out.name}[i] != tb_pr[{offset} + i]) {{\n"
            f"                    if (mismatches < 10) std::cout << \"MISMATCH event \" << e - 1 << \" output "
            f"{out.name}[\" << i << \"]: \" << (double){out.name}[i] << \" != \" << tb_pr[{offset} + i] << std::endl;\n"
            f"                    mismatches++;\n"
            f"                }}\n"
            f"            }}\n")
        offset += size
    # The first tb-output marker sits at the end of the loop over the golden file; its block closes the loop.
    insert_at = tb.index("\n        }\n", tb.index("// hls-fpga-machine-learning insert tb-output")) + 1
    tb.text = tb.text[:insert_at] + "".join(compare) + tb.text[insert_at:]
    tb.replace("    std::string iline;", "    int mismatches = 0;\n    std::string iline;", count=1)
    tb.replace(
        "    return 0;\n}",
        "    if (mismatches > 0) {\n"
        "        std::cout << \"FAIL: \" << mismatches << \" outputs differ from the golden vectors\" << std::endl;\n"
        "        return 1;\n"
        "    }\n"
        "    std::cout << \"PASS: all outputs equal the golden vectors bit for bit\" << std::endl;\n"
        "    return 0;\n}", count=1)
    test_bench.write_text(tb.text)


def compile_csim(hls_model: ModelGraph) -> None:
    """Write the project and build its bit-accurate C simulation library (g++), which `predict` calls;
    then give the written test bench its golden-vector check."""
    hls_model.compile()
    config = hls_model.config
    if config.get_config_value("IOType") == "io_parallel":
        name = config.get_project_name()
        add_golden_check(Path(config.get_output_dir()) / f"{name}_test.cpp", hls_model)


def run_testbench(project: Path, name: str) -> dict[str, Any]:
    """Build the exported test bench with g++ outside hls4ml and run it on the golden vectors.

    This checks the files a firmware engineer receives (firmware, weights, test bench, tb_data) agree
    with each other, independently of the library hls4ml compiled for `predict`.
    """
    import shutil
    import subprocess

    compiler = shutil.which("g++")
    if compiler is None:
        return {"ran": False, "passed": None, "reason": "g++ not found"}
    binary = project / f"{name}_tb"
    build = subprocess.run(
        [compiler, "-O1", "-std=c++14", f'-DWEIGHTS_DIR="{project / "firmware" / "weights"}"',
         f"-I{project / 'firmware' / 'ap_types'}", "-o", str(binary),
         str(project / f"{name}_test.cpp"), str(project / "firmware" / f"{name}.cpp")],
        capture_output=True, text=True, check=False)
    if build.returncode != 0:
        return {"ran": False, "passed": False, "reason": "test bench did not compile: "
                + (build.stderr.strip().splitlines() or ["?"])[-1]}
    run = subprocess.run([str(binary)], cwd=project, capture_output=True, text=True, check=False)
    binary.unlink()
    (project / "tb_data" / "csim_results.log").unlink(missing_ok=True)
    last = (run.stdout.strip().splitlines() or [""])[-1]
    return {"ran": True, "passed": run.returncode == 0, "summary": last}


def relocate_config(project: Path, final: Path) -> None:
    """Point hls4ml_config.yml at the project's final folder instead of the staging folder it was written in."""
    path = project / "hls4ml_config.yml"
    text = path.read_text().replace(str(project.resolve()), str(final.resolve()))
    staged_root = re.escape(str(project.resolve().parent))
    tb_data = final.resolve() / "tb_data"
    text = re.sub(rf"{staged_root}/\.\w+_tb_input\.dat", str(tb_data / "tb_input_features.dat"), text)
    text = re.sub(rf"{staged_root}/\.\w+_tb_output\.dat", str(tb_data / "tb_output_predictions.dat"), text)
    path.write_text(text)
