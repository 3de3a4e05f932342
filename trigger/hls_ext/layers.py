"""Keras layers of the on-chip SPA-Net: their forward pass runs the design's kernels (`trigger.design.spanet`).

Each layer stores its fixed-point types in `get_config` (the hls4ml parser reads them from there, so the
firmware and the Python side can never disagree about a type), builds the design op of its configuration
and weights, and evaluates the op's interpreter kernel through `tf.numpy_function`: the firmware model's
`predict` and the emulator of a compiled design are the same code. The layers are inference-only: the
trainable twins live in `trigger.hls_ext.train` and their weights are copied here, already on the grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow import keras

from trigger.design.fixed import Fx, on_grid
from trigger.design.graph import Op, Tensor
from trigger.design.interpret import KERNELS
from trigger.design.spanet import (
    ATTENTION_TYPES,
    ATTENTION_WEIGHTS,
    DENSE_TYPES,
    DENSE_WEIGHTS,
    MASK,
    MASS_PRIOR_TABLES,
    MASS_PRIOR_TYPES,
    TRIPLET_TYPES,
    TRIPLET_WEIGHTS,
    attention_op,
    attention_shapes,
    config_spec,
    dense_op,
    mass_prior_op,
    mass_prior_types,
    softmax_tables,
    triplet_op,
)


def _require(types: dict[str, Fx], names: tuple[str, ...], layer: str) -> None:
    missing = [n for n in names if n not in types]
    if missing:
        raise ValueError(f"{layer}: fixed-point types missing for {', '.join(missing)}")


class _FxLayer(keras.layers.Layer):
    """Shared plumbing: frozen weights that must lie on their fixed-point grid, the op's kernel as forward."""

    def __init__(self, types: dict[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.fx_types = {k: Fx.declared(v) for k, v in types.items()}

    def numpy_weights(self) -> dict[str, np.ndarray]:
        return {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in self.weights}

    def weight_spec(self, names: tuple[str, ...], values: tuple[np.ndarray, ...]) -> dict[str, tuple[np.ndarray, Fx]]:
        """The op's weights: each value with the type of its grid (`grid_type`)."""
        return {k: (v, self.grid_type(k)) for k, v in zip(names, values, strict=True)}

    def grid_type(self, weight: str) -> Fx:
        """The type a weight must lie on: the declared bias or weight type."""
        return self.fx_types["bias" if weight.startswith("bias") else "weight"]

    def check_grid(self) -> None:
        """Raise if a weight is off its type's grid (the firmware would round a weight the model keeps)."""
        for name, value in self.numpy_weights().items():
            t = self.grid_type(name)
            if not on_grid(value, t):
                raise ValueError(f"{self.name}: weight {name} is not on the grid of {t.cpp()}")

    def run(self, op: Op, *args: np.ndarray) -> np.ndarray:
        """The op's interpreter kernel on a batch (data, then the mask, then a prior), as float32 for
        TensorFlow."""
        arg_types = [self.fx_types["in"], MASK]
        if len(args) == 3:
            arg_types.append(self.fx_types["prior"])
        values = [np.asarray(a, dtype=np.float64) for a in args]
        return KERNELS[op.kind](op, values, arg_types[: len(args)]).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["types"] = {k: config_spec(v) for k, v in self.fx_types.items()}
        return config


class FxDense(_FxLayer):
    """A dense layer shared over jets, (B, n, d_in) -> (B, n, units), optional ReLU."""

    def __init__(self, units: int, relu: bool, types: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(types, **kwargs)
        _require(self.fx_types, DENSE_TYPES, self.name)
        self.units = units
        self.relu = relu

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.units),
                                      initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        def forward(x: np.ndarray, *weights: np.ndarray) -> np.ndarray:
            output = Tensor(self.name, (x.shape[1], self.units), self.fx_types["out"])
            op = dense_op(self.name, ["x"], output, self.fx_types, self.weight_spec(DENSE_WEIGHTS, weights),
                          relu=self.relu)
            return self.run(op, x)

        out = tf.numpy_function(forward, [inputs, self.kernel, self.bias], tf.float32)
        out.set_shape(inputs.shape[:-1].concatenate([self.units]))
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "relu": self.relu}


class FxSelfAttention(_FxLayer):
    """Masked self-attention of `heads` heads of width `head_dim`, each with its table softmax, their contexts
    concatenated into one output projection, residual: [(B, n, d), (B, n)] -> (B, n, d)."""

    def __init__(self, head_dim: int, types: dict[str, Any], exp_frac: int = 4, exp_range: int = 8,
                 inv_frac: int = 5, *, heads: int = 1, **kwargs: Any) -> None:
        super().__init__(types, **kwargs)
        _require(self.fx_types, ATTENTION_TYPES, self.name)
        self.head_dim = head_dim
        self.heads = heads
        self.exp_frac = exp_frac
        self.exp_range = exp_range
        self.inv_frac = inv_frac

    def build(self, input_shape: Any) -> None:
        n, d = int(input_shape[0][-2]), int(input_shape[0][-1])
        shapes = attention_shapes(d, self.head_dim, self.heads)
        self.fx_weights = [self.add_weight(name=k, shape=shapes[k], initializer="zeros")
                           for k in ATTENTION_WEIGHTS]
        exp_t, inv_t = self.fx_types["exp"], self.fx_types["inv"]
        exp_table, inv_table = softmax_tables(self.exp_frac, self.exp_range, self.inv_frac, n, exp_t=exp_t,
                                              inv_t=inv_t)
        self.tables = {"exp_table": (exp_table, exp_t), "inv_table": (inv_table, inv_t)}
        super().build(input_shape)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        x, mask = inputs

        def forward(x: np.ndarray, mask: np.ndarray, *weights: np.ndarray) -> np.ndarray:
            output = Tensor(self.name, x.shape[1:], self.fx_types["out"])
            spec = {**self.weight_spec(ATTENTION_WEIGHTS, weights), **self.tables}
            op = attention_op(self.name, ["x", "mask"], output, self.fx_types, spec, exp_frac=self.exp_frac,
                              inv_frac=self.inv_frac, heads=self.heads)
            return self.run(op, x, mask)

        out = tf.numpy_function(forward, [x, mask, *self.fx_weights], tf.float32)
        out.set_shape(x.shape)
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "head_dim": self.head_dim, "heads": self.heads, "exp_frac": self.exp_frac,
                "exp_range": self.exp_range, "inv_frac": self.inv_frac}


