"""hls4ml extension of the SPA-Net layers: Keras-v2 parsers, IR layers, config/function templates, C++ source.

`register()` must run before `hls4ml.utils.config_from_keras_model` or a conversion sees an `Fx*` layer; it is
idempotent. Types come from the Keras layers' configs; the exact accumulators and the softmax tables are
derived by `trigger.design.spanet`, the same functions that build the design ops, so the C++ config structs
and the interpreter cannot disagree about a type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from hls4ml.backends import get_backend
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.converters import register_keras_v2_layer_handler
from hls4ml.model.layers import Layer, register_layer
from hls4ml.model.types import FixedPrecisionType

from trigger.design.fixed import Fx
from trigger.design.spanet import (
    ATTENTION_WEIGHTS,
    MASS_PRIOR_TABLES,
    TRIPLET_WEIGHTS,
    attention_types,
    dense_types,
    mass_prior_types,
    reuse_factor,
    softmax_tables,
    triplet_types,
)
from trigger.hls_ext import estimate

HEADER = Path(__file__).with_name("nnet_spanet.h")
INCLUDE = ["nnet_utils/nnet_spanet.h"]
BACKENDS = ("Vivado", "Vitis")
_REGISTERED: set[str] = set()  # holds "spanet" once registered (hls4ml refuses a second registration)


def hls_precision(t: Fx) -> FixedPrecisionType:
    """The hls4ml type of a declared result or weight type, with its modes (AP_RND, AP_SAT)."""
    return FixedPrecisionType(t.width, t.integer, t.signed, rounding_mode=t.rounding, saturation_mode=t.overflow)


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
    layer.update(n_items=shape[1], n_in=shape[2], n_head=config["head_dim"], heads=config["heads"],
                 exp_frac=config["exp_frac"], exp_range=config["exp_range"], inv_frac=config["inv_frac"])
    for name in ATTENTION_WEIGHTS:
        layer[f"{name}_data"] = _weight_data(data_reader, layer["name"], name)
    return layer, list(shape)


def parse_fx_mass_prior(keras_layer: dict[str, Any], input_names: list[str] | None,
                        input_shapes: list[list[Any]], data_reader: Any) -> tuple[dict[str, Any], list[Any]]:
    layer = _parse_common(keras_layer, input_names, "FxMassPriorHLS")
    config = keras_layer["config"]
    shape = input_shapes[0]
    n = shape[1]
    layer.update(n_items=n, n_in=shape[2], **{k: config[k] for k in ("column", "pair_frac", "triplet_frac")})
    for name in MASS_PRIOR_TABLES:
        layer[f"{name}_data"] = _weight_data(data_reader, layer["name"], name)
    return layer, [shape[0], n * (n - 1) * (n - 2) // 2]


def parse_fx_triplet(keras_layer: dict[str, Any], input_names: list[str] | None,
                     input_shapes: list[list[Any]], data_reader: Any) -> tuple[dict[str, Any], list[Any]]:
    layer = _parse_common(keras_layer, input_names, "FxTripletArgmaxHLS")
    shape = input_shapes[0]
    layer.update(n_items=shape[1], n_in=shape[2], n_rank=keras_layer["config"]["rank"],
                 candidates=keras_layer["config"].get("candidates", 0))
    for name in TRIPLET_WEIGHTS:
        layer[f"{name}_data"] = _weight_data(data_reader, layer["name"], name)
    layer["score_heads"] = len(layer["kernel_b_data"])  # 2, one per top, or 1 shared by both
    return layer, [shape[0], 8]


class _FxLayerHLS(Layer):
    """IR base: typed weights sharing one C++ weight/bias type per layer, and derived exact accumulators."""

    def fx(self, name: str) -> Fx:
        return Fx.declared(self.get_attr("types")[name])

    def declared(self) -> dict[str, Fx]:
        return {k: Fx.declared(v) for k, v in self.get_attr("types").items()}

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
        exp_table, inv_table = softmax_tables(self.get_attr("exp_frac"), self.get_attr("exp_range"),
                                              self.get_attr("inv_frac"), self.get_attr("n_items"),
                                              exp_t=self.fx("exp"), inv_t=self.fx("inv"))
        self.set_attr("exp_size", len(exp_table))
        self.set_attr("inv_size", len(inv_table))
        self.add_fx_weight("exp_table", "fxexp", "exp", exp_table)
        self.add_fx_weight("inv_table", "fxinv", "inv", inv_table)


class FxMassPriorHLS(_FxLayerHLS):
    def initialize(self) -> None:
        n = self.get_attr("n_items")
        self.add_output_variable([n * (n - 1) * (n - 2) // 2],
                                 precision=hls_precision(mass_prior_types(self.declared())["out"]))
        for name in MASS_PRIOR_TABLES:
            self.add_fx_weight(name, f"fx{name.replace('_table', '')}", "prior")
        self.set_attr("pair_size", len(self.get_attr("pair_table_data")))
        self.set_attr("triplet_size", len(self.get_attr("triplet_table_data")))


class FxTripletArgmaxHLS(_FxLayerHLS):
    def initialize(self) -> None:
        self.add_output_variable([8], precision=hls_precision(self.fx("score")))
        for name in TRIPLET_WEIGHTS:
            self.add_fx_weight(name, f"fx{name.replace('kernel_', 'w').replace('bias_', 'b')}",
                               "bias" if name.startswith("bias") else "weight")


def _sharing(node: _FxLayerHLS, weights: dict[str, tuple[str, int | None]]) -> str:
    """Config lines of resource sharing: the reuse factor hls4ml gave the layer (`LayerName.<name>.ReuseFactor`,
    else the model's) and, per constant weight array (`weights`: member -> (weight, score head or None)), its
    non-zero weights, which set how many multipliers the C++ stages share (multiplications by 0 are removed)."""
    lines = [f"    static const unsigned reuse_factor = {reuse_factor(node.get_attr('reuse_factor'), node.name)};\n"]
    for member, (name, top) in weights.items():
        data = np.asarray(node.get_weights(name).data)
        count = np.count_nonzero(data if top is None else data.reshape(node.get_attr("score_heads"), -1)[top])
        lines.append(f"    static const unsigned {member} = {count};\n")
    return "".join(lines)


def _typedefs(types: dict[str, Fx | str]) -> str:
    """Typedefs of design types (declared results with AP_RND, AP_SAT; exact accumulators with the default
    truncate/wrap modes, spelt without them) or of hls4ml type names."""
    return "".join(f"    typedef {t.cpp() if isinstance(t, Fx) else t} {name};\n" for name, t in types.items())


class FxDenseConfig(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(FxDenseHLS)

    def format(self, node: FxDenseHLS) -> str:
        n_in = node.get_attr("n_in")
        t = dense_types(node.declared(), n_in)
        types: dict[str, Fx | str] = {
            "in_t": t["in"], "out_t": t["out"],
            "weight_t": node.type_name("kernel"), "bias_t": node.type_name("bias"), "acc_t": t["acc"]}
        return (f"struct config{node.index} {{\n"
                f"    static const unsigned n_items = {node.get_attr('n_items')};\n"
                f"    static const unsigned n_in = {n_in};\n"
                f"    static const unsigned n_out = {node.get_attr('n_out')};\n"
                f"    static const bool relu = {'true' if node.get_attr('relu') else 'false'};\n"
                f"{_sharing(node, {'n_nonzero': ('kernel', None)})}"
                f"{_typedefs(types)}}};\n")


class FxSelfAttentionConfig(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(FxSelfAttentionHLS)

    def format(self, node: FxSelfAttentionHLS) -> str:
        n, d, h, heads = (node.get_attr(k) for k in ("n_items", "n_in", "n_head", "heads"))
        t = attention_types(node.declared(), n, d, h, heads)
        types: dict[str, Fx | str] = {
            **{f"{k}_t": t[k] for k in ("in", "qkv", "score", "attn", "ctx", "out")},
            "weight_t": node.type_name("kernel_q"), "bias_t": node.type_name("bias_q"),
            "exp_table_t": node.type_name("exp_table"), "inv_table_t": node.type_name("inv_table"),
            **{f"{k}_t": t[k] for k in ("proj_acc", "score_acc", "ctx_acc", "out_acc", "dist", "sum")},
        }
        return (f"struct config{node.index} {{\n"
                f"    static const unsigned n_items = {n};\n"
                f"    static const unsigned n_in = {d};\n"
                f"    static const unsigned n_head = {h};\n"
                f"    static const unsigned heads = {heads};\n"
                f"    static const unsigned exp_frac = {node.get_attr('exp_frac')};\n"
                f"    static const unsigned exp_size = {node.get_attr('exp_size')};\n"
                f"    static const unsigned inv_frac = {node.get_attr('inv_frac')};\n"
                f"    static const unsigned inv_size = {node.get_attr('inv_size')};\n"
                f"{_sharing(node, {f'nonzero_{c}': (f'kernel_{c}', None) for c in 'qkvo'})}"
                f"{_typedefs(types)}}};\n")


class FxMassPriorConfig(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(FxMassPriorHLS)

    def format(self, node: FxMassPriorHLS) -> str:
        t = mass_prior_types(node.declared())
        types: dict[str, Fx | str] = {
            "in_t": t["in"], "table_t": node.type_name("pair_table"),
            **{f"{k}_t": t[k] for k in ("gram", "pair_m2", "excess_m2", "out")}}
        sizes = "".join(f"    static const unsigned {k} = {node.get_attr(k)};\n"
                        for k in ("n_items", "n_in", "column", "pair_frac", "pair_size", "triplet_frac",
                                  "triplet_size"))
        return f"struct config{node.index} {{\n{sizes}{_sharing(node, {})}{_typedefs(types)}}};\n"


class FxTripletArgmaxConfig(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(FxTripletArgmaxHLS)

    def format(self, node: FxTripletArgmaxHLS) -> str:
        d, r = node.get_attr("n_in"), node.get_attr("n_rank")
        heads = node.get_attr("score_heads")
        t = triplet_types(node.declared(), d, r)
        types: dict[str, Fx | str] = {
            **{f"{k}_t": t[k] for k in ("in", "factor", "pair", "score")},
            "weight_t": node.type_name("kernel_b"), "bias_t": node.type_name("bias_b"),
            **{f"{k}_t": t[k] for k in ("proj_acc", "score_acc")},  # the prior's type is the third input's
        }
        return (f"struct config{node.index} {{\n"
                f"    static const unsigned n_items = {node.get_attr('n_items')};\n"
                f"    static const unsigned n_in = {d};\n"
                f"    static const unsigned n_rank = {r};\n"
                f"    static const unsigned candidates = {node.get_attr('candidates', 0)};\n"
                f"    static const unsigned score_heads = {heads};\n"
                f"{_sharing(node, {f'nonzero_{c}{h}': (f'kernel_{c}', h) for c in 'bp' for h in range(heads)})}"
                f"{_typedefs(types)}}};\n")


class _FxFunction(FunctionCallTemplate):
    """`nnet::<function><input_t, [mask_t, [prior_t,]] output_t, config>(input, [mask, [prior,]] output,
    weights...)`."""

    function = ""
    weights: tuple[str, ...] = ()

    def format(self, node: _FxLayerHLS) -> str:
        params = self._default_function_params(node)
        args = [params["input"]]
        targs = [params["input_t"]]
        for name in node.inputs[1:]:
            var = node.get_input_variable(name)
            args.append(var.name)
            targs.append(var.type.name)
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


class FxMassPriorFunction(_FxFunction):
    function = "fx_mass_prior"
    weights = MASS_PRIOR_TABLES

    def __init__(self) -> None:
        super().__init__(FxMassPriorHLS, include_header=INCLUDE)


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
                               ("FxMassPrior", parse_fx_mass_prior), ("FxTripletArgmax", parse_fx_triplet)):
        register_keras_v2_layer_handler(keras_name, parser)
    for cls in (FxDenseHLS, FxSelfAttentionHLS, FxMassPriorHLS, FxTripletArgmaxHLS):
        register_layer(cls.__name__, cls)
    for name in BACKENDS:
        backend = get_backend(name)
        for template in (FxDenseConfig, FxSelfAttentionConfig, FxMassPriorConfig, FxTripletArgmaxConfig,
                         FxDenseFunction, FxSelfAttentionFunction, FxMassPriorFunction, FxTripletArgmaxFunction):
            backend.register_template(template)
        backend.register_source(HEADER)
    estimate.register()
    _REGISTERED.add("spanet")
