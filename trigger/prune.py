"""Stage: magnitude pruning with tensorflow-model-optimization, fine-tuning, stripping, and a sparsity check.

Pruned weights are exact zeros after `strip_pruning`; the HLS compiler removes their multiplications,
which is why the estimator counts zeros per layer. The sparsity actually reached is measured on the
stripped model and must meet the config's target, or the stage fails (a schedule whose `frequency`
does not fit in its `end_step` silently prunes nothing).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trigger.config import PruningConfig, TrainingConfig
from trigger.errors import CheckFailed

if TYPE_CHECKING:
    from tensorflow import keras

    from trigger.families.base import ModelFamily, Prepared

PRUNABLE = ("Dense", "QDense", "Conv1D", "QConv1D", "Conv2D", "QConv2D")
SPARSITY_TOLERANCE = 0.01  # the schedule rounds the number of zeros per tensor


@dataclass
class PruningResult:
    model: keras.Model
    layer_sparsity: dict[str, float]
    overall: float
    history: dict[str, list]


def kernel_sparsity(model: keras.Model) -> tuple[dict[str, float], float]:
    """Fraction of exactly-zero kernel weights per prunable layer, and over all of them."""
    per_layer, zeros, total = {}, 0, 0
    for layer in model.layers:
        if type(layer).__name__ in PRUNABLE:
            kernel = layer.get_weights()[0]
            per_layer[layer.name] = float(np.mean(kernel == 0))
            zeros += int(np.count_nonzero(kernel == 0))
            total += kernel.size
    return per_layer, (zeros / total if total else 0.0)


def prune(model: keras.Model, family: ModelFamily, data: Prepared, pcfg: PruningConfig,
          tcfg: TrainingConfig, *, quantized: bool, progress: bool = False) -> PruningResult:
    """Wrap prunable layers, fine-tune to the target sparsity, strip the wrappers and verify the result."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    from qkeras.utils import _add_supported_quantized_objects

    from trigger.train import fit, seed_everything

    steps_per_epoch = int(np.ceil(len(data.train) / tcfg.batch_size))
    # Reach the target after 2/3 of the fine-tuning, then let the remaining epochs recover accuracy.
    end_step = max(2, int(steps_per_epoch * pcfg.epochs * 2 / 3))
    frequency = min(pcfg.frequency, max(1, end_step // 4))
    if pcfg.schedule == "polynomial_decay":
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=pcfg.initial_sparsity, final_sparsity=pcfg.target_sparsity,
            begin_step=0, end_step=end_step, frequency=frequency)
    else:
        schedule = tfmot.sparsity.keras.ConstantSparsity(pcfg.target_sparsity, begin_step=0, frequency=frequency)

    def wrap(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
        if type(layer).__name__ in PRUNABLE:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    custom: dict = {}
    _add_supported_quantized_objects(custom)
    custom.update(family.custom_objects())
    seed_everything(tcfg.seed + 1)
    with tf.keras.utils.custom_object_scope(custom):
        wrapped = tf.keras.models.clone_model(model, clone_function=wrap)
    _copy_weights(model, wrapped)
    # Early stopping must not end fine-tuning before the schedule has reached its target.
    tcfg_ft = dataclasses.replace(tcfg, patience=max(tcfg.patience, pcfg.epochs))
    history = fit(wrapped, family, data, tcfg_ft, epochs=pcfg.epochs, learning_rate=tcfg.learning_rate / 2,
                  callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], progress=progress)
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    # The stripped layers still carry nodes of the wrapped graph; a fresh build has one clean graph to slice.
    clean = family.build(quantized=quantized)
    for layer in clean.layers:
        if layer.get_weights():
            layer.set_weights(stripped.get_layer(layer.name).get_weights())
    stripped = clean
    per_layer, overall = kernel_sparsity(stripped)
    if overall + SPARSITY_TOLERANCE < pcfg.target_sparsity:
        raise CheckFailed(f"pruning.target_sparsity: reached {overall:.3f}, target {pcfg.target_sparsity:.3f} "
                          f"(more pruning.epochs or a lower pruning.frequency)")
    return PruningResult(stripped, per_layer, overall, history)


def _copy_weights(source: keras.Model, wrapped: keras.Model) -> None:
    """Copy trained weights layer by layer into the pruning-wrapped clone (wrappers add mask variables)."""
    for layer in wrapped.layers:
        inner = getattr(layer, "layer", layer)
        src = source.get_layer(inner.name)
        if src.get_weights():
            inner.set_weights(src.get_weights())