class FxMassPrior(_FxLayer):
    """The learned mass prior of every triplet, from the jets' (E, px, py, pz) input columns: (B, n, F) -> (B, M),
    M triplets in `scan_order`. Its weights are the two tables, on the `prior` type."""

    def __init__(self, *, column: int, pair_frac: int, pair_size: int, triplet_frac: int, triplet_size: int,
                 types: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(types, **kwargs)
        _require(self.fx_types, MASS_PRIOR_TYPES, self.name)
        self.column, self.pair_frac, self.pair_size = column, pair_frac, pair_size
        self.triplet_frac, self.triplet_size = triplet_frac, triplet_size

    def build(self, input_shape: Any) -> None:
        self.tables = [self.add_weight(name=name, shape=(size,), initializer="zeros")
                       for name, size in zip(MASS_PRIOR_TABLES, (self.pair_size, self.triplet_size), strict=True)]
        super().build(input_shape)

    def grid_type(self, weight: str) -> Fx:
        return self.fx_types["prior"]

    def output_type(self) -> Fx:
        return mass_prior_types(self.fx_types)["out"]

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        n = int(inputs.shape[1])
        triplets = n * (n - 1) * (n - 2) // 2

        def forward(x: np.ndarray, *tables: np.ndarray) -> np.ndarray:
            output = Tensor(self.name, (triplets,), self.output_type())
            op = mass_prior_op(self.name, ["x"], output, self.fx_types, self.weight_spec(MASS_PRIOR_TABLES, tables),
                               n_items=n, column=self.column, pair_frac=self.pair_frac, triplet_frac=self.triplet_frac)
            return self.run(op, x)

        out = tf.numpy_function(forward, [inputs, *self.tables], tf.float32)
        out.set_shape(inputs.shape[:1].concatenate([triplets]))
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "column": self.column, "pair_frac": self.pair_frac,
                "pair_size": self.pair_size, "triplet_frac": self.triplet_frac, "triplet_size": self.triplet_size}


class FxTripletArgmax(_FxLayer):
    """Symmetric tensor attention for two tops and its on-chip argmax: [(B, n, d), (B, n)(, (B, M) prior)] ->
    (B, 8); a prior (of the declared type `prior`) is added to both tops' scores.

    The output is (b, q, q', score) for top 1 then top 2; the score type must hold the jet indices too. With
    `shared_head` one set of factor weights scores both tops (the weights' leading axis is 1, not 2).
    """

    def __init__(self, rank: int, types: dict[str, Any], candidates: int = 0, *, shared_head: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(types, **kwargs)
        _require(self.fx_types, TRIPLET_TYPES, self.name)
        self.candidates, self.shared_head = candidates, shared_head
        if self.fx_types["score"].max < 15:
            raise ValueError(f"{self.name}: {self.fx_types['score'].cpp()} cannot hold the jet indices")
        self.rank = rank

    def build(self, input_shape: Any) -> None:
        d, r, t = int(input_shape[0][-1]), self.rank, 1 if self.shared_head else 2
        shapes = {"kernel_b": (t, d, r), "bias_b": (t, r), "kernel_p": (t, d, r), "bias_p": (t, r)}
        self.fx_weights = [self.add_weight(name=k, shape=shapes[k], initializer="zeros")
                           for k in TRIPLET_WEIGHTS]
        super().build(input_shape)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        x, mask, *prior = inputs
        if bool(prior) != ("prior" in self.fx_types):
            raise ValueError(f"{self.name}: a prior input goes with a declared prior type")
        names = ["x", "mask", "prior"][: 2 + len(prior)]

        def forward(x: np.ndarray, mask: np.ndarray, *rest: np.ndarray) -> np.ndarray:
            output = Tensor(self.name, (8,), self.fx_types["score"])
            args, weights = rest[: len(prior)], rest[len(prior):]
            op = triplet_op(self.name, names, output, self.fx_types,
                            self.weight_spec(TRIPLET_WEIGHTS, weights), n_items=x.shape[1],
                            candidates=self.candidates)
            return self.run(op, x, mask, *args)

        out = tf.numpy_function(forward, [x, mask, *prior, *self.fx_weights], tf.float32)
        out.set_shape(x.shape[:1].concatenate([8]))
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rank": self.rank, "candidates": self.candidates,
                "shared_head": self.shared_head}


CUSTOM_OBJECTS: dict[str, Any] = {cls.__name__: cls for cls in (FxDense, FxSelfAttention, FxMassPrior,
                                                                  FxTripletArgmax)}
