"""Lowering: hls4ml's `ModelGraph`, after conversion, type derivation and writing, into a `Design`.

Every type is read from the graph as hls4ml wrote it into the firmware, so the design holds exactly the
firmware's types. Weights are read from the project's `firmware/weights/*.txt`, the very literals the C++
is built from, and cast to their types as the C++ casts them. A layer kind without a lowering here is
refused by name: it is never approximated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trigger.design.fixed import Fx, quantize
from trigger.design.graph import Design, Op, Tensor
from trigger.design.interpret import check_runnable
from trigger.errors import InputError

Lowering = Callable[[Any, "Context"], Op]
LOWERINGS: dict[str, Lowering] = {}
STRATEGIES = ("latency", "resource")


def lowering(*class_names: str) -> Callable[[Lowering], Lowering]:
    """Register the lowering of hls4ml layer classes (their `class_name`)."""

    def register(fn: Lowering) -> Lowering:
        for name in class_names:
            LOWERINGS[name] = fn
        return fn

    return register


class Context:
    """What a lowering needs beside its layer: the project's weight files and the names of the tensors."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.weights_dir = project / "firmware" / "weights"
        self.tensor_of: dict[str, str] = {}  # hls4ml output name -> design tensor name

    def fx(self, var_or_type: Any) -> Fx:
        precision = getattr(getattr(var_or_type, "type", var_or_type), "precision", None)
        if precision is None:
            raise InputError(f"{var_or_type}: no fixed-point precision")
        return Fx.from_hls(precision)

    def output(self, layer: Any) -> Tensor:
        var = layer.get_output_variable()
        return Tensor(layer.outputs[0], tuple(int(s) for s in var.shape), self.fx(var))

    def inputs(self, layer: Any) -> list[str]:
        return [self.tensor_of.get(name, name) for name in layer.inputs]

    def weight(self, layer: Any, key: str) -> tuple[np.ndarray, Fx]:
        """The weight `key` of `layer` as the firmware holds it: the written literals cast to the weight type."""
        var = layer.weights[key]
        t = self.fx(var)
        path = self.weights_dir / f"{var.name}.txt"
        if path.is_file():
            text = path.read_text().replace("\n", " ").strip().strip(",")
            values = np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float64)
        else:  # an extension layer that writes its constants only into the header: the same data hls4ml wrote
            values = np.asarray(var.data, dtype=np.float64).ravel()
        data = np.asarray(var.data)
        if values.size != data.size:
            raise InputError(f"{path}: {values.size} values, layer {layer.name} has {data.size}")
        return quantize(values.reshape(data.shape), t), t


def _op(kind: str, layer: Any, ctx: Context, **fields: Any) -> Op:
    return Op(kind=kind, name=layer.name, inputs=ctx.inputs(layer), output=ctx.output(layer),
              source=f"{layer.class_name} {layer.name!r}", **fields)


def _strategy(layer: Any) -> None:
    strategy = str(layer.get_attr("strategy", "latency")).lower()
    if strategy not in STRATEGIES:
        raise InputError(f"layer {layer.name!r}: strategy {strategy!r} is not lowered (use Latency or Resource)")


@lowering("Dense")
def _dense(layer: Any, ctx: Context) -> Op:
    _strategy(layer)
    kernel, kernel_t = ctx.weight(layer, "weight")
    if layer.get_attr("_weights_transposed", False):  # hls4ml's Resource strategy stores (n_out, n_in)
        kernel = kernel.T
    bias, bias_t = ctx.weight(layer, "bias")
    return _op("dense", layer, ctx, types={"accum": ctx.fx(layer.get_attr("accum_t"))},
               weights={"kernel": kernel, "bias": bias}, weight_types={"kernel": kernel_t, "bias": bias_t})


