"""hls4ml extension of the SPA-Net layers: Keras-v2 parsers, IR layers, config/function templates, C++ source.

`register()` must run before `hls4ml.utils.config_from_keras_model` or a conversion sees an `Fx*` layer; it is
idempotent. Types come from the Keras layers' configs (the same objects the Python reference uses); the
accumulators are derived here so that they are exact, which is what lets the reference skip them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from hls4ml.backends import get_backend
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.converters import register_keras_v2_layer_handler
from hls4ml.model.layers import Layer, register_layer
from hls4ml.model.types import FixedPrecisionType

from trigger.hls_ext import estimate
from trigger.hls_ext.fixed import Fx, exact_sum_type, softmax_tables
from trigger.hls_ext.layers import ATTENTION_WEIGHTS, TRIPLET_WEIGHTS

HEADER = Path(__file__).with_name("nnet_spanet.h")
INCLUDE = ["nnet_utils/nnet_spanet.h"]
BACKENDS = ("Vivado", "Vitis")
_REGISTERED: set[str] = set()  # holds "spanet" once registered (hls4ml refuses a second registration)


def hls_precision(t: Fx) -> FixedPrecisionType:
    """The hls4ml type of a result: round to nearest, saturate (as `fixed.quantize`)."""
    return FixedPrecisionType(t.width, t.integer, t.signed, rounding_mode="RND", saturation_mode="SAT")


def _weight_data(data_reader: Any, layer_name: str, name: str) -> np.ndarray:
    data = data_reader.get_weights_data(layer_name, f"/{name}:")
    if data is None:
        data = data_reader.get_weights_data(layer_name, name)
    if data is None:
        raise ValueError(f"{layer_name}: weight {name} not found")
    return np.asarray(data)


def _parse_common(keras_layer: dict[str, Any], input_names: list[str] | None,
                  class_name: str) -> dict[str, Any]:
    config = keras_layer["config"]
    layer: dict[str, Any] = {"class_name": class_name, "name": config["name"], "types": config["types"]}
    if input_names is not None:
        layer["inputs"] = input_names
    return layer


def parse_fx_dense(keras_layer: dict[str, Any], input_names: list[str] | None, input_shapes: list[list[Any]],
                   data_reader: Any) -> tuple[dict[str, Any], list[Any]]:
    layer = _parse_common(keras_layer, input_names, "FxDenseHLS")
    shape = input_shapes[0]
    layer.update(n_items=shape[1], n_in=shape[2], n_out=keras_layer["config"]["units"],
                 relu=keras_layer["config"]["relu"])
    layer["kernel_data"] = _weight_data(data_reader, layer["name"], "kernel")
    layer["bias_data"] = _weight_data(data_reader, layer["name"], "bias")
    return layer, [shape[0], shape[1], layer["n_out"]]


def parse_fx_attention(keras_layer: dict[str, Any], input_names: list[str] | None,
                       input_shapes: list[list[Any]], data_reader: Any) -> tuple[dict[str, Any], list[Any]]:
    layer = _parse_common(keras_layer, input_names, "FxSelfAttentionHLS")
    config = keras_layer["config"]
    shape = input_shapes[0]
    layer.update(n_items=shape[1], n_in=shape[2], n_head=config["head_dim"], exp_frac=config["exp_frac"],
                 exp_range=config["exp_range"], inv_frac=config["inv_frac"])
    for name in ATTENTION_WEIGHTS:
        layer[f"{name}_data"] = _weight_data(data_reader, layer["name"], name)
    return layer, list(shape)


def parse_fx_triplet(keras_layer: dict[str, Any], input_names: list[str] | None,
                     input_shapes: list[list[Any]], data_reader: Any) -> tuple[dict[str, Any], list[Any]]:
    layer = _parse_common(keras_layer, input_names, "FxTripletArgmaxHLS")
    shape = input_shapes[0]
    layer.update(n_items=shape[1], n_in=shape[2], n_rank=keras_layer["config"]["rank"])
    for name in TRIPLET_WEIGHTS:
        layer[f"{name}_data"] = _weight_data(data_reader, layer["name"], name)
    return layer, [shape[0], 8]


class _FxLayerHLS(Layer):
    """IR base: typed weights sharing one C++ weight/bias type per layer, and derived exact accumulators."""

    def fx(self, name: str) -> Fx:
        return Fx.of(self.get_attr("types")[name])

    def add_fx_weight(self, name: str, var_name: str, kind: str, data: np.ndarray | None = None) -> None:
        self.add_weights_variable(name=name, var_name=f"{var_name}{{index}}",
                                  type_name=f"fx{kind}{{index}}_t", precision=hls_precision(self.fx(kind)),
                                  data=self.get_attr(f"{name}_data") if data is None else data)

    def type_name(self, name: str) -> str:
        return self.get_weights(name).type.name


class FxDenseHLS(_FxLayerHLS):
    def initialize(self) -> None:
        self.add_output_variable([self.get_attr("n_items"), self.get_attr("n_out")],
                                 precision=hls_precision(self.fx("out")))
        self.add_fx_weight("kernel", "fxk", "weight")
        self.add_fx_weight("bias", "fxb", "bias")


class FxSelfAttentionHLS(_FxLayerHLS):
    def initialize(self) -> None:
        self.add_output_variable([self.get_attr("n_items"), self.get_attr("n_in")],
                                 precision=hls_precision(self.fx("out")))
        for name in ATTENTION_WEIGHTS:
            self.add_fx_weight(name, f"fx{name.replace('kernel_', 'w').replace('bias_', 'b')}",
                               "bias" if name.startswith("bias") else "weight")
        tables = softmax_tables(self.get_attr("exp_frac"), self.get_attr("exp_range"),
                                self.get_attr("inv_frac"), self.get_attr("n_items"),
                                {"exp": self.fx("exp"), "inv": self.fx("inv")})
        self.set_attr("exp_size", tables.exp_size)
        self.set_attr("inv_size", tables.inv_size)
        self.add_fx_weight("exp_table", "fxexp", "exp", tables.exp)
        self.add_fx_weight("inv_table", "fxinv", "inv", tables.inv)


class FxTripletArgmaxHLS(_FxLayerHLS):
    def initialize(self) -> None:
        self.add_output_variable([8], precision=hls_precision(self.fx("score")))
        for name in TRIPLET_WEIGHTS:
            self.add_fx_weight(name, f"fx{name.replace('kernel_', 'w').replace('bias_', 'b')}",
                               "bias" if name.startswith("bias") else "weight")


def _typedefs(types: dict[str, Fx | str], accumulators: dict[str, Fx]) -> str:
    """Typedefs: rounded, saturated results (or hls4ml type names) and exact wrap/truncate accumulators."""
    lines = [f"    typedef {t.cpp() if isinstance(t, Fx) else t} {name};\n" for name, t in types.items()]
    lines += [f"    typedef {t.cpp(rounding=False)} {name};\n" for name, t in accumulators.items()]
    return "".join(lines)


def _union(a: Fx, b: Fx) -> Fx:
    """A signed type holding every value of `a` and of `b`."""
    frac = max(a.frac, b.frac)
    integer = max(a.integer, b.integer) + 1
    return Fx(integer + frac, integer)


class FxDenseConfig(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(FxDenseHLS)

    def format(self, node: FxDenseHLS) -> str:
        n_in = node.get_attr("n_in")
        types: dict[str, Fx | str] = {
            "in_t": node.fx("in"), "out_t": node.fx("out"),
            "weight_t": node.type_name("kernel"), "bias_t": node.type_name("bias")}
        accumulators = {"acc_t": exact_sum_type(node.fx("in"), node.fx("weight"), n_in, node.fx("bias"))}
        return (f"struct config{node.index} {{\n"
                f"    static const unsigned n_items = {node.get_attr('n_items')};\n"
                f"    static const unsigned n_in = {n_in};\n"
                f"    static const unsigned n_out = {node.get_attr('n_out')};\n"
                f"    static const bool relu = {'true' if node.get_attr('relu') else 'false'};\n"
                f"{_typedefs(types, accumulators)}}};\n")


class FxSelfAttentionConfig(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(FxSelfAttentionHLS)

    def format(self, node: FxSelfAttentionHLS) -> str:
        n, d, h = node.get_attr("n_items"), node.get_attr("n_in"), node.get_attr("n_head")
        score, exp = node.fx("score"), node.fx("exp")
        types: dict[str, Fx | str] = {
            "in_t": node.fx("in"), "qkv_t": node.fx("qkv"), "score_t": score, "attn_t": node.fx("attn"),
            "ctx_t": node.fx("ctx"), "out_t": node.fx("out"),
            "weight_t": node.type_name("kernel_q"), "bias_t": node.type_name("bias_q"),
            "exp_table_t": node.type_name("exp_table"), "inv_table_t": node.type_name("inv_table"),
        }
        # Distances below the row maximum and row sums of the exp table are exact unsigned values.
        log_n = math.ceil(math.log2(n))
        accumulators = {
            "proj_acc_t": exact_sum_type(node.fx("in"), node.fx("weight"), d, node.fx("bias")),
            "score_acc_t": exact_sum_type(node.fx("qkv"), node.fx("qkv"), h),
            "ctx_acc_t": exact_sum_type(node.fx("attn"), node.fx("qkv"), n),
            "out_acc_t": exact_sum_type(node.fx("ctx"), node.fx("weight"), h,
                                        _union(node.fx("in"), node.fx("bias"))),
            "dist_t": Fx(score.width + 1, score.integer + 1, False),
            "sum_t": Fx(exp.width + log_n + 1, exp.integer + log_n + 1, False),
        }
        return (f"struct config{node.index} {{\n"
                f"    static const unsigned n_items = {n};\n"
                f"    static const unsigned n_in = {d};\n"
                f"    static const unsigned n_head = {h};\n"
                f"    static const unsigned exp_frac = {node.get_attr('exp_frac')};\n"
                f"    static const unsigned exp_size = {node.get_attr('exp_size')};\n"
                f"    static const unsigned inv_frac = {node.get_attr('inv_frac')};\n"
                f"    static const unsigned inv_size = {node.get_attr('inv_size')};\n"
                f"{_typedefs(types, accumulators)}}};\n")


class FxTripletArgmaxConfig(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(FxTripletArgmaxHLS)

    def format(self, node: FxTripletArgmaxHLS) -> str:
        d, r = node.get_attr("n_in"), node.get_attr("n_rank")
        types: dict[str, Fx | str] = {
            "in_t": node.fx("in"), "factor_t": node.fx("factor"), "pair_t": node.fx("pair"),
            "score_t": node.fx("score"),
            "weight_t": node.type_name("kernel_b"), "bias_t": node.type_name("bias_b"),
        }
        accumulators = {
            "proj_acc_t": exact_sum_type(node.fx("in"), node.fx("weight"), d, node.fx("bias")),
            "score_acc_t": exact_sum_type(node.fx("factor"), node.fx("pair"), r),
        }
        return (f"struct config{node.index} {{\n"
                f"    static const unsigned n_items = {node.get_attr('n_items')};\n"
                f"    static const unsigned n_in = {d};\n"
                f"    static const unsigned n_rank = {r};\n"
                f"{_typedefs(types, accumulators)}}};\n")


class _FxFunction(FunctionCallTemplate):
    """`nnet::<function><input_t, [mask_t,] output_t, config>(input, [mask,] output, weights...)`."""

    function = ""
    weights: tuple[str, ...] = ()

    def format(self, node: _FxLayerHLS) -> str:
        params = self._default_function_params(node)
        args = [params["input"]]
        targs = [params["input_t"]]
        if len(node.inputs) > 1:
            mask = node.get_input_variable(node.inputs[1])
            args.append(mask.name)
            targs.append(mask.type.name)
        args.append(params["output"])
        args += [node.get_weights(w).name for w in self.weights]
        targs += [params["output_t"], params["config"]]
        return f"nnet::{self.function}<{', '.join(targs)}>({', '.join(args)});"


class FxDenseFunction(_FxFunction):
    function = "fx_dense"
    weights = ("kernel", "bias")

    def __init__(self) -> None:
        super().__init__(FxDenseHLS, include_header=INCLUDE)


class FxSelfAttentionFunction(_FxFunction):
    function = "fx_self_attention"
    weights = (*ATTENTION_WEIGHTS, "exp_table", "inv_table")

    def __init__(self) -> None:
        super().__init__(FxSelfAttentionHLS, include_header=INCLUDE)


class FxTripletArgmaxFunction(_FxFunction):
    function = "fx_triplet_argmax"
    weights = TRIPLET_WEIGHTS

    def __init__(self) -> None:
        super().__init__(FxTripletArgmaxHLS, include_header=INCLUDE)


def register() -> None:
    """Teach hls4ml the SPA-Net layers (parsers, IR layers, Vivado/Vitis templates, C++ header), once."""
    if _REGISTERED:
        return
    for keras_name, parser in (("FxDense", parse_fx_dense), ("FxSelfAttention", parse_fx_attention),
                               ("FxTripletArgmax", parse_fx_triplet)):
        register_keras_v2_layer_handler(keras_name, parser)
    for cls in (FxDenseHLS, FxSelfAttentionHLS, FxTripletArgmaxHLS):
        register_layer(cls.__name__, cls)
    for name in BACKENDS:
        backend = get_backend(name)
        for template in (FxDenseConfig, FxSelfAttentionConfig, FxTripletArgmaxConfig, FxDenseFunction,
                         FxSelfAttentionFunction, FxTripletArgmaxFunction):
            backend.register_template(template)
        backend.register_source(HEADER)
    estimate.register()
    _REGISTERED.add("spanet")
