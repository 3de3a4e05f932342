"""Keras layers of the on-chip SPA-Net: their forward pass IS the bit-exact fixed-point reference.

Each layer stores its fixed-point types in `get_config` (the hls4ml parser reads them from there, so the
firmware and the Python reference can never disagree about a type) and evaluates `trigger.hls_ext.fixed`
through `tf.numpy_function`. They are inference-only: the trainable twins live in `trigger.families.spanet`
and their weights are copied here, already on the weight grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow import keras

from trigger.hls_ext.fixed import Fx, attention_ref, dense_ref, softmax_tables, triplet_argmax_ref

ATTENTION_TYPES = ("in", "qkv", "score", "exp", "inv", "attn", "ctx", "out", "weight", "bias")
TRIPLET_TYPES = ("in", "factor", "pair", "score", "weight", "bias")
ATTENTION_WEIGHTS = ("kernel_q", "bias_q", "kernel_k", "bias_k", "kernel_v", "bias_v", "kernel_o", "bias_o")
TRIPLET_WEIGHTS = ("kernel_b", "bias_b", "kernel_p", "bias_p")


def _types(spec: dict[str, Any], names: tuple[str, ...], layer: str) -> dict[str, Fx]:
    missing = [n for n in names if n not in spec]
    if missing:
        raise ValueError(f"{layer}: fixed-point types missing for {', '.join(missing)}")
    return {n: Fx.of(spec[n]) for n in names}


def _on_grid(values: np.ndarray, t: Fx) -> bool:
    scaled = np.asarray(values, dtype=np.float64) * 2.0 ** t.frac
    return bool(np.all(scaled == np.round(scaled)) and np.all(values >= t.min) and np.all(values <= t.max))


class _FxLayer(keras.layers.Layer):
    """Shared plumbing: frozen weights that must lie on their fixed-point grid, numpy forward pass."""

    def __init__(self, types: dict[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.fx_types = {k: Fx.of(v) for k, v in types.items()}

    def numpy_weights(self) -> dict[str, np.ndarray]:
        return {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in self.weights}

    def check_grid(self) -> None:
        """Raise if a weight is off its type's grid (the C++ would round it, the reference would not)."""
        for name, value in self.numpy_weights().items():
            t = self.fx_types["bias" if name.startswith("bias") else "weight"]
            if not _on_grid(value, t):
                raise ValueError(f"{self.name}: weight {name} is not on the grid of {t.cpp()}")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["types"] = {k: v.to_list() for k, v in self.fx_types.items()}
        return config


class FxDense(_FxLayer):
    """A dense layer shared over jets, (B, n, d_in) -> (B, n, units), optional ReLU."""

    def __init__(self, units: int, relu: bool, types: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(types, **kwargs)
        _types(self.fx_types, ("in", "out", "weight", "bias"), self.name)
        self.units = units
        self.relu = relu

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.units),
                                      initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        def forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
            out = dense_ref(x, kernel, bias, self.fx_types, self.relu)
            return out.astype(np.float32)

        out = tf.numpy_function(forward, [inputs, self.kernel, self.bias], tf.float32)
        out.set_shape(inputs.shape[:-1].concatenate([self.units]))
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "relu": self.relu}


class FxSelfAttention(_FxLayer):
    """Masked one-head self-attention, table softmax, residual: [(B, n, d), (B, n)] -> (B, n, d)."""

    def __init__(self, head_dim: int, types: dict[str, Any], exp_frac: int = 4, exp_range: int = 8,
                 inv_frac: int = 5, **kwargs: Any) -> None:
        super().__init__(types, **kwargs)
        _types(self.fx_types, ATTENTION_TYPES, self.name)
        self.head_dim = head_dim
        self.exp_frac = exp_frac
        self.exp_range = exp_range
        self.inv_frac = inv_frac

    def build(self, input_shape: Any) -> None:
        n, d = int(input_shape[0][-2]), int(input_shape[0][-1])
        h = self.head_dim
        shapes = {"kernel_q": (d, h), "bias_q": (h,), "kernel_k": (d, h), "bias_k": (h,), "kernel_v": (d, h),
                  "bias_v": (h,), "kernel_o": (h, d), "bias_o": (d,)}
        self.fx_weights = [self.add_weight(name=k, shape=shapes[k], initializer="zeros")
                           for k in ATTENTION_WEIGHTS]
        self.tables = softmax_tables(self.exp_frac, self.exp_range, self.inv_frac, n, self.fx_types)
        super().build(input_shape)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        x, mask = inputs

        def forward(x: np.ndarray, mask: np.ndarray, *weights: np.ndarray) -> np.ndarray:
            w = dict(zip(ATTENTION_WEIGHTS, weights, strict=True))
            return attention_ref(x, mask, w, self.fx_types, self.tables).astype(np.float32)

        out = tf.numpy_function(forward, [x, mask, *self.fx_weights], tf.float32)
        out.set_shape(x.shape)
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "head_dim": self.head_dim, "exp_frac": self.exp_frac,
                "exp_range": self.exp_range, "inv_frac": self.inv_frac}


class FxTripletArgmax(_FxLayer):
    """Symmetric tensor attention for two tops and its on-chip argmax: [(B, n, d), (B, n)] -> (B, 8).

    The output is (b, q, q', score) for top 1 then top 2; the score type must hold the jet indices too.
    """

    def __init__(self, rank: int, types: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(types, **kwargs)
        _types(self.fx_types, TRIPLET_TYPES, self.name)
        if self.fx_types["score"].max < 15:
            raise ValueError(f"{self.name}: {self.fx_types['score'].cpp()} cannot hold the jet indices")
        self.rank = rank

    def build(self, input_shape: Any) -> None:
        d, r = int(input_shape[0][-1]), self.rank
        shapes = {"kernel_b": (2, d, r), "bias_b": (2, r), "kernel_p": (2, d, r), "bias_p": (2, r)}
        self.fx_weights = [self.add_weight(name=k, shape=shapes[k], initializer="zeros")
                           for k in TRIPLET_WEIGHTS]
        super().build(input_shape)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        x, mask = inputs

        def forward(x: np.ndarray, mask: np.ndarray, *weights: np.ndarray) -> np.ndarray:
            w = dict(zip(TRIPLET_WEIGHTS, weights, strict=True))
            return triplet_argmax_ref(x, mask, w, self.fx_types).astype(np.float32)

        out = tf.numpy_function(forward, [x, mask, *self.fx_weights], tf.float32)
        out.set_shape(x.shape[:1].concatenate([8]))
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rank": self.rank}


CUSTOM_OBJECTS: dict[str, Any] = {cls.__name__: cls for cls in (FxDense, FxSelfAttention, FxTripletArgmax)}