@lowering("Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D")
def _conv(layer: Any, ctx: Context) -> Op:
    _strategy(layer)
    kernel, kernel_t = ctx.weight(layer, "weight")
    two_d = layer.class_name.endswith("2D")
    if layer.get_attr("_weights_transposed", False):  # (F, *filter, C) back to (*filter, C, F)
        kernel = np.moveaxis(kernel, 0, -1)
    bias, bias_t = ctx.weight(layer, "bias")
    if two_d:
        filt = [layer.get_attr("filt_height"), layer.get_attr("filt_width")]
        strides = [layer.get_attr("stride_height"), layer.get_attr("stride_width")]
        padding = [[layer.get_attr("pad_top"), layer.get_attr("pad_bottom")],
                   [layer.get_attr("pad_left"), layer.get_attr("pad_right")]]
    else:
        filt, strides = [layer.get_attr("filt_width")], [layer.get_attr("stride_width")]
        padding = [[layer.get_attr("pad_left"), layer.get_attr("pad_right")]]
    kernel = kernel.reshape(*filt, -1, kernel.shape[-1])
    return _op("conv", layer, ctx, types={"accum": ctx.fx(layer.get_attr("accum_t"))},
               weights={"kernel": kernel, "bias": bias}, weight_types={"kernel": kernel_t, "bias": bias_t},
               attrs={"filter": [int(f) for f in filt], "strides": [int(s) for s in strides],
                      "padding": [[int(a), int(b)] for a, b in padding]})


@lowering("Activation", "QActivation")
def _activation(layer: Any, ctx: Context) -> Op:
    kind = str(layer.get_attr("activation")).lower()
    if kind == "relu":
        return _op("relu", layer, ctx)
    if kind == "linear":
        return _op("cast", layer, ctx)
    raise InputError(f"layer {layer.name!r}: activation {kind!r} is not lowered (relu, linear and softmax are)")


@lowering("Reshape", "Flatten")
def _reshape(layer: Any, ctx: Context) -> Op:
    return _op("reshape", layer, ctx)


@lowering("BatchNormalization")
def _batchnorm(layer: Any, ctx: Context) -> Op:
    scale, scale_t = ctx.weight(layer, "scale")
    bias, bias_t = ctx.weight(layer, "bias")
    return _op("batchnorm", layer, ctx, weights={"scale": scale, "bias": bias},
               weight_types={"scale": scale_t, "bias": bias_t})


@lowering("Merge")
def _merge(layer: Any, ctx: Context) -> Op:
    op = str(layer.get_attr("op")).lower()
    if op not in ("add", "subtract", "multiply", "maximum", "minimum"):
        raise InputError(f"layer {layer.name!r}: merge {op!r} is not lowered")
    return _op("merge", layer, ctx, attrs={"op": op})


@lowering("Dot")
def _dot(layer: Any, ctx: Context) -> Op:
    if len(layer.get_input_variable(layer.inputs[0]).shape) != 1:
        raise InputError(f"layer {layer.name!r}: only the dot product of two vectors is lowered")
    return _op("dot", layer, ctx, types={"accum": ctx.fx(layer.get_attr("accum_t"))})


@lowering("Concatenate")
def _concatenate(layer: Any, ctx: Context) -> Op:
    rank = len(layer.get_output_variable().shape)
    axis = int(layer.get_attr("axis", -1))
    return _op("concatenate", layer, ctx, attrs={"axis": axis if axis > 0 else rank + 1 + axis})


def lower(hls_model: Any, meta: dict[str, Any] | None = None) -> Design:
    """The design of a written (compiled) hls4ml model; refuses, naming it, any layer it cannot lower."""
    project = Path(hls_model.config.get_output_dir())
    ctx = Context(project)
    inputs: list[Tensor] = []
    ops: list[Op] = []
    for layer in hls_model.get_layers():
        if layer.class_name == "Input":
            var = layer.get_output_variable()
            inputs.append(Tensor(layer.outputs[0], tuple(int(s) for s in var.shape), ctx.fx(var)))
            continue
        fn = LOWERINGS.get(layer.class_name)
        if fn is None:
            raise InputError(f"layer {layer.name!r} of hls4ml class {layer.class_name} has no lowering to the design")
        op = fn(layer, ctx)
        ops.append(op)
    outputs = [var.name for var in hls_model.get_output_variables()]
    by_var = {layer.get_output_variable().name: layer.outputs[0] for layer in hls_model.get_layers()}
    design = Design(hls_model.config.get_project_name(), inputs, ops, [by_var.get(o, o) for o in outputs],
                    dict(meta or {}))
    check_runnable(design)
    return design
